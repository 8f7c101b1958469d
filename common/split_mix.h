// SplitMix64, a small and fast pseudo-random generator whose sequence for a seed is the same on
// every platform (std's distributions are not), so a seed names one generated tree or one run's
// draws everywhere. For test data and load generation, never for anything secret (use OpenSSL's
// RAND_bytes there). Header-only; not thread-safe: one generator per thread.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dangjian {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi]; the modulo bias is far below what test data cares about.
  int Uniform(int lo, int hi) {
    return lo + static_cast<int>(Next() % static_cast<uint64_t>(hi - lo + 1));
  }
  // True with probability percent/100.
  bool Percent(int percent) { return Uniform(0, 99) < percent; }
  template <typename T, size_t N>
  const T& Pick(const T (&items)[N]) {
    return items[Next() % N];
  }

 private:
  uint64_t state_;
};

}  // namespace dangjian
