// Fused batched 1-D SGD trainer on the GPU (the CPU launcher: csrc/cpu/sgd_kernels.cpp; the
// per-step math, the draws and the summation order: bigstep/sgd.hpp).
//
// One block per network; its steps run in order inside one launch.  Per step:
//   draws      thread b of the block takes batch slots b, b + kThreads, ...: index
//              uniform_at(seed, stream 3)[j B + b], noise normal_at(seed, stream 4)[j B + b]
//              (sgd.hpp draw_batch's elements);
//   forward    s(y_b) in sgd.hpp's order: thread (b, lane) adds the neurons l = lane mod 8
//              of the first m - m % 8 in increasing l, the 8 lane sums are added pairwise
//              as a tree, then the remaining neurons in order, and the total is divided by m;
//   loss       (1/B) sum_b f_b^2 by one thread in slot order; g_b = (2 lr / B) f_b;
//   update     thread per neuron: SA, SAY over the slots in order, sgd::update_neuron into
//              the other parameter buffer, and the largest |parameter| (block maximum);
//   accept     unless the loss or the parameters blew up (then diverged_step = j and the
//              network stops with the parameters before the step), the buffers swap.
// The parameters stay in global memory (rows of w1, w2, b and of the workspace; the L1
// cache holds a network's), so any width m and batch size B run.  Results equal the CPU
// trainer's up to rounding (same draws, same order of every sum).
#include "common.cuh"

#include "bigstep/philox.hpp"
#include "bigstep/sgd.hpp"

namespace bigstep::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kLanes = sgd::kLanes;

struct Scratch {  // one network's rows of the workspace
  double *w1, *w2, *b, *y, *r, *out, *g, *gy, *lanes;
};

__device__ Scratch scratch_of(double* ws, index_t r, index_t m, index_t B) {
  double* base = ws + r * (3 * m + 5 * B + B * kLanes);
  Scratch s;
  s.w1 = base;
  s.w2 = s.w1 + m;
  s.b = s.w2 + m;
  s.y = s.b + m;
  s.r = s.y + B;
  s.out = s.r + B;
  s.g = s.out + B;
  s.gy = s.g + B;
  s.lanes = s.gy + B;
  return s;
}

