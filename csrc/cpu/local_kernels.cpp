// Local and equivariant local empirical denoisers (compiled once per instruction set,
// see kernels.hpp; definitions and per-element math in bigstep/local.hpp).
//
// Vectorised across training images: the data are packed in blocks of L = SIMD width
// images, one image per lane, pixel-major [block][Hp][Wp][C][L] (padded by the window
// half-widths for the equivariant machine, unpadded for the local one).  For each
// block, each query and each shift t (only t = 0 for the local machine):
//   e(w) = sum_c (y(w, c) - mu x(w + t, c))^2      per pixel w of the padded range
//   V    = vertical sums of 2 rh + 1 rows of e
//   D(u) = horizontal sums of 2 rw + 1 columns of V   (the P x P patch distances)
//   l = -D / (2 sigma^2), pushed into pixel u's online softmax (per lane),
// all on vectors of L images.  A pixel's state (max m, sum S, accumulators A_c) is
// rescaled only when a lane's maximum grows (rare after the first block), so each
// (pixel, image, shift) costs one exp.  float states are folded into double states
// every kFoldTerms terms (so a sum of 10^6 terms is never accumulated in float); at the
// end the lanes, then the tasks of a query, are merged exactly (merge_states).
//
// Tasks: (tile of queries, band of pixel rows, range of blocks).  The local machine
// reads each data value once per (query, pixel), so it is memory-bound unless the
// data are reused: a task keeps the states of its query tile and row band small enough
// for L2 and runs every query of the tile on a block's band before the next block.
// The equivariant machine reuses a block (2H - 1)(2W - 1) times per query and runs on
// whole images.
// Memory: the packed data O(n Hp Wp C) and per thread O(Qt band W (C + 2) L); nothing
// the size of a patch matrix or of q x n x H x W.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "bigstep/fast_exp.hpp"
#include "bigstep/local.hpp"
#include "kernels.hpp"
#include "simd.hpp"
#include "team.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace {

// Terms per lane and pixel summed in a float state before it is folded into double.
constexpr index_t kFoldTerms = 256;
// A local task: a band of up to kBandRows pixel rows (the e rows it recomputes at the
// band's edges cost 2 rh / kBandRows more) and as many queries (up to kMaxQueryTile) as
// keep its online-softmax states within kStateBytes (L2) -- each block of data is then
// read once per tile of queries.  Measured on 32 x 32 x 3, n = 5000, q = 16 (one thread,
// Zen 4): 8 rows and 640 KB ran 1.2x (P = 3) to 1.7x (P = 7) faster than 1 row x 16
// queries, and than whole images.
constexpr index_t kBandRows = 8;
constexpr double kStateBytes = 640 * 1024;
constexpr index_t kMaxQueryTile = 16;
// Tasks of a call, at least (where the blocks allow): enough for 16 threads.
constexpr index_t kMinTasks = 16;

template <class A>
using Vec = simd::vec<A>;

// Whether some lane of a is greater than the same lane of b (false for NaN).
template <class A>
inline bool any_greater(Vec<A> a, Vec<A> b) {
#if defined(__AVX512F__)
  if constexpr (sizeof(A) == 4) return _mm512_cmp_ps_mask((__m512)a, (__m512)b, _CMP_GT_OQ) != 0;
  else return _mm512_cmp_pd_mask((__m512d)a, (__m512d)b, _CMP_GT_OQ) != 0;
#elif defined(__AVX__)
  if constexpr (sizeof(A) == 4) return _mm256_movemask_ps(_mm256_cmp_ps((__m256)a, (__m256)b, _CMP_GT_OQ)) != 0;
  else return _mm256_movemask_pd(_mm256_cmp_pd((__m256d)a, (__m256d)b, _CMP_GT_OQ)) != 0;
#elif defined(__SSE2__)
  if constexpr (sizeof(A) == 4) return _mm_movemask_ps(_mm_cmpgt_ps((__m128)a, (__m128)b)) != 0;
  else return _mm_movemask_pd(_mm_cmpgt_pd((__m128d)a, (__m128d)b)) != 0;
#else
  bool any = false;
  for (int k = 0; k < simd::width<A>; ++k) any = any || a[k] > b[k];
  return any;
#endif
}

template <class A>
inline Vec<A> vmax(Vec<A> a, Vec<A> b) {
  return a > b ? a : b;
}

