// armor/detail/time.hpp: saturating arithmetic on nanosecond counts.
// Not API. Policies keep time as int64 nanoseconds; every sum of a time and a
// duration goes through these helpers so that "no deadline" (the maximum
// value) and huge user-supplied durations never overflow.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace armor::detail {

inline constexpr std::int64_t ns_max = std::numeric_limits<std::int64_t>::max();
inline constexpr std::int64_t ns_min = std::numeric_limits<std::int64_t>::min();

/// a + b, clamped to the int64 range instead of overflowing.
[[nodiscard]] constexpr std::int64_t saturating_add(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? ns_max : ns_min;
  return r;
}

/// a - b, clamped to the int64 range instead of overflowing.
[[nodiscard]] constexpr std::int64_t saturating_sub(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) return b < 0 ? ns_max : ns_min;
  return r;
}

/// a * b for non-negative a and b, clamped to ns_max.
[[nodiscard]] constexpr std::int64_t saturating_mul(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return ns_max;
  return r;
}

/// Any std::chrono duration as int64 nanoseconds, saturating instead of
/// overflowing (std::chrono::hours::max() does not fit in nanoseconds).
template <class Rep, class Period>
[[nodiscard]] constexpr std::int64_t to_ns(std::chrono::duration<Rep, Period> d) noexcept {
  using namespace std::chrono;
  if constexpr (std::is_same_v<duration<Rep, Period>, nanoseconds>) {
    return d.count();
  }
  using limit = duration<long double, std::nano>;
  const auto wide = duration_cast<limit>(d).count();
  if (wide >= static_cast<long double>(ns_max)) return ns_max;
  if (wide <= static_cast<long double>(ns_min)) return ns_min;
  return duration_cast<nanoseconds>(d).count();
}

}  // namespace armor::detail
