// armor/detail/window_state.hpp: the lock-free state of the window rate
// limiters (fixed_window, sliding_window). Not API: anything here may
// change without notice.
//
// Every count lives in a 64-bit word beside the index of the period
// (window or segment) it counts: `tag << count_bits | count`, where
// count_bits = bit_width(limit) (a count never exceeds the limit) and the
// tag is the period's index modulo 2^(64 - count_bits). A stale word whose
// tag equals the current one by wrap-around would need 2^tag_bits periods
// of silence; the constructor refuses any configuration in which that is
// shorter than 2^61 ns (73 years): see checked_window_packing.
#pragma once

#include <armor/error.hpp>

#include <atomic>
#include <bit>
#include <cstdint>
#include <string>

namespace armor::detail {

/// a / b rounded towards minus infinity (b > 0).
[[nodiscard]] constexpr std::int64_t window_floor_div(std::int64_t a, std::int64_t b) noexcept {
  const std::int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

/// How a configuration packs {period index, count} into one word.
struct window_packing {
  unsigned count_bits = 1;
  std::uint64_t count_mask = 1;
  std::uint64_t tag_mask = 0;

  [[nodiscard]] constexpr std::uint64_t pack(std::int64_t index, std::int64_t count) const noexcept {
    return ((static_cast<std::uint64_t>(index) & tag_mask) << count_bits) | static_cast<std::uint64_t>(count);
  }
  [[nodiscard]] constexpr std::uint64_t tag_of(std::uint64_t word) const noexcept { return word >> count_bits; }
  [[nodiscard]] constexpr std::int64_t count_of(std::uint64_t word) const noexcept {
    return static_cast<std::int64_t>(word & count_mask);
  }
  [[nodiscard]] constexpr std::uint64_t tag(std::int64_t index) const noexcept {
    return static_cast<std::uint64_t>(index) & tag_mask;
  }
  /// How many periods the word's period is ahead of `index` (0 when it is
  /// the same period or an older one): a caller whose clock reading is a
  /// little older than another thread's counts in the newer period. A word
  /// with a count of 0 (a fresh limiter's, which every grant replaces with a
  /// count of at least 1) is never ahead: its tag 0 names no period, and
  /// taken for one it put a fresh limiter up to 2^(tag_bits - 1) periods
  /// in the future whenever the clock's index had its top tag bit set.
  [[nodiscard]] constexpr std::int64_t ahead(std::uint64_t word, std::int64_t index) const noexcept {
    if (count_of(word) == 0) return 0;
    const std::uint64_t d = (tag_of(word) - tag(index)) & tag_mask;
    return d != 0 && d < (tag_mask >> 1) ? static_cast<std::int64_t>(d) : 0;
  }
};

/// Validates limit and period (the length of one counted period, in ns)
/// and returns the packing. Throws armor::error(invalid_argument) naming
/// the option, prefixed by `who`.
inline window_packing checked_window_packing(std::int64_t limit, std::int64_t period, const char* who) {
  if (limit < 1) invalid_config(std::string(who) + ": limit must be at least 1 (got " + std::to_string(limit) + ")");
  const unsigned needed = static_cast<unsigned>(std::bit_width(static_cast<std::uint64_t>(limit)));
  // 2^tag_bits periods must last at least 2^61 ns (73 years), so the count
  // may have up to period_bits + 3 bits. It gets all of them, not just the
  // limit's: any limit valid for this period then fits the word, and a
  // reconfiguration can change the limit without changing the packing.
  const unsigned period_bits = static_cast<unsigned>(std::bit_width(static_cast<std::uint64_t>(period))) - 1;
  const unsigned count_bits = period_bits + 3 > 63 ? 63 : period_bits + 3;
  const unsigned tag_bits = 64 - count_bits;
  if (needed > count_bits) {
    invalid_config(std::string(who) + ": limit " + std::to_string(limit) + " is too large for a period of " +
                   std::to_string(period) + " ns (the state holds the count in " + std::to_string(needed) +
                   " bits and the period's index in the rest; lower the limit or lengthen the window)");
  }
  window_packing p;
  p.count_bits = count_bits;
  p.count_mask = (std::uint64_t{1} << count_bits) - 1;
  p.tag_mask = tag_bits >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << tag_bits) - 1;
  return p;
}

/// What a window limiter decided, with the numbers its decision reports.
enum class window_outcome : std::uint8_t { granted, denied, too_large };

/// A window limiter's answer, in the raw: the numbers a decision reports
/// are computed from it on demand (the approximation's need divisions,
/// which a call that only asks whether it was granted should not pay).
struct window_result {
  window_outcome outcome = window_outcome::granted;
  bool approx = false;    // x, y, z are the approximation's prev, curr (before this call), elapsed
  std::int64_t n = 0;
  std::int64_t limit = 0;
  std::int64_t window = 0;
  std::int64_t x = 0;  // remaining after this decision  | prev
  std::int64_t y = 0;  // ns until the limit is whole    | curr
  std::int64_t z = 0;  // ns to wait, for a denial       | ns elapsed in the current window

  [[nodiscard]] static constexpr window_result exact(window_outcome o, std::int64_t n, std::int64_t limit,
                                                     std::int64_t window, std::int64_t remaining,
                                                     std::int64_t reset, std::int64_t retry) noexcept {
    return {o, false, n, limit, window, remaining, reset, retry};
  }

  [[nodiscard]] constexpr std::int64_t remaining() const noexcept {
    if (!approx) return x;
    // floor((limit * W - prev * (W - e) - after * W) / W), at least 0.
    const std::int64_t after = outcome == window_outcome::granted ? y + n : y;
    const wide room = wide{limit - after} * window - wide{x} * (window - z);
    return room <= 0 ? 0 : static_cast<std::int64_t>(room / window);
  }
  [[nodiscard]] constexpr std::int64_t reset() const noexcept {
    if (!approx) return y;
    const std::int64_t after = outcome == window_outcome::granted ? y + n : y;
    const std::int64_t to_end = window - z;
    return after > 0 ? to_end + window : (x > 0 ? to_end : 0);
  }
  /// For a denial (n <= limit): the least wait after which the same call is granted.
  [[nodiscard]] constexpr std::int64_t retry_after() const noexcept {
    if (!approx) return z;
    const std::int64_t prev = x;
    const std::int64_t curr = y;
    if (curr + n <= limit) {
      // Later in this window: prev * (W - e') <= (limit - curr - n) * W,
      // e' >= W - floor((limit - curr - n) * W / prev); prev > 0 here.
      const wide need = window - wide{limit - curr - n} * window / prev;
      return static_cast<std::int64_t>(need) - z;
    }
    // In the next window: prev' = curr (>= 1), curr' = 0.
    const wide need = window - wide{limit - n} * window / curr;
    return window - z + static_cast<std::int64_t>(need);
  }

 private:
  __extension__ typedef __int128 wide;
};

}  // namespace armor::detail
