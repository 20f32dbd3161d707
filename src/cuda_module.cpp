// bigstep._cuda: the CUDA module (kept separate so importing bigstep never needs a
// GPU or libcudart).  For now it answers device queries; kernels come later.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bigstep/cuda_info.hpp"

namespace pyb = pybind11;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "bigstep CUDA kernels";
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
  m.attr("compiled_archs") = BIGSTEP_CUDA_ARCHS_STR;
}