// The geometry of a call.
struct Geometry {
  index_t H, W, C;  // image shape
  index_t rh, rw;   // window half-widths (already clamped, local.hpp effective_radius)
  int padding;
  bool equivariant;
  index_t ph() const { return equivariant ? rh : 0; }  // padding stored with the packed data
  index_t pw() const { return equivariant ? rw : 0; }
  index_t Hp() const { return H + 2 * ph(); }
  index_t Wp() const { return W + 2 * pw(); }
  index_t pixels() const { return H * W; }
  index_t fields() const { return C + 2; }  // m, S, A_0 .. A_{C-1}
};

// Training images in type A, L per block, one per lane, padded by (ph, pw) with the
// padding rule: [blocks][Hp][Wp][C][L]; lanes past n hold zero images (masked out).
template <class A>
struct Blocks {
  static constexpr index_t L = simd::width<A>;
  index_t n, count, stride;
  std::vector<A> data;
  template <class T>
  Blocks(const T* x, index_t n_, const Geometry& g) : n(n_) {
    count = (n + L - 1) / L;
    stride = g.Hp() * g.Wp() * g.C * L;
    data.resize(count * stride);
    const index_t Hp = g.Hp(), Wp = g.Wp(), C = g.C;
#pragma omp parallel for schedule(static) num_threads(team_size(count)) \
    if (parallel_worth(double(n) * double(stride) / double(L)))
    for (index_t b = 0; b < count; ++b) {
      // written in order, read from the block's (up to) L images side by side
      A* out = &data[b * stride];
      const index_t lanes = std::min(L, n - b * L), image = g.H * g.W * C;
      const T* xb = x + b * L * image;
      for (index_t pr = 0; pr < Hp; ++pr) {
        const index_t sr = pad_source(pr - g.ph(), g.H, g.padding);
        for (index_t pc = 0; pc < Wp; ++pc) {
          const index_t sc = pad_source(pc - g.pw(), g.W, g.padding);
          for (index_t c = 0; c < C; ++c) {
            A* o = out + ((pr * Wp + pc) * C + c) * L;
            const index_t src = (sr * g.W + sc) * C + c;
            for (index_t lane = 0; lane < L; ++lane)
              o[lane] = (sr < 0 || sc < 0 || lane >= lanes) ? A(0) : static_cast<A>(xb[lane * image + src]);
          }
        }
      }
    }
  }
  const A* block(index_t b) const { return &data[b * stride]; }
  // 1 in the lanes of block b that hold an image, 0 in the others.
  Vec<A> valid(index_t b) const {
    Vec<A> v{};
    for (int k = 0; k < L; ++k) v[k] = b * L + k < n ? A(1) : A(0);
    return v;
  }
};

// Online-softmax states of `pixels` pixels of one query: per pixel and lane m, S and
// A_0 .. A_{C-1}, in A ([pixels][C + 2][L]) and folded into double ([pixels][L][C + 2]).
template <class A>
struct States {
  static constexpr index_t L = simd::width<A>;
  index_t pixels, F;
  index_t terms = 0;  // terms per lane and pixel in the A states since the last fold
  std::vector<A> st;
  std::vector<double> outer;
  States(index_t pixels_, index_t C) : pixels(pixels_), F(C + 2), st(pixels_ * F * L), outer(pixels_ * L * F) {}
  A* pixel(index_t u) { return &st[u * F * L]; }

  void reset_inner() {
    for (index_t u = 0; u < pixels; ++u) {
      simd::store(pixel(u), simd::broadcast<A>(std::numeric_limits<A>::lowest()));
      std::fill(pixel(u) + L, pixel(u) + F * L, A(0));
    }
    terms = 0;
  }
  void reset() {
    reset_inner();
    for (index_t k = 0; k < pixels * L; ++k) {
      outer[k * F] = -std::numeric_limits<double>::infinity();
      std::fill(&outer[k * F + 1], &outer[(k + 1) * F], 0.0);
    }
  }
  // Folds the A states into the double states and empties them.
  void fold(double* acc /* [F - 2] scratch */) {
    for (index_t u = 0; u < pixels; ++u) {
      const A* s = pixel(u);
      for (index_t lane = 0; lane < L; ++lane) {
        double* o = &outer[(u * L + lane) * F];
        for (index_t c = 0; c < F - 2; ++c) acc[c] = double(s[(2 + c) * L + lane]);
        merge_states(o[0], o[1], o + 2, double(s[lane]), double(s[L + lane]), acc, F - 2);
      }
    }
    reset_inner();
  }
  // Counts `added` terms per lane and pixel; folds float states every kFoldTerms.
  void count(index_t added, double* acc) {
    terms += added;
    if (sizeof(A) == 4 && terms >= kFoldTerms) fold(acc);
  }
  // The lanes merged for the first `count` pixels: out [count][F] doubles.
  void merge_lanes(double* acc, double* out, index_t count) {
    fold(acc);
    for (index_t u = 0; u < count; ++u) {
      double* p = out + u * F;
      p[0] = -std::numeric_limits<double>::infinity();
      std::fill(p + 1, p + F, 0.0);
      for (index_t lane = 0; lane < L; ++lane) {
        const double* o = &outer[(u * L + lane) * F];
        merge_states(p[0], p[1], p + 2, o[0], o[1], o + 2, F - 2);
      }
    }
  }
};

