// Spin-wait work sharing for the VAE trainer (vae_trainer.cpp): a team of threads runs phases
// of work items without OpenMP barriers. Private to the core.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

namespace varinf::detail {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spin briefly, then give the core away: a waiting thread must not hold a core that another
// process (or our own descheduled thread) needs.
class Backoff {
 public:
  void pause() {
    if (++spins_ < 2048)
      cpu_relax();
    else
      std::this_thread::yield();
  }

 private:
  int spins_ = 0;
};

// A phase of work items shared by a team without OpenMP barriers. The leader publishes a
// phase; every thread (the leader too) claims items with a compare-and-swap on one atomic word
// (phase id << 24 | next item), and the leader waits until all items are finished. A thread
// that the OS has descheduled holds up nobody unless it holds a claimed item, so 2 threads on
// a busy machine cost little more than 1. Which thread runs an item never changes the result:
// every item writes its own output and the leader combines them in a fixed order.
class PhaseQueue {
 public:
  static constexpr long kQuit = (1L << 38) - 1;

  void publish(long phase, int items) {
    items_.store(items, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    state_.store(pack(phase, 0), std::memory_order_release);
  }
  // The next item of `phase`, or -1 when none is left or the phase is over.
  int claim(long phase) {
    std::uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      if (static_cast<long>(s >> 24) != phase) return -1;
      const int i = static_cast<int>(s & 0xFFFFFF);
      if (i >= items_.load(std::memory_order_relaxed)) return -1;
      if (state_.compare_exchange_weak(s, pack(phase, i + 1), std::memory_order_acq_rel,
                                       std::memory_order_acquire))
        return i;
    }
  }
  void finish() { done_.fetch_add(1, std::memory_order_release); }
  void wait_done() const {
    Backoff backoff;
    while (done_.load(std::memory_order_acquire) < items_.load(std::memory_order_relaxed)) backoff.pause();
  }
  // Helpers: wait for a phase other than `seen`.
  long wait_phase(long seen) const {
    Backoff backoff;
    for (;;) {
      const long phase = static_cast<long>(state_.load(std::memory_order_acquire) >> 24);
      if (phase != seen) return phase;
      backoff.pause();
    }
  }

 private:
  static std::uint64_t pack(long phase, int item) {
    return (static_cast<std::uint64_t>(phase) << 24) | static_cast<std::uint64_t>(item);
  }
  std::atomic<std::uint64_t> state_{0};
  std::atomic<int> done_{0};
  std::atomic<int> items_{0};
};

}  // namespace varinf::detail
