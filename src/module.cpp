// bigstep._core: creates the module and registers each kernel family.
#include <pybind11/pybind11.h>

namespace bigstep::py {
void register_info(pybind11::module_& m);
void register_metrics(pybind11::module_& m);
void register_optimal_score(pybind11::module_& m);
void register_random(pybind11::module_& m);
void register_random_features(pybind11::module_& m);
void register_relu_risk(pybind11::module_& m);
void register_sgd(pybind11::module_& m);
void register_sampler(pybind11::module_& m);
void register_fgt(pybind11::module_& m);
}  // namespace bigstep::py

PYBIND11_MODULE(_core, m) {
  m.doc() = "bigstep compiled CPU kernels";
  bigstep::py::register_info(m);
  bigstep::py::register_metrics(m);
  bigstep::py::register_optimal_score(m);
  bigstep::py::register_random(m);
  bigstep::py::register_random_features(m);
  bigstep::py::register_relu_risk(m);
  bigstep::py::register_sgd(m);
  bigstep::py::register_sampler(m);
  bigstep::py::register_fgt(m);
}
