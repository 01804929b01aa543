// armor/detail/adaptive_limit_core.hpp: the shared state of an adaptive
// concurrency limit: the in-flight count, the published thresholds, the
// window's lock-free accumulators and the claim that lets exactly one thread
// close a window. Not API.
#pragma once

#include <armor/detail/config.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>

namespace armor::detail {

/// Thresholds are packed three to a word, 21 bits each: critical (bits
/// 0-20), normal (21-41), sheddable (42-62). One relaxed load at admission.
inline constexpr unsigned limit_bits = 21;
inline constexpr std::uint32_t limit_mask = (std::uint32_t{1} << limit_bits) - 1;

[[nodiscard]] constexpr std::uint64_t pack_thresholds(std::uint32_t critical, std::uint32_t normal,
                                                      std::uint32_t sheddable) noexcept {
  return std::uint64_t{critical & limit_mask} | (std::uint64_t{normal & limit_mask} << limit_bits) |
         (std::uint64_t{sheddable & limit_mask} << (2 * limit_bits));
}

[[nodiscard]] constexpr std::uint32_t threshold_of(std::uint64_t word, unsigned level) noexcept {
  return static_cast<std::uint32_t>(word >> (limit_bits * level)) & limit_mask;
}

/// The window start while a thread closes the window.
inline constexpr std::int64_t window_closing = std::numeric_limits<std::int64_t>::min();

/// What the call path touches, each group on its own cache line: the
/// in-flight word (written by every admission and release), the thresholds
/// (read by every admission, written once per window) and the window
/// (written by every settled call).
///
/// The in-flight word holds two counts: calls in flight (low 32 bits) and
/// calls timed in the current window (high 32 bits). A settled call gives
/// its slot back and counts its sample with one fetch_add.
struct adaptive_limit_core {
  static constexpr std::uint64_t one_sample = std::uint64_t{1} << 32;

  alignas(cache_line) std::atomic<std::uint64_t> word{0};

  alignas(cache_line) std::atomic<std::uint64_t> thresholds{0};
  std::atomic<std::int64_t> last_mean_ns{0};  // the mean latency of the last closed window; 0: none yet

  alignas(cache_line) std::atomic<std::int64_t> window_start{0};
  std::atomic<std::int64_t> latency_sum_ns{0};
  std::atomic<std::int64_t> min_latency_ns{std::numeric_limits<std::int64_t>::max()};
  std::atomic<std::uint32_t> max_in_flight{0};
  std::atomic<std::uint64_t> timeouts{0};
  std::atomic<std::uint64_t> throttled{0};

  /// Takes a slot when in_flight is below the threshold for `level`: one
  /// CAS loop, so in_flight never passes the threshold it was checked
  /// against. Answers the count after entering, or 0 when refused.
  [[nodiscard]] ARMOR_ALWAYS_INLINE std::uint32_t try_enter(unsigned level) noexcept {
    // Relaxed is enough for the thresholds: a stale limit only decides one
    // call by the previous window's limit, which is still a published one.
    const std::uint32_t cap = threshold_of(thresholds.load(std::memory_order_relaxed), level);
    std::uint64_t w = word.load(std::memory_order_relaxed);
    do {
      if (static_cast<std::uint32_t>(w) >= cap) return 0;
    } while (!word.compare_exchange_weak(w, w + 1, std::memory_order_acquire, std::memory_order_relaxed));
    return static_cast<std::uint32_t>(w) + 1;
  }

  /// Calls in flight now.
  [[nodiscard]] std::uint32_t in_flight() const noexcept {
    return static_cast<std::uint32_t>(word.load(std::memory_order_relaxed));
  }
  /// Calls timed in the current window so far.
  [[nodiscard]] std::uint32_t samples() const noexcept {
    return static_cast<std::uint32_t>(word.load(std::memory_order_relaxed) >> 32);
  }

  /// Gives a slot back. Release: what the call did happens before the
  /// slot's next holder enters.
  ARMOR_ALWAYS_INLINE void leave() noexcept { word.fetch_sub(1, std::memory_order_release); }

  /// Gives a slot back and counts a timed call, in one step.
  ARMOR_ALWAYS_INLINE void leave_with_sample(std::int64_t ns) noexcept {
    word.fetch_add(one_sample - 1, std::memory_order_release);
    add_sample(ns);
  }

  /// Takes the window's sample count, leaving samples counted meanwhile for the next one.
  [[nodiscard]] std::uint32_t take_samples() noexcept {
    const std::uint32_t n = samples();
    word.fetch_sub(std::uint64_t{n} << 32, std::memory_order_relaxed);
    return n;
  }

  /// Keeps the largest in-flight count of the window; writes only when it grows.
  ARMOR_ALWAYS_INLINE void note_in_flight(std::uint32_t n) noexcept {
    std::uint32_t seen = max_in_flight.load(std::memory_order_relaxed);
    while (n > seen && !max_in_flight.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
    }
  }

  /// Adds one latency to the window (its count is in `word`). Relaxed: the
  /// window's totals are statistics; a sample racing the close may count
  /// in the next window.
  ARMOR_ALWAYS_INLINE void add_sample(std::int64_t ns) noexcept {
    latency_sum_ns.fetch_add(ns, std::memory_order_relaxed);
    std::int64_t low = min_latency_ns.load(std::memory_order_relaxed);
    while (ns < low && !min_latency_ns.compare_exchange_weak(low, ns, std::memory_order_relaxed)) {
    }
  }

  /// Claims the window that started at `start` for closing: true for exactly
  /// one caller. Acquire: the claimer sees what the previous closer wrote
  /// before it published its window start (the algorithm's state).
  [[nodiscard]] bool claim(std::int64_t start) noexcept {
    return window_start.compare_exchange_strong(start, window_closing, std::memory_order_acquire,
                                                std::memory_order_relaxed);
  }

  /// Ends a close: the next window starts at `start`. Release pairs with claim().
  void reopen(std::int64_t start) noexcept { window_start.store(start, std::memory_order_release); }
};

}  // namespace armor::detail
