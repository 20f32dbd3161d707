// Fused reverse-diffusion sampler on the GPU (the CPU launcher: csrc/cpu/sampler_kernels.cpp;
// the math: bigstep/sampler.hpp).
//
// One thread per particle runs every step of the chunk [k0, k1) in one launch: the score
// (sampler.hpp's empirical_score_direct order, gaussian_score, relu_score), the normals
// of its row (counters k n d + p d + j of (seed, 1), fast_normal_at: the CPU fused loop's
// normals), and x += h (x + c s) + r z, writing the path row when asked.  For d <= 3 the
// particle's coordinates live in registers; the Gaussian and ReLU scores in more
// dimensions keep them in global memory with per-particle scratch from the workspace.
// s* (EmpiricalScore) sums over the data in two passes, as the CPU (the largest logit,
// then the weights): the data go through shared memory in tiles of kTile points that
// every thread of a block reads (resident for the whole launch when they fit in one).
// s* in more dimensions takes the per-step path of the Python launcher: the d-D
// optimal-score kernels, then sampler_update.  Each particle's arithmetic depends only on
// its own row and counters, so the result does not depend on the grid or the chunking.
#include "common.cuh"

#include "bigstep/fast_exp.hpp"
#include "bigstep/philox.hpp"
#include "bigstep/sampler.hpp"
#include "bigstep/streams.hpp"

namespace bigstep::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kTile = 1024;                 // data points per shared-memory tile

__device__ __forceinline__ std::uint64_t counter(const SamplerArgs& a, index_t k, index_t p) {
  return static_cast<std::uint64_t>(k) * static_cast<std::uint64_t>(a.n * a.d) +
         static_cast<std::uint64_t>(p * a.d);
}

// s* by direct sums (sampler.hpp empirical_score_direct, in two passes over shared tiles).
template <int D>
struct Empirical {
  const double* data;  // [n_data, D]
  index_t n_data;
  static constexpr std::size_t kShared = sizeof(double) * kTile * (D + 1);  // coordinates, ||x_i||^2

  __device__ void load(double* tile, index_t t0, index_t tn) const {
    for (index_t e = threadIdx.x; e < tn; e += kThreads) {
      double s = 0.0;
      BIGSTEP_UNROLL
      for (int k = 0; k < D; ++k) {
        const double v = data[(t0 + e) * D + k];
        tile[e * (D + 1) + k] = v;
        s += v * v;
      }
      tile[e * (D + 1) + D] = s;
    }
  }
  __device__ void prepare(double* tile) const {  // every thread; before the step loop
    if (n_data <= kTile) {
      load(tile, 0, n_data);
      __syncthreads();
    }
  }
  __device__ double logit(const double* tile, const double (&y)[D], index_t i, double a, double b) const {
    double g = 0.0;
    BIGSTEP_UNROLL
    for (int k = 0; k < D; ++k) g = g + y[k] * tile[i * (D + 1) + k];
    return a * g - b * tile[i * (D + 1) + D];
  }
  // every thread of the block calls it (shared tiles)
  __device__ void eval(double* tile, const double (&y)[D], double (&s)[D], const SamplerArgs& a,
                       index_t k) const {
    const double mu = a.mu[k], sigma = a.sigma[k];
    const double inv_s2 = 1.0 / (sigma * sigma);
    const double am = mu * inv_s2;
    const double b = 0.5 * mu * mu * inv_s2;
    const bool resident = n_data <= kTile;
    double best = -static_cast<double>(INFINITY);
    for (index_t t0 = 0; t0 < n_data; t0 += kTile) {
      const index_t tn = vmin<index_t>(kTile, n_data - t0);
      if (!resident) {
        __syncthreads();
        load(tile, t0, tn);
        __syncthreads();
      }
      for (index_t i = 0; i < tn; ++i) {
        const double l = logit(tile, y, i, am, b);
        best = l > best ? l : best;
      }
    }
    double total = 0.0, acc[D];
    BIGSTEP_UNROLL
    for (int j = 0; j < D; ++j) acc[j] = 0.0;
    for (index_t t0 = 0; t0 < n_data; t0 += kTile) {
      const index_t tn = vmin<index_t>(kTile, n_data - t0);
      if (!resident) {
        __syncthreads();
        load(tile, t0, tn);
        __syncthreads();
      }
      for (index_t i = 0; i < tn; ++i) {
        const double w = exp_nonpos(logit(tile, y, i, am, b) - best);
        total = total + w;
        BIGSTEP_UNROLL
        for (int j = 0; j < D; ++j) acc[j] = acc[j] + w * tile[i * (D + 1) + j];
      }
    }
    const double scale = mu / total;
    BIGSTEP_UNROLL
    for (int j = 0; j < D; ++j) s[j] = (acc[j] * scale - y[j]) * inv_s2;
  }
};

