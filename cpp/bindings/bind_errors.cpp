// The one exception mapping of the module: the C++ core's varinf::InvalidArgument (also what
// the bindings' own checks throw, see require in common.hpp) -> ValueError, and
// varinf::LinAlgError -> varinf.LinAlgError (a numpy.linalg.LinAlgError).
#include "common.hpp"

namespace varinf::bindings {

void bind_errors() {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const varinf::LinAlgError& e) {
      // The Python class lives in varinf._errors so that it subclasses numpy's LinAlgError.
      py::object cls = py::module_::import("varinf._errors").attr("LinAlgError");
      PyErr_SetString(cls.ptr(), e.what());
    } catch (const varinf::InvalidArgument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
}

}  // namespace varinf::bindings
