// varinf's OpenMP building blocks: the one thread guard, the one parallel-for and the one
// row-block reducer. Every parallel region of the core goes through these, with a thread
// count from threads.hpp (threads_for: small work stays on the calling thread; the cost
// model behind those counts is docs/math.md section 9).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "varinf/threads.hpp"
#include "varinf/types.hpp"

namespace varinf {

// While alive, the calling thread's OpenMP limit (omp_set_num_threads, which Eigen's GEMM
// follows) is n; the previous limit is restored afterwards. OmpLimit(1) keeps Eigen's products
// on this thread inside a region that parallelises itself; the bindings use
// OmpLimit(num_threads()) so that Eigen uses varinf's thread count.
class OmpLimit {
 public:
  explicit OmpLimit(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(std::max(1, n)); }
  ~OmpLimit() { omp_set_num_threads(saved_); }
  OmpLimit(const OmpLimit&) = delete;
  OmpLimit& operator=(const OmpLimit&) = delete;

 private:
  int saved_;
};

// body(i, state) for every i in [0, count) on `threads` threads, items taken one at a time
// (schedule(dynamic, 1): a thread whose core is shared with another process simply takes
// fewer). Each thread that runs makes its own state = make() (scratch buffers) first. With
// threads <= 1 a plain loop on the calling thread. Which thread runs an item must not change
// the result: every item writes its own output.
template <class Make, class Body>
void parallel_for(Index count, int threads, Make&& make, Body&& body) {
  if (threads <= 1) {
    auto state = make();
    for (Index i = 0; i < count; ++i) body(i, state);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    auto state = make();
#pragma omp for schedule(dynamic, 1)
    for (Index i = 0; i < count; ++i) body(i, state);
  }
}

// body(i) for every i in [0, count), as above without per-thread state.
template <class Body>
void parallel_for(Index count, int threads, Body&& body) {
  parallel_for(count, threads, [] { return 0; }, [&body](Index i, int) { body(i); });
}

// ---------------------------------------------------------------------------------------------
// Sums over blocks of data rows.
//
// An accumulator is a struct whose member fields() returns std::tie(...) of the members that
// add up (Eigen matrices and vectors, doubles); reduce_row_blocks adds them field by field.
// Each thread owns an accumulator and a contiguous run of blocks (static schedule); the
// accumulators are then added in thread order, so a result is the same from run to run for a
// given thread count. Inside the region every thread limits its own OpenMP setting to 1, so
// the kernel calls and Eigen products in a block run on that thread alone (no nested pools, no
// oversubscription).

// Rows per block: about `target` doubles of a [width, rows] block, within [32, 4096].
inline Index rows_per_block(Index width, Index target = Index(1) << 18) {
  return std::clamp<Index>(target / std::max<Index>(width, 1), 32, 4096);
}

namespace detail {

// into_k += from_k for every field k; both are std::tie tuples (references to the members).
template <class Into, class From, std::size_t... I>
void add_fields(const Into& into, const From& from, std::index_sequence<I...>) {
  ((std::get<I>(into) += std::get<I>(from)), ...);
}

}  // namespace detail

// acc = make(); body(start, rows, acc) for each block of [0, n); returns the sum of the
// accumulators of the threads that ran, added in thread order. Blocks have at most max_block
// rows and are cut so that every thread `work` deserves (threads_for) gets one or more.
template <class Acc, class Make, class Body>
Acc reduce_row_blocks(Index n, Index max_block, double work, Make make, Body body) {
  const int want = threads_for(work);
  const Index block = std::clamp<Index>((n + want - 1) / want, 32, std::max<Index>(max_block, 32));
  const Index num_blocks = (n + block - 1) / block;
  const int nt = static_cast<int>(std::min<Index>(want, num_blocks));
  if (nt <= 1) {
    // Too little work for threads: keep Eigen's products (which split at ~50k flops) and the
    // kernel on this thread too; a pool's wake-up costs more here, far more on a busy machine.
    OmpLimit serial(1);
    Acc acc = make();
    for (Index start = 0; start < n; start += block) body(start, std::min(block, n - start), acc);
    return acc;
  }
  std::vector<Acc> accs(nt);
  int team = nt;  // the runtime may grant fewer threads than asked for
#pragma omp parallel num_threads(nt)
  {
    OmpLimit serial(1);  // this thread's setting, for the region's life
#pragma omp single
    team = omp_get_num_threads();
    Acc acc = make();
#pragma omp for schedule(static)
    for (Index k = 0; k < num_blocks; ++k) {
      const Index start = k * block;
      body(start, std::min(block, n - start), acc);
    }
    accs[omp_get_thread_num()] = std::move(acc);
  }
  Acc total = std::move(accs[0]);
  const auto into = total.fields();
  constexpr std::size_t num_fields = std::tuple_size_v<std::remove_const_t<decltype(into)>>;
  for (int t = 1; t < team; ++t)
    detail::add_fields(into, accs[t].fields(), std::make_index_sequence<num_fields>{});
  return total;
}

// body(start, rows) for each block of [0, n), on the threads as above (outputs per row).
template <class Body>
void for_row_blocks(Index n, Index max_block, double work, Body body) {
  struct None {
    std::tuple<> fields() { return {}; }
  };
  auto each = [&body](Index start, Index rows, None&) { body(start, rows); };
  reduce_row_blocks<None>(n, max_block, work, [] { return None{}; }, each);
}

}  // namespace varinf
