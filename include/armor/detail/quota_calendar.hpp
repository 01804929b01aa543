// armor/detail/quota_calendar.hpp: where a quota window's periods begin and
// end in wall time. Not API: armor::quota_window is the public face.
//
// Every window cuts wall time (int64 nanoseconds since 1970-01-01T00:00 UTC)
// into numbered slices, and a consumption is counted in the slice that
// holds its time:
//
//   fixed    periods of `length`, aligned on local midnight of 1970-01-01,
//            "local" meaning UTC + offset: a 1-hour window turns over on
//            the local hour, a 24-hour window at local midnight, a 10-minute
//            window at :00, :10, ...
//   week     7-day periods beginning Monday 00:00 local (ISO weeks)
//   month    calendar months beginning on the 1st, 00:00 local (28 to 31
//            days, leap years included, by <chrono>'s civil calendar)
//   rolling  buckets of length / buckets, aligned on the Unix epoch (no
//            offset: a rolling window has no calendar); the window counts
//            the current bucket and the `buckets` before it
//
// The offset is fixed: a zone with daylight saving time picks one offset
// (there is no time zone database here). Index arithmetic is done in
// __int128 where a product could overflow and every result is clamped to
// the int64 range, so extreme clock readings do not wrap.
#pragma once

#include <armor/detail/time.hpp>

#include <chrono>
#include <cstdint>

namespace armor::detail {

inline constexpr std::int64_t ns_per_day = 86'400'000'000'000;
inline constexpr std::int64_t ns_per_week = 7 * ns_per_day;
// 1970-01-05 was the first Monday after the Unix epoch.
inline constexpr std::int64_t first_monday_ns = 4 * ns_per_day;

/// floor(a / b) for b > 0 (C++ division truncates toward zero).
[[nodiscard]] constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
  const std::int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

/// a mod b in [0, b) for b > 0.
[[nodiscard]] constexpr std::int64_t floor_mod(std::int64_t a, std::int64_t b) noexcept {
  const std::int64_t r = a % b;
  return r < 0 ? r + b : r;
}

// __extension__: -Wpedantic would call __int128 non-standard (it is a GCC
// and Clang built-in on every 64-bit target armor supports).
__extension__ typedef __int128 quota_int128;

[[nodiscard]] constexpr std::int64_t clamp_ns(quota_int128 v) noexcept {
  if (v > static_cast<quota_int128>(ns_max)) return ns_max;
  if (v < static_cast<quota_int128>(ns_min)) return ns_min;
  return static_cast<std::int64_t>(v);
}

enum class quota_cut : std::uint8_t { fixed, week, month, rolling, lifetime };

/// How one window numbers its slices. Read-only after construction.
struct quota_cycle {
  quota_cut cut = quota_cut::fixed;
  std::int64_t step = 0;   ///< fixed: period length; week: 7 days; rolling: bucket width; month: unused
  std::int64_t shift = 0;  ///< added to wall time before cutting (the UTC offset, minus the anchor)

  /// The number of the slice holding wall time `t`.
  [[nodiscard]] constexpr std::int64_t index(std::int64_t t) const noexcept {
    if (cut == quota_cut::lifetime) return 0;  // one slice, all of time
    const std::int64_t local = saturating_add(t, shift);
    if (cut != quota_cut::month) return floor_div(local, step);
    using namespace std::chrono;
    const year_month_day ymd{sys_days{days{floor_div(local, ns_per_day)}}};
    return (static_cast<std::int64_t>(static_cast<int>(ymd.year())) - 1970) * 12 +
           static_cast<std::int64_t>(static_cast<unsigned>(ymd.month())) - 1;
  }

  /// The wall time at which slice `i` begins (clamped to the int64 range).
  [[nodiscard]] constexpr std::int64_t start(std::int64_t i) const noexcept {
    if (cut == quota_cut::lifetime) return i <= 0 ? ns_min : ns_max;
    if (cut != quota_cut::month) return clamp_ns(static_cast<quota_int128>(i) * step - shift);
    using namespace std::chrono;
    // std::chrono::year holds -32767..32767; int64 nanoseconds span only
    // 1677..2262, so anything outside that is clamped anyway.
    const std::int64_t y = 1970 + floor_div(i, 12);
    if (y < -32000) return ns_min;
    if (y > 32000) return ns_max;
    const auto m = static_cast<unsigned>(floor_mod(i, 12) + 1);
    const sys_days first{year{static_cast<int>(y)} / month{m} / day{1}};
    return clamp_ns(static_cast<quota_int128>(first.time_since_epoch().count()) * ns_per_day - shift);
  }

  /// The wall time at which slice `i` ends (the next one begins).
  [[nodiscard]] constexpr std::int64_t end(std::int64_t i) const noexcept {
    return start(i == ns_max ? i : i + 1);
  }
};

}  // namespace armor::detail
