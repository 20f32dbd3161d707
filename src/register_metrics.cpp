// pybind11 registration of the metrics family (csrc/cpu/metrics_kernels.cpp).
// Same names and signatures as python/bigstep/_numba/metrics.py.
#include <cmath>

#include "cpu/kernels.hpp"
#include "bigstep/metrics.hpp"
#include "check.hpp"

namespace bigstep::py {
namespace {

// sum_{i,j} exp(-||x_i - y_j||^2 / (2 bandwidth^2)) for x [n, d], y [m, d], as a float;
// symmetric: y must be x itself (only one triangle of tiles is evaluated).
template <class T>
double gaussian_kernel_sum(const carray<T>& x, const carray<T>& y, double bandwidth, bool symmetric) {
  check_array<T>(x, "x", 2);
  check_array<T>(y, "y", 2);
  const pyb::ssize_t n = x.shape(0), m = y.shape(0), d = x.shape(1);
  BIGSTEP_CHECK(y.shape(1) == d, "y must have " << d << " columns like x, got " << y.shape(1));
  BIGSTEP_CHECK(d > 0, "x must have at least one column");
  BIGSTEP_CHECK(bandwidth > 0 && std::isfinite(bandwidth),
                "bandwidth must be a positive finite number, got " << bandwidth);
  BIGSTEP_CHECK(!symmetric || (n == m && x.data() == y.data()), "symmetric sums need y to be x itself");
  pyb::gil_scoped_release release;
  return cpu::kernels<T>().gaussian_kernel_sum(x.data(), n, y.data(), m, d, bandwidth, symmetric);
}

// Squared MMD of a [n, d] and b [m, d] from the three kernel sums (mmd2_from_sums).
template <class T>
double mmd2(const carray<T>& a, const carray<T>& b, double bandwidth, bool unbiased) {
  check_array<T>(a, "a", 2);
  check_array<T>(b, "b", 2);
  const pyb::ssize_t n = a.shape(0), m = b.shape(0), d = a.shape(1);
  BIGSTEP_CHECK(b.shape(1) == d, "b must have " << d << " columns like a, got " << b.shape(1));
  BIGSTEP_CHECK(d > 0, "a must have at least one column");
  BIGSTEP_CHECK(n >= (unbiased ? 2 : 1) && m >= (unbiased ? 2 : 1),
                "a and b need at least " << (unbiased ? 2 : 1) << " points each, got " << n << " and " << m);
  BIGSTEP_CHECK(bandwidth > 0 && std::isfinite(bandwidth),
                "bandwidth must be a positive finite number, got " << bandwidth);
  pyb::gil_scoped_release release;
  const double s_aa = cpu::kernels<T>().gaussian_kernel_sum(a.data(), n, a.data(), n, d, bandwidth, true);
  const double s_bb = cpu::kernels<T>().gaussian_kernel_sum(b.data(), m, b.data(), m, d, bandwidth, true);
  const double s_ab = cpu::kernels<T>().gaussian_kernel_sum(a.data(), n, b.data(), m, d, bandwidth, false);
  return mmd2_from_sums(s_aa, s_bb, s_ab, double(n), double(m), unbiased);
}

// (dist [n, k], idx [n, k]): the k nearest rows of y for each row of x, ascending,
// ties to the lower index.
template <class T>
pyb::tuple nearest_neighbors(const carray<T>& x, const carray<T>& y, int k) {
  check_array<T>(x, "samples", 2);
  check_array<T>(y, "train", 2);
  const pyb::ssize_t n = x.shape(0), m = y.shape(0), d = x.shape(1);
  BIGSTEP_CHECK(y.shape(1) == d, "train must have " << d << " columns like samples, got " << y.shape(1));
  BIGSTEP_CHECK(d > 0, "samples must have at least one column");
  BIGSTEP_CHECK(k >= 1 && k <= m, "k must be between 1 and the number of training points " << m << ", got " << k);
  carray<T> dist(std::vector<pyb::ssize_t>{n, k});
  carray<index_t> idx(std::vector<pyb::ssize_t>{n, k});
  T* dp = dist.mutable_data();
  index_t* ip = idx.mutable_data();
  {
    pyb::gil_scoped_release release;
    cpu::kernels<T>().nearest_neighbors(x.data(), n, y.data(), m, d, k, dp, ip);
  }
  return pyb::make_tuple(dist, idx);
}

}  // namespace

void register_metrics(pyb::module_& m) {
  const char* doc_sum = "sum_{i,j} exp(-||x_i - y_j||^2 / (2 bandwidth^2)) in double; symmetric: y is x.";
  const char* doc_mmd = "Squared MMD with the Gaussian kernel (biased V- or unbiased U-statistic), in double.";
  m.def("mmd2", &mmd2<float>, pyb::arg("a"), pyb::arg("b"), pyb::arg("bandwidth"), pyb::arg("unbiased"), doc_mmd);
  m.def("mmd2", &mmd2<double>, pyb::arg("a"), pyb::arg("b"), pyb::arg("bandwidth"), pyb::arg("unbiased"), doc_mmd);
  const char* doc_nn = "(dist, idx) of the k nearest rows of train for each sample, ascending, ties to lower index.";
  m.def("gaussian_kernel_sum", &gaussian_kernel_sum<float>, pyb::arg("x"), pyb::arg("y"), pyb::arg("bandwidth"),
        pyb::arg("symmetric"), doc_sum);
  m.def("gaussian_kernel_sum", &gaussian_kernel_sum<double>, pyb::arg("x"), pyb::arg("y"), pyb::arg("bandwidth"),
        pyb::arg("symmetric"), doc_sum);
  m.def("nearest_neighbors", &nearest_neighbors<float>, pyb::arg("samples"), pyb::arg("train"), pyb::arg("k"),
        doc_nn);
  m.def("nearest_neighbors", &nearest_neighbors<double>, pyb::arg("samples"), pyb::arg("train"), pyb::arg("k"),
        doc_nn);
}

}  // namespace bigstep::py
