// armor/rate.hpp: armor::rate, a number of events per period ("100/s",
// {5000, 1h}), as token buckets, pacers and fmt use it.
//
//     armor::rate r = armor::rate::parse("5000/h");   // == armor::rate{5000, 1h}
//
// See docs/token_bucket.md.
#pragma once

#include <armor/detail/bucket_parse.hpp>
#include <armor/detail/bucket_state.hpp>

#include <chrono>
#include <cstdint>
#include <string_view>

namespace armor {

/// A rate: `count` events every `per`. `{100, 1s}`, `{60, 1min}`, `{5000, 1h}`.
/// At most one per nanosecond.
struct rate {
  std::int64_t count = 0;
  std::chrono::nanoseconds per{std::chrono::seconds{1}};

  /// Parses "100/s", "60/minute", "5000/h", "10r/s", "100/10s", "3 per second".
  /// Throws armor::error(invalid_argument) quoting the text when it is malformed.
  [[nodiscard]] static rate parse(std::string_view text) {
    const detail::parsed_limit p = detail::limit_parser(text, "armor::rate::parse").rate_only();
    return {p.count, std::chrono::nanoseconds{p.per_ns}};
  }

  /// Equal when they are the same rate: {60, 1min} == {1, 1s}.
  friend constexpr bool operator==(const rate& a, const rate& b) noexcept {
    return static_cast<detail::bucket_int128>(a.count) * b.per.count() ==
           static_cast<detail::bucket_int128>(b.count) * a.per.count();
  }

  /// The rate as a metric sample: events per second (see armor/stats.hpp).
  [[nodiscard]] friend constexpr double metric_value_of(const rate& r) noexcept {
    return static_cast<double>(r.count) * 1e9 / static_cast<double>(r.per.count());
  }
};

}  // namespace armor