// Windows of at least this many pixels along an axis are summed by blocked_sums (O(1)
// additions per output, so the box sums cost O(H W) per shift whatever P), shorter ones
// directly: the direct sums need fewer memory operations, and were as fast or faster up
// to P = 21 on AVX-512 (Zen 4), where stores cost twice loads.
constexpr index_t kBlockedWindow = 25;

inline bool blocked(const Geometry& g) {
  return 2 * g.rh + 1 >= kBlockedWindow || 2 * g.rw + 1 >= kBlockedWindow;
}

// Scratch of one thread.
template <class A>
struct Work {
  static constexpr index_t L = simd::width<A>;
  std::vector<A> yp;                // [Qt][Hp][Wp][C] the task's queries, padded like the data
  std::vector<A> e;                 // [rows + 2 rh][W + 2 rw][L] per-pixel squared differences
  std::vector<A> v;                 // [rows][W + 2 rw][L] vertical sums
  std::vector<A> pre, suf;          // like e: prefix and suffix sums of the blocked window sums
  std::vector<A> hsum;              // [W][L] horizontal sums of one row (blocked window sums)
  std::vector<double> acc;          // [C]
  std::vector<States<A>> states;    // [Qt]
  Work(const Geometry& g, index_t qt, index_t rows)
      : yp(qt * g.Hp() * g.Wp() * g.C),
        e((rows + 2 * g.rh) * (g.W + 2 * g.rw) * L, A(0)),
        v(rows * (g.W + 2 * g.rw) * L),
        pre(blocked(g) ? e.size() : 0),
        suf(blocked(g) ? e.size() : 0),
        hsum(blocked(g) ? g.W * L : 0),
        acc(g.C) {
    states.reserve(qt);
    for (index_t k = 0; k < qt; ++k) states.emplace_back(rows * g.W, g.C);
  }
};

// The logit vector of output pixel j of a row of vertical sums vr: -(sum_{k <= kw}
// vr[j + k]) scale, -inf in the lanes without an image.  KW >= 0: kw known at compile time.
template <class A, int KW>
inline Vec<A> row_logit(const A* __restrict vr, index_t j, index_t kw_, Vec<A> scale, Vec<A> valid) {
  constexpr index_t L = simd::width<A>;
  const index_t kw = KW >= 0 ? KW : kw_;
  Vec<A> d = simd::load(vr + j * L);
  for (index_t k = 1; k <= kw; ++k) d += simd::load(vr + (j + k) * L);
  const Vec<A> zero = Vec<A>{};
  return valid > zero ? zero - d * scale : simd::broadcast<A>(-std::numeric_limits<A>::infinity());
}

// Rescales pixel state s (m, S, A_0 .. A_{C-1}, L lanes each) to the maximum of m and l
// (exact: the lanes whose maximum grows are multiplied by exp(m - m_new)); returns the new m.
template <class A>
inline Vec<A> rescale(A* __restrict s, index_t F, Vec<A> m, Vec<A> l) {
  constexpr index_t L = simd::width<A>;
  const Vec<A> mn = vmax<A>(m, l);
  const Vec<A> f = simd::Traits<A>::exp_nonpos(m - mn);
  simd::store(s, mn);
  for (index_t k = 1; k < F; ++k) simd::store(s + k * L, simd::load(s + k * L) * f);
  return mn;
}

// p = exp(l - m) added to S and p x_c to A_c of state s; x: the C value vectors.
template <class A, int CC>
inline void accumulate(A* __restrict s, index_t C_, Vec<A> p, const A* __restrict x) {
  constexpr index_t L = simd::width<A>;
  const index_t C = CC > 0 ? CC : C_;
  simd::store(s + L, simd::load(s + L) + p);
  for (index_t c = 0; c < C; ++c) simd::store(s + (2 + c) * L, simd::load(s + (2 + c) * L) + p * simd::load(x + c * L));
}

// One row of output pixels: logits from the vertical sums vr (horizontal sums of 2 rw + 1
// columns), pushed into the states st + j F L (F = C + 2) with training values at
// xc + (j C + c) L.  Each pixel's state is rescaled exactly when a lane's logit exceeds
// its maximum (rare after the first block), then p = exp(l - m) is added.  Two pixels at
// a time, in registers, so that their exps overlap.  CC > 0: C known at compile time;
// KW >= 0: 2 rw known at compile time.
template <class A, int CC, int KW>
inline void push_row(A* __restrict st, index_t C_, const A* __restrict vr, index_t kw, index_t w,
                     const A* __restrict xc, Vec<A> scale, Vec<A> valid) {
  constexpr index_t L = simd::width<A>;
  const index_t C = CC > 0 ? CC : C_, F = C + 2;
  index_t j = 0;
  for (; j + 2 <= w; j += 2) {
    A* s0 = st + j * F * L;
    A* s1 = s0 + F * L;
    const Vec<A> l0 = row_logit<A, KW>(vr, j, kw, scale, valid);
    const Vec<A> l1 = row_logit<A, KW>(vr, j + 1, kw, scale, valid);
    Vec<A> m0 = simd::load(s0), m1 = simd::load(s1);
    if (any_greater<A>(l0, m0)) m0 = rescale<A>(s0, F, m0, l0);
    if (any_greater<A>(l1, m1)) m1 = rescale<A>(s1, F, m1, l1);
    const Vec<A> p0 = simd::Traits<A>::exp_nonpos(l0 - m0);
    const Vec<A> p1 = simd::Traits<A>::exp_nonpos(l1 - m1);
    accumulate<A, CC>(s0, C, p0, xc + j * C * L);
    accumulate<A, CC>(s1, C, p1, xc + (j + 1) * C * L);
  }
  if (j < w) {
    A* s0 = st + j * F * L;
    const Vec<A> l0 = row_logit<A, KW>(vr, j, kw, scale, valid);
    Vec<A> m0 = simd::load(s0);
    if (any_greater<A>(l0, m0)) m0 = rescale<A>(s0, F, m0, l0);
    accumulate<A, CC>(s0, C, simd::Traits<A>::exp_nonpos(l0 - m0), xc + j * C * L);
  }
}

// out[j] = sum_{k <= K} in[j + k stride] for j < count (vectors of L), K + 1 terms in
// order, four outputs at a time so the short sum over k amortises its loop.
template <class A>
inline void strided_sums(const A* __restrict in, index_t stride, index_t K, index_t count, A* __restrict out) {
  constexpr index_t L = simd::width<A>;
  index_t j = 0;
  for (; j + 4 <= count; j += 4) {
    const A* p = in + j * L;
    Vec<A> s0 = simd::load(p), s1 = simd::load(p + L), s2 = simd::load(p + 2 * L), s3 = simd::load(p + 3 * L);
    for (index_t k = 1; k <= K; ++k) {
      p += stride * L;
      s0 += simd::load(p);
      s1 += simd::load(p + L);
      s2 += simd::load(p + 2 * L);
      s3 += simd::load(p + 3 * L);
    }
    simd::store(out + j * L, s0);
    simd::store(out + (j + 1) * L, s1);
    simd::store(out + (j + 2) * L, s2);
    simd::store(out + (j + 3) * L, s3);
  }
  for (; j < count; ++j) {
    const A* p = in + j * L;
    Vec<A> s = simd::load(p);
    for (index_t k = 1; k <= K; ++k) s += simd::load(p + k * stride * L);
    simd::store(out + j * L, s);
  }
}

