// pybind11 registration of the CUDA batched 1-D SGD trainer (csrc/cuda/sgd.cu).
// Called by bigstep._cuda_kernels.sgd with device pointers, shapes and the stream.
#include <cmath>

#include "cuda_common.hpp"

namespace bigstep::py {
namespace {

void sgd_train(std::uintptr_t x, pyb::ssize_t n, double mu, double sigma, pyb::ssize_t networks, pyb::ssize_t m,
               pyb::ssize_t batch, std::uintptr_t lr, std::uintptr_t seed, std::uintptr_t w1, std::uintptr_t w2,
               std::uintptr_t b, bool train_inner, double clip, pyb::ssize_t k0, pyb::ssize_t k1,
               std::uintptr_t diverged_step, std::uintptr_t loss_sum, std::uintptr_t loss_count,
               std::uintptr_t workspace_ptr, std::size_t workspace_bytes, std::uintptr_t stream) {
  BIGSTEP_CHECK(n >= 1, "x must have at least one point");
  BIGSTEP_CHECK(mu > 0 && std::isfinite(mu), "mu must be positive and finite, got " << mu);
  BIGSTEP_CHECK(sigma > 0 && std::isfinite(sigma), "sigma must be positive and finite, got " << sigma);
  BIGSTEP_CHECK(networks >= 0 && m >= 1, "need networks >= 0 and width m >= 1, got " << networks << ", " << m);
  BIGSTEP_CHECK(batch >= 1, "batch must be >= 1, got " << batch);
  BIGSTEP_CHECK(0 <= k0 && k0 <= k1, "need 0 <= k0 <= k1, got " << k0 << ", " << k1);
  BIGSTEP_CHECK(std::isfinite(clip), "clip must be finite (<= 0: no clipping), got " << clip);
  BIGSTEP_CHECK(networks <= 2147483647, "at most 2^31 - 1 networks per call, got " << networks);
  cuda::SgdArgs a{};
  a.x = dev<const double>(x);
  a.n = n;
  a.mu = mu;
  a.sigma = sigma;
  a.networks = networks;
  a.m = m;
  a.batch = batch;
  a.lr = dev<const double>(lr);
  a.seed = dev<const std::uint64_t>(seed);
  a.w1 = dev<double>(w1);
  a.w2 = dev<double>(w2);
  a.b = dev<double>(b);
  a.train_inner = train_inner;
  a.clip = clip;
  a.k0 = k0;
  a.k1 = k1;
  a.diverged_step = dev<std::int64_t>(diverged_step);
  a.loss_sum = dev<double>(loss_sum);
  a.loss_count = dev<std::int64_t>(loss_count);
  pyb::gil_scoped_release release;
  cuda::sgd_train(a, workspace(workspace_ptr, workspace_bytes), stream_of(stream));
}

}  // namespace

void register_cuda_sgd(pyb::module_& m) {
  m.def("sgd_workspace", &cuda::sgd_workspace, pyb::arg("networks"), pyb::arg("m"), pyb::arg("batch"));
  m.def("sgd_train", &sgd_train, pyb::arg("x"), pyb::arg("n"), pyb::arg("mu"), pyb::arg("sigma"),
        pyb::arg("networks"), pyb::arg("m"), pyb::arg("batch"), pyb::arg("lr"), pyb::arg("seed"), pyb::arg("w1"),
        pyb::arg("w2"), pyb::arg("b"), pyb::arg("train_inner"), pyb::arg("clip"), pyb::arg("k0"), pyb::arg("k1"),
        pyb::arg("diverged_step"), pyb::arg("loss_sum"), pyb::arg("loss_count"), pyb::arg("workspace"),
        pyb::arg("workspace_bytes"), pyb::arg("stream"),
        "Fused SGD steps [k0, k1) of many 1-D networks, one block each (device pointers, updated in place).");
}

}  // namespace bigstep::py
