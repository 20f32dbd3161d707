// CPU launcher of the fused batched 1-D SGD trainer (per-step math in bigstep/sgd.hpp).
//
// Compiled once per instruction set (kernels.hpp lists the entry point, sgd_train).
//
// Threads split the networks (schedule dynamic: diverged networks stop early); each
// network's steps run in order on one thread with its own scratch, and its random draws
// depend on (seed, step, slot) only, so results do not depend on the thread count or
// on how the steps are cut into chunks.  Per step: draws (2 Philox blocks per 2 slots),
// forward pass over neurons (vectorised, fixed lane order), then one pass over tiles of
// kTile neurons that sums the B samples per neuron in registers and writes the new
// parameters into a second buffer; the buffers swap if the step is accepted, so a
// refused step costs no copy and the last accepted parameters are kept.
#include <algorithm>
#include <cstring>
#include <vector>

#include "bigstep/philox.hpp"
#include "bigstep/sgd.hpp"

#include "kernels.hpp"
#include "simd.hpp"
#include "team.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace {

using V = simd::vec<double>;
using I = simd::Traits<double>::I;
constexpr int W = simd::width<double>;          // doubles per vector (2, 4 or 8)
constexpr int kLaneVecs = sgd::kLanes / W;      // vectors holding the 8 forward lanes
static_assert(sgd::kLanes % W == 0, "the forward lanes must fill whole vectors");
constexpr int kTileVecs = 4;                    // vectors of neurons per update tile
constexpr int kSamples = 4;                     // samples per forward pass over the neurons
constexpr index_t kTile = kTileVecs * W;        // neurons per update tile

// Scratch of one network: the second parameter buffer and the per-step batch values.
struct Scratch {
  std::vector<double> w1, w2, b, y, r, g, gy;
  Scratch(index_t m, index_t B) : w1(m), w2(m), b(m), y(B), r(B), g(B), gy(B) {}
};

inline void store(double* p, V v) { std::memcpy(p, &v, sizeof v); }

// sgd::net_output for NS samples at once, the lanes in vectors: lane k of the 8 holds
// neurons l = k mod 8, added in the same order as the scalar version, so each sample's
// result is the same; NS samples share the loads and give NS x kLaneVecs independent
// accumulation chains (one chain per sample would wait on the FMA latency).
template <int NS>
void net_output(const double* w1, const double* w2, const double* bias, index_t m, const double* y, double* out) {
  V acc[NS][kLaneVecs], yv[NS];
  for (int s = 0; s < NS; ++s) {
    yv[s] = simd::broadcast(y[s]);
    for (int v = 0; v < kLaneVecs; ++v) acc[s][v] = V{};
  }
  const V zero = V{};
  const index_t mv = m - m % sgd::kLanes;
  for (index_t l = 0; l < mv; l += sgd::kLanes)
    for (int v = 0; v < kLaneVecs; ++v) {
      const index_t o = l + v * W;
      const V a1 = simd::load(w1 + o), ab = simd::load(bias + o), a2 = simd::load(w2 + o);
      for (int s = 0; s < NS; ++s) {
        const V p = a1 * yv[s] + ab;
        acc[s][v] += a2 * (p > zero ? p : zero);
      }
    }
  for (int s = 0; s < NS; ++s) {
    double lanes[sgd::kLanes];
    for (int v = 0; v < kLaneVecs; ++v) store(lanes + v * W, acc[s][v]);
    double t = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    for (index_t l = mv; l < m; ++l) t += w2[l] * sgd::relu(w1[l] * y[s] + bias[l]);
    out[s] = t / static_cast<double>(m);
  }
}

// New parameters of neurons [l0, l0 + kTile) into (n1, n2, nb); returns their max |.|.
// SA and SAY of the tile stay in registers while the B samples stream past.
double update_tile(const double* w1, const double* w2, const double* bias, index_t l0, const double* y,
                   const double* g, const double* gy, index_t B, bool train_inner, double clip, double* n1,
                   double* n2, double* nb) {
  V sa[kTileVecs], say[kTileVecs], a1[kTileVecs], ab[kTileVecs];
  for (int v = 0; v < kTileVecs; ++v) {
    sa[v] = V{};
    say[v] = V{};
    a1[v] = simd::load(w1 + l0 + v * W);
    ab[v] = simd::load(bias + l0 + v * W);
  }
  const V zero = V{};
  for (index_t s = 0; s < B; ++s) {
    const V ys = simd::broadcast(y[s]);
    const I gs = reinterpret_cast<I>(simd::broadcast(g[s])), gys = reinterpret_cast<I>(simd::broadcast(gy[s]));
    for (int v = 0; v < kTileVecs; ++v) {
      const I on = a1[v] * ys + ab[v] > zero;  // all ones where the neuron is active
      sa[v] += reinterpret_cast<V>(on & gs);  // + g_s or + 0.0, as the scalar version
      say[v] += reinterpret_cast<V>(on & gys);
    }
  }
  double s1[kTile], s2[kTile];
  for (int v = 0; v < kTileVecs; ++v) {
    store(s1 + v * W, sa[v]);
    store(s2 + v * W, say[v]);
  }
  double mx = 0.0;
  for (index_t k = 0; k < kTile; ++k) {
    const index_t l = l0 + k;
    const double v = sgd::update_neuron(w1[l], w2[l], bias[l], s1[k], s2[k], train_inner, clip, n1[l], n2[l], nb[l]);
    mx = (v > mx || v != v) ? v : mx;
  }
  return mx;
}

