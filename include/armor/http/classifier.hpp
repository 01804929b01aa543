// armor/http/classifier.hpp: status_classifier, which judges HTTP responses
// for a pipeline: the status decides (default_status_rule, or per-status
// overrides), a 429 or GitHub's rate-limit 403 is throttled (retried, not an
// upstream failure), and a retryable verdict carries the server's wait
// (Retry-After, or the rate-limit reset of an exhausted quota) as its
// retry_after.
//
//     armor::http::status_classifier judge;
//     judge.set(404, armor::http::status_rule::failure);    // this API's 404 means "broken"
//     auto p = armor::pipeline{armor::classify{judge}, armor::backoff{{.max_attempts = 4}}};
//
// Any armor::http::response type works (see armor/http/headers.hpp). See
// docs/http.md ("Judging responses").
#pragma once

#include <armor/detail/http_parse.hpp>
#include <armor/error.hpp>
#include <armor/http/date.hpp>
#include <armor/http/headers.hpp>
#include <armor/http/rate_limit.hpp>
#include <armor/http/status.hpp>
#include <armor/verdict.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace armor::http {

/// Judges HTTP responses for a pipeline: `armor::classify{status_classifier{}}`.
///
/// The status decides through default_status_rule, or through up to
/// `max_overrides` per-status overrides (`set(404, status_rule::failure)`),
/// held in a small fixed array: no allocation, copied by value.
///
/// A retryable failure or a throttled verdict carries the server's wait as
/// `retry_after`, which a retry layer (armor::backoff) uses instead of its
/// own delay: the Retry-After header; or, for a 429 without it, the
/// rate-limit reset when the rate-limit headers say nothing remains.
///
/// Throttled (armor::outcome::throttled: retried, but by default no failure
/// for a circuit breaker): a 429 (status_rule::throttled by default); and,
/// with `github_403` (on by default), a 403 that GitHub sends for a rate
/// limit: one with a valid Retry-After (its secondary limits), or whose
/// rate-limit headers (read_rate_limit) say `remaining` is 0 (its primary
/// limit, X-RateLimit-Remaining: 0). Any other 403 follows its rule. A 403
/// overridden to retryable_failure or throttled takes that rule, with the
/// Retry-After hint, whatever its headers; one overridden to success or
/// failure is still throttled when its headers say rate limit.
///
/// The wall clock is read only when a retryable response carries a hint
/// that needs it (an HTTP-date, a Unix time).
class status_classifier {
 public:
  /// How many statuses can be overridden.
  static constexpr std::size_t max_overrides = 16;

  constexpr status_classifier() noexcept = default;

  /// Overrides the rule for `status`. Throws armor::error(invalid_argument)
  /// for a status outside 100..599, or a new status beyond max_overrides.
  status_classifier& set(int status, status_rule rule) {
    if (status < 100 || status > 599) {
      armor::detail::invalid_config("armor::http::status_classifier::set: status must be within 100..599 (got " +
                                    std::to_string(status) + ")");
    }
    for (std::size_t i = 0; i < count_; ++i) {
      if (overrides_[i].status == status) {
        overrides_[i].rule = rule;
        return *this;
      }
    }
    if (count_ == max_overrides) {
      armor::detail::invalid_config("armor::http::status_classifier::set: more than " +
                                    std::to_string(max_overrides) + " statuses overridden");
    }
    overrides_[count_++] = {static_cast<std::int16_t>(status), rule};
    return *this;
  }

  /// Treats GitHub's rate-limit 403s as throttled (see above). On by default.
  constexpr status_classifier& github_403(bool on) noexcept {
    github_403_ = on;
    return *this;
  }

  /// The rule for a status (override, else default_status_rule).
  [[nodiscard]] constexpr status_rule rule(int status) const noexcept {
    for (std::size_t i = 0; i < count_; ++i) {
      if (overrides_[i].status == status) return overrides_[i].rule;
    }
    return default_status_rule(status);
  }

  /// Judges a status alone (no headers, so no retry_after).
  [[nodiscard]] verdict judge_status(int status,
                                     std::optional<std::chrono::nanoseconds> retry_after = std::nullopt) const noexcept {
    return verdict_for(rule(status), status, retry_after);
  }

  /// Judges a response; the wall clock is read only if a hint needs it.
  template <response R>
  [[nodiscard]] verdict operator()(const R& r) const {
    return judge(r, [] { return std::chrono::system_clock::now(); });
  }

  /// Judges a response that arrived at wall time `now`.
  template <response R>
  [[nodiscard]] verdict operator()(const R& r, wall_time now) const {
    return judge(r, [now] { return now; });
  }

 private:
  template <response R, class Now>
  verdict judge(const R& r, Now&& now) const {
    const int s = http::status(r);
    const status_rule base = rule(s);
    const bool retryable = base == status_rule::retryable_failure || base == status_rule::throttled;
    const bool maybe_github = github_403_ && s == 403 && !retryable;
    if (!retryable && !maybe_github) return verdict_for(base, s);
    std::optional<wall_time> t;
    auto wall = [&] {
      if (!t) t = now();
      return *t;
    };
    std::optional<std::chrono::nanoseconds> after;
    if (const auto v = header(r, "Retry-After")) {
      const std::string_view trimmed = armor::detail::http_trim(*v);
      // delta-seconds need no clock
      after = !trimmed.empty() && armor::detail::http_digit(trimmed.front()) ? parse_retry_after(trimmed, wall_time{})
                                                                             : parse_retry_after(trimmed, wall());
    }
    if (!after && (s == 429 || maybe_github)) {
      const rate_limit_info info = read_rate_limit(r, wall());
      const bool exhausted = info.remaining && *info.remaining == 0;
      if (exhausted) after = info.reset_after;
      // A 403 that is neither GitHub's primary nor its secondary limit.
      if (maybe_github && !exhausted) return verdict_for(base, s);
    }
    return verdict_for(maybe_github ? status_rule::throttled : base, s, after);
  }

  struct entry {
    std::int16_t status = 0;
    status_rule rule = status_rule::success;
  };
  std::array<entry, max_overrides> overrides_{};
  std::size_t count_ = 0;
  bool github_403_ = true;
};

}  // namespace armor::http
