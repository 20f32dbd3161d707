// CPU launcher of the fused batched d-D SGD trainer (per-step math in bigstep/sgd_nd.hpp),
// compiled once per instruction set; its entry point sgd_nd_train<T> is listed in
// kernels.hpp (callers: cpu::kernels<T>().sgd_nd_train(chunk)).
//
// Threads split the networks (schedule dynamic: diverged or finished networks stop
// early); each network's steps run in order on one thread with its own scratch, and its
// draws depend on (seed, step, slot) only, so results do not depend on the thread count
// or on how the steps are cut into chunks.  Per step: the draws of the batch, then the
// batch in blocks of kb samples whose hidden layer [kb, m] stays in cache:
//   forward   per sample, vectors of neurons: pre = b + sum_k W1t[k] u_k, h = relu(pre)
//             (kept for the block), output lanes acc_j += W2[j] h (fixed lane order);
//   backward  per vector of neurons, the block's samples streaming past: a = 1{h > 0}
//             sum_j G_j W2[j], dW2[j] += G_j h, dW1t[k] += a u_k, db += a, the sums kept
//             in registers for small (p, d) and in the per-network accumulator between
//             blocks, so every sum runs over b = 0..B-1 in order whatever kb is;
// then the new parameters go into a second buffer, which replaces the first only if the
// step is accepted (a refused step costs no copy).  Small (p, d) pairs of the paper
// (d = 1, 2, 5, 10; DSM and diffusion) are compiled with fixed sizes so the per-vector
// sums live in registers; other sizes take the generic path (same order, same result).
#include <algorithm>
#include <cstring>
#include <vector>

#include "bigstep/sgd_nd.hpp"
#include "kernels.hpp"
#include "simd.hpp"
#include "team.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace {

constexpr index_t kBlockBytes = 128 * 1024;  // hidden layer of a block of samples
constexpr int kRegD = 10;                    // fixed-size paths up to this output dimension

template <class T>
struct Scratch {
  std::vector<T> w1t, b, w2;  // the second parameter buffer
  std::vector<T> u, c, g;     // [B, p] inputs, [B, d] offsets, [B, d] G = (2 lr / norm) F
  std::vector<T> h;           // [kb, m] hidden layer of a block
  std::vector<T> acc;         // [(p + 1 + d) m]: sums of the update for W1t, b, W2
  std::vector<T> out;         // [kb, d] network outputs of a block
  Scratch(index_t m, index_t B, index_t p, index_t d, index_t kb)
      : w1t(p * m), b(m), w2(d * m), u(B * p), c(B * d), g(B * d), h(kb * m), acc((p + 1 + d) * m), out(kb * d) {}
};

template <class T>
constexpr int lanes() {
  return 64 / static_cast<int>(sizeof(T));  // 8 doubles, 16 floats: whole vectors on every ISA
}

// Pairwise sum of lanes [l, l + n): ((0+1)+(2+3))+((4+5)+(6+7)) for n = 8.
template <class T>
inline T tree(const T* a, int n) {
  if (n == 1) return a[0];
  return tree(a, n / 2) + tree(a + n / 2, n / 2);
}

template <class T>
inline T relu(T p) {
  return p > T(0) ? p : T(0);
}

// Pre-activation of neuron l for input u (b first, then k in order).
template <class T>
inline T pre_scalar(const T* w1t, const T* bias, index_t m, index_t p, const T* u, index_t l) {
  T pre = bias[l];
  for (index_t k = 0; k < p; ++k) pre += w1t[k * m + l] * u[k];
  return pre;
}

