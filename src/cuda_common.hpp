// Shared by the bindings of bigstep._cuda (src/register_cuda_*.cpp): device pointers and
// the stream arrive as integers (torch's data_ptr() and cuda_stream), dtypes as names.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "check.hpp"
#include "cuda/kernels.cuh"

namespace bigstep::py {

// A device pointer from Python (0: null).
template <class T>
T* dev(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

inline cuda::Stream stream_of(std::uintptr_t s) { return reinterpret_cast<cuda::Stream>(s); }

inline cuda::Workspace workspace(std::uintptr_t p, std::size_t bytes) { return cuda::Workspace{dev<void>(p), bytes}; }

// Calls f(T{}) with T = float for "float32", double for "float64".
template <class F>
void by_dtype(const std::string& dtype, F&& f) {
  if (dtype == "float32")
    f(float{});
  else if (dtype == "float64")
    f(double{});
  else
    BIGSTEP_CHECK(false, "dtype must be 'float32' or 'float64', got '" << dtype << "'");
}

}  // namespace bigstep::py
