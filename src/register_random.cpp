// pybind11 registration of the Philox streams.
#include "cpu/kernels.hpp"
#include "bigstep/philox.hpp"
#include "check.hpp"

namespace bigstep::py {
namespace {

template <class T, void (*Fill)(std::uint64_t, std::uint64_t, std::uint64_t, T*, index_t)>
carray<T> fill(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, pyb::ssize_t count) {
  BIGSTEP_CHECK(count >= 0, "count must be >= 0, got " << count);
  carray<T> out(count);
  T* p = out.mutable_data();
  {
    pyb::gil_scoped_release release;
    Fill(seed, stream, offset, p, count);
  }
  return out;
}

// Raw Philox4x32-10 block, for known-answer tests.
pyb::tuple philox4x32_10_raw(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                             std::uint32_t k0, std::uint32_t k1) {
  const Philox4 r = philox4x32_10(Philox4{{c0, c1, c2, c3}}, k0, k1);
  return pyb::make_tuple(r.v[0], r.v[1], r.v[2], r.v[3]);
}

}  // namespace

void register_random(pyb::module_& m) {
  m.def("gaussian_noise_f64", &fill<double, cpu::gaussian_noise<double>>, pyb::arg("seed"), pyb::arg("stream"),
        pyb::arg("offset"), pyb::arg("count"));
  m.def("gaussian_noise_f32", &fill<float, cpu::gaussian_noise<float>>, pyb::arg("seed"), pyb::arg("stream"),
        pyb::arg("offset"), pyb::arg("count"));
  m.def("uniform_f64", &fill<double, cpu::uniform<double>>, pyb::arg("seed"), pyb::arg("stream"),
        pyb::arg("offset"), pyb::arg("count"));
  m.def("uniform_f32", &fill<float, cpu::uniform<float>>, pyb::arg("seed"), pyb::arg("stream"), pyb::arg("offset"),
        pyb::arg("count"));
  m.def("philox4x32_10", &philox4x32_10_raw, "Raw Philox4x32-10 block (counter c0..c3, key k0, k1).");
}

}  // namespace bigstep::py
