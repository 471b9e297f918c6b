// The compiled core of varinf. One bind_*.cpp per concern; this file only wires them.
// VARINF_MODULE_NAME is _core_baseline or _core_x86_64_v3 (the same sources built per
// instruction-set level, see CMakeLists.txt).
#include "common.hpp"

PYBIND11_MODULE(VARINF_MODULE_NAME, m) {
  using namespace varinf::bindings;
  m.doc() = "varinf's C++ core (Eigen + OpenMP). Use the varinf package, not this module.";
  bind_errors(m);
  bind_threads(m);
  bind_kernels(m);
  bind_gp(m);
  bind_linalg(m);
  bind_sparse(m);
  bind_vae(m);
}
