// pybind11 registration of the random-features family (csrc/cpu/random_features_kernels.cpp).
// Same names and signatures as python/bigstep/_numba/random_features.py.
#include <cmath>
#include <cstdint>

#include "cpu/kernels.hpp"
#include "bigstep/random_features.hpp"
#include "check.hpp"

namespace bigstep::py {
namespace {

void check_rho(int rho) {
  BIGSTEP_CHECK(rho >= rf_relu && rho <= rf_relu_centered, "rho must be an activation code 0..4, got " << rho);
}

// (K [p, p], R [p, d], xi2): sums over the n n_noise noisy samples, see csrc/cpu/kernels.hpp.
pyb::tuple rf_gram(const carray<double>& x, const carray<double>& w, double mu, double sigma, std::int64_t n_noise,
                   std::uint64_t seed, std::uint64_t stream, int rho) {
  check_array<double>(x, "x", 2);
  check_array<double>(w, "w", 2);
  const pyb::ssize_t n = x.shape(0), d = x.shape(1), p = w.shape(0);
  BIGSTEP_CHECK(n > 0 && d > 0, "x must be non-empty, got shape (" << n << ", " << d << ")");
  BIGSTEP_CHECK(w.shape(1) == d, "w must have " << d << " columns like x, got " << w.shape(1));
  BIGSTEP_CHECK(p > 0, "w must have at least one row");
  BIGSTEP_CHECK(n_noise >= 1, "n_noise must be >= 1, got " << n_noise);
  // the kernel indexes the n n_noise noisy samples' d coordinates with int64 (the Philox
  // offset g d + k): n n_noise d must stay well inside it
  BIGSTEP_CHECK(static_cast<double>(x.shape(0)) * static_cast<double>(n_noise) * static_cast<double>(x.shape(1)) < 0x1p62,
                "n_noise = " << n_noise << " is too large: n n_noise d = " << x.shape(0) << " * " << n_noise << " * " << x.shape(1)
                       << " must be below 2^62");
  BIGSTEP_CHECK(std::isfinite(mu) && sigma >= 0 && std::isfinite(sigma),
                "mu must be finite and sigma finite and >= 0, got " << mu << ", " << sigma);
  check_rho(rho);
  carray<double> K(std::vector<pyb::ssize_t>{p, p});
  carray<double> R(std::vector<pyb::ssize_t>{p, d});
  double xi2 = 0.0;
  double* kp = K.mutable_data();
  double* rp = R.mutable_data();
  {
    pyb::gil_scoped_release release;
    cpu::kernels().rf_gram(x.data(), n, d, w.data(), p, mu, sigma, n_noise, seed, stream, rho, kp, rp, &xi2);
  }
  return pyb::make_tuple(K, R, xi2);
}

// rho(y w^T / sqrt(d)) [q, p].
carray<double> rf_features(const carray<double>& y, const carray<double>& w, int rho) {
  check_array<double>(y, "y", 2);
  check_array<double>(w, "w", 2);
  const pyb::ssize_t q = y.shape(0), d = y.shape(1), p = w.shape(0);
  BIGSTEP_CHECK(w.shape(1) == d, "w must have " << d << " columns like y, got " << w.shape(1));
  BIGSTEP_CHECK(d > 0 && p > 0, "y and w need at least one column and w one row");
  check_rho(rho);
  carray<double> out(std::vector<pyb::ssize_t>{q, p});
  double* op = out.mutable_data();
  {
    pyb::gil_scoped_release release;
    if (q > 0) cpu::kernels().rf_features(y.data(), q, d, w.data(), p, rho, op);
  }
  return out;
}

}  // namespace

void register_random_features(pyb::module_& m) {
  m.def("rf_gram", &rf_gram, pyb::arg("x"), pyb::arg("w"), pyb::arg("mu"), pyb::arg("sigma"), pyb::arg("n_noise"),
        pyb::arg("seed"), pyb::arg("stream"), pyb::arg("rho"),
        "(K, R, xi2): sum over the n n_noise samples y = mu x + sigma xi of f f^T, f xi^T and ||xi||^2, "
        "f = rho(w y / sqrt(d)); xi from the Philox stream (seed, stream).");
  m.def("rf_features", &rf_features, pyb::arg("y"), pyb::arg("w"), pyb::arg("rho"),
        "rho(y w^T / sqrt(d)), shape (q, p).");
}

}  // namespace bigstep::py
