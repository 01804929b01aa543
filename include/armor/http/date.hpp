// armor/http/date.hpp: HTTP dates and Retry-After, read and written.
//
//     const auto wait = armor::http::parse_retry_after(value, std::chrono::system_clock::now());
//     if (wait) sleep_for(*wait);              // "120" or "Sun, 06 Nov 1994 08:49:37 GMT"
//
// Parsers are strict and total: any bytes in, a value or std::nullopt out;
// they never throw, allocate, read the locale or overflow. See docs/http.md.
#pragma once

#include <armor/detail/http_parse.hpp>
#include <armor/detail/time.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace armor::http {

/// The wall clock's time point: dates in headers are wall time.
using wall_time = std::chrono::system_clock::time_point;

/// The longest server hint armor accepts: 366 days. A Retry-After or a
/// rate-limit reset further away is rejected as garbage rather than obeyed:
/// it is far more likely a bug (a Unix time sent as delta-seconds would mean
/// 55 years) than an instruction, and no quota window runs longer than a year.
inline constexpr std::chrono::seconds max_server_hint{366LL * 24 * 3600};

namespace detail {

/// Whole seconds, rounded up; 0 for zero or less (Retry-After, RateLimit-Reset).
[[nodiscard]] constexpr std::int64_t ceil_seconds(std::chrono::nanoseconds d) noexcept {
  const std::int64_t ns = d.count();
  return ns <= 0 ? 0 : ns / 1'000'000'000 + (ns % 1'000'000'000 != 0 ? 1 : 0);
}

}  // namespace detail

/// Parses an HTTP-date (RFC 9110 section 5.6.7) in any of its three forms
/// (IMF-fixdate, RFC 850, asctime; see docs/http.md for what is accepted).
/// A two-digit RFC 850 year is the most recent year with those digits that
/// is not more than 50 years after `now`. nullopt for anything else and for
/// a date outside what system_clock::time_point can hold.
[[nodiscard]] inline std::optional<wall_time> parse_http_date(std::string_view value, wall_time now) noexcept {
  using namespace std::chrono;
  // floor, not duration_cast: before 1970 truncation toward zero would give
  // the next second, which is in the next year just before a New Year.
  const std::int64_t now_s = floor<seconds>(now.time_since_epoch()).count();
  const auto s = armor::detail::http_date_seconds(value, armor::detail::http_year_of(now_s));
  if (!s) return std::nullopt;
  constexpr std::int64_t max_s = duration_cast<seconds>(wall_time::duration::max()).count();
  constexpr std::int64_t min_s = duration_cast<seconds>(wall_time::duration::min()).count();
  if (*s >= max_s || *s <= min_s) return std::nullopt;
  return wall_time{duration_cast<wall_time::duration>(seconds{*s})};
}

/// Same; a two-digit RFC 850 year is resolved against the current time,
/// read only for that form.
[[nodiscard]] inline std::optional<wall_time> parse_http_date(std::string_view value) noexcept {
  const auto f = armor::detail::http_date_syntax(armor::detail::http_trim(value));
  if (!f) return std::nullopt;
  return parse_http_date(value, f->year < 0 ? std::chrono::system_clock::now() : wall_time{});
}

/// Parses a Retry-After value (RFC 9110 section 10.2.3) into how long to
/// wait from `now`: delta-seconds (digits only, "120"), or an HTTP-date
/// (the time until it; zero when already past). Blanks around the value are
/// ignored. nullopt for anything else, for a number too large for int64, and
/// for a wait longer than max_server_hint (rejected, not clamped).
[[nodiscard]] inline std::optional<std::chrono::nanoseconds> parse_retry_after(std::string_view value,
                                                                               wall_time now) noexcept {
  using namespace std::chrono;
  const std::string_view v = armor::detail::http_trim(value);
  if (v.empty()) return std::nullopt;
  if (armor::detail::http_digit(v.front())) {
    const auto secs = armor::detail::http_uint(v);
    if (!secs || *secs > max_server_hint.count()) return std::nullopt;
    return duration_cast<nanoseconds>(seconds{*secs});
  }
  const auto at = parse_http_date(v, now);
  if (!at) return std::nullopt;
  if (*at <= now) return nanoseconds::zero();
  // Any `now` is allowed (one before 1970 with a date in 2262 too), so the
  // difference saturates rather than overflowing, and the limit is checked on
  // the exact wait: a wait a fraction of a second beyond it is refused.
  const std::int64_t wait_ns = armor::detail::saturating_sub(armor::detail::to_ns(at->time_since_epoch()),
                                                             armor::detail::to_ns(now.time_since_epoch()));
  if (wait_ns > duration_cast<nanoseconds>(max_server_hint).count()) return std::nullopt;
  return nanoseconds{wait_ns};
}

/// The Retry-After value (delta-seconds) for a wait, e.g. a failed pipeline
/// call's failure::retry_after: whole seconds, rounded up, at least 1.
[[nodiscard]] constexpr std::int64_t retry_after_seconds(std::chrono::nanoseconds d) noexcept {
  const std::int64_t s = detail::ceil_seconds(d);
  return s < 1 ? 1 : s;
}

}  // namespace armor::http
