#include "varinf/threads.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>

namespace varinf {

namespace {
// 0 = not set by varinf: follow the calling thread's OpenMP limit alone.
std::atomic<int> g_num_threads{0};
// Below this many flop-like units per thread (a few milliseconds) a parallel region is not
// worth starting: waking a thread that shares its core with another process can cost a
// scheduler time slice, so small work runs on the calling thread alone.
constexpr double kMinWorkPerThread = 5.0e6;
}  // namespace

int num_threads() {
  const int omp_limit = std::max(1, omp_get_max_threads());
  const int set = g_num_threads.load(std::memory_order_relaxed);
  return set > 0 ? std::min(set, omp_limit) : omp_limit;
}

void set_num_threads(int n) {
  const int count = std::max(1, n);
  g_num_threads.store(count, std::memory_order_relaxed);
  omp_set_num_threads(count);
}

int threads_for(double work) {
  const int by_work = static_cast<int>(work / kMinWorkPerThread);
  return std::max(1, std::min(num_threads(), by_work));
}

}  // namespace varinf
