// Philox streams on the CPU: element i of (seed, stream) at counter offset + i.
// Threads split the index range; every element depends on its counter only, so the
// bits do not depend on the thread count.
#include "bigstep/isa.hpp"
#include "bigstep/launch.hpp"
#include "bigstep/philox.hpp"

namespace bigstep::cpu {

template <class T>
void gaussian_noise(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, T* out, index_t count) {
  const PhiloxStream s = make_stream(seed, stream);
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (count > 65536)
  for (index_t i = 0; i < count; ++i) out[i] = static_cast<T>(normal_at(s, offset + static_cast<std::uint64_t>(i)));
}

template <class T>
void uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, T* out, index_t count) {
  const PhiloxStream s = make_stream(seed, stream);
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (count > 65536)
  for (index_t i = 0; i < count; ++i) {
    T u = static_cast<T>(uniform_at(s, offset + static_cast<std::uint64_t>(i)));
    out[i] = u < T(1) ? u : T(0.99999994f);  // rounding to float can reach 1
  }
}

template void gaussian_noise<float>(std::uint64_t, std::uint64_t, std::uint64_t, float*, index_t);
template void gaussian_noise<double>(std::uint64_t, std::uint64_t, std::uint64_t, double*, index_t);
template void uniform<float>(std::uint64_t, std::uint64_t, std::uint64_t, float*, index_t);
template void uniform<double>(std::uint64_t, std::uint64_t, std::uint64_t, double*, index_t);

}  // namespace bigstep::cpu
