// pybind11 registration of build and run-time facts, and the thread/ISA switches.
#include "cpu/kernels.hpp"
#include "check.hpp"

namespace bigstep::py {

void register_info(pyb::module_& m) {
  m.def("simd_level", &cpu::simd_level, "Instruction set the CPU kernels run with.");
  m.def("available_isas", &cpu::available_isas, "Instruction sets compiled in and runnable here.");
  m.def("set_isa", &cpu::set_isa, pyb::arg("name"),
        "Force an instruction set ('auto', 'baseline', 'avx2', 'avx512', 'native'); False if unavailable.");
  m.def("compiler", &cpu::compiler);
  m.def("openmp_max_threads", &cpu::openmp_max_threads);
  m.def("set_num_threads", &cpu::set_num_threads, pyb::arg("n"));
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
}

}  // namespace bigstep::py