// net(u) for NS samples (inputs u [NS, p]) into out [NS, d], hidden rows h [NS, m]
// kept (row stride m); the lane order of sgd_nd.hpp.  The fixed-size path (DC > 0)
// computes h and every output's lanes in one pass, NS samples sharing each load of the
// weights; the generic path writes the hidden rows, then the outputs JB at a time.
template <class T, int PC, int DC, int NS>
void forward(const T* w1t, const T* bias, const T* w2, index_t m, index_t p_rt, index_t d_rt, const T* u, T* hrow,
             T* out) {
  using V = simd::vec<T>;
  constexpr int W = simd::width<T>;
  constexpr int L = lanes<T>();
  constexpr int LV = L / W;
  static_assert(L % W == 0, "the forward lanes must fill whole vectors");
  const index_t p = PC > 0 ? PC : p_rt;
  const index_t d = DC > 0 ? DC : d_rt;
  const index_t mv = m - m % L;
  const V zero = V{};
  constexpr int JB = DC > 0 ? DC : 4;  // outputs per pass over the hidden row
  if constexpr (DC > 0) {
    V acc[NS][JB][LV];
    for (int s = 0; s < NS; ++s)
      for (int j = 0; j < JB; ++j)
        for (int v = 0; v < LV; ++v) acc[s][j][v] = V{};
    for (index_t l = 0; l < mv; l += L)
      for (int v = 0; v < LV; ++v) {
        const index_t o = l + v * W;
        V pre[NS];
        const V bv = simd::load(bias + o);
        for (int s = 0; s < NS; ++s) pre[s] = bv;
        for (index_t k = 0; k < p; ++k) {
          const V wk = simd::load(w1t + k * m + o);
          for (int s = 0; s < NS; ++s) pre[s] += wk * simd::broadcast(u[s * p + k]);
        }
        V hv[NS];
        for (int s = 0; s < NS; ++s) {
          hv[s] = pre[s] > zero ? pre[s] : zero;
          simd::store(hrow + s * m + o, hv[s]);
        }
        for (int j = 0; j < JB; ++j) {
          const V wj = simd::load(w2 + j * m + o);
          for (int s = 0; s < NS; ++s) acc[s][j][v] += wj * hv[s];
        }
      }
    for (int s = 0; s < NS; ++s) {
      T* hs = hrow + s * m;
      for (index_t l = mv; l < m; ++l) hs[l] = relu(pre_scalar(w1t, bias, m, p, u + s * p, l));
      for (int j = 0; j < JB; ++j) {
        T ln[L];
        for (int v = 0; v < LV; ++v) simd::store(ln + v * W, acc[s][j][v]);
        T t = tree(ln, L);
        for (index_t l = mv; l < m; ++l) t += w2[j * m + l] * hs[l];
        out[s * d + j] = t / static_cast<T>(m);
      }
    }
  } else {
    static_assert(NS == 1, "the generic path takes one sample at a time");
    V acc[JB][LV];
    for (index_t l = 0; l < mv; l += W) {
      V pre = simd::load(bias + l);
      for (index_t k = 0; k < p; ++k) pre += simd::load(w1t + k * m + l) * simd::broadcast(u[k]);
      simd::store(hrow + l, pre > zero ? pre : zero);
    }
    for (index_t l = mv; l < m; ++l) hrow[l] = relu(pre_scalar(w1t, bias, m, p, u, l));
    for (index_t j0 = 0; j0 < d; j0 += JB) {
      const int jn = static_cast<int>(std::min<index_t>(JB, d - j0));
      for (int j = 0; j < jn; ++j)
        for (int v = 0; v < LV; ++v) acc[j][v] = V{};
      for (index_t l = 0; l < mv; l += L)
        for (int v = 0; v < LV; ++v) {
          const index_t o = l + v * W;
          const V hv = simd::load(hrow + o);
          for (int j = 0; j < jn; ++j) acc[j][v] += simd::load(w2 + (j0 + j) * m + o) * hv;
        }
      for (int j = 0; j < jn; ++j) {
        T ln[L];
        for (int v = 0; v < LV; ++v) simd::store(ln + v * W, acc[j][v]);
        T t = tree(ln, L);
        for (index_t l = mv; l < m; ++l) t += w2[(j0 + j) * m + l] * hrow[l];
        out[j0 + j] = t / static_cast<T>(m);
      }
    }
  }
}

// Samples per forward group: as many as keep NS x d x (lanes / W) accumulators in registers.
template <class T, int DC>
constexpr int forward_group() {
  constexpr int lv = lanes<T>() / simd::width<T>;
  constexpr int ns = DC > 0 ? 16 / (DC * lv) : 1;
  return ns < 1 ? 1 : (ns > 4 ? 4 : ns);
}

// The update sums of neurons [o, o + W) over samples [0, ns) of a block (hidden rows
// h [ns, m], inputs u [ns, p], G g [ns, d]), added to acc (layout W1t [p, m], b [m],
// W2 [d, m]).
template <class T, int PC, int DC>
inline void backward_vec(const T* w2, index_t m, index_t p_rt, index_t d_rt, const T* h, const T* u, const T* g,
                         index_t ns, index_t o, T* acc) {
  using V = simd::vec<T>;
  using I = typename simd::Traits<T>::I;
  const V zero = V{};
  if constexpr (PC > 0 && DC > 0) {
    V w2v[DC], g2[DC], g1[PC], gb;
    for (int j = 0; j < DC; ++j) {
      w2v[j] = simd::load(w2 + j * m + o);
      g2[j] = simd::load(acc + (PC + 1 + j) * m + o);
    }
    for (int k = 0; k < PC; ++k) g1[k] = simd::load(acc + k * m + o);
    gb = simd::load(acc + PC * m + o);
    for (index_t s = 0; s < ns; ++s) {
      const V hv = simd::load(h + s * m + o);
      const I on = hv > zero;
      const T* gs = g + s * DC;
      V a = simd::broadcast(gs[0]) * w2v[0];
      for (int j = 1; j < DC; ++j) a += simd::broadcast(gs[j]) * w2v[j];
      a = reinterpret_cast<V>(on & reinterpret_cast<I>(a));
      for (int j = 0; j < DC; ++j) g2[j] += simd::broadcast(gs[j]) * hv;
      const T* us = u + s * PC;
      for (int k = 0; k < PC; ++k) g1[k] += a * simd::broadcast(us[k]);
      gb += a;
    }
    for (int j = 0; j < DC; ++j) simd::store(acc + (PC + 1 + j) * m + o, g2[j]);
    for (int k = 0; k < PC; ++k) simd::store(acc + k * m + o, g1[k]);
    simd::store(acc + PC * m + o, gb);
  } else {
    const index_t p = p_rt, d = d_rt;
    T* a1 = acc;
    T* ab = acc + p * m;
    T* a2 = acc + (p + 1) * m;
    for (index_t s = 0; s < ns; ++s) {
      const V hv = simd::load(h + s * m + o);
      const I on = hv > zero;
      const T* gs = g + s * d;
      V a = simd::broadcast(gs[0]) * simd::load(w2 + o);
      for (index_t j = 1; j < d; ++j) a += simd::broadcast(gs[j]) * simd::load(w2 + j * m + o);
      a = reinterpret_cast<V>(on & reinterpret_cast<I>(a));
      for (index_t j = 0; j < d; ++j)
        simd::store(a2 + j * m + o, simd::load(a2 + j * m + o) + simd::broadcast(gs[j]) * hv);
      const T* us = u + s * p;
      for (index_t k = 0; k < p; ++k) simd::store(a1 + k * m + o, simd::load(a1 + k * m + o) + a * simd::broadcast(us[k]));
      simd::store(ab + o, simd::load(ab + o) + a);
    }
  }
}

// Same for one neuron l (the tail of fewer than a vector), same arithmetic.
template <class T>
inline void backward_one(const T* w2, index_t m, index_t p, index_t d, const T* h, const T* u, const T* g, index_t ns,
                         index_t l, T* acc) {
  for (index_t s = 0; s < ns; ++s) {
    const T hv = h[s * m + l];
    const T* gs = g + s * d;
    T a = gs[0] * w2[l];
    for (index_t j = 1; j < d; ++j) a += gs[j] * w2[j * m + l];
    a = hv > T(0) ? a : T(0);
    for (index_t j = 0; j < d; ++j) acc[(p + 1 + j) * m + l] += gs[j] * hv;
    const T* us = u + s * p;
    for (index_t k = 0; k < p; ++k) acc[k * m + l] += a * us[k];
    acc[p * m + l] += a;
  }
}

template <class T, int PC, int DC>
void train_one(const SgdNdChunk<T>& c, index_t r, Scratch<T>& sc) {
  constexpr int W = simd::width<T>;
  const sgd_nd::Problem& pr = c.pr;
  const index_t m = c.m, B = c.batch, p = pr.p, d = pr.d;
  const index_t kb = std::max<index_t>(1, std::min<index_t>(B, kBlockBytes / (m * static_cast<index_t>(sizeof(T)))));
  const index_t np = (p + 1 + d) * m;  // parameters of one network
  T* cur[3] = {c.w1t + r * p * m, c.b + r * m, c.w2 + r * d * m};
  T* const own[3] = {cur[0], cur[1], cur[2]};
  T* nxt[3] = {sc.w1t.data(), sc.b.data(), sc.w2.data()};
  const PhiloxStream si = make_stream(c.seed[r], sgd_nd::kStreamIndex);
  const PhiloxStream sz = make_stream(c.seed[r], sgd_nd::kStreamNoise);
  const PhiloxStream st = make_stream(c.seed[r], sgd_nd::kStreamTime);
  const double* xs = pr.x + c.data_of[r] * pr.n * d;
  const T coef = static_cast<T>(2.0 * c.lr[r] / c.norm);
  const index_t mw = m - m % W;
  const index_t kend = std::min<index_t>(c.k1, static_cast<index_t>(c.steps[r]));
  double loss_sum = c.loss_sum[r];
  std::int64_t loss_count = c.loss_count[r];
  T* acc = sc.acc.data();
  for (index_t j = c.k0; j < kend; ++j) {
    sgd_nd::draw_batch<T>(pr, xs, si, sz, st, static_cast<std::uint64_t>(j), B, sc.u.data(), sc.c.data());
    std::fill(acc, acc + np, T(0));
    double loss = 0.0;
    for (index_t s0 = 0; s0 < B; s0 += kb) {
      const index_t ns = std::min(kb, B - s0);
      constexpr int NS = forward_group<T, DC>();
      index_t s = 0;
      for (; s + NS <= ns; s += NS)
        forward<T, PC, DC, NS>(cur[0], cur[1], cur[2], m, p, d, sc.u.data() + (s0 + s) * p, sc.h.data() + s * m,
                               sc.out.data() + s * d);
      for (; s < ns; ++s)
        forward<T, PC, DC, 1>(cur[0], cur[1], cur[2], m, p, d, sc.u.data() + (s0 + s) * p, sc.h.data() + s * m,
                              sc.out.data() + s * d);
      for (index_t k = 0; k < ns * d; ++k) {  // the loss in order b, then j
        const T f = sc.out[k] + sc.c[s0 * d + k];
        loss += static_cast<double>(f) * static_cast<double>(f);
        sc.g[s0 * d + k] = coef * f;
      }
      const T* u = sc.u.data() + s0 * p;
      const T* g = sc.g.data() + s0 * d;
      for (index_t o = 0; o < mw; o += W) backward_vec<T, PC, DC>(cur[2], m, p, d, sc.h.data(), u, g, ns, o, acc);
      for (index_t l = mw; l < m; ++l) backward_one<T>(cur[2], m, p, d, sc.h.data(), u, g, ns, l, acc);
    }
    loss /= c.norm;
    double mx = 0.0;
    if (!sgd_nd::loss_blown(loss)) {
      const T* a[3] = {acc, acc + p * m, acc + (p + 1) * m};
      const index_t len[3] = {p * m, m, d * m};
      for (int q = 0; q < 3; ++q)
        for (index_t i = 0; i < len[q]; ++i) {
          const T v = cur[q][i] - a[q][i];
          nxt[q][i] = v;
          const double av = std::fabs(static_cast<double>(v));
          mx = (av > mx || av != av) ? av : mx;
        }
    }
    if (sgd_nd::loss_blown(loss) || !(mx <= c.max_abs)) {
      c.diverged_step[r] = j;
      break;
    }
    loss_sum += loss;
    ++loss_count;
    for (int q = 0; q < 3; ++q) std::swap(cur[q], nxt[q]);
  }
  if (cur[0] != own[0]) {  // the last accepted parameters are in the scratch buffers
    std::memcpy(own[0], cur[0], sizeof(T) * static_cast<std::size_t>(p * m));
    std::memcpy(own[1], cur[1], sizeof(T) * static_cast<std::size_t>(m));
    std::memcpy(own[2], cur[2], sizeof(T) * static_cast<std::size_t>(d * m));
  }
  c.loss_sum[r] = loss_sum;
  c.loss_count[r] = loss_count;
}

template <class T, int PC, int DC>
void train_all(const SgdNdChunk<T>& c) {
  const index_t m = c.m, B = c.batch;
  const index_t kb = std::max<index_t>(1, std::min<index_t>(B, kBlockBytes / (m * static_cast<index_t>(sizeof(T)))));
  const int threads = team_size(c.networks);  // team.hpp
  std::vector<Scratch<T>> scratch = per_thread(threads, [&] { return Scratch<T>(m, B, c.pr.p, c.pr.d, kb); });
#pragma omp parallel num_threads(threads) if (c.networks > 1)
  {
    Scratch<T>& sc = scratch[thread_index()];
#pragma omp for schedule(dynamic, 1)
    for (index_t r = 0; r < c.networks; ++r)
      if (c.diverged_step[r] < 0 && c.k0 < c.steps[r]) train_one<T, PC, DC>(c, r, sc);
  }
}

}  // namespace

template <class T>
void sgd_nd_train(const SgdNdChunk<T>& c) {
  if (c.k1 <= c.k0 || c.networks <= 0) return;
  const index_t p = c.pr.p, d = c.pr.d;
  if (p == d) {  // DSM
    switch (d) {
      case 1: train_all<T, 1, 1>(c); return;
      case 2: train_all<T, 2, 2>(c); return;
      case 5: train_all<T, 5, 5>(c); return;
      case 10: train_all<T, 10, 10>(c); return;
      default: break;
    }
  } else if (p == d + 1) {  // diffusion
    switch (d) {
      case 1: train_all<T, 2, 1>(c); return;
      case 2: train_all<T, 3, 2>(c); return;
      case 5: train_all<T, 6, 5>(c); return;
      case 10: train_all<T, 11, 10>(c); return;
      default: break;
    }
  }
  train_all<T, 0, 0>(c);
}

BIGSTEP_EXPORT_TYPED(sgd_nd_train)

static_assert(kRegD >= 10, "the fixed-size paths above go up to d = 10");

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS
