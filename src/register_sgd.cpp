// pybind11 registration of the fused batched 1-D SGD trainer (csrc/cpu/sgd_kernels.cpp).
// Same name and signature as python/bigstep/_numba/sgd.py's sgd_train.
#include <cmath>

#include "bigstep/sgd.hpp"
#include "bigstep/sgd_nd.hpp"
#include "cpu/kernels.hpp"
#include "check.hpp"

namespace bigstep::py {
namespace {

// Steps [k0, k1) of R networks, parameters w1, w2, b [R, m] and the per-network state
// (diverged_step, loss_sum, loss_count [R]) updated in place.
void sgd_train(const carray<double>& x, double mu, double sigma, const carray<double>& lr,
               const carray<std::uint64_t>& seed, carray<double>& w1, carray<double>& w2, carray<double>& b,
               pyb::ssize_t batch, bool train_inner, double clip, pyb::ssize_t k0, pyb::ssize_t k1,
               carray<std::int64_t>& diverged_step, carray<double>& loss_sum, carray<std::int64_t>& loss_count) {
  check_array<double>(x, "x", 1);
  BIGSTEP_CHECK(x.shape(0) >= 1, "x must have at least one point");
  BIGSTEP_CHECK(mu > 0 && std::isfinite(mu), "mu must be positive and finite, got " << mu);
  BIGSTEP_CHECK(sigma > 0 && std::isfinite(sigma), "sigma must be positive and finite, got " << sigma);
  check_array<double>(lr, "lr", 1);
  check_array<std::uint64_t>(seed, "seed", 1);
  const pyb::ssize_t R = lr.shape(0);
  BIGSTEP_CHECK(seed.shape(0) == R, "seed must have " << R << " entries like lr, got " << seed.shape(0));
  check_array<double>(w1, "w1", 2);
  const pyb::ssize_t m = w1.shape(1);
  BIGSTEP_CHECK(m >= 1, "w1 must have at least one column");
  for (const auto& [a, name] : {std::pair{&w1, "w1"}, std::pair{&w2, "w2"}, std::pair{&b, "b"}}) {
    check_array<double>(*a, name, 2);
    BIGSTEP_CHECK(a->shape(0) == R && a->shape(1) == m,
                  "w1, w2, b must have shape (" << R << ", " << m << "), got (" << a->shape(0) << ", "
                                                << a->shape(1) << ")");
  }
  check_array<std::int64_t>(diverged_step, "diverged_step", 1);
  check_array<double>(loss_sum, "loss_sum", 1);
  check_array<std::int64_t>(loss_count, "loss_count", 1);
  BIGSTEP_CHECK(diverged_step.shape(0) == R && loss_sum.shape(0) == R && loss_count.shape(0) == R,
                "diverged_step, loss_sum, loss_count must have " << R << " entries");
  BIGSTEP_CHECK(batch >= 1, "batch must be >= 1, got " << batch);
  BIGSTEP_CHECK(0 <= k0 && k0 <= k1, "need 0 <= k0 <= k1, got " << k0 << ", " << k1);
  BIGSTEP_CHECK(std::isfinite(clip), "clip must be finite (<= 0: no clipping), got " << clip);
  const double* lrp = lr.data();
  for (pyb::ssize_t r = 0; r < R; ++r)
    BIGSTEP_CHECK(lrp[r] > 0 && std::isfinite(lrp[r]), "lr entries must be positive and finite, got " << lrp[r]);
  cpu::SgdChunk c{};
  c.x = x.data();
  c.n = x.shape(0);
  c.mu = mu;
  c.sigma = sigma;
  c.networks = R;
  c.m = m;
  c.batch = batch;
  c.lr = lrp;
  c.seed = seed.data();
  c.w1 = w1.mutable_data();
  c.w2 = w2.mutable_data();
  c.b = b.mutable_data();
  c.train_inner = train_inner;
  c.clip = clip;
  c.k0 = k0;
  c.k1 = k1;
  c.diverged_step = diverged_step.mutable_data();
  c.loss_sum = loss_sum.mutable_data();
  c.loss_count = loss_count.mutable_data();
  pyb::gil_scoped_release release;
  cpu::kernels().sgd_train(c);
}

// Steps [k0, k1) of R d-D networks (csrc/cpu/sgd_nd_kernels.cpp): parameters w1t [R, p, m],
// b [R, m], w2 [R, d, m] (float32 or float64, all the same) and the per-network state
// updated in place.  Data x [S, n, d]; network r trains on x[data_of[r]].  diffusion:
// p = d + 1 and the time grid (times, mus, sigmas, cdf [n_times]); else p = d and (mu, sigma).
template <class T>
void sgd_nd_typed(const carray<double>& x, const carray<std::int64_t>& data_of, bool diffusion, double mu,
                  double sigma, const carray<double>& times, const carray<double>& mus, const carray<double>& sigmas,
                  const carray<double>& cdf, double norm, const carray<double>& lr, const carray<std::uint64_t>& seed,
                  pyb::array& w1t_a, pyb::array& b_a, pyb::array& w2_a, pyb::ssize_t batch, double max_abs,
                  pyb::ssize_t k0, pyb::ssize_t k1, const carray<std::int64_t>& steps,
                  carray<std::int64_t>& diverged_step, carray<double>& loss_sum, carray<std::int64_t>& loss_count) {
  check_array<T>(w1t_a, "w1t", 3);
  check_array<T>(b_a, "b", 2);
  check_array<T>(w2_a, "w2", 3);
  auto w1t = pyb::reinterpret_borrow<carray<T>>(w1t_a);
  auto b = pyb::reinterpret_borrow<carray<T>>(b_a);
  auto w2 = pyb::reinterpret_borrow<carray<T>>(w2_a);
  check_array<double>(x, "x", 3);
  const pyb::ssize_t S = x.shape(0), n = x.shape(1), d = x.shape(2);
  BIGSTEP_CHECK(S >= 1 && n >= 1 && d >= 1, "x must have shape (S, n, d) with S, n, d >= 1");
  check_array<double>(lr, "lr", 1);
  const pyb::ssize_t R = lr.shape(0);
  for (const auto& [a, name] : {std::pair{&seed, "seed"}}) {
    check_array<std::uint64_t>(*a, name, 1);
    BIGSTEP_CHECK(a->shape(0) == R, name << " must have " << R << " entries like lr, got " << a->shape(0));
  }
  using I64 = const carray<std::int64_t>*;
  for (const auto& [a, name] : {std::pair{I64(&data_of), "data_of"}, std::pair{I64(&steps), "steps"},
                                std::pair{I64(&diverged_step), "diverged_step"},
                                std::pair{I64(&loss_count), "loss_count"}}) {
    check_array<std::int64_t>(*a, name, 1);
    BIGSTEP_CHECK(a->shape(0) == R, name << " must have " << R << " entries like lr, got " << a->shape(0));
  }
  check_array<double>(loss_sum, "loss_sum", 1);
  BIGSTEP_CHECK(loss_sum.shape(0) == R, "loss_sum must have " << R << " entries like lr, got " << loss_sum.shape(0));
  const pyb::ssize_t p = diffusion ? d + 1 : d;
  const pyb::ssize_t m = w1t.shape(2);
  BIGSTEP_CHECK(m >= 1, "w1t must have at least one column (the width)");
  BIGSTEP_CHECK(w1t.shape(0) == R && w1t.shape(1) == p,
                "w1t must have shape (" << R << ", " << p << ", " << m << "), got (" << w1t.shape(0) << ", "
                                        << w1t.shape(1) << ", " << m << ")");
  BIGSTEP_CHECK(b.shape(0) == R && b.shape(1) == m,
                "b must have shape (" << R << ", " << m << "), got (" << b.shape(0) << ", " << b.shape(1) << ")");
  BIGSTEP_CHECK(w2.shape(0) == R && w2.shape(1) == d && w2.shape(2) == m,
                "w2 must have shape (" << R << ", " << d << ", " << m << "), got (" << w2.shape(0) << ", "
                                       << w2.shape(1) << ", " << w2.shape(2) << ")");
  BIGSTEP_CHECK(batch >= 1, "batch must be >= 1, got " << batch);
  BIGSTEP_CHECK(0 <= k0 && k0 <= k1, "need 0 <= k0 <= k1, got " << k0 << ", " << k1);
  BIGSTEP_CHECK(norm > 0 && std::isfinite(norm), "norm must be positive and finite, got " << norm);
  BIGSTEP_CHECK(max_abs > 0 && !std::isnan(max_abs), "max_abs must be positive, got " << max_abs);
  // scratch per thread is O(B (p + 2 d) + m (p + d + 1)); B p and m p must not overflow
  BIGSTEP_CHECK(batch < (pyb::ssize_t(1) << 40) / (p + 2 * d) && m < (pyb::ssize_t(1) << 40) / (2 * p + 2 * d + 2),
                "batch or width too large for the per-thread scratch (batch " << batch << ", width " << m << ")");
  const double* lrp = lr.data();
  const std::int64_t* dp = data_of.data();
  for (pyb::ssize_t r = 0; r < R; ++r) {
    BIGSTEP_CHECK(lrp[r] > 0 && std::isfinite(lrp[r]), "lr entries must be positive and finite, got " << lrp[r]);
    BIGSTEP_CHECK(0 <= dp[r] && dp[r] < S, "data_of entries must be in [0, " << S << "), got " << dp[r]);
  }
  cpu::SgdNdChunk<T> c{};
  c.pr.x = x.data();
  c.pr.n = n;
  c.pr.d = d;
  c.pr.p = p;
  c.pr.diffusion = diffusion;
  if (diffusion) {
    check_array<double>(times, "times", 1);
    const pyb::ssize_t nt = times.shape(0);
    BIGSTEP_CHECK(nt >= 1, "times must have at least one entry");
    for (const auto& [a, name] : {std::pair{&mus, "mus"}, std::pair{&sigmas, "sigmas"}, std::pair{&cdf, "cdf"}}) {
      check_array<double>(*a, name, 1);
      BIGSTEP_CHECK(a->shape(0) == nt, name << " must have " << nt << " entries like times, got " << a->shape(0));
    }
    c.pr.times = times.data();
    c.pr.mus = mus.data();
    c.pr.sigmas = sigmas.data();
    c.pr.cdf = cdf.data();
    c.pr.n_times = nt;
  } else {
    BIGSTEP_CHECK(mu > 0 && std::isfinite(mu), "mu must be positive and finite, got " << mu);
    BIGSTEP_CHECK(sigma > 0 && std::isfinite(sigma), "sigma must be positive and finite, got " << sigma);
    c.pr.mu = mu;
    c.pr.sigma = sigma;
  }
  c.norm = norm;
  c.networks = R;
  c.m = m;
  c.batch = batch;
  c.lr = lrp;
  c.seed = seed.data();
  c.data_of = dp;
  c.steps = steps.data();
  c.w1t = w1t.mutable_data();
  c.b = b.mutable_data();
  c.w2 = w2.mutable_data();
  c.max_abs = max_abs;
  c.k0 = k0;
  c.k1 = k1;
  c.diverged_step = diverged_step.mutable_data();
  c.loss_sum = loss_sum.mutable_data();
  c.loss_count = loss_count.mutable_data();
  pyb::gil_scoped_release release;
  cpu::kernels<T>().sgd_nd_train(c);
}

void sgd_nd_train(const carray<double>& x, const carray<std::int64_t>& data_of, bool diffusion, double mu,
                  double sigma, const carray<double>& times, const carray<double>& mus, const carray<double>& sigmas,
                  const carray<double>& cdf, double norm, const carray<double>& lr, const carray<std::uint64_t>& seed,
                  pyb::array& w1t, pyb::array& b, pyb::array& w2, pyb::ssize_t batch, double max_abs,
                  pyb::ssize_t k0, pyb::ssize_t k1, const carray<std::int64_t>& steps,
                  carray<std::int64_t>& diverged_step, carray<double>& loss_sum, carray<std::int64_t>& loss_count) {
  if (pyb::isinstance<carray<float>>(w1t))
    return sgd_nd_typed<float>(x, data_of, diffusion, mu, sigma, times, mus, sigmas, cdf, norm, lr, seed, w1t, b,
                               w2, batch, max_abs, k0, k1, steps, diverged_step, loss_sum, loss_count);
  sgd_nd_typed<double>(x, data_of, diffusion, mu, sigma, times, mus, sigmas, cdf, norm, lr, seed, w1t, b, w2, batch,
                       max_abs, k0, k1, steps, diverged_step, loss_sum, loss_count);
}

}  // namespace

void register_sgd(pyb::module_& m) {
  m.def("sgd_train", &sgd_train, pyb::arg("x"), pyb::arg("mu"), pyb::arg("sigma"), pyb::arg("lr"),
        pyb::arg("seed"), pyb::arg("w1").noconvert(), pyb::arg("w2").noconvert(), pyb::arg("b").noconvert(),
        pyb::arg("batch"), pyb::arg("train_inner"), pyb::arg("clip"), pyb::arg("k0"), pyb::arg("k1"),
        pyb::arg("diverged_step").noconvert(), pyb::arg("loss_sum").noconvert(),
        pyb::arg("loss_count").noconvert(),
        "Fused SGD steps [k0, k1) for R networks (parameters and state updated in place).");
  m.def("sgd_nd_train", &sgd_nd_train, pyb::arg("x"), pyb::arg("data_of"), pyb::arg("diffusion"), pyb::arg("mu"),
        pyb::arg("sigma"), pyb::arg("times"), pyb::arg("mus"), pyb::arg("sigmas"), pyb::arg("cdf"), pyb::arg("norm"),
        pyb::arg("lr"), pyb::arg("seed"), pyb::arg("w1t").noconvert(), pyb::arg("b").noconvert(),
        pyb::arg("w2").noconvert(), pyb::arg("batch"), pyb::arg("max_abs"), pyb::arg("k0"), pyb::arg("k1"),
        pyb::arg("steps"), pyb::arg("diverged_step").noconvert(), pyb::arg("loss_sum").noconvert(),
        pyb::arg("loss_count").noconvert(),
        "Fused d-D SGD steps [k0, k1) for R networks (parameters and state updated in place).");
}

}  // namespace bigstep::py
