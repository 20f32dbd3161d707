// pybind11 registration of the local denoiser family (csrc/cpu/local_kernels.cpp).
#include <optional>
#include <vector>

#include <pybind11/stl.h>

#include "bigstep/local.hpp"
#include "check.hpp"
#include "cpu/kernels.hpp"

namespace bigstep::py {
namespace {

template <class T>
T* data_or_null(std::optional<carray<T>>& a) {
  return a ? a->mutable_data() : nullptr;
}

// Returns (score, mean), each None unless asked for by `what` (1 score, 4 mean).
template <class T>
pyb::tuple local_posterior_mean(const carray<T>& y, const carray<T>& x, const carray<T>& mu, const carray<T>& sigma,
                                index_t rh, index_t rw, int padding, bool equivariant, int what) {
  check_array<T>(y, "y", 4);
  check_array<T>(x, "x", 4);
  const pyb::ssize_t q = y.shape(0), n = x.shape(0), H = x.shape(1), W = x.shape(2), C = x.shape(3);
  BIGSTEP_CHECK(n > 0, "x must contain at least one image");
  BIGSTEP_CHECK(H > 0 && W > 0 && C > 0, "images must have at least one pixel and one channel");
  BIGSTEP_CHECK(y.shape(1) == H && y.shape(2) == W && y.shape(3) == C,
                "y must have images of shape (" << H << ", " << W << ", " << C << ") like x, got ("
                                                << y.shape(1) << ", " << y.shape(2) << ", " << y.shape(3) << ")");
  BIGSTEP_CHECK(padding == kPadZeros || padding == kPadReflect, "padding must be 0 (zeros) or 1 (reflect), got "
                                                                     << padding);
  BIGSTEP_CHECK(rh >= 0 && rw >= 0, "rh and rw must be >= 0, got " << rh << ", " << rw);
  BIGSTEP_CHECK(padding != kPadReflect || (rh <= H - 1 && rw <= W - 1),
                "reflect padding needs rh <= H - 1 and rw <= W - 1, got rh = " << rh << ", rw = " << rw
                                                                               << " for images " << H << " x " << W);
  check_levels<T>(mu, "mu", q);
  check_levels<T>(sigma, "sigma", q);
  std::optional<carray<T>> score, mean;
  const std::vector<pyb::ssize_t> shape{q, H, W, C};
  if (what & kLocalScore) score.emplace(shape);
  if (what & kLocalMean) mean.emplace(shape);
  {
    pyb::gil_scoped_release release;
    cpu::kernels<T>().local_posterior_mean(y.data(), q, x.data(), n, H, W, C, rh, rw, padding, equivariant, mu.data(),
                                        mu.shape(0) == 1 ? 0 : 1, sigma.data(), sigma.shape(0) == 1 ? 0 : 1,
                                        data_or_null(mean), data_or_null(score));
  }
  auto obj = [](std::optional<carray<T>>& a) -> pyb::object { return a ? pyb::object(*a) : pyb::none(); };
  return pyb::make_tuple(obj(score), obj(mean));
}

}  // namespace

void register_local(pyb::module_& m) {
  m.attr("LOCAL_PAD_ZEROS") = static_cast<int>(kPadZeros);
  m.attr("LOCAL_PAD_REFLECT") = static_cast<int>(kPadReflect);
  const char* doc =
      "Local (equivariant=False) or equivariant local posterior mean and score of queries y [q, H, W, C] given "
      "training images x [n, H, W, C], window half-widths rh, rw, padding 0 (zeros) or 1 (reflect); returns "
      "(score, mean), each None unless asked for by what (1 score, 4 mean).";
  m.def("local_posterior_mean", &local_posterior_mean<float>, pyb::arg("y"), pyb::arg("x"), pyb::arg("mu"),
        pyb::arg("sigma"), pyb::arg("rh"), pyb::arg("rw"), pyb::arg("padding"), pyb::arg("equivariant"),
        pyb::arg("what"), doc);
  m.def("local_posterior_mean", &local_posterior_mean<double>, pyb::arg("y"), pyb::arg("x"), pyb::arg("mu"),
        pyb::arg("sigma"), pyb::arg("rh"), pyb::arg("rw"), pyb::arg("padding"), pyb::arg("equivariant"),
        pyb::arg("what"), doc);
}

}  // namespace bigstep::py
