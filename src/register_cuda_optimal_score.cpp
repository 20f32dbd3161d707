// pybind11 registration of the CUDA optimal-score family (csrc/cuda/optimal_score_*.cu).
// Called by bigstep._cuda_kernels.optimal_score with device pointers, shapes and the stream.
#include "cuda_common.hpp"

namespace bigstep::py {
namespace {

void check_levels(pyb::ssize_t stride, const char* name) {
  BIGSTEP_CHECK(stride == 0 || stride == 1, name << "_stride must be 0 (one level) or 1 (one per query), got "
                                                 << stride);
}

void optimal_score_1d(const std::string& dtype, std::uintptr_t y, pyb::ssize_t q, std::uintptr_t order,
                      std::uintptr_t x_sorted, pyb::ssize_t n, std::uintptr_t mu, pyb::ssize_t mu_stride,
                      std::uintptr_t sigma, pyb::ssize_t sigma_stride, std::uintptr_t score,
                      std::uintptr_t log_density, std::uintptr_t mean, std::uintptr_t d1, std::uintptr_t d2,
                      std::uintptr_t stream) {
  BIGSTEP_CHECK(q >= 0 && n >= 1, "need q >= 0 queries and n >= 1 data points, got q = " << q << ", n = " << n);
  check_levels(mu_stride, "mu");
  check_levels(sigma_stride, "sigma");
  by_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    pyb::gil_scoped_release release;
    cuda::optimal_score_1d<T>(dev<const T>(y), q, dev<const std::int64_t>(order), dev<const T>(x_sorted), n,
                              dev<const T>(mu), mu_stride, dev<const T>(sigma), sigma_stride, dev<T>(score),
                              dev<T>(log_density), dev<T>(mean), dev<T>(d1), dev<T>(d2), stream_of(stream));
  });
}

pyb::tuple optimal_score_nd_plan(pyb::ssize_t q, pyb::ssize_t n, pyb::ssize_t d, int path, pyb::ssize_t q_chunk,
                                 pyb::ssize_t n_chunk) {
  BIGSTEP_CHECK(q >= 0 && n >= 1 && d >= 1, "need q >= 0, n >= 1, d >= 1, got " << q << ", " << n << ", " << d);
  BIGSTEP_CHECK(path >= 0 && path <= 2, "path must be 0 (auto), 1 (flash) or 2 (blocked), got " << path);
  BIGSTEP_CHECK(path != 1 || d <= cuda::kFlashMaxDim,
                "the flash path takes d <= " << cuda::kFlashMaxDim << ", got d = " << d);
  const cuda::NdPlan p = cuda::optimal_score_nd_plan(q, n, d, path, q_chunk, n_chunk);
  return pyb::make_tuple(p.path, p.q_chunk, p.n_chunk, p.workspace);
}

void optimal_score_nd(const std::string& dtype, std::uintptr_t y, pyb::ssize_t q, std::uintptr_t x, pyb::ssize_t n,
                      pyb::ssize_t d, std::uintptr_t mu, pyb::ssize_t mu_stride, std::uintptr_t sigma,
                      pyb::ssize_t sigma_stride, std::uintptr_t score, std::uintptr_t log_density,
                      std::uintptr_t mean, int path, pyb::ssize_t q_chunk, pyb::ssize_t n_chunk,
                      std::uintptr_t workspace_ptr, std::size_t workspace_bytes, std::uintptr_t stream) {
  BIGSTEP_CHECK(q >= 0 && n >= 1 && d >= 1, "need q >= 0, n >= 1, d >= 1, got " << q << ", " << n << ", " << d);
  BIGSTEP_CHECK(path == 1 || path == 2, "path must come from optimal_score_nd_plan (1 or 2), got " << path);
  BIGSTEP_CHECK(path == 1 || (q_chunk >= 1 && n_chunk >= 1), "the blocked path needs its chunk sizes");
  check_levels(mu_stride, "mu");
  check_levels(sigma_stride, "sigma");
  const cuda::NdPlan plan{path, q_chunk, n_chunk, workspace_bytes};
  by_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    pyb::gil_scoped_release release;
    cuda::optimal_score_nd<T>(dev<const T>(y), q, dev<const T>(x), n, d, dev<const T>(mu), mu_stride,
                              dev<const T>(sigma), sigma_stride, dev<T>(score), dev<T>(log_density), dev<T>(mean),
                              plan, workspace(workspace_ptr, workspace_bytes), stream_of(stream));
  });
}

void check_vjp(pyb::ssize_t q, pyb::ssize_t n, pyb::ssize_t d, pyb::ssize_t mu_stride, pyb::ssize_t sigma_stride) {
  BIGSTEP_CHECK(q >= 0 && n >= 1 && d >= 1, "need q >= 0, n >= 1, d >= 1, got " << q << ", " << n << ", " << d);
  check_levels(mu_stride, "mu");
  check_levels(sigma_stride, "sigma");
}

