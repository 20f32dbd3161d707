// pybind11 registration of the reverse-diffusion sampler family (csrc/cpu/sampler_kernels.cpp).
//
// Each fused loop takes (x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path, *score
// arrays), the signature of the Numba loops in bigstep/_numba/sampler.py, runs steps
// k0 .. k1 - 1 with the GIL released and updates x (and path) in place.
#include "cpu/kernels.hpp"
#include "bigstep/sampler.hpp"
#include "check.hpp"

namespace bigstep::py {
namespace {

double* writable(const pyb::array& a, const char* name, int ndim) {
  check_array<double>(a, name, ndim);
  BIGSTEP_CHECK(a.writeable(), name << " must be writeable");
  return static_cast<double*>(const_cast<void*>(a.data()));
}

const double* table(const pyb::array& a, const char* name, pyb::ssize_t n_steps) {
  check_array<double>(a, name, 1);
  BIGSTEP_CHECK(a.shape(0) == n_steps, name << " must have " << n_steps << " entries (one per step), got "
                                            << a.shape(0));
  return static_cast<const double*>(a.data());
}

const double* values(const pyb::array& a, const char* name, int ndim) {
  check_array<double>(a, name, ndim);
  return static_cast<const double*>(a.data());
}

// The common arguments, checked; the score's arrays are checked by each caller.
SamplerSteps steps(const pyb::array& x, pyb::ssize_t k0, pyb::ssize_t k1, const pyb::array& h,
                   const pyb::array& r, const pyb::array& mu, const pyb::array& sigma, const pyb::array& tau,
                   double c, std::uint64_t seed, bool keep, const pyb::array& path) {
  SamplerSteps st{};
  st.x = writable(x, "x", 2);
  st.n = x.shape(0);
  st.d = x.shape(1);
  BIGSTEP_CHECK(st.n >= 1 && st.d >= 1, "x must have shape (n, d) with n, d >= 1, got (" << st.n << ", " << st.d
                                                                                        << ")");
  check_array<double>(h, "h", 1);
  const pyb::ssize_t n_steps = h.shape(0);
  st.h = table(h, "h", n_steps);
  st.r = table(r, "r", n_steps);
  st.mu = table(mu, "mu", n_steps);
  st.sigma = table(sigma, "sigma", n_steps);
  st.tau = table(tau, "tau", n_steps);
  BIGSTEP_CHECK(0 <= k0 && k0 < k1 && k1 <= n_steps,
                "steps must satisfy 0 <= k0 < k1 <= n_steps = " << n_steps << ", got k0 = " << k0 << ", k1 = " << k1);
  st.k0 = k0;
  st.k1 = k1;
  st.c = c;
  st.seed = seed;
  st.path = nullptr;
  if (keep) {
    st.path = writable(path, "path", 3);
    BIGSTEP_CHECK(path.shape(0) == n_steps + 1 && path.shape(1) == st.n && path.shape(2) == st.d,
                  "path must have shape (n_steps + 1, n, d) = (" << n_steps + 1 << ", " << st.n << ", " << st.d
                                                                 << ")");
  }
  return st;
}

#define BIGSTEP_SAMPLER_ARGS                                                                                    \
  const pyb::array &x, pyb::ssize_t k0, pyb::ssize_t k1, const pyb::array &h, const pyb::array &r,             \
      const pyb::array &mu, const pyb::array &sigma, const pyb::array &tau, double c, std::uint64_t seed, bool keep, \
      const pyb::array &path
#define BIGSTEP_SAMPLER_PASS x, k0, k1, h, r, mu, sigma, tau, c, seed, keep, path

void run_empirical(BIGSTEP_SAMPLER_ARGS, const pyb::array& data, bool one_d) {
  const SamplerSteps st = steps(BIGSTEP_SAMPLER_PASS);
  const double* px = values(data, "data", one_d ? 1 : 2);
  const pyb::ssize_t n_data = data.shape(0);
  BIGSTEP_CHECK(n_data >= 1, "data must not be empty");
  BIGSTEP_CHECK(one_d ? st.d == 1 : data.shape(1) == st.d,
                "data must have " << st.d << " columns like x, got " << (one_d ? 1 : data.shape(1)));
  pyb::gil_scoped_release release;
  cpu::kernels().sampler_empirical(st, px, n_data, one_d);
}

void run_empirical_nd(BIGSTEP_SAMPLER_ARGS, const pyb::array& data) {
  run_empirical(BIGSTEP_SAMPLER_PASS, data, false);
}

void run_empirical_1d(BIGSTEP_SAMPLER_ARGS, const pyb::array& data_sorted) {
  run_empirical(BIGSTEP_SAMPLER_PASS, data_sorted, true);
}

// The fast Gauss transform's sampler (csrc/cpu/fgt_kernels.cpp): the same arguments plus
// mode (0 auto, 1 fgt); returns the number of steps that used the FGT.
int run_empirical_fgt(BIGSTEP_SAMPLER_ARGS, const pyb::array& data, int mode, bool one_d) {
  const SamplerSteps st = steps(BIGSTEP_SAMPLER_PASS);
  const double* px = values(data, "data", one_d ? 1 : 2);
  const pyb::ssize_t n_data = data.shape(0);
  BIGSTEP_CHECK(n_data >= 1, "data must not be empty");
  BIGSTEP_CHECK(one_d ? st.d == 1 : data.shape(1) == st.d,
                "data must have " << st.d << " columns like x, got " << (one_d ? 1 : data.shape(1)));
  BIGSTEP_CHECK(mode == 0 || mode == 1, "mode must be 0 (auto) or 1 (fgt), got " << mode);
  double stats = 0;
  {
    pyb::gil_scoped_release release;
    cpu::kernels().sampler_empirical_fgt(st, px, n_data, one_d, mode, &stats);
  }
  return static_cast<int>(stats);
}

int run_empirical_fgt_nd(BIGSTEP_SAMPLER_ARGS, const pyb::array& data, int mode) {
  return run_empirical_fgt(BIGSTEP_SAMPLER_PASS, data, mode, false);
}

int run_empirical_fgt_1d(BIGSTEP_SAMPLER_ARGS, const pyb::array& data_sorted, int mode) {
  return run_empirical_fgt(BIGSTEP_SAMPLER_PASS, data_sorted, mode, true);
}

void run_gaussian(BIGSTEP_SAMPLER_ARGS, const pyb::array& mean, const pyb::array& vecs, const pyb::array& lam) {
  const SamplerSteps st = steps(BIGSTEP_SAMPLER_PASS);
  const double* pm = values(mean, "mean", 1);
  const double* pv = values(vecs, "vecs", 2);
  const double* pl = values(lam, "lam", 1);
  BIGSTEP_CHECK(mean.shape(0) == st.d && lam.shape(0) == st.d && vecs.shape(0) == st.d && vecs.shape(1) == st.d,
                "mean, vecs, lam must have shapes (d,), (d, d), (d,) with d = " << st.d);
  pyb::gil_scoped_release release;
  cpu::kernels().sampler_gaussian(st, pm, pv, pl);
}

void run_relu(BIGSTEP_SAMPLER_ARGS, const pyb::array& w1, const pyb::array& b1, const pyb::array& w2t,
              const pyb::array& b2) {
  const SamplerSteps st = steps(BIGSTEP_SAMPLER_PASS);
  const double* p1 = values(w1, "w1", 2);
  const double* pb1 = values(b1, "b1", 1);
  const double* p2 = values(w2t, "w2t", 2);
  const double* pb2 = values(b2, "b2", 1);
  const pyb::ssize_t m = w1.shape(0);
  BIGSTEP_CHECK(m >= 1 && w1.shape(1) == st.d + 1 && b1.shape(0) == m && w2t.shape(0) == m &&
                    w2t.shape(1) == st.d && b2.shape(0) == st.d,
                "w1, b1, w2t, b2 must have shapes (m, d + 1), (m,), (m, d), (d,) with d = " << st.d << ", got w1 "
                                                                                           << w1.shape(0) << " x "
                                                                                           << w1.shape(1));
  pyb::gil_scoped_release release;
  cpu::kernels().sampler_relu(st, p1, pb1, p2, pb2, m);
}

carray<double> sampler_normals(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, pyb::ssize_t count) {
  BIGSTEP_CHECK(count >= 0, "count must be >= 0, got " << count);
  carray<double> out(count);
  double* p = out.mutable_data();
  pyb::gil_scoped_release release;
  cpu::kernels().sampler_normals(seed, stream, offset, p, count);
  return out;
}

}  // namespace

void register_sampler(pyb::module_& m) {
  const char* doc = "Fused sampler steps k0 .. k1 - 1 (see bigstep/_numba/sampler.py for the arguments).";
#define BIGSTEP_SAMPLER_NAMES                                                                        \
  pyb::arg("x"), pyb::arg("k0"), pyb::arg("k1"), pyb::arg("h"), pyb::arg("r"), pyb::arg("mu"),   \
      pyb::arg("sigma"), pyb::arg("tau"), pyb::arg("c"), pyb::arg("seed"), pyb::arg("keep"), pyb::arg("path")
  m.def("sampler_empirical_nd", &run_empirical_nd, BIGSTEP_SAMPLER_NAMES, pyb::arg("data"), doc);
  m.def("sampler_empirical_1d", &run_empirical_1d, BIGSTEP_SAMPLER_NAMES, pyb::arg("data_sorted"), doc);
  m.def("sampler_gaussian", &run_gaussian, BIGSTEP_SAMPLER_NAMES, pyb::arg("mean"), pyb::arg("vecs"), pyb::arg("lam"),
        doc);
  m.def("sampler_relu", &run_relu, BIGSTEP_SAMPLER_NAMES, pyb::arg("w1"), pyb::arg("b1"), pyb::arg("w2t"),
        pyb::arg("b2"), doc);
  m.def("sampler_empirical_fgt_nd", &run_empirical_fgt_nd, BIGSTEP_SAMPLER_NAMES, pyb::arg("data"), pyb::arg("mode"),
        "Fused sampler steps with s* by the fast Gauss transform (mode 0 auto, 1 fgt); returns the steps that used it.");
  m.def("sampler_empirical_fgt_1d", &run_empirical_fgt_1d, BIGSTEP_SAMPLER_NAMES, pyb::arg("data_sorted"),
        pyb::arg("mode"),
        "Fused sampler steps with s* by the fast Gauss transform (mode 0 auto, 1 fgt); returns the steps that used it.");
#undef BIGSTEP_SAMPLER_NAMES
  m.def("sampler_normals", &sampler_normals, pyb::arg("seed"), pyb::arg("stream"), pyb::arg("offset"),
        pyb::arg("count"), "The fused sampler's vectorised normals (gaussian_noise's values up to a few ulp).");
}

}  // namespace bigstep::py