template <int D>
struct Gaussian {
  const double *mean, *vecs, *lam;
  static constexpr std::size_t kShared = 0;
  __device__ void prepare(double*) const {}
  __device__ void eval(double*, const double (&y)[D], double (&s)[D], const SamplerArgs& a, index_t k) const {
    double v[D], w[D];
    gaussian_score<double>(y, s, D, mean, vecs, lam, a.mu[k], a.sigma[k], v, w);
  }
};

template <int D>
struct Relu {
  const double *w1, *b1, *w2t, *b2;
  index_t width;
  static constexpr std::size_t kShared = 0;
  __device__ void prepare(double*) const {}
  __device__ void eval(double*, const double (&y)[D], double (&s)[D], const SamplerArgs& a, index_t k) const {
    double out[D];
    relu_score<double>(y, s, D, w1, b1, w2t, b2, width, a.tau[k], a.sigma[k], out);
  }
};

// d = D: coordinates in registers.  Every thread runs the loop (inactive ones on a copy
// of particle 0) so that shared tiles see the whole block.
template <class Score, int D>
__global__ void __launch_bounds__(kThreads) fused_fixed(SamplerArgs a, Score score) {
  const index_t p = static_cast<index_t>(blockIdx.x) * kThreads + threadIdx.x;
  const bool active = p < a.n;
  const index_t row = active ? p : 0;
  const PhiloxStream stream = make_stream(a.seed, streams::kSamplerSteps);
  BIGSTEP_DYNAMIC_SHARED(smem);
  double* shared = reinterpret_cast<double*>(smem);
  double x[D], s[D];
  BIGSTEP_UNROLL
  for (int j = 0; j < D; ++j) x[j] = a.x[row * D + j];
  score.prepare(shared);
  for (index_t k = a.k0; k < a.k1; ++k) {
    score.eval(shared, x, s, a, k);
    const double h = a.h[k], r = a.r[k];
    const std::uint64_t c0 = counter(a, k, row);
    BIGSTEP_UNROLL
    for (int j = 0; j < D; ++j) {
      const double z = r != 0.0 ? fast_normal_at(stream, c0 + j) : 0.0;
      x[j] = em_update(x[j], s[j], h, a.c, r, z);
    }
    if (a.path && active)
      BIGSTEP_UNROLL
      for (int j = 0; j < D; ++j) a.path[(k + 1) * a.n * D + p * D + j] = x[j];
  }
  if (active)
    BIGSTEP_UNROLL
    for (int j = 0; j < D; ++j) a.x[p * D + j] = x[j];
}

// Any d (Gaussian and ReLU scores): the particle's row of x is its state; s, v, w are
// its rows of the workspace.
template <class Eval>
__global__ void __launch_bounds__(kThreads) fused_generic(SamplerArgs a, Eval eval, double* scratch) {
  const index_t p = static_cast<index_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (p >= a.n) return;
  const index_t d = a.d;
  double* x = a.x + p * d;
  double* s = scratch + p * d;
  double* v = scratch + (a.n + p) * d;
  double* w = scratch + (2 * a.n + p) * d;
  const PhiloxStream stream = make_stream(a.seed, streams::kSamplerSteps);
  for (index_t k = a.k0; k < a.k1; ++k) {
    eval(x, s, v, w, a, k);
    const double h = a.h[k], r = a.r[k];
    const std::uint64_t c0 = counter(a, k, p);
    for (index_t j = 0; j < d; ++j) {
      const double z = r != 0.0 ? fast_normal_at(stream, c0 + j) : 0.0;
      x[j] = em_update(x[j], s[j], h, a.c, r, z);
    }
    if (a.path)
      for (index_t j = 0; j < d; ++j) a.path[((k + 1) * a.n + p) * d + j] = x[j];
  }
}

struct GaussianAny {
  const double *mean, *vecs, *lam;
  __device__ void operator()(const double* y, double* s, double* v, double* w, const SamplerArgs& a,
                             index_t k) const {
    gaussian_score<double>(y, s, a.d, mean, vecs, lam, a.mu[k], a.sigma[k], v, w);
  }
};

struct ReluAny {
  const double *w1, *b1, *w2t, *b2;
  index_t width;
  __device__ void operator()(const double* y, double* s, double* v, double*, const SamplerArgs& a,
                             index_t k) const {
    relu_score<double>(y, s, a.d, w1, b1, w2t, b2, width, a.tau[k], a.sigma[k], v);
  }
};

