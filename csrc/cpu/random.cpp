// Philox streams on the CPU: element i of (seed, stream) at counter offset + i.
// Threads split the index range; every element depends on its counter only, so the
// bits do not depend on the thread count.
#include "kernels.hpp"
#include "bigstep/philox.hpp"

namespace bigstep::cpu {

// Normals come in fours: elements 4b .. 4b + 3 share Philox block b, computed once here
// (normal_at would compute it for each); the values are those of normal_at.
template <class T>
void gaussian_noise(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, T* out, index_t count) {
  if (count <= 0) return;
  const PhiloxStream s = make_stream(seed, stream);
  const std::uint64_t first = offset >> 2, last = (offset + static_cast<std::uint64_t>(count) - 1) >> 2;
  const index_t blocks = static_cast<index_t>(last - first) + 1;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (count > 65536)
  for (index_t k = 0; k < blocks; ++k) {
    const std::uint64_t b = first + static_cast<std::uint64_t>(k);
    const Philox4 r = philox_block(s, b);
    for (unsigned h = 0; h < 4; ++h) {
      const std::uint64_t e = 4 * b + h;  // element of the stream
      if (e < offset || e - offset >= static_cast<std::uint64_t>(count)) continue;
      out[e - offset] = static_cast<T>(block_normal(r, h));
    }
  }
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
