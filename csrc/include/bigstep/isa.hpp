// Run-time instruction-set dispatch for the CPU kernels.
//
// The kernel translation units (csrc/cpu/*_kernels.cpp) are compiled once per
// instruction set with different flags, each into its own namespace
// (BIGSTEP_ISA_NS, set by CMake: isa_baseline, isa_avx2, isa_avx512 or
// isa_native).  csrc/cpu/dispatch.cpp picks one at run time.
#pragma once
#include <cstdint>
#include <string>

#include "bigstep/config.hpp"

namespace bigstep::cpu {

enum class Isa { baseline = 0, avx2 = 1, avx512 = 2, native = 3 };

// The instruction set in use: the best one compiled in and supported by this CPU,
// unless set_isa() chose another.
Isa active_isa();
std::string isa_name(Isa isa);
// Forces an instruction set by name ("baseline", "avx2", "avx512", "native", or
// "auto"); returns false (and changes nothing) if it is not compiled in or not
// supported by this CPU.  For tests and benchmarks.
bool set_isa(const std::string& name);
// Names of the instruction sets compiled in and runnable on this CPU.
std::string available_isas();
// Thread count for the kernels' parallel regions (num_threads clause), process-wide.
int num_threads();
// Work (multiply-adds, exps or elements) below which a kernel runs on the calling thread
// alone (the parallel regions' if clause): starting a team costs ~10 us on an idle
// machine and up to ~0.2 ms while other processes hold the cores, more than such calls.
constexpr double kParallelWork = 65536.0;
inline bool parallel_worth(double work) { return work > kParallelWork; }

}  // namespace bigstep::cpu