__global__ void __launch_bounds__(kThreads) sgd_kernel(SgdArgs a, double* ws) {
  __shared__ double red[kThreads / 32];
  __shared__ int stop;
  const index_t r = blockIdx.x;
  if (a.diverged_step[r] >= 0) return;  // the whole block
  const index_t m = a.m, B = a.batch;
  const int tid = static_cast<int>(threadIdx.x);
  const Scratch sc = scratch_of(ws, r, m, B);
  double *cur1 = a.w1 + r * m, *cur2 = a.w2 + r * m, *curb = a.b + r * m;  // the accepted parameters
  double *nxt1 = sc.w1, *nxt2 = sc.w2, *nxtb = sc.b;                      // the step's new ones
  const PhiloxStream si = make_stream(a.seed[r], sgd::kStreamIndex);
  const PhiloxStream sz = make_stream(a.seed[r], sgd::kStreamNoise);
  const double inv_s2 = 1.0 / (a.sigma * a.sigma);
  const double coef = 2.0 * a.lr[r] / static_cast<double>(B);
  const index_t mv = m - m % kLanes;
  double loss_sum = a.loss_sum[r];
  std::int64_t loss_count = a.loss_count[r];
  std::int64_t diverged = -1;
  for (index_t j = a.k0; j < a.k1; ++j) {
    // draws
    for (index_t b = tid; b < B; b += kThreads) {
      const std::uint64_t e = static_cast<std::uint64_t>(j) * static_cast<std::uint64_t>(B) +
                              static_cast<std::uint64_t>(b);
      const double u = uniform_at(si, e);
      index_t i = static_cast<index_t>(u * static_cast<double>(a.n));
      if (i > a.n - 1) i = a.n - 1;
      const double z = normal_at(sz, e);
      const double c = a.mu * a.x[i];
      const double yb = c + a.sigma * z;
      sc.y[b] = yb;
      sc.r[b] = (yb - c) * inv_s2;
    }
    __syncthreads();
    // forward: lane sums
    for (index_t t = tid; t < B * kLanes; t += kThreads) {
      const index_t b = t / kLanes;
      const int lane = static_cast<int>(t % kLanes);
      const double yb = sc.y[b];
      double acc = 0.0;
      for (index_t l = lane; l < mv; l += kLanes) acc += cur2[l] * sgd::relu(cur1[l] * yb + curb[l]);
      sc.lanes[t] = acc;
    }
    __syncthreads();
    for (index_t b = tid; b < B; b += kThreads) {
      const double* ln = sc.lanes + b * kLanes;
      double s = ((ln[0] + ln[1]) + (ln[2] + ln[3])) + ((ln[4] + ln[5]) + (ln[6] + ln[7]));
      const double yb = sc.y[b];
      for (index_t l = mv; l < m; ++l) s += cur2[l] * sgd::relu(cur1[l] * yb + curb[l]);
      const double f = s / static_cast<double>(m) + sc.r[b];
      sc.out[b] = f;
      sc.g[b] = coef * f;
      sc.gy[b] = sc.g[b] * yb;
    }
    __syncthreads();
    if (tid == 0) {
      double loss = 0.0;
      for (index_t b = 0; b < B; ++b) loss += sc.out[b] * sc.out[b];
      loss /= static_cast<double>(B);
      red[0] = loss;
      stop = sgd::loss_blown(loss);
    }
    __syncthreads();
    const double loss = red[0];
    if (stop) {
      diverged = j;
      break;
    }
    // update
    double mx = 0.0;
    for (index_t l = tid; l < m; l += kThreads) {
      const double w1 = cur1[l], w2 = cur2[l], bl = curb[l];
      double sa = 0.0, say = 0.0;
      for (index_t b = 0; b < B; ++b) {
        const bool on = w1 * sc.y[b] + bl > 0.0;
        sa += on ? sc.g[b] : 0.0;
        say += on ? sc.gy[b] : 0.0;
      }
      const double v = sgd::update_neuron(w1, w2, bl, sa, say, a.train_inner, a.clip, nxt1[l], nxt2[l], nxtb[l]);
      mx = (v > mx || v != v) ? v : mx;
    }
    for (int o = 16; o > 0; o >>= 1) {
      const double w = __shfl_xor_sync(kFullMask, mx, o);
      mx = (w > mx || w != w) ? w : mx;
    }
    __syncthreads();  // red[0] (the loss) is read by every thread
    if (tid % 32 == 0) red[tid / 32] = mx;
    __syncthreads();
    mx = 0.0;
    for (int w = 0; w < kThreads / 32; ++w) mx = (red[w] > mx || red[w] != red[w]) ? red[w] : mx;
    if (sgd::params_blown(mx)) {
      diverged = j;
      break;
    }
    loss_sum += loss;
    ++loss_count;
    double* t = cur1;
    cur1 = nxt1;
    nxt1 = t;
    t = cur2;
    cur2 = nxt2;
    nxt2 = t;
    t = curb;
    curb = nxtb;
    nxtb = t;
    __syncthreads();  // the new parameters are visible; red is free again
  }
  if (cur1 != a.w1 + r * m) {  // the last accepted parameters are in the workspace
    __syncthreads();
    for (index_t l = tid; l < m; l += kThreads) {
      a.w1[r * m + l] = cur1[l];
      a.w2[r * m + l] = cur2[l];
      a.b[r * m + l] = curb[l];
    }
  }
  if (tid == 0) {
    a.loss_sum[r] = loss_sum;
    a.loss_count[r] = loss_count;
    if (diverged >= 0) a.diverged_step[r] = diverged;
  }
}

}  // namespace

std::size_t sgd_workspace(index_t networks, index_t m, index_t batch) {
  return sizeof(double) * static_cast<std::size_t>(vmax<index_t>(1, networks * (3 * m + 5 * batch + batch * kLanes)));
}

void sgd_train(const SgdArgs& a, Workspace ws, Stream stream) {
  if (a.k1 <= a.k0 || a.networks <= 0) return;
  Carver cv(ws);
  double* scratch = cv.take<double>(a.networks * (3 * a.m + 5 * a.batch + a.batch * kLanes));
  launch("sgd_train", sgd_kernel, dim3(static_cast<unsigned>(a.networks)), dim3(kThreads), 0, stream, a, scratch);
}

}  // namespace bigstep::cuda
