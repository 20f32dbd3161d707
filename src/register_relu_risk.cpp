// pybind11 registration of the exact ReLU-network DSM risk kernels (csrc/cpu/relu_risk.cpp).
// Same names and signatures as python/bigstep/_numba/relu_risk.py.
#include <cmath>

#include "cpu/kernels.hpp"
#include "check.hpp"

namespace bigstep::py {
namespace {

// (S [3, K+1], T [2, K+1], P [2, K]) for sorted kinks t [K] and centres c [n].
pyb::tuple segment_moments(const carray<double>& t, const carray<double>& c, double sigma) {
  check_array<double>(t, "t", 1);
  check_array<double>(c, "c", 1);
  BIGSTEP_CHECK(sigma > 0 && std::isfinite(sigma), "sigma must be positive and finite, got " << sigma);
  const pyb::ssize_t K = t.shape(0), n = c.shape(0);
  carray<double> S({pyb::ssize_t(3), K + 1}), T({pyb::ssize_t(2), K + 1}), P({pyb::ssize_t(2), K});
  {
    pyb::gil_scoped_release release;
    cpu::relu_segment_moments(t.data(), K, c.data(), n, sigma, S.mutable_data(), T.mutable_data(),
                              P.mutable_data());
  }
  return pyb::make_tuple(S, T, P);
}

void hessian_gauss_newton(const carray<signed char>& cls, const carray<index_t>& jpos, const carray<double>& w1,
                          const carray<double>& w2, const carray<double>& b, const carray<double>& L,
                          const carray<double>& U, const carray<double>& total, double scale, bool wrt_all,
                          carray<double>& H) {
  check_array<signed char>(cls, "cls", 1);
  check_array<index_t>(jpos, "jpos", 1);
  const pyb::ssize_t m = cls.shape(0);
  for (const auto* a : {&w1, &w2, &b}) {
    check_array<double>(*a, "w", 1);
    BIGSTEP_CHECK(a->shape(0) == m, "w1, w2, b must have " << m << " entries, got " << a->shape(0));
  }
  BIGSTEP_CHECK(jpos.shape(0) == m, "jpos must have " << m << " entries, got " << jpos.shape(0));
  check_array<double>(L, "L", 2);
  check_array<double>(U, "U", 2);
  check_array<double>(total, "total", 1);
  const pyb::ssize_t K = L.shape(1);
  BIGSTEP_CHECK(L.shape(0) == 3 && U.shape(0) == 3 && U.shape(1) == K && total.shape(0) == 3,
                "L and U must have shape (3, K) and total (3,)");
  const pyb::ssize_t P = (wrt_all ? 3 : 2) * m;
  check_array<double>(H, "H", 2);
  BIGSTEP_CHECK(H.shape(0) == P && H.shape(1) == P, "H must have shape (" << P << ", " << P << ")");
  const signed char* cl = cls.data();
  const index_t* jp = jpos.data();
  for (pyb::ssize_t l = 0; l < m; ++l) {
    BIGSTEP_CHECK(cl[l] >= -1 && cl[l] <= 2, "cls entries must be -1, 0, 1 or 2");
    BIGSTEP_CHECK((cl[l] != 1 && cl[l] != -1) || (jp[l] >= 0 && jp[l] < K), "jpos entries must index the kinks");
  }
  double* h = H.mutable_data();
  pyb::gil_scoped_release release;
  cpu::relu_hessian_gauss_newton(cl, jp, w1.data(), w2.data(), b.data(), m, L.data(), U.data(), total.data(), K,
                                 scale, wrt_all, h);
}

}  // namespace

void register_relu_risk(pyb::module_& m) {
  m.def("segment_moments", &segment_moments, pyb::arg("t"), pyb::arg("c"), pyb::arg("sigma"),
        "Per-segment truncated Gaussian moment sums (S, T, P) for sorted kinks t and centres c.");
  m.def("hessian_gauss_newton", &hessian_gauss_newton, pyb::arg("cls"), pyb::arg("jpos"), pyb::arg("w1"),
        pyb::arg("w2"), pyb::arg("b"), pyb::arg("L"), pyb::arg("U"), pyb::arg("total"), pyb::arg("scale"),
        pyb::arg("wrt_all"), pyb::arg("H").noconvert(), "Gauss-Newton part of the exact Hessian, written into H.");
}

}  // namespace bigstep::py
