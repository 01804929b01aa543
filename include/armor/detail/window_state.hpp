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
  /// little older than another thread's counts in the newer period.
  [[nodiscard]] constexpr std::int64_t ahead(std::uint64_t word, std::int64_t index) const noexcept {
    const std::uint64_t d = (tag_of(word) - tag(index)) & tag_mask;
    return d != 0 && d < (tag_mask >> 1) ? static_cast<std::int64_t>(d) : 0;
  }
};

/// Validates limit and period (the length of one counted period, in ns)
/// and returns the packing. Throws armor::error(invalid_argument) naming
/// the option, prefixed by `who`.
inline window_packing checked_window_packing(std::int64_t limit, std::int64_t period, const char* who) {
  if (limit < 1) invalid_config(std::string(who) + ": limit must be at least 1 (got " + std::to_string(limit) + ")");
  const unsigned count_bits = static_cast<unsigned>(std::bit_width(static_cast<std::uint64_t>(limit)));
  const unsigned tag_bits = 64 - count_bits;
  // 2^tag_bits periods must last at least 2^61 ns (73 years).
  const unsigned period_bits = static_cast<unsigned>(std::bit_width(static_cast<std::uint64_t>(period))) - 1;
  if (tag_bits + period_bits < 61) {
    invalid_config(std::string(who) + ": limit " + std::to_string(limit) + " is too large for a period of " +
                   std::to_string(period) + " ns (the state holds the count in " + std::to_string(count_bits) +
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

struct window_result {
  window_outcome outcome = window_outcome::granted;
  std::int64_t n = 0;
  std::int64_t remaining = 0;     // after this decision
  std::int64_t reset = 0;         // ns until the limit is whole again
  std::int64_t retry_after = 0;   // ns, for a denial
};

}  // namespace armor::detail
