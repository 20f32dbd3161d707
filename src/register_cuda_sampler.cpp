// pybind11 registration of the CUDA sampler family (csrc/cuda/sampler.cu).
// Called by bigstep._cuda_kernels.sampler with device pointers, shapes and the stream.
#include "cuda_common.hpp"

namespace bigstep::py {
namespace {

cuda::SamplerArgs args(std::uintptr_t x, pyb::ssize_t n, pyb::ssize_t d, pyb::ssize_t k0, pyb::ssize_t k1,
                       pyb::ssize_t n_steps, std::uintptr_t h, std::uintptr_t r, std::uintptr_t mu,
                       std::uintptr_t sigma, std::uintptr_t tau, double c, std::uint64_t seed, std::uintptr_t path) {
  BIGSTEP_CHECK(n >= 1 && d >= 1, "x must have shape (n, d) with n, d >= 1, got (" << n << ", " << d << ")");
  BIGSTEP_CHECK(0 <= k0 && k0 <= k1 && k1 <= n_steps,
                "steps must satisfy 0 <= k0 <= k1 <= n_steps = " << n_steps << ", got k0 = " << k0 << ", k1 = " << k1);
  cuda::SamplerArgs a{};
  a.x = dev<double>(x);
  a.n = n;
  a.d = d;
  a.k0 = k0;
  a.k1 = k1;
  a.h = dev<const double>(h);
  a.r = dev<const double>(r);
  a.mu = dev<const double>(mu);
  a.sigma = dev<const double>(sigma);
  a.tau = dev<const double>(tau);
  a.c = c;
  a.seed = seed;
  a.path = dev<double>(path);
  return a;
}

#define BIGSTEP_SAMPLER_ARGS                                                                                       \
  std::uintptr_t x, pyb::ssize_t n, pyb::ssize_t d, pyb::ssize_t k0, pyb::ssize_t k1, pyb::ssize_t n_steps,      \
      std::uintptr_t h, std::uintptr_t r, std::uintptr_t mu, std::uintptr_t sigma, std::uintptr_t tau, double c, \
      std::uint64_t seed, std::uintptr_t path
#define BIGSTEP_SAMPLER_PASS x, n, d, k0, k1, n_steps, h, r, mu, sigma, tau, c, seed, path

void sampler_empirical(BIGSTEP_SAMPLER_ARGS, std::uintptr_t data, pyb::ssize_t n_data, std::uintptr_t stream) {
  const cuda::SamplerArgs a = args(BIGSTEP_SAMPLER_PASS);
  BIGSTEP_CHECK(n_data >= 1, "data must not be empty");
  BIGSTEP_CHECK(d <= cuda::kSamplerDirectMaxDim, "the fused s* kernel takes d <= " << cuda::kSamplerDirectMaxDim
                                                                                   << ", got d = " << d);
  pyb::gil_scoped_release release;
  cuda::sampler_empirical(a, dev<const double>(data), n_data, stream_of(stream));
}

void sampler_gaussian(BIGSTEP_SAMPLER_ARGS, std::uintptr_t mean, std::uintptr_t vecs, std::uintptr_t lam,
                      std::uintptr_t workspace_ptr, std::size_t workspace_bytes, std::uintptr_t stream) {
  const cuda::SamplerArgs a = args(BIGSTEP_SAMPLER_PASS);
  pyb::gil_scoped_release release;
  cuda::sampler_gaussian(a, dev<const double>(mean), dev<const double>(vecs), dev<const double>(lam),
                         workspace(workspace_ptr, workspace_bytes), stream_of(stream));
}

void sampler_relu(BIGSTEP_SAMPLER_ARGS, std::uintptr_t w1, std::uintptr_t b1, std::uintptr_t w2t, std::uintptr_t b2,
                  pyb::ssize_t width, std::uintptr_t workspace_ptr, std::size_t workspace_bytes,
                  std::uintptr_t stream) {
  const cuda::SamplerArgs a = args(BIGSTEP_SAMPLER_PASS);
  BIGSTEP_CHECK(width >= 1, "width must be >= 1, got " << width);
  pyb::gil_scoped_release release;
  cuda::sampler_relu(a, dev<const double>(w1), dev<const double>(b1), dev<const double>(w2t), dev<const double>(b2),
                     width, workspace(workspace_ptr, workspace_bytes), stream_of(stream));
}

void sampler_update(BIGSTEP_SAMPLER_ARGS, pyb::ssize_t k, std::uintptr_t score, std::uintptr_t stream) {
  const cuda::SamplerArgs a = args(BIGSTEP_SAMPLER_PASS);
  BIGSTEP_CHECK(0 <= k && k < n_steps, "k must be a step in [0, " << n_steps << "), got " << k);
  pyb::gil_scoped_release release;
  cuda::sampler_update(a, k, dev<const double>(score), stream_of(stream));
}

}  // namespace

void register_cuda_sampler(pyb::module_& m) {
#define BIGSTEP_SAMPLER_NAMES                                                                                       \
  pyb::arg("x"), pyb::arg("n"), pyb::arg("d"), pyb::arg("k0"), pyb::arg("k1"), pyb::arg("n_steps"), pyb::arg("h"), \
      pyb::arg("r"), pyb::arg("mu"), pyb::arg("sigma"), pyb::arg("tau"), pyb::arg("c"), pyb::arg("seed"),         \
      pyb::arg("path")
  m.def("sampler_workspace", &cuda::sampler_workspace, pyb::arg("n"), pyb::arg("d"));
  m.attr("SAMPLER_DIRECT_MAX_DIM") = cuda::kSamplerDirectMaxDim;
  m.def("sampler_empirical", &sampler_empirical, BIGSTEP_SAMPLER_NAMES, pyb::arg("data"), pyb::arg("n_data"),
        pyb::arg("stream"), "Fused steps k0 .. k1 - 1 with s* of data (d <= 3; device pointers).");
  m.def("sampler_gaussian", &sampler_gaussian, BIGSTEP_SAMPLER_NAMES, pyb::arg("mean"), pyb::arg("vecs"),
        pyb::arg("lam"), pyb::arg("workspace"), pyb::arg("workspace_bytes"), pyb::arg("stream"),
        "Fused steps with the noised Gaussian score (device pointers).");
  m.def("sampler_relu", &sampler_relu, BIGSTEP_SAMPLER_NAMES, pyb::arg("w1"), pyb::arg("b1"), pyb::arg("w2t"),
        pyb::arg("b2"), pyb::arg("width"), pyb::arg("workspace"), pyb::arg("workspace_bytes"), pyb::arg("stream"),
        "Fused steps with a time-conditional ReLU net (device pointers).");
  m.def("sampler_update", &sampler_update, BIGSTEP_SAMPLER_NAMES, pyb::arg("k"), pyb::arg("score"),
        pyb::arg("stream"), "Noise and update of step k with a given score (device pointers).");
#undef BIGSTEP_SAMPLER_NAMES
}

}  // namespace bigstep::py