void optimal_score_vjp_y(std::uintptr_t y, pyb::ssize_t q, std::uintptr_t x, pyb::ssize_t n, pyb::ssize_t d,
                         std::uintptr_t mu, pyb::ssize_t mu_stride, std::uintptr_t sigma, pyb::ssize_t sigma_stride,
                         std::uintptr_t lse, std::uintptr_t mean, std::uintptr_t g, std::uintptr_t out,
                         std::uintptr_t stream) {
  check_vjp(q, n, d, mu_stride, sigma_stride);
  pyb::gil_scoped_release release;
  cuda::optimal_score_vjp_y(dev<const double>(y), q, dev<const double>(x), n, d, dev<const double>(mu), mu_stride,
                            dev<const double>(sigma), sigma_stride, dev<const double>(lse), dev<const double>(mean),
                            dev<const double>(g), dev<double>(out), stream_of(stream));
}

void optimal_score_vjp_x(std::uintptr_t y, pyb::ssize_t q, std::uintptr_t x, pyb::ssize_t n, pyb::ssize_t d,
                         std::uintptr_t mu, pyb::ssize_t mu_stride, std::uintptr_t sigma, pyb::ssize_t sigma_stride,
                         std::uintptr_t lse, std::uintptr_t a, std::uintptr_t b, std::uintptr_t u, std::uintptr_t e,
                         std::uintptr_t f, std::uintptr_t out, std::uintptr_t stream) {
  check_vjp(q, n, d, mu_stride, sigma_stride);
  pyb::gil_scoped_release release;
  cuda::optimal_score_vjp_x(dev<const double>(y), q, dev<const double>(x), n, d, dev<const double>(mu), mu_stride,
                            dev<const double>(sigma), sigma_stride, dev<const double>(lse), dev<const double>(a),
                            dev<const double>(b), dev<const double>(u), dev<const double>(e), dev<const double>(f),
                            dev<double>(out), stream_of(stream));
}

void exp_ceiling(const std::string& dtype, pyb::ssize_t threads, pyb::ssize_t iters, std::uintptr_t out,
                 std::uintptr_t stream) {
  BIGSTEP_CHECK(threads >= 0 && iters >= 0, "threads and iters must be >= 0");
  by_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    pyb::gil_scoped_release release;
    cuda::exp_ceiling<T>(threads, iters, dev<T>(out), stream_of(stream));
  });
}

}  // namespace

void register_cuda_optimal_score(pyb::module_& m) {
  m.def("optimal_score_1d", &optimal_score_1d, pyb::arg("dtype"), pyb::arg("y"), pyb::arg("q"), pyb::arg("order"),
        pyb::arg("x_sorted"), pyb::arg("n"), pyb::arg("mu"), pyb::arg("mu_stride"), pyb::arg("sigma"),
        pyb::arg("sigma_stride"), pyb::arg("score"), pyb::arg("log_density"), pyb::arg("mean"), pyb::arg("d1"),
        pyb::arg("d2"), pyb::arg("stream"), "1-D s* family on sorted data (device pointers; 0 = output not wanted).");
  m.def("optimal_score_nd_plan", &optimal_score_nd_plan, pyb::arg("q"), pyb::arg("n"), pyb::arg("d"),
        pyb::arg("path") = 0, pyb::arg("q_chunk") = 0, pyb::arg("n_chunk") = 0,
        "(path, q_chunk, n_chunk, workspace bytes) of a d-D call: path 1 flash (d <= 256), 2 blocked.");
  m.def("optimal_score_nd", &optimal_score_nd, pyb::arg("dtype"), pyb::arg("y"), pyb::arg("q"), pyb::arg("x"),
        pyb::arg("n"), pyb::arg("d"), pyb::arg("mu"), pyb::arg("mu_stride"), pyb::arg("sigma"),
        pyb::arg("sigma_stride"), pyb::arg("score"), pyb::arg("log_density"), pyb::arg("mean"), pyb::arg("path"),
        pyb::arg("q_chunk"), pyb::arg("n_chunk"), pyb::arg("workspace"), pyb::arg("workspace_bytes"),
        pyb::arg("stream"), "d-D s* family with a plan from optimal_score_nd_plan (device pointers).");
  m.def("optimal_score_vjp_y", &optimal_score_vjp_y, pyb::arg("y"), pyb::arg("q"), pyb::arg("x"), pyb::arg("n"),
        pyb::arg("d"), pyb::arg("mu"), pyb::arg("mu_stride"), pyb::arg("sigma"), pyb::arg("sigma_stride"),
        pyb::arg("lse"), pyb::arg("mean"), pyb::arg("g"), pyb::arg("out"), pyb::arg("stream"),
        "Backward pass, float64: out_q = sum_i w_qi (g_q . (x_i - m_q)) (x_i - m_q) (device pointers).");
  m.def("optimal_score_vjp_x", &optimal_score_vjp_x, pyb::arg("y"), pyb::arg("q"), pyb::arg("x"), pyb::arg("n"),
        pyb::arg("d"), pyb::arg("mu"), pyb::arg("mu_stride"), pyb::arg("sigma"), pyb::arg("sigma_stride"),
        pyb::arg("lse"), pyb::arg("a"), pyb::arg("b"), pyb::arg("u"), pyb::arg("e"), pyb::arg("f"), pyb::arg("out"),
        pyb::arg("stream"), "Backward pass, float64: out_j = sum_q w_qj (a_q + t u_q + (e_q + f_q t) x_j).");
  m.def("exp_ceiling", &exp_ceiling, pyb::arg("dtype"), pyb::arg("threads"), pyb::arg("iters"), pyb::arg("out"),
        pyb::arg("stream"), "exp-throughput ceiling: threads x iters exp_nonpos on registers, sums into out.");
}

}  // namespace bigstep::py