// The same sums for long windows (K + 1 >= kBlockedWindow terms), in O(1) additions per
// output whatever K (van Herk / Gil-Werman): prefix and suffix sums within blocks of
// B = K + 1 terms, then out[i] = suffix[i] + prefix[i + K] (suffix[i] alone when i starts a
// block).  Sequences run along `stride`; `width` side-by-side sequences (consecutive
// vectors) are done at once.  Every sum still has at most K + 1 nonnegative terms, so the
// error bound is that of the direct sums.  pre, suf: scratch like in.
template <class A>
void blocked_sums(const A* __restrict in, index_t stride, index_t width, index_t K, index_t count,
                  A* __restrict pre, A* __restrict suf, A* __restrict out) {
  constexpr index_t L = simd::width<A>;
  const index_t B = K + 1, N = count + K;
  for (index_t s0 = 0; s0 < N; s0 += B) {
    const index_t e0 = std::min(N, s0 + B);
    std::memcpy(pre + s0 * stride * L, in + s0 * stride * L, width * L * sizeof(A));
    for (index_t t = s0 + 1; t < e0; ++t)
      for (index_t c = 0; c < width; ++c)
        simd::store(pre + (t * stride + c) * L,
                    simd::load(pre + ((t - 1) * stride + c) * L) + simd::load(in + (t * stride + c) * L));
    std::memcpy(suf + (e0 - 1) * stride * L, in + (e0 - 1) * stride * L, width * L * sizeof(A));
    for (index_t t = e0 - 2; t >= s0; --t)
      for (index_t c = 0; c < width; ++c)
        simd::store(suf + (t * stride + c) * L,
                    simd::load(suf + ((t + 1) * stride + c) * L) + simd::load(in + (t * stride + c) * L));
  }
  for (index_t i = 0; i < count; ++i)
    for (index_t c = 0; c < width; ++c) {
      const Vec<A> sf = simd::load(suf + (i * stride + c) * L);
      simd::store(out + (i * stride + c) * L, i % B == 0 ? sf : sf + simd::load(pre + ((i + K) * stride + c) * L));
    }
}

// Box sums of e ((h + 2 rh) x (w + 2 rw), row stride Ew = w + 2 rw) and the pushes:
// output pixel (i, j) is state st + (i W + j) F L, its training values at
// xc + ((i xc_row + j) C + c) L (xc_row: pixels per row of the packed data).
template <class A, int CC, int KW>
void box_and_push(Work<A>& wk, const Geometry& g, A* st, index_t h, index_t w, const A* __restrict xc,
                  index_t xc_row, Vec<A> scale, Vec<A> valid) {
  constexpr index_t L = simd::width<A>;
  const index_t F = g.fields(), Ew = w + 2 * g.rw;
  A* __restrict v = wk.v.data();
  // vertical: rows i .. i + 2 rh of e, for all i < h
  if (2 * g.rh + 1 >= kBlockedWindow)
    blocked_sums<A>(wk.e.data(), Ew, Ew, 2 * g.rh, h, wk.pre.data(), wk.suf.data(), v);
  else
    strided_sums<A>(wk.e.data(), Ew, 2 * g.rh, h * Ew, v);
  for (index_t i = 0; i < h; ++i) {
    A* srow = st + i * g.W * F * L;
    const A* xrow = xc + i * xc_row * g.C * L;
    if (2 * g.rw + 1 >= kBlockedWindow) {  // horizontal sums first, then the pushes read them
      blocked_sums<A>(v + i * Ew * L, 1, 1, 2 * g.rw, w, wk.pre.data(), wk.suf.data(), wk.hsum.data());
      push_row<A, CC, 0>(srow, g.C, wk.hsum.data(), 0, w, xrow, scale, valid);
    } else {
      push_row<A, CC, KW>(srow, g.C, v + i * Ew * L, 2 * g.rw, w, xrow, scale, valid);
    }
  }
}

// box_and_push with the channel count (1, 3) and the window width (P = 3, 5, 7) fixed at
// compile time where they are common.
template <class A, int CC>
void box_and_push_c(Work<A>& wk, const Geometry& g, A* st, index_t h, index_t w, const A* __restrict xc,
                    index_t xc_row, Vec<A> scale, Vec<A> valid) {
  switch (g.rw) {
    case 1: box_and_push<A, CC, 2>(wk, g, st, h, w, xc, xc_row, scale, valid); break;
    case 2: box_and_push<A, CC, 4>(wk, g, st, h, w, xc, xc_row, scale, valid); break;
    case 3: box_and_push<A, CC, 6>(wk, g, st, h, w, xc, xc_row, scale, valid); break;
    default: box_and_push<A, CC, -1>(wk, g, st, h, w, xc, xc_row, scale, valid);
  }
}

