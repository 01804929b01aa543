// armor/detail/random.hpp: small, fast random numbers for jitter.
// Not API: anything here may change without notice. The public generators
// (armor::thread_rng, armor::seeded_rng) are in armor/backoff.hpp.
//
// Jitter needs uniform-looking numbers, not secrets. splitmix64 (Steele, Lea
// and Flood, "Fast splittable pseudorandom number generators", 2014) is a
// counter followed by a mixing function: one addition and three
// xor-shift-multiplies per draw, 8 bytes of state, period 2^64, and it passes
// BigCrush. Because its state only ever advances by a constant, a generator
// shared by threads can step it with one atomic fetch_add and stay lock-free.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace armor::detail {

/// The constant splitmix64 adds to its state on each draw (2^64 / golden ratio, odd).
inline constexpr std::uint64_t splitmix64_gamma = 0x9e3779b97f4a7c15ULL;

/// splitmix64's output function: a bijective mix of a 64-bit word.
[[nodiscard]] constexpr std::uint64_t splitmix64_mix(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// A uniform double in [0, 1) from the top 53 bits of a random word (every
/// value is a multiple of 2^-53, so the result is exact and never reaches 1).
[[nodiscard]] constexpr double unit_interval(std::uint64_t word) noexcept {
  return static_cast<double>(word >> 11) * 0x1.0p-53;
}

/// One thread's generator. Trivial and constant-initialised, so a
/// thread_local of it needs no guard or destructor registration.
struct thread_generator {
  std::uint64_t state = 0;
  bool seeded = false;
};

/// A seed for a new thread's generator: std::random_device when it works,
/// mixed with the generator's own address (distinct per live thread) and the
/// time, so two threads never start alike even where random_device is
/// deterministic or throws. Runs once per thread.
[[nodiscard]] inline std::uint64_t entropy_seed(const void* salt) noexcept {
  std::uint64_t seed = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(salt));
  seed ^= static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) * splitmix64_gamma;
  try {
    std::random_device device;
    seed ^= (static_cast<std::uint64_t>(device()) << 32) ^ static_cast<std::uint64_t>(device());
  } catch (...) {
    // No entropy source: the address and the time above still differ per thread.
  }
  return splitmix64_mix(seed);
}

/// The calling thread's generator, seeded on first use.
[[nodiscard]] inline thread_generator& this_thread_generator() noexcept {
  static thread_local thread_generator generator;
  return generator;
}

/// The next word from the calling thread's generator. No lock, no
/// allocation; the first call on a thread reads std::random_device.
[[nodiscard]] inline std::uint64_t thread_random() noexcept {
  thread_generator& g = this_thread_generator();
  if (!g.seeded) [[unlikely]] {
    g.state = entropy_seed(&g);
    g.seeded = true;
  }
  g.state += splitmix64_gamma;
  return splitmix64_mix(g.state);
}

}  // namespace armor::detail
