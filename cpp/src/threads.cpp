#include "varinf/threads.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>

namespace varinf {

namespace {
// 0 = not set by varinf: follow the calling thread's OpenMP limit alone.
std::atomic<int> g_num_threads{0};
// The OpenMP limit every thread starts with (OMP_NUM_THREADS, or the core count), read when
// the library loads.
const int g_default_limit = std::max(1, omp_get_max_threads());
// Below this many flop-like units per thread (a few milliseconds) a parallel region is not
// worth starting: waking a thread that shares its core with another process can cost a
// scheduler time slice, so small work runs on the calling thread alone.
constexpr double kMinWorkPerThread = 5.0e6;
}  // namespace

int num_threads() {
  const int omp_limit = std::max(1, omp_get_max_threads());
  const int set = g_num_threads.load(std::memory_order_relaxed);
  if (set == 0) return omp_limit;
  // A count set through varinf replaces the start-up default; a thread whose own limit was
  // lowered below that default (threadpoolctl, omp_set_num_threads) is capped by it.
  return omp_limit < g_default_limit ? std::min(set, omp_limit) : set;
}

void set_num_threads(int n) { g_num_threads.store(std::max(1, n), std::memory_order_relaxed); }

int threads_for(double work) {
  const int by_work = static_cast<int>(work / kMinWorkPerThread);
  return std::max(1, std::min(num_threads(), by_work));
}

}  // namespace varinf
