// pybind11 registration of the CUDA metrics family (csrc/cuda/metrics.cu).
// Called by bigstep._cuda_kernels.metrics with device pointers, shapes and the stream.
#include <cmath>

#include "cuda_common.hpp"

namespace bigstep::py {
namespace {

void gaussian_kernel_sum(const std::string& dtype, std::uintptr_t x, pyb::ssize_t n, std::uintptr_t y,
                         pyb::ssize_t m, pyb::ssize_t d, double bandwidth, bool symmetric, std::uintptr_t out,
                         std::uintptr_t workspace_ptr, std::size_t workspace_bytes, std::uintptr_t stream) {
  BIGSTEP_CHECK(n >= 0 && m >= 0 && d >= 1, "need n, m >= 0 and d >= 1, got " << n << ", " << m << ", " << d);
  BIGSTEP_CHECK(bandwidth > 0 && std::isfinite(bandwidth),
                "bandwidth must be a positive finite number, got " << bandwidth);
  BIGSTEP_CHECK(!symmetric || (n == m && x == y), "symmetric sums need y to be x itself");
  by_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    pyb::gil_scoped_release release;
    cuda::gaussian_kernel_sum<T>(dev<const T>(x), n, dev<const T>(y), m, d, bandwidth, symmetric, dev<double>(out),
                                 workspace(workspace_ptr, workspace_bytes), stream_of(stream));
  });
}

void nearest_neighbors(const std::string& dtype, std::uintptr_t x, pyb::ssize_t n, std::uintptr_t y,
                       pyb::ssize_t m, pyb::ssize_t d, int k, std::uintptr_t dist, std::uintptr_t idx,
                       std::uintptr_t workspace_ptr, std::size_t workspace_bytes, std::uintptr_t stream) {
  BIGSTEP_CHECK(n >= 0 && m >= 1 && d >= 1, "need n >= 0, m >= 1, d >= 1, got " << n << ", " << m << ", " << d);
  BIGSTEP_CHECK(k >= 1 && k <= m, "k must be between 1 and the number of training points " << m << ", got " << k);
  by_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    pyb::gil_scoped_release release;
    cuda::nearest_neighbors<T>(dev<const T>(x), n, dev<const T>(y), m, d, k, dev<T>(dist), dev<std::int64_t>(idx),
                               workspace(workspace_ptr, workspace_bytes), stream_of(stream));
  });
}

}  // namespace

void register_cuda_metrics(pyb::module_& m) {
  m.def("kernel_sum_workspace", &cuda::kernel_sum_workspace, pyb::arg("n"), pyb::arg("m"));
  m.def("gaussian_kernel_sum", &gaussian_kernel_sum, pyb::arg("dtype"), pyb::arg("x"), pyb::arg("n"), pyb::arg("y"),
        pyb::arg("m"), pyb::arg("d"), pyb::arg("bandwidth"), pyb::arg("symmetric"), pyb::arg("out"),
        pyb::arg("workspace"), pyb::arg("workspace_bytes"), pyb::arg("stream"),
        "Gaussian-kernel sum in double into out[0] (device pointers).");
  m.def("nearest_neighbors_workspace", &cuda::nearest_neighbors_workspace, pyb::arg("n"), pyb::arg("k"));
  m.def("nearest_neighbors", &nearest_neighbors, pyb::arg("dtype"), pyb::arg("x"), pyb::arg("n"), pyb::arg("y"),
        pyb::arg("m"), pyb::arg("d"), pyb::arg("k"), pyb::arg("dist"), pyb::arg("idx"), pyb::arg("workspace"),
        pyb::arg("workspace_bytes"), pyb::arg("stream"), "k nearest rows of y per row of x (device pointers).");
}

}  // namespace bigstep::py
