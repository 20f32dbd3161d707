// Fused reverse-diffusion sampler (compiled once per instruction set; entry points listed in kernels.hpp).
//
// Particles in tiles of TP rows spread over threads.  A tile keeps its state in
// columns (xs[j][p], one vector of W particles per load) and runs every step of the chunk [k0, k1) before
// the next tile starts, so it stays in cache:
//   score   one vector of W particles at a time (one particle per lane, sampler.hpp),
//   noise   the tile's normals, counters k n d + p0 d .. + pn d of stream (seed, 1):
//           Philox4x32-10 on W consecutive blocks at once (32 x 32 -> 64-bit products
//           in the 64-bit lanes, _mm*_mul_epu32), then Box-Muller with the vectorised
//           log, cos and sin of fast_normal.hpp (values equal to gaussian_noise's up to
//           a few ulp),
//   update  x += h (x + c s) + r z, and the path row when asked.
// s* of many points in many dimensions (see kDirectMax) runs by blocks of BP particles
// instead: per step the optimal-score kernel of this ISA on the block, then noise and
// update.  Every particle's arithmetic depends on its own lane and counters only, so
// the output is bit-identical for any thread count and any chunking of the steps.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <exception>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif
#include "bigstep/fast_normal.hpp"
#include "bigstep/philox.hpp"
#include "bigstep/sampler.hpp"
#include "bigstep/streams.hpp"
#include "kernels.hpp"
#include "simd.hpp"
#include "team.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace {

using V = simd::vec<double>;
using I = simd::Traits<double>::I;
typedef std::uint64_t U __attribute__((vector_size(simd::kBytes)));
constexpr int W = simd::width<double>;

constexpr index_t TP = 64;          // particles per tile (a multiple of every W)
// s* by direct sums (one particle per lane) up to kDirectMax points, and at any n up
// to kDirectMaxPoints in d <= kDirectMaxDim (single thread, n = 1000: 2.4x the tiled
// kernel at d = 2, 1.3x at d = 8, 0.7x at d = 16, where the tiled kernel pads the
// coordinates to whole vectors); else the tiled optimal-score kernel.  1-D data keeps
// the windowed 1-D kernel above kDirectMax points.
constexpr index_t kDirectMax = 64;
constexpr index_t kDirectMaxDim = 8;
constexpr index_t kDirectMaxPoints = index_t(1) << 20;  // logits scratch: 32 n bytes per thread
constexpr std::uint64_t kStreamSteps = streams::kSamplerSteps;
constexpr std::uint64_t kMask32 = 0xffffffffull;

// A thread's scratch array, padded by a cache line on both sides: the buffers of all
// threads are allocated one after the other before the parallel region, and without
// the padding two threads would write to the same lines (false sharing halved the
// speed of two threads).
template <class T>
class ThreadScratch {
 public:
  explicit ThreadScratch(index_t n) : buf_(n + 2 * kPad) {}
  T* data() { return buf_.data() + kPad; }
  T& operator[](index_t i) { return buf_[kPad + i]; }

 private:
  static constexpr index_t kPad = (64 + sizeof(T) - 1) / sizeof(T);
  std::vector<T> buf_;
};

// Low 32 bits of each lane times m, as 64-bit products.
inline U mul32(U a, std::uint32_t m) {
#if defined(__AVX512F__)
  return (U)_mm512_maskz_mul_epu32(0xff, (__m512i)a, (__m512i)(U{} + m));  // maskz: GCC 12 warns on the undefined source of the unmasked form
#elif defined(__AVX2__)
  return (U)_mm256_mul_epu32((__m256i)a, (__m256i)(U{} + m));
#elif defined(__SSE2__) && !defined(__AVX__)
  return (U)_mm_mul_epu32((__m128i)a, (__m128i)(U{} + m));
#else
  return (a & kMask32) * static_cast<std::uint64_t>(m);
#endif
}

