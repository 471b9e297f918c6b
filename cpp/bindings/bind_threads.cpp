#include "common.hpp"

namespace varinf::bindings {

void bind_threads(py::module_ m) {
  m.def("get_num_threads", &varinf::num_threads,
        "Threads varinf's parallel regions use when called from this thread.");
  m.def("set_num_threads", &varinf::set_num_threads, py::arg("n"),
        "Set varinf's thread count for every Python thread, those started later included.");
}

}  // namespace varinf::bindings
