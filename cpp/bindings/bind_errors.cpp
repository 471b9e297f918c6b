#include "common.hpp"
#include "varinf/errors.hpp"

namespace varinf::bindings {

void bind_errors(py::module_& m) {
  (void)m;
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
