// varinf's own random numbers, used by the VAE (training noise, shuffling, evaluation noise,
// initial weights) and the SVGP trainer (minibatch order); docs/math.md section 8.7.
//
// xoshiro256++ (Blackman & Vigna 2021) seeded through splitmix64, uniforms from the top 53
// bits, normals by Marsaglia's polar method (both values of a pair used), bounded integers by
// Lemire's nearly-divisionless method and shuffling by Fisher-Yates. All of it is written here
// (not std::normal_distribution / std::shuffle, whose output the C++ standard leaves to the
// library), so a seed gives the same numbers with every compiler and standard library, up to
// the last bit of libm's log.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "varinf/types.hpp"

namespace varinf {

class Rng {
 public:
  explicit Rng(std::uint64_t seed);
  std::uint64_t next();                  // 64 uniform bits
  double uniform();                      // [0, 1)
  double normal();                       // N(0, 1)
  std::uint64_t below(std::uint64_t n);  // uniform on {0, ..., n - 1}, n >= 1

 private:
  std::uint64_t s_[4];
  double spare_ = 0.0;
  bool has_spare_ = false;
};

// A seed for stream `index` derived from `seed` (splitmix64 of both).
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t index);

// Fisher-Yates shuffle of v in place (Knuth, TAOCP vol. 2, 3.4.2 Algorithm P): every
// permutation equally likely, the same one for a given generator state on every platform.
template <class T>
void shuffle(std::vector<T>& v, Rng& rng) {
  for (Index i = static_cast<Index>(v.size()) - 1; i > 0; --i)
    std::swap(v[i], v[rng.below(static_cast<std::uint64_t>(i) + 1)]);
}

// Minibatches of the rows 0..n-1 drawn without replacement: a fresh Fisher-Yates permutation
// each epoch, cut into batches; a last partial batch is dropped. A seed gives the same batches
// on every platform, so processes that hold different parts of the rows can each draw the
// same global batch from the seed and keep their own rows of it (the SVGP trainer in process
// and its workers on Dask: docs/math.md section 10.3).
class BatchSampler {
 public:
  explicit BatchSampler(std::uint64_t seed) : rng_(seed) {}
  // The next batch of batch_size <= n rows.
  void next(Index n, Index batch_size, std::vector<Index>& rows);

 private:
  Rng rng_;
  std::vector<Index> order_;  // the current epoch's permutation
  Index cursor_ = 0;
};

}  // namespace varinf
