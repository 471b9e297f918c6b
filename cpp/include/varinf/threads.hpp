// Thread count for varinf's OpenMP regions.
//
// omp_set_num_threads only changes the calling thread's setting, so a count set from one
// Python thread would not reach another. varinf keeps one module-wide count and every
// parallel region passes num_threads(varinf::num_threads()) explicitly. The calling thread's
// own OpenMP limit (omp_get_max_threads, which OMP_NUM_THREADS and threadpoolctl's
// threadpool_limits set) caps it, so external limits are honoured too.
#pragma once

#include "varinf/types.hpp"

namespace varinf {

// Threads a parallel region may use now, from the calling thread: >= 1.
int num_threads();
// Set the module-wide count (n >= 1) and the calling thread's OpenMP limit.
void set_num_threads(int n);

// Threads worth using for `work` units of roughly one flop each: small problems run on one
// thread, because waking a pool costs more than it saves (and far more on a busy machine).
int threads_for(double work);

}  // namespace varinf
