// armor/detail/adaptive_limit_core.hpp: the shared state of an adaptive
// concurrency limit: the in-flight count, the published thresholds, the
// window's lock-free accumulators and the claim that lets exactly one thread
// close a window. Not API.
#pragma once

#include <armor/detail/config.hpp>
#include <armor/detail/wide_cas.hpp>

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
/// in-flight pair (written by every admission and release), the thresholds
/// (read by every admission, written once per window) and the window.
///
/// The pair changes only by one 16-byte compare-and-swap (detail/wide_cas.hpp),
/// so its halves always change together. First half: calls in flight (low
/// 32 bits) and calls timed in the current window (high 32 bits). Second
/// half: the sum of their latencies in ns. A settled call gives its slot
/// back and adds its sample (count and latency) in one step, and the closer
/// takes count and sum in one step: a window's count and sum never split
/// between two windows. Every change is a 16-byte CAS (also admission and a
/// plain release), never an 8-byte RMW beside it: where the 16-byte CAS is
/// emulated (ThreadSanitizer's runtime) an 8-byte RMW would not be atomic
/// with it. Reads of one half are plain 8-byte atomic loads.
struct adaptive_limit_core {
  static constexpr std::uint64_t one_sample = std::uint64_t{1} << 32;
  static constexpr std::uint64_t in_flight_mask = one_sample - 1;
  /// A window times at most this many calls; later ones settle untimed.
  static constexpr std::uint64_t max_samples = 0xFFFFFFFFULL;
  /// The latency sum never passes this (so it converts to int64 exactly).
  static constexpr std::uint64_t max_sum = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

  alignas(cache_line) atomic_pair pair;

  alignas(cache_line) std::atomic<std::uint64_t> thresholds{0};
  std::atomic<std::int64_t> last_mean_ns{0};  // the mean latency of the last closed window; 0: none yet

  alignas(cache_line) std::atomic<std::int64_t> window_start{0};
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
    std::uint64_t w = pair.first.load(std::memory_order_relaxed);
    if (static_cast<std::uint32_t>(w) >= cap) return 0;  // refused: nothing written
    std::uint64_t sum = pair.second.load(std::memory_order_relaxed);
    do {
      if (static_cast<std::uint32_t>(w) >= cap) return 0;
    } while (!pair.compare_exchange_update(w, sum, w + 1, sum));
    return static_cast<std::uint32_t>(w) + 1;
  }

  /// Calls in flight now.
  [[nodiscard]] std::uint32_t in_flight() const noexcept {
    return static_cast<std::uint32_t>(pair.first.load(std::memory_order_relaxed));
  }
  /// Calls timed in the current window so far.
  [[nodiscard]] std::uint32_t samples() const noexcept {
    return static_cast<std::uint32_t>(pair.first.load(std::memory_order_relaxed) >> 32);
  }

  /// Gives a slot back.
  ARMOR_ALWAYS_INLINE void leave() noexcept {
    std::uint64_t w = pair.first.load(std::memory_order_relaxed);
    std::uint64_t sum = pair.second.load(std::memory_order_relaxed);
    while (!pair.compare_exchange_update(w, sum, w - 1, sum)) {
    }
  }

  /// Gives a slot back and adds a timed call (count and latency), in one
  /// step. Its latency goes into the window's minimum first, so a window that
  /// counts the call has seen its minimum (or an earlier window took it; the
  /// closer skips a window that has samples and no minimum). A window that
  /// is full (max_samples, or a sum that would pass max_sum) takes no more
  /// samples: the slot is still given back.
  ARMOR_ALWAYS_INLINE void leave_with_sample(std::int64_t ns) noexcept {
    note_min(ns);
    const auto add = static_cast<std::uint64_t>(ns);
    std::uint64_t w = pair.first.load(std::memory_order_relaxed);
    std::uint64_t sum = pair.second.load(std::memory_order_relaxed);
    for (;;) {
      const bool room = (w >> 32) < max_samples && sum <= max_sum - add;
      if (pair.compare_exchange_update(w, sum, room ? w + one_sample - 1 : w - 1, room ? sum + add : sum)) return;
    }
  }

  /// The window's count and latency sum, taken together: calls settling
  /// meanwhile count in the next window, whole.
  struct window_totals {
    std::uint64_t samples = 0;
    std::uint64_t sum_ns = 0;
  };
  [[nodiscard]] window_totals take_samples() noexcept {
    std::uint64_t w = pair.first.load(std::memory_order_relaxed);
    std::uint64_t sum = pair.second.load(std::memory_order_relaxed);
    while (!pair.compare_exchange_update(w, sum, w & in_flight_mask, 0)) {
    }
    return {w >> 32, sum};
  }

  /// Gives taken totals back to the open window (a close that was skipped),
  /// saturating at the caps.
  void return_samples(window_totals t) noexcept {
    std::uint64_t w = pair.first.load(std::memory_order_relaxed);
    std::uint64_t sum = pair.second.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint64_t n = std::min(max_samples, (w >> 32) + t.samples);
      const std::uint64_t s = sum > max_sum - t.sum_ns ? max_sum : sum + t.sum_ns;
      if (pair.compare_exchange_update(w, sum, (w & in_flight_mask) | (n << 32), s)) return;
    }
  }

  /// Keeps the largest in-flight count of the window; writes only when it grows.
  ARMOR_ALWAYS_INLINE void note_in_flight(std::uint32_t n) noexcept {
    std::uint32_t seen = max_in_flight.load(std::memory_order_relaxed);
    while (n > seen && !max_in_flight.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
    }
  }

  /// Lowers the window's minimum latency to `ns`; writes only when it falls.
  ARMOR_ALWAYS_INLINE void note_min(std::int64_t ns) noexcept {
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
