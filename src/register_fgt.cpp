// pybind11 registration of the fast Gauss transform family (csrc/cpu/fgt_kernels.cpp).
#include <cmath>
#include <optional>

#include <pybind11/stl.h>

#include "bigstep/optimal_score.hpp"
#include "check.hpp"
#include "cpu/kernels.hpp"

namespace bigstep::py {
namespace {

constexpr int kStats = 8;

template <class T>
T* data_or_null(std::optional<carray<T>>& a) {
  return a ? a->mutable_data() : nullptr;
}

template <class T>
pyb::object obj(std::optional<carray<T>>& a) {
  return a ? pyb::object(*a) : pyb::none();
}

void check_level(double v, const char* name) {
  BIGSTEP_CHECK(std::isfinite(v) && v > 0, name << " must be a positive finite number, got " << v);
}

void check_mode(int mode) { BIGSTEP_CHECK(mode == 0 || mode == 1, "mode must be 0 (auto) or 1 (fgt), got " << mode); }

// Returns (score, log_density, mean, d1, d2, stats), the outputs None unless asked for by `what`.
template <class T>
pyb::tuple fgt_1d(const carray<T>& y, const carray<T>& x_sorted, double mu, double sigma, int what, int mode) {
  check_array<T>(y, "y", 1);
  check_array<T>(x_sorted, "x", 1);
  const pyb::ssize_t q = y.shape(0), n = x_sorted.shape(0);
  BIGSTEP_CHECK(n > 0, "x must not be empty");
  check_level(mu, "mu");
  check_level(sigma, "sigma");
  check_mode(mode);
  std::optional<carray<T>> score, logp, mean, d1, d2;
  if (what & (kScore | kDerivatives)) score.emplace(q);
  if (what & kLogDensity) logp.emplace(q);
  if (what & kPosteriorMean) mean.emplace(q);
  if (what & kDerivatives) {
    d1.emplace(q);
    d2.emplace(q);
  }
  carray<double> stats(kStats);
  double* st = stats.mutable_data();
  {
    pyb::gil_scoped_release release;
    cpu::kernels<T>().fgt_1d(y.data(), q, x_sorted.data(), n, mu, sigma, mode, data_or_null(score),
                             data_or_null(logp), data_or_null(mean), data_or_null(d1), data_or_null(d2), st);
  }
  return pyb::make_tuple(obj(score), obj(logp), obj(mean), obj(d1), obj(d2), stats);
}

// Returns (score, log_density, mean, stats).
template <class T>
pyb::tuple fgt_nd(const carray<T>& y, const carray<T>& x, double mu, double sigma, int what, int mode) {
  check_array<T>(y, "y", 2);
  check_array<T>(x, "x", 2);
  const pyb::ssize_t q = y.shape(0), n = x.shape(0), d = x.shape(1);
  BIGSTEP_CHECK(n > 0, "x must not be empty");
  BIGSTEP_CHECK(y.shape(1) == d, "y must have " << d << " columns like x, got " << y.shape(1));
  check_level(mu, "mu");
  check_level(sigma, "sigma");
  check_mode(mode);
  std::optional<carray<T>> score, logp, mean;
  if (what & kScore) score.emplace(std::vector<pyb::ssize_t>{q, d});
  if (what & kLogDensity) logp.emplace(q);
  if (what & kPosteriorMean) mean.emplace(std::vector<pyb::ssize_t>{q, d});
  carray<double> stats(kStats);
  double* st = stats.mutable_data();
  {
    pyb::gil_scoped_release release;
    cpu::kernels<T>().fgt_nd(y.data(), q, x.data(), n, d, mu, sigma, mode, data_or_null(score), data_or_null(logp),
                             data_or_null(mean), st);
  }
  return pyb::make_tuple(obj(score), obj(logp), obj(mean), stats);
}

}  // namespace

void register_fgt(pyb::module_& m) {
  const char* doc1 = "1-D optimal-score family by the fast Gauss transform (one noise level); returns (score, "
                     "log_density, mean, d1, d2, stats).  mode 0: FGT or pairwise by cost, 1: FGT.";
  const char* docn = "d-D optimal-score family by the fast Gauss transform (d <= 3, one noise level); returns "
                     "(score, log_density, mean, stats).  mode 0: FGT or pairwise by cost, 1: FGT.";
  m.def("fgt_1d", &fgt_1d<float>, pyb::arg("y"), pyb::arg("x_sorted"), pyb::arg("mu"), pyb::arg("sigma"),
        pyb::arg("what"), pyb::arg("mode"), doc1);
  m.def("fgt_1d", &fgt_1d<double>, pyb::arg("y"), pyb::arg("x_sorted"), pyb::arg("mu"), pyb::arg("sigma"),
        pyb::arg("what"), pyb::arg("mode"), doc1);
  m.def("fgt_nd", &fgt_nd<float>, pyb::arg("y"), pyb::arg("x"), pyb::arg("mu"), pyb::arg("sigma"),
        pyb::arg("what"), pyb::arg("mode"), docn);
  m.def("fgt_nd", &fgt_nd<double>, pyb::arg("y"), pyb::arg("x"), pyb::arg("mu"), pyb::arg("sigma"),
        pyb::arg("what"), pyb::arg("mode"), docn);
}

}  // namespace bigstep::py
