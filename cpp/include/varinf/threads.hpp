// Thread count for varinf's OpenMP regions.
//
// omp_set_num_threads only changes the calling thread's setting, so a count set from one
// Python thread would not reach another. varinf keeps one module-wide count and every
// parallel region passes num_threads(varinf::num_threads()) explicitly. Until a count is set,
// the calling thread's OpenMP limit decides (OMP_NUM_THREADS, or the core count). A count set
// through varinf replaces that start-up default in every thread, new ones included; a thread
// whose own limit was lowered below the default (threadpoolctl's threadpool_limits,
// omp_set_num_threads) is still capped by it, so external limits are honoured too.
#pragma once

#include "varinf/types.hpp"

namespace varinf {

// Threads a parallel region may use now, from the calling thread: >= 1.
int num_threads();
// Set the module-wide count (n >= 1).
void set_num_threads(int n);

// Threads worth using for `work` units of roughly one flop each: small problems run on one
// thread, because waking a pool costs more than it saves (and far more on a busy machine).
int threads_for(double work);

}  // namespace varinf