template <class A>
void box_and_push_any(Work<A>& wk, const Geometry& g, A* st, index_t h, index_t w, const A* __restrict xc,
                      index_t xc_row, Vec<A> scale, Vec<A> valid) {
  if (g.C == 1) box_and_push_c<A, 1>(wk, g, st, h, w, xc, xc_row, scale, valid);
  else if (g.C == 3) box_and_push_c<A, 3>(wk, g, st, h, w, xc, xc_row, scale, valid);
  else box_and_push_c<A, 0>(wk, g, st, h, w, xc, xc_row, scale, valid);
}

// er[j] = sum_c (yr[j C + c] - mu xr[(j C + c) L ..])^2 for j < count: the per-pixel
// squared differences of `count` consecutive pixels (vectors of L images).  CC > 0: C
// known at compile time.
template <class A, int CC>
inline void differences(A* __restrict er, const A* __restrict yr, const A* __restrict xr, index_t count, index_t C_,
                        A mu) {
  constexpr index_t L = simd::width<A>;
  const index_t C = CC > 0 ? CC : C_;
  for (index_t j = 0; j < count; ++j) {
    Vec<A> acc = squared_difference(simd::broadcast<A>(yr[j * C]), simd::load(xr + j * C * L), mu);
    for (index_t ch = 1; ch < C; ++ch)
      acc += squared_difference(simd::broadcast<A>(yr[j * C + ch]), simd::load(xr + (j * C + ch) * L), mu);
    simd::store(er + j * L, acc);
  }
}

template <class A>
inline void differences_any(A* __restrict er, const A* __restrict yr, const A* __restrict xr, index_t count,
                            index_t C, A mu) {
  if (C == 1) differences<A, 1>(er, yr, xr, count, C, mu);
  else if (C == 3) differences<A, 3>(er, yr, xr, count, C, mu);
  else differences<A, 0>(er, yr, xr, count, C, mu);
}

// Local machine, rows [r0, r1) of block xb for the query yp: e on the image rows
// [r0 - rh, r1 + rh) (e row k holds image row r0 - rh + k), with the halo made by the
// padding rule (zeros stay zero; reflect mirrors e, since y and x are mirrored the same
// way at t = 0), then box sums and pushes.
template <class A>
void local_rows(Work<A>& wk, const Geometry& g, const A* __restrict yp, const A* __restrict xb, A mu, index_t r0,
                index_t r1, States<A>& states, Vec<A> scale, Vec<A> valid) {
  constexpr index_t L = simd::width<A>;
  const index_t H = g.H, W = g.W, C = g.C, rh = g.rh, rw = g.rw, Ew = W + 2 * rw;
  A* __restrict e = wk.e.data();
  const index_t lo = std::max<index_t>(0, r0 - rh), hi = std::min(H, r1 + rh);
  for (index_t r = lo; r < hi; ++r) {
    A* er = e + ((r - r0 + rh) * Ew + rw) * L;
    const A* xr = xb + r * W * C * L;
    differences_any<A>(er, yp + r * W * C, xr, W, C, mu);
    if (g.padding == kPadReflect)
      for (index_t k = 1; k <= rw; ++k) {
        std::memcpy(er - k * L, er + k * L, L * sizeof(A));
        std::memcpy(er + (W - 1 + k) * L, er + (W - 1 - k) * L, L * sizeof(A));
      }
  }
  for (index_t r = r0 - rh; r < r1 + rh; ++r) {  // halo rows
    if (r >= 0 && r < H) continue;
    A* er = e + (r - r0 + rh) * Ew * L;
    if (g.padding == kPadReflect)
      std::memcpy(er, e + (pad_source(r, H, kPadReflect) - r0 + rh) * Ew * L, Ew * L * sizeof(A));
    else
      std::fill(er, er + Ew * L, A(0));
  }
  box_and_push_any<A>(wk, g, states.pixel(0), r1 - r0, W, xb + r0 * W * C * L, W, scale, valid);
}

// Equivariant machine, every shift t = (a, s) of block xb for the query yp (padded):
// e over the padded range of the output pixels [r0, r0 + h) x [c0, c0 + w) for which
// u + t is a pixel, e(i, j) for padded query pixel (r0 + i, c0 + j) against padded data
// pixel (r0 + i + a, c0 + j + s).
template <class A>
void equivariant_block(Work<A>& wk, const Geometry& g, const A* __restrict yp, const A* __restrict xb, A mu,
                       States<A>& states, Vec<A> scale, Vec<A> valid) {
  constexpr index_t L = simd::width<A>;
  const index_t H = g.H, W = g.W, C = g.C, Wp = g.Wp();
  A* __restrict e = wk.e.data();
  for (index_t a = -(H - 1); a <= H - 1; ++a) {
    const index_t r0 = std::max<index_t>(0, -a), h = std::min(H, H - a) - r0, Eh = h + 2 * g.rh;
    for (index_t s = -(W - 1); s <= W - 1; ++s) {
      const index_t c0 = std::max<index_t>(0, -s), w = std::min(W, W - s) - c0, Ew = w + 2 * g.rw;
      for (index_t i = 0; i < Eh; ++i) {
        const A* yr = yp + ((r0 + i) * Wp + c0) * C;
        const A* xr = xb + ((r0 + i + a) * Wp + c0 + s) * C * L;
        differences_any<A>(e + i * Ew * L, yr, xr, Ew, C, mu);
      }
      const A* xc = xb + ((r0 + a + g.rh) * Wp + c0 + s + g.rw) * C * L;  // centre of the first window
      box_and_push_any<A>(wk, g, states.pixel(r0 * W + c0), h, w, xc, Wp, scale, valid);
    }
  }
}

// The queries j0 .. j0 + qt - 1, padded like the data, into wk.yp.
template <class T, class A>
void pad_queries(Work<A>& wk, const Geometry& g, const T* y, index_t j0, index_t qt) {
  const index_t H = g.H, W = g.W, C = g.C, Hp = g.Hp(), Wp = g.Wp();
  for (index_t k = 0; k < qt; ++k) {
    const T* yq = y + (j0 + k) * H * W * C;
    A* out = &wk.yp[k * Hp * Wp * C];
    for (index_t pr = 0; pr < Hp; ++pr) {
      const index_t sr = pad_source(pr - g.ph(), H, g.padding);
      for (index_t pc = 0; pc < Wp; ++pc) {
        const index_t sc = pad_source(pc - g.pw(), W, g.padding);
        for (index_t c = 0; c < C; ++c)
          out[(pr * Wp + pc) * C + c] = (sr < 0 || sc < 0) ? A(0) : static_cast<A>(yq[(sr * W + sc) * C + c]);
      }
    }
  }
}

// How a call is split into tasks: query tiles x row bands x ranges of blocks.
struct Plan {
  index_t qt, qtiles, band, bands, chunks, per_chunk;
  index_t tasks() const { return qtiles * bands * chunks; }
};

template <class A>
Plan make_plan(const Geometry& g, index_t q, index_t blocks) {
  constexpr index_t L = simd::width<A>;
  Plan p{};
  const double row_bytes = double(g.W) * double(g.fields()) * double(L) * sizeof(A);
  if (g.equivariant) {
    p.qt = 1;
    p.band = g.H;
  } else {
    p.band = std::min<index_t>(g.H, kBandRows);
    const index_t fit = static_cast<index_t>(kStateBytes / (row_bytes * double(p.band)));
    p.qt = std::max<index_t>(1, std::min<index_t>({q, kMaxQueryTile, fit}));
  }
  p.qtiles = (q + p.qt - 1) / p.qt;
  p.bands = (g.H + p.band - 1) / p.band;
  // ranges of blocks: at least kMinTasks tasks where the blocks allow.  The split
  // depends on the problem only, never on the thread count, so a result is the same
  // bits for any number of threads.
  const index_t base = p.qtiles * p.bands;
  p.chunks = base >= kMinTasks ? 1 : std::min(blocks, (kMinTasks + base - 1) / base);
  p.per_chunk = (blocks + p.chunks - 1) / p.chunks;
  return p;
}

template <class T, class A>
void run(const T* y, index_t q, const T* x, index_t n, const Geometry& g, const T* mu, index_t mu_stride,
         const T* sigma, index_t sigma_stride, T* mean, T* score) {
  const Blocks<A> blocks(x, n, g);
  const index_t F = g.fields(), HW = g.pixels(), C = g.C, H = g.H, W = g.W;
  const Plan plan = make_plan<A>(g, q, blocks.count);
  // partial states [q][chunks][H W][F], merged over the chunks at the end
  std::vector<double> partial(q * plan.chunks * HW * F);
  const double work = double(q) * double(n) * double(HW) * (g.equivariant ? double(HW) : 1.0) *
                      double(C + 2 * (g.rh + g.rw) + 8);
  const int threads = parallel_worth(work) ? team_size(plan.tasks()) : 1;
  std::vector<Work<A>> works = per_thread(threads, [&] { return Work<A>(g, plan.qt, plan.band); });
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
  for (index_t t = 0; t < plan.tasks(); ++t) {
    Work<A>& wk = works[thread_index()];
    const index_t chunk = t % plan.chunks, band = (t / plan.chunks) % plan.bands, tile = t / (plan.chunks * plan.bands);
    const index_t j0 = tile * plan.qt, qt = std::min(plan.qt, q - j0);
    const index_t r0 = band * plan.band, r1 = std::min(H, r0 + plan.band);
    const index_t b0 = std::min(blocks.count, chunk * plan.per_chunk);
    const index_t b1 = std::min(blocks.count, b0 + plan.per_chunk);
    pad_queries<T, A>(wk, g, y, j0, qt);
    for (index_t k = 0; k < qt; ++k) wk.states[k].reset();
    for (index_t b = b0; b < b1; ++b) {
      const A* xb = blocks.block(b);
      const Vec<A> valid = blocks.valid(b);
      for (index_t k = 0; k < qt; ++k) {
        const index_t j = j0 + k;
        const A mua = static_cast<A>(mu[j * mu_stride]);
        const double sj = double(sigma[j * sigma_stride]);
        const Vec<A> scale = simd::broadcast<A>(static_cast<A>(0.5 / (sj * sj)));
        const A* yp = &wk.yp[k * g.Hp() * g.Wp() * C];
        if (g.equivariant) {
          equivariant_block<A>(wk, g, yp, xb, mua, wk.states[k], scale, valid);
          wk.states[k].count(HW, wk.acc.data());
        } else {
          local_rows<A>(wk, g, yp, xb, mua, r0, r1, wk.states[k], scale, valid);
          wk.states[k].count(1, wk.acc.data());
        }
      }
    }
    for (index_t k = 0; k < qt; ++k) {
      // this band's pixels of query j0 + k: rows r0 .. r1 - 1 of the partial
      double* out = &partial[(((j0 + k) * plan.chunks + chunk) * HW + r0 * W) * F];
      wk.states[k].merge_lanes(wk.acc.data(), out, (r1 - r0) * W);  // the last band may be shorter
    }
  }
  for (index_t j = 0; j < q; ++j) {
    const double mui = double(mu[j * mu_stride]), si = double(sigma[j * sigma_stride]);
    double* p0 = &partial[j * plan.chunks * HW * F];
    for (index_t k = 1; k < plan.chunks; ++k)
      for (index_t u = 0; u < HW; ++u) {
        const double* pk = &partial[((j * plan.chunks + k) * HW + u) * F];
        double* p = p0 + u * F;
        merge_states(p[0], p[1], p + 2, pk[0], pk[1], pk + 2, C);
      }
    for (index_t u = 0; u < HW; ++u)
      for (index_t c = 0; c < C; ++c) {
        const index_t o = (j * HW + u) * C + c;
        const double e = local_mean(p0[u * F + 1], p0[u * F + 2 + c]);
        if (mean) mean[o] = static_cast<T>(e);
        if (score) score[o] = static_cast<T>(local_score(e, double(y[o]), mui, si));
      }
  }
}

}  // namespace

template <class T>
void local_posterior_mean(const T* y, index_t q, const T* x, index_t n, index_t H, index_t W, index_t C,
                          index_t rh, index_t rw, int padding, bool equivariant, const T* mu, index_t mu_stride,
                          const T* sigma, index_t sigma_stride, T* mean, T* score) {
  if (q == 0 || n == 0 || H == 0 || W == 0 || C == 0) return;
  const Geometry g{H, W, C, effective_radius(rh, H, padding), effective_radius(rw, W, padding), padding,
                   equivariant};
  run<T, T>(y, q, x, n, g, mu, mu_stride, sigma, sigma_stride, mean, score);
}

BIGSTEP_EXPORT_TYPED(local_posterior_mean)

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS
