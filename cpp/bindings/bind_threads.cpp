#include <omp.h>

#include "common.hpp"
#include "varinf/threads.hpp"

namespace varinf::bindings {

ThreadScope::ThreadScope() : saved_(omp_get_max_threads()) { omp_set_num_threads(num_threads()); }
ThreadScope::~ThreadScope() { omp_set_num_threads(saved_); }

void bind_threads(py::module_& m) {
  m.def("get_num_threads", &varinf::num_threads,
        "Threads varinf's parallel regions use when called from this thread.");
  m.def("set_num_threads", &varinf::set_num_threads, py::arg("n"),
        "Set varinf's thread count for every Python thread, those started later included.");
  m.def("simd_instruction_sets", []() { return std::string(Eigen::SimdInstructionSetsInUse()); });
}

}  // namespace varinf::bindings
