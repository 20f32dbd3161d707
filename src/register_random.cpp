// pybind11 registration of the Philox streams.
#include "cpu/kernels.hpp"
#include "bigstep/philox.hpp"
#include "check.hpp"

namespace bigstep::py {
namespace {

template <class T, void (*Fill)(std::uint64_t, std::uint64_t, std::uint64_t, T*, index_t)>
pyb::array fill(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, pyb::ssize_t count) {
  carray<T> out(count);
  T* p = out.mutable_data();
  {
    pyb::gil_scoped_release release;
    Fill(seed, stream, offset, p, count);
  }
  return std::move(out);
}

// Elements offset .. offset + count - 1 of the stream (seed, stream) as a 1-D array of
// dtype (float32 or float64); Fill64/Fill32 are the two instantiations of one kernel.
template <void (*Fill64)(std::uint64_t, std::uint64_t, std::uint64_t, double*, index_t),
          void (*Fill32)(std::uint64_t, std::uint64_t, std::uint64_t, float*, index_t)>
pyb::array stream_values(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset, pyb::ssize_t count,
                         const pyb::object& dtype) {
  BIGSTEP_CHECK(count >= 0, "count must be >= 0, got " << count);
  const pyb::dtype dt = pyb::dtype::from_args(dtype);
  if (dt.is(pyb::dtype::of<double>())) return fill<double, Fill64>(seed, stream, offset, count);
  if (dt.is(pyb::dtype::of<float>())) return fill<float, Fill32>(seed, stream, offset, count);
  throw pyb::type_error("dtype must be float32 or float64, got " + pyb::str(dt).cast<std::string>());
}

// Raw Philox4x32-10 block, for known-answer tests.
pyb::tuple philox4x32_10_raw(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                             std::uint32_t k0, std::uint32_t k1) {
  const Philox4 r = philox4x32_10(Philox4{{c0, c1, c2, c3}}, k0, k1);
  return pyb::make_tuple(r.v[0], r.v[1], r.v[2], r.v[3]);
}

}  // namespace

void register_random(pyb::module_& m) {
  m.def("gaussian_noise", &stream_values<cpu::gaussian_noise<double>, cpu::gaussian_noise<float>>,
        pyb::arg("seed"), pyb::arg("stream"), pyb::arg("offset"), pyb::arg("count"),
        pyb::arg("dtype") = pyb::dtype::of<double>(),
        "Standard normals at counters offset .. offset + count - 1 of the Philox stream (seed, stream).");
  m.def("uniform", &stream_values<cpu::uniform<double>, cpu::uniform<float>>, pyb::arg("seed"), pyb::arg("stream"),
        pyb::arg("offset"), pyb::arg("count"), pyb::arg("dtype") = pyb::dtype::of<double>(),
        "Uniforms in [0, 1) at counters offset .. offset + count - 1 of the Philox stream (seed, stream).");
  m.def("philox4x32_10", &philox4x32_10_raw, pyb::arg("c0"), pyb::arg("c1"), pyb::arg("c2"), pyb::arg("c3"),
        pyb::arg("k0"), pyb::arg("k1"), "Raw Philox4x32-10 block (counter c0..c3, key k0, k1).");
}

}  // namespace bigstep::py
