// The compiled core of varinf. One bind_*.cpp per concern; this file only wires each into its
// submodule (the layout of scikit-hep/boost-histogram's _core). VARINF_MODULE_NAME is
// _core_baseline, _core_x86_64_v3 or _core_x86_64_v4 (the same sources built per
// instruction-set level, see CMakeLists.txt); python/varinf/_core_baseline/*.pyi describe all.
#include "common.hpp"

PYBIND11_MODULE(VARINF_MODULE_NAME, m) {
  using namespace varinf::bindings;
  m.doc() = "varinf's C++ core (Eigen + OpenMP). Use the varinf package, not this module.";
  bind_errors();
  py::module_ testing = m.def_submodule(
      "testing", "Entry points only tests and benchmarks use: building blocks the models call from C++.");
  bind_threads(m.def_submodule("threads", "The thread count of varinf's parallel regions."));
  bind_kernels(m.def_submodule("kernels", "Kernel structures and their matrices and gradients."));
  bind_linalg(m.def_submodule("linalg", "Cholesky factorisation, its reverse mode, triangular solves."), testing);
  bind_gp(m.def_submodule("gp", "Exact GP regression."));
  bind_sparse(m.def_submodule("sparse", "Likelihoods, SGPR, FITC and SVGP."), testing);
  bind_vae(m.def_submodule("vae", "Variational auto-encoders and their trainers (float32, float64)."), testing);
  bind_roofline(testing);
}