// One step k with a given score: element e = p d + j of x.
__global__ void __launch_bounds__(256) update_kernel(SamplerArgs a, index_t k, const double* __restrict__ score) {
  const index_t e = static_cast<index_t>(blockIdx.x) * 256 + threadIdx.x;
  if (e >= a.n * a.d) return;
  const double h = a.h[k], r = a.r[k];
  const PhiloxStream stream = make_stream(a.seed, streams::kSamplerSteps);
  const std::uint64_t c = static_cast<std::uint64_t>(k) * static_cast<std::uint64_t>(a.n * a.d) +
                          static_cast<std::uint64_t>(e);
  const double z = r != 0.0 ? fast_normal_at(stream, c) : 0.0;
  const double v = em_update(a.x[e], score[e], h, a.c, r, z);
  a.x[e] = v;
  if (a.path) a.path[(k + 1) * a.n * a.d + e] = v;
}

dim3 particle_grid(index_t n) { return dim3(static_cast<unsigned>(ceil_div(n, kThreads))); }

template <template <int> class Score, int D, class... Args>
void launch_fixed_d(const char* name, const SamplerArgs& a, Stream stream, Args... args) {
  launch(name, fused_fixed<Score<D>, D>, particle_grid(a.n), dim3(kThreads), Score<D>::kShared, stream, a,
         Score<D>{args...});
}

template <template <int> class Score, class... Args>
void launch_fixed(const char* name, const SamplerArgs& a, Stream stream, Args... args) {
  switch (a.d) {
    case 1: launch_fixed_d<Score, 1>(name, a, stream, args...); return;
    case 2: launch_fixed_d<Score, 2>(name, a, stream, args...); return;
    case 3: launch_fixed_d<Score, 3>(name, a, stream, args...); return;
    default: throw Error(std::string(name) + ": no fixed-dimension kernel for d = " + std::to_string(a.d));
  }
}

}  // namespace

void sampler_empirical(const SamplerArgs& a, const double* data, index_t n_data, Stream stream) {
  if (a.k1 <= a.k0 || a.n <= 0) return;
  if (a.d > kSamplerDirectMaxDim)
    throw Error("sampler_empirical: the fused kernel takes d <= " + std::to_string(kSamplerDirectMaxDim) +
                ", got d = " + std::to_string(a.d) + " (larger d: s* per step, then sampler_update)");
  launch_fixed<Empirical>("sampler_empirical", a, stream, data, n_data);
}

std::size_t sampler_workspace(index_t n, index_t d) {
  return d <= kSamplerDirectMaxDim ? 0 : sizeof(double) * static_cast<std::size_t>(3 * n * d);
}

void sampler_gaussian(const SamplerArgs& a, const double* mean, const double* vecs, const double* lam, Workspace ws,
                      Stream stream) {
  if (a.k1 <= a.k0 || a.n <= 0) return;
  if (a.d <= kSamplerDirectMaxDim) {
    launch_fixed<Gaussian>("sampler_gaussian", a, stream, mean, vecs, lam);
    return;
  }
  Carver cv(ws);
  double* scratch = cv.take<double>(3 * a.n * a.d);
  launch("sampler_gaussian", fused_generic<GaussianAny>, particle_grid(a.n), dim3(kThreads), 0, stream, a,
         GaussianAny{mean, vecs, lam}, scratch);
}

void sampler_relu(const SamplerArgs& a, const double* w1, const double* b1, const double* w2t, const double* b2,
                  index_t width, Workspace ws, Stream stream) {
  if (a.k1 <= a.k0 || a.n <= 0) return;
  if (a.d <= kSamplerDirectMaxDim) {
    launch_fixed<Relu>("sampler_relu", a, stream, w1, b1, w2t, b2, width);
    return;
  }
  Carver cv(ws);
  double* scratch = cv.take<double>(3 * a.n * a.d);
  launch("sampler_relu", fused_generic<ReluAny>, particle_grid(a.n), dim3(kThreads), 0, stream, a,
         ReluAny{w1, b1, w2t, b2, width}, scratch);
}

void sampler_update(const SamplerArgs& a, index_t k, const double* score, Stream stream) {
  if (a.n <= 0) return;
  launch("sampler_update", update_kernel, dim3(static_cast<unsigned>(ceil_div(a.n * a.d, 256))), dim3(256), 0, stream,
         a, k, score);
}

}  // namespace bigstep::cuda
