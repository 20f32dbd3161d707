// pybind11 registration of the fused batched 1-D SGD trainer (csrc/cpu/sgd_kernels.cpp).
// Same name and signature as python/bigstep/_numba/sgd.py's sgd_train.
#include <cmath>

#include "bigstep/sgd.hpp"
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

}  // namespace

void register_sgd(pyb::module_& m) {
  m.def("sgd_train", &sgd_train, pyb::arg("x"), pyb::arg("mu"), pyb::arg("sigma"), pyb::arg("lr"),
        pyb::arg("seed"), pyb::arg("w1").noconvert(), pyb::arg("w2").noconvert(), pyb::arg("b").noconvert(),
        pyb::arg("batch"), pyb::arg("train_inner"), pyb::arg("clip"), pyb::arg("k0"), pyb::arg("k1"),
        pyb::arg("diverged_step").noconvert(), pyb::arg("loss_sum").noconvert(),
        pyb::arg("loss_count").noconvert(),
        "Fused SGD steps [k0, k1) for R networks (parameters and state updated in place).");
}

}  // namespace bigstep::py
