// Per-thread scratch of the kernels' OpenMP regions.
//
// An exception must not leave an OpenMP region: the runtime calls std::terminate and
// takes the interpreter with it.  So a kernel allocates every thread's scratch before
// its region (a std::bad_alloc there reaches Python as MemoryError), one slot per
// thread it asks for, and each thread takes its own slot by thread_index().  A region
// whose `if` clause is false runs on one thread, index 0.
#pragma once
#include <algorithm>
#include <vector>

#include "bigstep/isa.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace bigstep::cpu {

inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Threads for a region over `tasks` independent tasks: num_threads(), but no more than
// there are tasks (no idle thread's scratch), and at least 1.
inline int team_size(index_t tasks) {
  return static_cast<int>(std::max<index_t>(1, std::min<index_t>(num_threads(), tasks)));
}

// The scratch of a region run with num_threads(threads): make() once per thread (each
// built in place: no prototype copy held beside them).
template <class Make>
auto per_thread(int threads, Make make) {
  std::vector<decltype(make())> out;
  out.reserve(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t) out.push_back(make());
  return out;
}

}  // namespace bigstep::cpu
