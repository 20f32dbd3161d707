// The table of entry points of one instruction set, built from the lists in kernels.hpp
// (compiled once per instruction set, like the kernel files).
#include "kernels.hpp"

namespace bigstep::cpu::BIGSTEP_ISA_NS {
namespace {

template <class T>
TypedKernels<T> typed_table() {
  TypedKernels<T> t;
#define BIGSTEP_SET_TYPED(name, ret, params) t.name = &name<T>;
  BIGSTEP_TYPED_KERNELS(BIGSTEP_SET_TYPED)
#undef BIGSTEP_SET_TYPED
  return t;
}

Kernels make_table() {
  Kernels k;
  k.f32 = typed_table<float>();
  k.f64 = typed_table<double>();
#define BIGSTEP_SET_PLAIN(name, ret, params) k.name = &name;
  BIGSTEP_PLAIN_KERNELS(BIGSTEP_SET_PLAIN)
#undef BIGSTEP_SET_PLAIN
  return k;
}

}  // namespace

const Kernels& table() {
  static const Kernels k = make_table();
  return k;
}

}  // namespace bigstep::cpu::BIGSTEP_ISA_NS
