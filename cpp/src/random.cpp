// varinf::Rng (random.hpp; docs/math.md section 8.7).
#include "varinf/random.hpp"

#include <cmath>
#include <numeric>

namespace varinf {

namespace {

// splitmix64 (Steele, Lea & Flood 2014), the seeding generator recommended for xoshiro.
std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Rng::Rng(std::uint64_t seed) {
  std::uint64_t x = seed;
  for (auto& s : s_) s = splitmix64(x);
}

// xoshiro256++ (Blackman & Vigna 2021, reference implementation).
std::uint64_t Rng::next() {
  const std::uint64_t result = rotl(s_[0] + s_[3], 23) + s_[0];
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

// The top 53 bits scaled by 2^-53: every double k 2^-53 in [0, 1) equally likely.
double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

// Marsaglia's polar method (Knuth, TAOCP vol. 2, 3.4.1 Algorithm P): two independent N(0, 1)
// from a point uniform in the unit disc; no trigonometric functions.
double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u, v, s;
  do {
    u = 2.0 * uniform() - 1.0;
    v = 2.0 * uniform() - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double f = std::sqrt(-2.0 * std::log(s) / s);
  spare_ = v * f;
  has_spare_ = true;
  return u * f;
}

// Lemire (2019), "Fast random integer generation in an interval", Algorithm 5.
std::uint64_t Rng::below(std::uint64_t n) {
  unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
  auto low = static_cast<std::uint64_t>(m);
  if (low < n) {
    const std::uint64_t threshold = (0 - n) % n;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(next()) * n;
      low = static_cast<std::uint64_t>(m);
    }
  }
  return static_cast<std::uint64_t>(m >> 64);
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t index) {
  std::uint64_t x = seed;
  std::uint64_t y = splitmix64(x) ^ index;
  return splitmix64(y);
}

void BatchSampler::next(Index n, Index batch_size, std::vector<Index>& rows) {
  if (Index(order_.size()) != n || cursor_ + batch_size > n) {
    order_.resize(n);
    std::iota(order_.begin(), order_.end(), Index(0));
    shuffle(order_, rng_);
    cursor_ = 0;
  }
  rows.assign(order_.begin() + cursor_, order_.begin() + cursor_ + batch_size);
  cursor_ += batch_size;
}

}  // namespace varinf
