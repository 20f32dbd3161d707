// bigstep._cuda: the CUDA module (kept separate so importing bigstep never needs a GPU or
// libcudart).  Device queries here; each kernel family registers itself
// (src/register_cuda_<family>.cpp).  Built a second time as bigstep._cuda_emu over the
// CPU emulation of csrc/cuda/emu.hpp (BIGSTEP_CUDA_EMU) for the tests.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bigstep/cuda_info.hpp"
#include "cuda/kernels.cuh"

#ifndef BIGSTEP_CUDA_MODULE
#define BIGSTEP_CUDA_MODULE _cuda
#endif
#ifndef BIGSTEP_CUDA_SOURCE_DIGEST
#define BIGSTEP_CUDA_SOURCE_DIGEST ""
#endif

namespace pyb = pybind11;

namespace bigstep::py {
void register_cuda_optimal_score(pyb::module_& m);
void register_cuda_metrics(pyb::module_& m);
void register_cuda_sampler(pyb::module_& m);
void register_cuda_sgd(pyb::module_& m);
}  // namespace bigstep::py

PYBIND11_MODULE(BIGSTEP_CUDA_MODULE, m) {
  m.doc() = "bigstep CUDA kernels (launchers take device pointers as integers; see bigstep._cuda_kernels)";
  // CUDA errors: RuntimeError subclasses with the CUDA text; out of memory a MemoryError
  // (translators are tried last-registered first: the subclass after its base)
  pyb::register_exception<bigstep::cuda::Error>(m, "CudaError", PyExc_RuntimeError);
  pyb::register_exception<bigstep::cuda::OutOfMemory>(m, "CudaOutOfMemoryError", PyExc_MemoryError);
  m.def("devices", []() {
    pyb::list out;
    std::string error;
    for (const auto& dev : bigstep::cuda::list_devices(error)) {
      pyb::dict d;
      d["index"] = dev.index;
      d["name"] = dev.name;
      d["compute_capability"] = pyb::make_tuple(dev.major, dev.minor);
      d["total_memory"] = dev.total_memory;
      out.append(d);
    }
    if (!error.empty() && out.empty()) throw pyb::value_error("CUDA device query failed: " + error);
    return out;
  }, "Visible CUDA devices as dicts (index, name, compute_capability, total_memory).");
  m.def("runtime_version", &bigstep::cuda::runtime_version);
  m.def("driver_version", &bigstep::cuda::driver_version);
  m.def("pointer_device", [](std::uintptr_t p) { return bigstep::cuda::pointer_device(reinterpret_cast<void*>(p)); },
        pyb::arg("ptr"), "Device index of a device pointer, -1 for host memory.");
  m.def("launch_error_selftest", [](std::uintptr_t stream) {
    pyb::gil_scoped_release release;
    bigstep::cuda::launch_error_selftest(reinterpret_cast<bigstep::cuda::Stream>(stream));
  }, pyb::arg("stream") = 0, "Launches a kernel with an invalid block size: raises CudaError (tests).");
#ifdef BIGSTEP_CUDA_ARCHS_STR
  m.attr("compiled_archs") = BIGSTEP_CUDA_ARCHS_STR;
#else
  m.attr("compiled_archs") = "emulated";
#endif
  // digest of the CUDA sources this module was built from (CMake), matched against the
  // record of a device run (bigstep._cuda_kernels.verification)
  m.attr("source_digest") = BIGSTEP_CUDA_SOURCE_DIGEST;
#ifdef BIGSTEP_CUDA_EMU
  m.attr("emulated") = true;
#else
  m.attr("emulated") = false;
#endif
  bigstep::py::register_cuda_optimal_score(m);
  bigstep::py::register_cuda_metrics(m);
  bigstep::py::register_cuda_sampler(m);
  bigstep::py::register_cuda_sgd(m);
}