struct VSqrt {
  V operator()(V v) const {
#if defined(__AVX512F__)
    return (V)_mm512_maskz_sqrt_pd(0xff, (__m512d)v);
#elif defined(__AVX__)
    return (V)_mm256_sqrt_pd((__m256d)v);
#elif defined(__SSE2__)
    return (V)_mm_sqrt_pd((__m128d)v);
#else
    for (int i = 0; i < W; ++i) v[i] = std::sqrt(v[i]);
    return v;
#endif
  }
};

// Philox4x32-10 (philox.hpp) of G vectors of W blocks, blk[g][lane], of stream s; the
// words of vector g in the low 32 bits of out[4 g .. 4 g + 3].  Between rounds the upper
// halves of lanes hold garbage that mul32 ignores and the final mask removes.  The G
// vectors go round by round together: one vector's ten rounds are a chain of ~120
// dependent operations, longer than the out-of-order window, so independent chains
// side by side overlap better (G = 2: Philox words 1.13x faster on Zen 3, AVX2).
template <int G>
inline void philox_lanes(const U* blk, const PhiloxStream& s, U* out) {
  U c0[G], c1[G], c2[G], c3[G];
  for (int g = 0; g < G; ++g) {
    c0[g] = blk[g] & kMask32;
    c1[g] = blk[g] >> 32;
    c2[g] = U{} + static_cast<std::uint64_t>(s.s0);
    c3[g] = U{} + static_cast<std::uint64_t>(s.s1);
  }
  std::uint32_t k0 = s.k0, k1 = s.k1;
  for (int round = 0; round < 10; ++round) {
    const U key0 = U{} + static_cast<std::uint64_t>(k0), key1 = U{} + static_cast<std::uint64_t>(k1);
    for (int g = 0; g < G; ++g) {
      const U p0 = mul32(c0[g], 0xD2511F53u);
      const U p1 = mul32(c2[g], 0xCD9E8D57u);
      c0[g] = (p1 >> 32) ^ c1[g] ^ key0;
      c2[g] = (p0 >> 32) ^ c3[g] ^ key1;
      c1[g] = p1;
      c3[g] = p0;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  for (int g = 0; g < G; ++g) {
    out[4 * g] = c0[g] & kMask32;
    out[4 * g + 1] = c1[g] & kMask32;
    out[4 * g + 2] = c2[g] & kMask32;
    out[4 * g + 3] = c3[g] & kMask32;
  }
}

// Normals at counters start .. start + count - 1 of stream s (count >= 1), computed
// into buf (a NormalsBuffer(count)); returns where element start sits in buf.  Two
// passes, each with short independent iterations so that out-of-order execution
// overlaps the long dependency chains (Philox rounds, log and sin/cos polynomials):
// the blocks' words into buf, then Box-Muller group by group, written over the words
// (a group's 4 W normals take the place of its 4 W words).
const double* normals(const PhiloxStream& s, std::uint64_t start, index_t count, double* buf) {
  const std::uint64_t first = start >> 2;
  const index_t blocks = static_cast<index_t>(((start + static_cast<std::uint64_t>(count) - 1) >> 2) - first) + 1;
  const index_t groups = (blocks + 2 * W - 1) / (2 * W) * 2;  // an even number of groups
  U iota;
  for (int i = 0; i < W; ++i) iota[i] = static_cast<std::uint64_t>(i);
  U* words = reinterpret_cast<U*>(buf);  // [groups, 4]
  for (index_t g = 0; g < groups; g += 2) {
    const U blk[2] = {first + static_cast<std::uint64_t>(g * W) + iota,
                      first + static_cast<std::uint64_t>((g + 1) * W) + iota};
    philox_lanes<2>(blk, s, words + 4 * g);
  }
  for (index_t g = 0; g < groups; ++g) {
    const U* w = words + 4 * g;
    V z0, z1, z2, z3;  // normals 4 b + 0 .. 3 of the lanes' blocks b
    box_muller_fast<V, U>(w[0], w[1], VSqrt{}, z0, z1);
    box_muller_fast<V, U>(w[2], w[3], VSqrt{}, z2, z3);
    double* o = buf + 4 * g * W;
    for (int i = 0; i < W; ++i) {
      o[4 * i] = z0[i];
      o[4 * i + 1] = z1[i];
      o[4 * i + 2] = z2[i];
      o[4 * i + 3] = z3[i];
    }
  }
  return buf + (start & 3u);
}

// Scratch of normals(): room for the words of whole pairs of groups (4 per block,
// blocks <= count / 4 + 2), vector-aligned.
struct NormalsBuffer {
  ThreadScratch<U> v;
  explicit NormalsBuffer(index_t count) : v(4 * ((count / 4 + 2) / W + 3)) {}
  double* data() { return reinterpret_cast<double*>(v.data()); }
};

// Thread-private columns of a tile: state xs and normals zs [d, TP] (as vectors
// [d, TP / W]), the normals' scratch z, one vector's coordinates yv and score sv [d].
struct TileBuffers {
  ThreadScratch<V> xs, zs;  // [d, TP / W]
  NormalsBuffer z;
  ThreadScratch<V> yv, sv;
  explicit TileBuffers(index_t d) : xs(d * TP / W), zs(d * TP / W), z(TP * d), yv(d), sv(d) {}
};

inline const double* step_normals(const SamplerSteps& st, index_t k, index_t p0, index_t pn, double* zbuf,
                                  const PhiloxStream& stream) {
  const std::uint64_t start =
      static_cast<std::uint64_t>(k) * static_cast<std::uint64_t>(st.n * st.d) + static_cast<std::uint64_t>(p0 * st.d);
  return normals(stream, start, pn * st.d, zbuf);
}

// Noise and update of the rows p0 .. p0 + pn - 1 of x (the block path), score s
// of the same rows.
inline void advance_rows(const SamplerSteps& st, index_t k, index_t p0, index_t pn, const double* s, double* zbuf,
                         const PhiloxStream& stream) {
  const index_t d = st.d;
  const double h = st.h[k], r = st.r[k], c = st.c;
  const double* z = r != 0.0 ? step_normals(st, k, p0, pn, zbuf, stream) : nullptr;
  double* x = st.x + p0 * d;
  for (index_t i = 0; i < pn * d; ++i) x[i] = em_update(x[i], s[i], h, c, r, z ? z[i] : 0.0);
  if (st.path) std::copy(x, x + pn * d, st.path + ((k + 1) * st.n + p0) * d);
}

// The fused loop for a score evaluated by Score::eval(yv, sv, k) on one vector of
// particles (Score is copied per thread, it owns its scratch).  Every buffer is
// allocated before the parallel region, so an allocation failure throws here (a
// MemoryError in Python) instead of terminating inside a thread.
template <class Score>
void run_tiles(const SamplerSteps& st, const Score& proto) {
  const index_t n = st.n, d = st.d;
  const index_t tiles = (n + TP - 1) / TP;
  constexpr index_t TV = TP / W;  // vectors per tile column
  const PhiloxStream stream = make_stream(st.seed, kStreamSteps);
  const int threads = num_threads();
  std::vector<Score> scores(threads, proto);
  std::vector<TileBuffers> buffers(threads, TileBuffers(d));
#pragma omp parallel num_threads(threads) if (tiles > 1)
  {
    Score& score = scores[thread_index()];
    TileBuffers& b = buffers[thread_index()];
    double* xs = reinterpret_cast<double*>(b.xs.data());  // [d, TP]
    double* zs = reinterpret_cast<double*>(b.zs.data());
#pragma omp for schedule(dynamic, 1)
    for (index_t t = 0; t < tiles; ++t) {
      const index_t p0 = t * TP, pn = std::min(TP, n - p0);
      const index_t nv = (pn + W - 1) / W;
      for (index_t j = 0; j < d; ++j)
        for (index_t p = 0; p < TP; ++p) xs[j * TP + p] = p < pn ? st.x[(p0 + p) * d + j] : 0.0;
      std::fill(zs, zs + d * TP, 0.0);
      for (index_t k = st.k0; k < st.k1; ++k) {
        const double h = st.h[k], r = st.r[k], c = st.c;
        if (r != 0.0) {
          const double* z = step_normals(st, k, p0, pn, b.z.data(), stream);
          for (index_t p = 0; p < pn; ++p)
            for (index_t j = 0; j < d; ++j) zs[j * TP + p] = z[p * d + j];
        }
        for (index_t v = 0; v < nv; ++v) {
          for (index_t j = 0; j < d; ++j) b.yv[j] = b.xs[j * TV + v];
          score.eval(b.yv.data(), b.sv.data(), k);
          for (index_t j = 0; j < d; ++j)
            b.xs[j * TV + v] = em_update(b.yv[j], b.sv[j], h, c, r, b.zs[j * TV + v]);
        }
        if (st.path) {
          double* row = st.path + ((k + 1) * n + p0) * d;
          for (index_t p = 0; p < pn; ++p)
            for (index_t j = 0; j < d; ++j) row[p * d + j] = xs[j * TP + p];
        }
      }
      for (index_t p = 0; p < pn; ++p)
        for (index_t j = 0; j < d; ++j) st.x[(p0 + p) * d + j] = xs[j * TP + p];
    }
  }
}

struct EmpiricalDirect {
  const SamplerSteps* st;
  const double* x;      // [n, d]
  const double* norm2;  // [n]
  index_t n;
  ThreadScratch<V> logits, acc;
  EmpiricalDirect(const SamplerSteps& s, const double* x_, const double* norm2_, index_t n_)
      : st(&s), x(x_), norm2(norm2_), n(n_), logits(n_), acc(s.d) {}
  void eval(const V* y, V* s, index_t k) {
    const double mu = st->mu[k], sigma = st->sigma[k];
    switch (st->d) {  // small d: loops unrolled, sums in registers
      case 1: empirical_score_direct<V, I, 1>(y, s, 1, x, norm2, n, mu, sigma, logits.data(), acc.data()); break;
      case 2: empirical_score_direct<V, I, 2>(y, s, 2, x, norm2, n, mu, sigma, logits.data(), acc.data()); break;
      case 3: empirical_score_direct<V, I, 3>(y, s, 3, x, norm2, n, mu, sigma, logits.data(), acc.data()); break;
      default: empirical_score_direct<V, I>(y, s, st->d, x, norm2, n, mu, sigma, logits.data(), acc.data());
    }
  }
};

struct Gaussian {
  const SamplerSteps* st;
  const double *mean, *vecs, *lam;
  ThreadScratch<V> v, w;
  Gaussian(const SamplerSteps& s, const double* mean_, const double* vecs_, const double* lam_)
      : st(&s), mean(mean_), vecs(vecs_), lam(lam_), v(s.d), w(s.d) {}
  void eval(const V* y, V* s, index_t k) {
    gaussian_score<V>(y, s, st->d, mean, vecs, lam, st->mu[k], st->sigma[k], v.data(), w.data());
  }
};

struct Relu {
  const SamplerSteps* st;
  const double *w1, *b1, *w2t, *b2;
  index_t m;
  ThreadScratch<V> out;
  Relu(const SamplerSteps& s, const double* w1_, const double* b1_, const double* w2t_, const double* b2_,
       index_t m_)
      : st(&s), w1(w1_), b1(b1_), w2t(w2t_), b2(b2_), m(m_), out(s.d) {}
  void eval(const V* y, V* s, index_t k) {
    relu_score<V>(y, s, st->d, w1, b1, w2t, b2, m, st->tau[k], st->sigma[k], out.data());
  }
};

// s* of many points: blocks of BP particles spread over threads; per step a block
// calls the optimal-score kernel of this ISA on its rows (a nested, hence one-thread,
// OpenMP region), then noise and update.  One parallel region per chunk of steps (a
// region per step costs milliseconds when other processes load the machine).  The
// blocks do not depend on the thread count, and each row's s* depends only on that
// row, so the output does not either.
constexpr index_t BP = 512;  // particles per block (a multiple of the kernels' query tiles)

void run_blocks_empirical(const SamplerSteps& st, const double* data, index_t n_data, bool one_d) {
  const index_t n = st.n, d = st.d;
  const index_t blocks = (n + BP - 1) / BP;
  const PhiloxStream stream = make_stream(st.seed, kStreamSteps);
  const int threads = num_threads();
  std::vector<ThreadScratch<double>> scores(threads, ThreadScratch<double>(BP * d));
  std::vector<NormalsBuffer> buffers(threads, NormalsBuffer(BP * d));
  // The optimal-score kernels allocate their tiles per call, here inside the parallel
  // region: an exception (std::bad_alloc) must not leave a thread (std::terminate), so
  // the first one is kept, the remaining blocks are skipped, and it is rethrown after.
  std::exception_ptr error;
  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(threads) if (blocks > 1)
  {
    double* s = scores[thread_index()].data();
    NormalsBuffer& z = buffers[thread_index()];
#pragma omp for schedule(dynamic, 1)
    for (index_t b = 0; b < blocks; ++b) {
      if (failed.load(std::memory_order_relaxed)) continue;
      try {
        const index_t p0 = b * BP, pn = std::min(BP, n - p0);
        for (index_t k = st.k0; k < st.k1; ++k) {
          if (one_d)
            optimal_score_1d<double>(st.x + p0, pn, data, n_data, st.mu + k, 0, st.sigma + k, 0, s, nullptr,
                                     nullptr, nullptr, nullptr);
          else
            optimal_score_nd<double>(st.x + p0 * d, pn, data, n_data, d, st.mu + k, 0, st.sigma + k, 0, s,
                                     nullptr, nullptr);
          advance_rows(st, k, p0, pn, s, z.data(), stream);
        }
      } catch (...) {
#pragma omp critical(bigstep_sampler_error)
        if (!error) error = std::current_exception();
        failed.store(true, std::memory_order_relaxed);
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace

void sampler_empirical(const SamplerSteps& st, const double* data, index_t n_data, bool one_d) {
  const bool direct =
      n_data <= kDirectMax || (!one_d && st.d <= kDirectMaxDim && n_data <= kDirectMaxPoints);
  if (!direct) {
    run_blocks_empirical(st, data, n_data, one_d);
    return;
  }
  std::vector<double> norm2(n_data);
  for (index_t i = 0; i < n_data; ++i) {
    double s = 0;
    for (index_t k = 0; k < st.d; ++k) s += data[i * st.d + k] * data[i * st.d + k];
    norm2[i] = s;
  }
  run_tiles(st, EmpiricalDirect(st, data, norm2.data(), n_data));
}

void sampler_gaussian(const SamplerSteps& st, const double* mean, const double* vecs, const double* lam) {
  run_tiles(st, Gaussian(st, mean, vecs, lam));
}

void sampler_relu(const SamplerSteps& st, const double* w1, const double* b1, const double* w2t, const double* b2,
                  index_t m) {
  run_tiles(st, Relu(st, w1, b1, w2t, b2, m));
}

void sampler_normals(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, double* out, index_t count) {
  if (count <= 0) return;
  const PhiloxStream s = make_stream(seed, stream);
  NormalsBuffer buf(count);
  const double* z = normals(s, offset, count, buf.data());
  std::copy(z, z + count, out);
}

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS
