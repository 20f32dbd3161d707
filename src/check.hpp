// Argument checks for the bindings.  The public Python functions validate first and
// give the friendly messages; these checks make the compiled module safe to call
// directly (shapes, dtypes, contiguity) and raise ValueError naming the argument.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <sstream>
#include <string>

#define BIGSTEP_CHECK(cond, msg)                  \
  do {                                            \
    if (!(cond)) {                                \
      std::ostringstream bigstep_os_;             \
      bigstep_os_ << msg;                         \
      throw pybind11::value_error(bigstep_os_.str()); \
    }                                             \
  } while (0)

namespace bigstep::py {

namespace pyb = pybind11;

// A C-contiguous array of T with the given number of dimensions.
template <class T>
using carray = pyb::array_t<T, pyb::array::c_style>;

template <class T>
void check_array(const pyb::array& a, const char* name, int ndim) {
  BIGSTEP_CHECK(a.ndim() == ndim, name << " must have " << ndim << " dimension(s), got " << a.ndim());
  BIGSTEP_CHECK(pyb::isinstance<carray<T>>(a) && (a.flags() & pyb::array::c_style),
                name << " must be a C-contiguous array of the kernel's dtype");
}

// mu / sigma: one value, or one per query.
template <class T>
void check_levels(const pyb::array& a, const char* name, pyb::ssize_t q) {
  check_array<T>(a, name, 1);
  BIGSTEP_CHECK(a.shape(0) == 1 || a.shape(0) == q,
                name << " must have 1 or " << q << " entries (one per query), got " << a.shape(0));
}

}  // namespace bigstep::py
