// pybind11 registration of the optimal-score family (csrc/cpu/optimal_score_*).
#include <optional>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "cpu/kernels.hpp"
#include "bigstep/optimal_score.hpp"
#include "check.hpp"

namespace bigstep::py {
namespace {

template <class T>
T* data_or_null(std::optional<carray<T>>& a) {
  return a ? a->mutable_data() : nullptr;
}

// Returns (score, log_density, mean, d1, d2), each None unless asked for by `what`.
template <class T>
pyb::tuple optimal_score_1d(const carray<T>& y, const carray<T>& x_sorted, const carray<T>& mu,
                            const carray<T>& sigma, int what) {
  check_array<T>(y, "y", 1);
  check_array<T>(x_sorted, "x", 1);
  const pyb::ssize_t q = y.shape(0), n = x_sorted.shape(0);
  BIGSTEP_CHECK(n > 0, "x must not be empty");
  check_levels<T>(mu, "mu", q);
  check_levels<T>(sigma, "sigma", q);
  std::optional<carray<T>> score, logp, mean, d1, d2;
  if (what & (kScore | kDerivatives)) score.emplace(q);
  if (what & kLogDensity) logp.emplace(q);
  if (what & kPosteriorMean) mean.emplace(q);
  if (what & kDerivatives) {
    d1.emplace(q);
    d2.emplace(q);
  }
  {
    pyb::gil_scoped_release release;
    cpu::kernels<T>().optimal_score_1d(y.data(), q, x_sorted.data(), n, mu.data(), mu.shape(0) == 1 ? 0 : 1, sigma.data(),
                             sigma.shape(0) == 1 ? 0 : 1, data_or_null(score), data_or_null(logp),
                             data_or_null(mean), data_or_null(d1), data_or_null(d2));
  }
  auto obj = [](std::optional<carray<T>>& a) -> pyb::object { return a ? pyb::object(*a) : pyb::none(); };
  return pyb::make_tuple(obj(score), obj(logp), obj(mean), obj(d1), obj(d2));
}

struct NdShapes {
  pyb::ssize_t q, n, d;
};

// Queries y [q, d], data x [n, d] (n >= 1), levels mu, sigma: one value or one per query.
template <class T>
NdShapes check_nd(const carray<T>& y, const carray<T>& x, const carray<T>& mu, const carray<T>& sigma) {
  check_array<T>(y, "y", 2);
  check_array<T>(x, "x", 2);
  const pyb::ssize_t q = y.shape(0), n = x.shape(0), d = x.shape(1);
  BIGSTEP_CHECK(n > 0, "x must not be empty");
  BIGSTEP_CHECK(y.shape(1) == d, "y must have " << d << " columns like x, got " << y.shape(1));
  check_levels<T>(mu, "mu", q);
  check_levels<T>(sigma, "sigma", q);
  return {q, n, d};
}

// Returns (score, log_density, mean), each None unless asked for by `what`.
template <class T>
pyb::tuple optimal_score_nd(const carray<T>& y, const carray<T>& x, const carray<T>& mu, const carray<T>& sigma,
                            int what) {
  const auto [q, n, d] = check_nd<T>(y, x, mu, sigma);
  std::optional<carray<T>> score, logp, mean;
  if (what & kScore) score.emplace(std::vector<pyb::ssize_t>{q, d});
  if (what & kLogDensity) logp.emplace(q);
  if (what & kPosteriorMean) mean.emplace(std::vector<pyb::ssize_t>{q, d});
  {
    pyb::gil_scoped_release release;
    cpu::kernels<T>().optimal_score_nd(y.data(), q, x.data(), n, d, mu.data(), mu.shape(0) == 1 ? 0 : 1, sigma.data(),
                             sigma.shape(0) == 1 ? 0 : 1, data_or_null(score), data_or_null(logp),
                             data_or_null(mean));
  }
  auto obj = [](std::optional<carray<T>>& a) -> pyb::object { return a ? pyb::object(*a) : pyb::none(); };
  return pyb::make_tuple(obj(score), obj(logp), obj(mean));
}

// Backward pass (float64): the shapes of the per-query arrays are checked against y.
void check_rows(const carray<double>& a, const char* name, pyb::ssize_t rows, pyb::ssize_t d) {
  check_array<double>(a, name, d < 0 ? 1 : 2);
  BIGSTEP_CHECK(a.shape(0) == rows && (d < 0 || a.shape(1) == d),
                name << " must have shape (" << rows << (d < 0 ? "" : ", " + std::to_string(d)) << "), got "
                     << a.shape(0) << (a.ndim() > 1 ? " x " + std::to_string(a.shape(1)) : ""));
}

NdShapes check_vjp(const carray<double>& y, const carray<double>& x, const carray<double>& mu,
                   const carray<double>& sigma, const carray<double>& lse) {
  const NdShapes s = check_nd<double>(y, x, mu, sigma);
  check_rows(lse, "lse", s.q, -1);
  return s;
}

carray<double> optimal_score_vjp_y(const carray<double>& y, const carray<double>& x, const carray<double>& mu,
                                   const carray<double>& sigma, const carray<double>& lse,
                                   const carray<double>& mean, const carray<double>& g) {
  const NdShapes s = check_vjp(y, x, mu, sigma, lse);
  check_rows(mean, "mean", s.q, s.d);
  check_rows(g, "g", s.q, s.d);
  carray<double> out(std::vector<pyb::ssize_t>{s.q, s.d});
  double* o = out.mutable_data();
  pyb::gil_scoped_release release;
  cpu::kernels().optimal_score_vjp_y(y.data(), s.q, x.data(), s.n, s.d, mu.data(), mu.shape(0) == 1 ? 0 : 1,
                                     sigma.data(), sigma.shape(0) == 1 ? 0 : 1, lse.data(), mean.data(), g.data(),
                                     o);
  return out;
}

carray<double> optimal_score_vjp_x(const carray<double>& y, const carray<double>& x, const carray<double>& mu,
                                   const carray<double>& sigma, const carray<double>& lse, const carray<double>& a,
                                   const carray<double>& b, const carray<double>& u, const carray<double>& e,
                                   const carray<double>& f) {
  const NdShapes s = check_vjp(y, x, mu, sigma, lse);
  check_rows(a, "a", s.q, s.d);
  check_rows(b, "b", s.q, s.d);
  check_rows(u, "u", s.q, s.d);
  check_rows(e, "e", s.q, -1);
  check_rows(f, "f", s.q, -1);
  carray<double> out(std::vector<pyb::ssize_t>{s.n, s.d});
  double* o = out.mutable_data();
  pyb::gil_scoped_release release;
  cpu::kernels().optimal_score_vjp_x(y.data(), s.q, x.data(), s.n, s.d, mu.data(), mu.shape(0) == 1 ? 0 : 1,
                                     sigma.data(), sigma.shape(0) == 1 ? 0 : 1, lse.data(), a.data(), b.data(),
                                     u.data(), e.data(), f.data(), o);
  return out;
}

template <class T>
carray<T> exp_nonpos(const carray<T>& x, std::optional<carray<T>> out_arg) {
  check_array<T>(x, "x", 1);
  carray<T> out = out_arg ? *out_arg : carray<T>(x.shape(0));
  if (out_arg) {
    check_array<T>(out, "out", 1);
    BIGSTEP_CHECK(out.shape(0) == x.shape(0), "out must have " << x.shape(0) << " entries, got " << out.shape(0));
    BIGSTEP_CHECK(out.writeable(), "out must be writeable");
  }
  T* o = out.mutable_data();
  {
    pyb::gil_scoped_release release;
    cpu::kernels<T>().exp_nonpos_array(x.data(), o, x.shape(0));
  }
  return out;
}

}  // namespace

void register_optimal_score(pyb::module_& m) {
  m.attr("OUT_SCORE") = static_cast<int>(kScore);
  m.attr("OUT_LOG_DENSITY") = static_cast<int>(kLogDensity);
  m.attr("OUT_POSTERIOR_MEAN") = static_cast<int>(kPosteriorMean);
  m.attr("OUT_DERIVATIVES") = static_cast<int>(kDerivatives);
  const char* doc1 = "1-D optimal-score family on sorted data; returns (score, log_density, mean, d1, d2).";
  const char* docn = "d-D optimal-score family; returns (score, log_density, mean).";
  m.def("optimal_score_1d", &optimal_score_1d<float>, pyb::arg("y"), pyb::arg("x_sorted"), pyb::arg("mu"),
        pyb::arg("sigma"), pyb::arg("what"), doc1);
  m.def("optimal_score_1d", &optimal_score_1d<double>, pyb::arg("y"), pyb::arg("x_sorted"), pyb::arg("mu"),
        pyb::arg("sigma"), pyb::arg("what"), doc1);
  m.def("optimal_score_nd", &optimal_score_nd<float>, pyb::arg("y"), pyb::arg("x"), pyb::arg("mu"),
        pyb::arg("sigma"), pyb::arg("what"), docn);
  m.def("optimal_score_nd", &optimal_score_nd<double>, pyb::arg("y"), pyb::arg("x"), pyb::arg("mu"),
        pyb::arg("sigma"), pyb::arg("what"), docn);
  m.def("optimal_score_vjp_y", &optimal_score_vjp_y, pyb::arg("y"), pyb::arg("x"), pyb::arg("mu"),
        pyb::arg("sigma"), pyb::arg("lse"), pyb::arg("mean"), pyb::arg("g"),
        "Backward pass: out_q = sum_i w_qi (g_q . (x_i - mean_q)) (x_i - mean_q) = Cov(W|y_q) g_q, "
        "w_qi = exp(-||y_q - mu x_i||^2/(2 sigma^2) - lse_q).");
  m.def("optimal_score_vjp_x", &optimal_score_vjp_x, pyb::arg("y"), pyb::arg("x"), pyb::arg("mu"),
        pyb::arg("sigma"), pyb::arg("lse"), pyb::arg("a"), pyb::arg("b"), pyb::arg("u"), pyb::arg("e"),
        pyb::arg("f"),
        "Backward pass: out_j = sum_q w_qj (a_q + t u_q + (e_q + f_q t) x_j), t = b_q . x_j.");
  const char* doce = "exp(x) for x <= 0 with the kernels' vectorised polynomial (for x < -700 (double) or -87 "
                     "(float) a tiny positive number); the exp-throughput ceiling of the benchmarks.";
  m.def("exp_nonpos", &exp_nonpos<float>, pyb::arg("x"), pyb::arg("out") = pyb::none(), doce);
  m.def("exp_nonpos", &exp_nonpos<double>, pyb::arg("x"), pyb::arg("out") = pyb::none(), doce);
}

}  // namespace bigstep::py