// Same for a tail of fewer than kTile neurons (one at a time, same arithmetic per neuron).
double update_tail(const double* w1, const double* w2, const double* bias, index_t l0, index_t l1, const double* y,
                   const double* g, const double* gy, index_t B, bool train_inner, double clip, double* n1,
                   double* n2, double* nb) {
  double mx = 0.0;
  for (index_t l = l0; l < l1; ++l) {
    double sa = 0.0, say = 0.0;
    for (index_t s = 0; s < B; ++s) {
      const bool on = w1[l] * y[s] + bias[l] > 0.0;
      sa += on ? g[s] : 0.0;
      say += on ? gy[s] : 0.0;
    }
    const double v = sgd::update_neuron(w1[l], w2[l], bias[l], sa, say, train_inner, clip, n1[l], n2[l], nb[l]);
    mx = (v > mx || v != v) ? v : mx;
  }
  return mx;
}

void train_one(const SgdChunk& c, index_t r, Scratch& sc) {
  const index_t m = c.m, B = c.batch;
  double* w1 = c.w1 + r * m;
  double* w2 = c.w2 + r * m;
  double* bias = c.b + r * m;
  double* cur[3] = {w1, w2, bias};
  double* nxt[3] = {sc.w1.data(), sc.w2.data(), sc.b.data()};
  const PhiloxStream si = make_stream(c.seed[r], sgd::kStreamIndex);
  const PhiloxStream sz = make_stream(c.seed[r], sgd::kStreamNoise);
  const double inv_s2 = 1.0 / (c.sigma * c.sigma);
  const double coef = 2.0 * c.lr[r] / static_cast<double>(B);
  const index_t mt = m - m % kTile;
  double loss_sum = c.loss_sum[r];
  std::int64_t loss_count = c.loss_count[r];
  for (index_t j = c.k0; j < c.k1; ++j) {
    sgd::draw_batch(si, sz, static_cast<std::uint64_t>(j), B, c.x, c.n, c.mu, c.sigma, inv_s2, sc.y.data(),
                    sc.r.data());
    double* out = sc.g.data();  // s(y_b), then overwritten by g_b below
    index_t s0 = 0;
    for (; s0 + kSamples <= B; s0 += kSamples)
      net_output<kSamples>(cur[0], cur[1], cur[2], m, sc.y.data() + s0, out + s0);
    for (; s0 < B; ++s0) net_output<1>(cur[0], cur[1], cur[2], m, sc.y.data() + s0, out + s0);
    double loss = 0.0;
    for (index_t s = 0; s < B; ++s) {
      const double f = out[s] + sc.r[s];
      loss += f * f;
      sc.g[s] = coef * f;
      sc.gy[s] = sc.g[s] * sc.y[s];
    }
    loss /= static_cast<double>(B);
    double mx = 0.0;
    if (!sgd::loss_blown(loss)) {
      for (index_t l = 0; l < mt; l += kTile) {
        const double v = update_tile(cur[0], cur[1], cur[2], l, sc.y.data(), sc.g.data(), sc.gy.data(), B,
                                     c.train_inner, c.clip, nxt[0], nxt[1], nxt[2]);
        mx = (v > mx || v != v) ? v : mx;
      }
      const double v = update_tail(cur[0], cur[1], cur[2], mt, m, sc.y.data(), sc.g.data(), sc.gy.data(), B,
                                   c.train_inner, c.clip, nxt[0], nxt[1], nxt[2]);
      mx = (v > mx || v != v) ? v : mx;
    }
    if (sgd::loss_blown(loss) || sgd::params_blown(mx)) {
      c.diverged_step[r] = j;
      break;
    }
    loss_sum += loss;
    ++loss_count;
    for (int p = 0; p < 3; ++p) std::swap(cur[p], nxt[p]);
  }
  if (cur[0] != w1) {  // the last accepted parameters are in the scratch buffers
    std::memcpy(w1, cur[0], sizeof(double) * static_cast<std::size_t>(m));
    std::memcpy(w2, cur[1], sizeof(double) * static_cast<std::size_t>(m));
    std::memcpy(bias, cur[2], sizeof(double) * static_cast<std::size_t>(m));
  }
  c.loss_sum[r] = loss_sum;
  c.loss_count[r] = loss_count;
}

}  // namespace

void sgd_train(const SgdChunk& c) {
  if (c.k1 <= c.k0 || c.networks <= 0) return;
  const int threads = team_size(c.networks);  // team.hpp
  std::vector<Scratch> scratch = per_thread(threads, [&] { return Scratch(c.m, c.batch); });
#pragma omp parallel num_threads(threads) if (c.networks > 1)
  {
    Scratch& sc = scratch[thread_index()];
#pragma omp for schedule(dynamic, 1)
    for (index_t r = 0; r < c.networks; ++r)
      if (c.diverged_step[r] < 0) train_one(c, r, sc);
  }
}

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS
