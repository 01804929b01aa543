// armor/detail/backoff_schedule.hpp: the arithmetic of retry delays.
// Not API: armor::backoff::delay() is the public face of these functions.
//
// Every function takes and returns int64 nanoseconds, takes validated inputs
// (0 <= initial <= cap, multiplier >= 1, fraction in [0, 1], u in [0, 1)),
// and saturates at `cap` instead of overflowing for any attempt number:
// attempt 10 000 of a doubling schedule is `cap`, never a wrapped or negative
// value.
#pragma once

#include <armor/detail/time.hpp>

#include <algorithm>
#include <cstdint>

namespace armor::detail {

/// 2^63 as a double: the first double above every int64 value. A double
/// strictly below it converts to int64 without overflow.
inline constexpr double int64_limit_as_double = 9223372036854775808.0;

/// A non-negative double as nanoseconds, at most `cap`.
[[nodiscard]] constexpr std::int64_t clamp_ns(double ns, std::int64_t cap) noexcept {
  if (!(ns < static_cast<double>(cap)) || !(ns < int64_limit_as_double)) return cap;  // also catches NaN
  return ns > 0.0 ? static_cast<std::int64_t>(ns) : 0;
}

/// initial * n, at most cap.
[[nodiscard]] constexpr std::int64_t linear_delay(std::int64_t initial, std::int64_t cap, unsigned n) noexcept {
  return std::min(saturating_mul(initial, static_cast<std::int64_t>(n)), cap);
}

/// initial * multiplier^(n-1), at most cap; n = 0 is treated as 1.
///
/// multiplier^(n-1) by repeated squaring (at most 32 rounds for any unsigned
/// n, two or three for the attempt numbers met in practice), stopping as soon
/// as the factor alone reaches cap / initial. No std::pow: it costs more than
/// the whole schedule and is not constexpr.
[[nodiscard]] constexpr std::int64_t exponential_delay(std::int64_t initial, double multiplier, std::int64_t cap,
                                                       unsigned n) noexcept {
  if (initial <= 0) return 0;
  if (initial >= cap) return cap;
  unsigned k = n > 0 ? n - 1 : 0;
  const double limit = static_cast<double>(cap) / static_cast<double>(initial);
  double factor = 1.0;
  double base = multiplier;
  // factor and base stay >= 1 (multiplier >= 1), so an overflow to infinity
  // compares above limit and no NaN can appear.
  while (k != 0) {
    if ((k & 1U) != 0) {
      factor *= base;
      if (factor >= limit) return cap;
    }
    k >>= 1U;
    if (k != 0) base *= base;
  }
  return clamp_ns(static_cast<double>(initial) * factor, cap);
}

/// Full jitter: uniform in [0, d) (0 when d is 0).
[[nodiscard]] constexpr std::int64_t full_jitter(std::int64_t d, double u) noexcept {
  if (d <= 0) return 0;
  // d <= 2^63 as a double and u <= 1 - 2^-53, so the product is below 2^63
  // and converts without overflow; with round-to-nearest it also stays below
  // d. The guard costs one compare and keeps that bound obvious to a reader.
  const auto r = static_cast<std::int64_t>(static_cast<double>(d) * u);
  return r < d ? r : d - 1;
}

/// Equal jitter: half of d kept, the other half drawn: uniform in [d/2, d).
[[nodiscard]] constexpr std::int64_t equal_jitter(std::int64_t d, double u) noexcept {
  const std::int64_t half = d / 2;
  return (d - half) + full_jitter(half, u);
}

/// Proportional jitter: uniform in [d - f*d, min(d + f*d, cap)). The upper
/// end is cut at cap, not the draws: values above cap are not piled onto cap
/// (clients all retrying at exactly max_delay would defeat the jitter).
[[nodiscard]] constexpr std::int64_t proportional_jitter(std::int64_t d, double fraction, std::int64_t cap,
                                                         double u) noexcept {
  const std::int64_t spread = clamp_ns(static_cast<double>(d) * fraction, d);  // f <= 1, so spread <= d
  const std::int64_t low = d - spread;
  const std::int64_t high = std::min(saturating_add(d, spread), cap);
  if (high <= low) return std::min(low, cap);
  return low + full_jitter(high - low, u);
}

/// Decorrelated jitter (the AWS Architecture Blog's "Exponential Backoff And
/// Jitter", 2015): uniform in [initial, min(3 * previous, cap)). The previous
/// delay is taken as at least `initial` (the first retry has none). As for
/// proportional jitter, the range is cut at cap rather than the draws.
[[nodiscard]] constexpr std::int64_t decorrelated_jitter(std::int64_t initial, std::int64_t previous, std::int64_t cap,
                                                         double u) noexcept {
  const std::int64_t prev = std::max(previous, initial);
  const std::int64_t high = std::min(saturating_mul(prev, 3), cap);
  if (high <= initial) return std::min(initial, cap);
  return initial + full_jitter(high - initial, u);
}

}  // namespace armor::detail
