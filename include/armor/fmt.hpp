// armor/fmt.hpp: fmt::formatter specialisations for armor's states,
// decisions, stats, results and errors (needs fmt 9 or later; link
// armor::fmt).
//
//     #include <armor/fmt.hpp>
//     fmt::print("{}\n", breaker.stats());
//     // state=closed opened=1 successes=0 failures=3 slow_calls=0 ignored=0 rejections=0 ...
//     fmt::print("{}\n", bucket.try_acquire());     // denied 1 of 10 (0 left, retry after 100ms)
//     fmt::print("{:>9}|\n", armor::breaker_state::open);   // "     open|"
//
// Enumerations print as their names (the identifiers, `half_open`,
// `quota_exhausted`) and take the format spec of a string (width, fill,
// alignment). Everything else takes no spec, `{}` only, and prints one line:
// stats as `name=value` pairs (easy to read and to grep), decisions and
// events as a short sentence. Durations print compactly: 1h30m, 2.5s, 250ms,
// 12us, 40ns.
//
// Formatting is for logs and debugging, not for a hot path: a failure's
// cause is rethrown to read its what(), and error messages come from
// std::error_category::message (a std::string).
#pragma once

#include <armor/backoff.hpp>
#include <armor/bulkhead.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/error.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/result.hpp>
#include <armor/token_bucket.hpp>
#include <armor/verdict.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace armor::detail {

[[nodiscard]] constexpr std::string_view fmt_name(errc e) noexcept {
  switch (e) {
    case errc::circuit_open: return "circuit_open";
    case errc::rate_limited: return "rate_limited";
    case errc::quota_exhausted: return "quota_exhausted";
    case errc::deadline_exceeded: return "deadline_exceeded";
    case errc::bulkhead_full: return "bulkhead_full";
    case errc::retries_exhausted: return "retries_exhausted";
    case errc::operation_failed: return "operation_failed";
    case errc::cancelled: return "cancelled";
    case errc::request_too_large: return "request_too_large";
    case errc::invalid_argument: return "invalid_argument";
    case errc::storage_unavailable: return "storage_unavailable";
  }
  return "unknown";
}

[[nodiscard]] constexpr std::string_view fmt_name(breaker_state s) noexcept { return to_string(s); }
[[nodiscard]] constexpr std::string_view fmt_name(breaker_reason r) noexcept { return to_string(r); }

[[nodiscard]] constexpr std::string_view fmt_name(breaker_window w) noexcept {
  switch (w) {
    case breaker_window::count: return "count";
    case breaker_window::time: return "time";
  }
  return "unknown";
}

[[nodiscard]] constexpr std::string_view fmt_name(backoff_stop s) noexcept {
  switch (s) {
    case backoff_stop::non_retryable: return "non_retryable";
    case backoff_stop::exhausted: return "exhausted";
    case backoff_stop::budget: return "budget";
    case backoff_stop::deadline: return "deadline";
  }
  return "unknown";
}

[[nodiscard]] constexpr std::string_view fmt_name(backoff_schedule s) noexcept {
  switch (s) {
    case backoff_schedule::constant: return "constant";
    case backoff_schedule::linear: return "linear";
    case backoff_schedule::exponential: return "exponential";
    case backoff_schedule::decorrelated: return "decorrelated";
  }
  return "unknown";
}

[[nodiscard]] constexpr std::string_view fmt_name(jitter_mode j) noexcept {
  switch (j) {
    case jitter_mode::none: return "none";
    case jitter_mode::full: return "full";
    case jitter_mode::equal: return "equal";
    case jitter_mode::proportional: return "proportional";
  }
  return "unknown";
}

[[nodiscard]] constexpr std::string_view fmt_name(quota_status s) noexcept {
  switch (s) {
    case quota_status::granted: return "granted";
    case quota_status::exhausted: return "exhausted";
    case quota_status::too_large: return "too_large";
    case quota_status::invalid: return "invalid";
    case quota_status::unavailable: return "unavailable";
  }
  return "unknown";
}

[[nodiscard]] constexpr std::string_view fmt_name(quota_window_kind k) noexcept {
  switch (k) {
    case quota_window_kind::fixed: return "fixed";
    case quota_window_kind::week: return "week";
    case quota_window_kind::month: return "month";
    case quota_window_kind::rolling: return "rolling";
  }
  return "unknown";
}

[[nodiscard]] constexpr std::string_view fmt_name(bucket_status s) noexcept {
  switch (s) {
    case bucket_status::granted: return "granted";
    case bucket_status::denied: return "denied";
    case bucket_status::too_large: return "too_large";
    case bucket_status::invalid: return "invalid";
  }
  return "unknown";
}

[[nodiscard]] constexpr std::string_view fmt_name(outcome o) noexcept {
  switch (o) {
    case outcome::success: return "success";
    case outcome::failure: return "failure";
    case outcome::rejected: return "rejected";
    case outcome::timeout: return "timeout";
    case outcome::cancelled: return "cancelled";
  }
  return "unknown";
}

/// Writes a duration compactly: "1h30m", "1m0.5s", "2.5s", "250ms", "1.5us",
/// "40ns", "0s"; nanoseconds::max() (armor's "never") as "never".
template <class Out>
Out fmt_duration(Out out, std::chrono::nanoseconds d) {
  std::int64_t ns = d.count();
  if (ns == std::chrono::nanoseconds::max().count()) return fmt::format_to(out, "never");
  if (ns == 0) return fmt::format_to(out, "0s");
  if (ns < 0) {
    out = fmt::format_to(out, "-");
    if (ns == std::chrono::nanoseconds::min().count()) return fmt::format_to(out, "{}ns", "9223372036854775808");
    ns = -ns;
  }
  // Up to three decimals of `unit`, trailing zeros dropped.
  const auto decimal = [](Out o, std::int64_t v, std::int64_t unit, std::string_view suffix) {
    const std::int64_t whole = v / unit;
    std::int64_t milli = (v % unit) / (unit / 1000);
    if (milli == 0) return fmt::format_to(o, "{}{}", whole, suffix);
    int digits = 3;
    while (milli % 10 == 0) {
      milli /= 10;
      --digits;
    }
    return fmt::format_to(o, "{}.{:0{}}{}", whole, milli, digits, suffix);
  };
  constexpr std::int64_t us = 1'000;
  constexpr std::int64_t ms = 1'000'000;
  constexpr std::int64_t s = 1'000'000'000;
  constexpr std::int64_t min = 60 * s;
  constexpr std::int64_t h = 60 * min;
  if (ns < us) return fmt::format_to(out, "{}ns", ns);
  if (ns < ms) return decimal(out, ns, us, "us");
  if (ns < s) return decimal(out, ns, ms, "ms");
  if (ns >= h) {
    out = fmt::format_to(out, "{}h", ns / h);
    ns %= h;
    if (ns == 0) return out;
    out = fmt::format_to(out, "{}m", ns / min);
    ns %= min;
    return ns == 0 ? out : decimal(out, ns, s, "s");
  }
  if (ns >= min) {
    out = fmt::format_to(out, "{}m", ns / min);
    ns %= min;
    return ns == 0 ? out : decimal(out, ns, s, "s");
  }
  return decimal(out, ns, s, "s");
}

/// Writes a fraction as a percentage, to a tenth: 0.3 -> "30%", 1/3 -> "33.3%".
template <class Out>
Out fmt_percent(Out out, double fraction) {
  if (!std::isfinite(fraction)) return fmt::format_to(out, "{}%", fraction);
  return fmt::format_to(out, "{}%", std::round(fraction * 1000.0) / 10.0);
}

/// An error code: armor's by name ("circuit_open"), any other as
/// "category:value (message)".
template <class Out>
Out fmt_code(Out out, const std::error_code& code) {
  if (code.category() == error_category()) return fmt::format_to(out, "{}", fmt_name(static_cast<errc>(code.value())));
  return fmt::format_to(out, "{}:{} ({})", code.category().name(), code.value(), code.message());
}

/// The base of every armor formatter that takes no format spec.
struct fmt_no_spec {
  constexpr auto parse(fmt::format_parse_context& ctx) -> decltype(ctx.begin()) {
    auto it = ctx.begin();
    if (it != ctx.end() && *it != '}') throw fmt::format_error("armor: this type takes no format spec; use {}");
    return it;
  }
};

/// The base of the enumerations' formatters: the name, formatted as a string.
template <class E>
struct fmt_enum : fmt::formatter<fmt::string_view> {
  template <class FormatContext>
  auto format(E e, FormatContext& ctx) const -> decltype(ctx.out()) {
    const std::string_view name = fmt_name(e);
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(name.data(), name.size()), ctx);
  }
};

}  // namespace armor::detail

// ---------------------------------------------------------------- enumerations

template <>
struct fmt::formatter<armor::errc> : armor::detail::fmt_enum<armor::errc> {};
template <>
struct fmt::formatter<armor::breaker_state> : armor::detail::fmt_enum<armor::breaker_state> {};
template <>
struct fmt::formatter<armor::breaker_reason> : armor::detail::fmt_enum<armor::breaker_reason> {};
template <>
struct fmt::formatter<armor::breaker_window> : armor::detail::fmt_enum<armor::breaker_window> {};
template <>
struct fmt::formatter<armor::backoff_stop> : armor::detail::fmt_enum<armor::backoff_stop> {};
template <>
struct fmt::formatter<armor::backoff_schedule> : armor::detail::fmt_enum<armor::backoff_schedule> {};
template <>
struct fmt::formatter<armor::jitter_mode> : armor::detail::fmt_enum<armor::jitter_mode> {};
template <>
struct fmt::formatter<armor::quota_status> : armor::detail::fmt_enum<armor::quota_status> {};
template <>
struct fmt::formatter<armor::quota_window_kind> : armor::detail::fmt_enum<armor::quota_window_kind> {};
template <>
struct fmt::formatter<armor::bucket_status> : armor::detail::fmt_enum<armor::bucket_status> {};
template <>
struct fmt::formatter<armor::outcome> : armor::detail::fmt_enum<armor::outcome> {};

// ---------------------------------------------------------------- circuit breaker

/// "closed -> open (failure_threshold) for 30s"; "open -> half_open (open_elapsed)".
template <>
struct fmt::formatter<armor::circuit_breaker_event> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::circuit_breaker_event& e, FormatContext& ctx) const -> decltype(ctx.out()) {
    auto out = fmt::format_to(ctx.out(), "{} -> {} ({})", e.from, e.to, e.reason);
    if (e.to == armor::breaker_state::open && e.open_for.count() > 0) {
      out = armor::detail::fmt_duration(fmt::format_to(out, " for "), e.open_for);
    }
    return out;
  }
};

/// "state=closed opened=1 successes=120 failures=3 ... failure_rate=2.5% slow_call_rate=0%".
template <>
struct fmt::formatter<armor::circuit_breaker_stats> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::circuit_breaker_stats& s, FormatContext& ctx) const -> decltype(ctx.out()) {
    auto out = fmt::format_to(ctx.out(),
                              "state={} opened={} successes={} failures={} slow_calls={} ignored={} rejections={} "
                              "consecutive_failures={} probes_in_flight={} window_calls={} window_failures={} "
                              "window_slow_calls={} failure_rate=",
                              s.state, s.times_opened, s.successes, s.failures, s.slow_calls, s.ignored, s.rejections,
                              s.consecutive_failures, s.probes_in_flight, s.window_calls, s.window_failures,
                              s.window_slow_calls);
    out = armor::detail::fmt_percent(out, s.failure_rate);
    out = fmt::format_to(out, " slow_call_rate=");
    return armor::detail::fmt_percent(out, s.slow_call_rate);
  }
};

// ---------------------------------------------------------------- backoff

/// "calls=10 retries=4 successes_after_retry=2 exhausted=1 budget_refusals=0 deadline_stops=0 non_retryable=1".
template <>
struct fmt::formatter<armor::backoff_stats> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::backoff_stats& s, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::format_to(ctx.out(),
                          "calls={} retries={} successes_after_retry={} exhausted={} budget_refusals={} "
                          "deadline_stops={} non_retryable={}",
                          s.calls, s.retries, s.successes_after_retry, s.exhausted, s.budget_refusals,
                          s.deadline_stops, s.non_retryable);
  }
};

// ---------------------------------------------------------------- token bucket

/// "100/s", "5000/h", "60/min", "50/d"; a rate over another period in the
/// first of s, min, h, d that makes the count whole ({1, 20ms}, as a bucket
/// reports 50/s in lowest terms, is "50/s"; {3, 10s} is "18/min"), else as
/// given ("3/7s"). rate::parse reads every form back.
template <>
struct fmt::formatter<armor::rate> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::rate& r, FormatContext& ctx) const -> decltype(ctx.out()) {
    using namespace std::chrono;
    struct unit {
      nanoseconds per;
      std::string_view name;
    };
    constexpr unit units[] = {{seconds{1}, "s"}, {minutes{1}, "min"}, {hours{1}, "h"}, {hours{24}, "d"}};
    for (const unit& u : units) {
      if (r.per == u.per) return fmt::format_to(ctx.out(), "{}/{}", r.count, u.name);
    }
    if (r.per.count() > 0) {
      for (const unit& u : units) {
        const auto scaled = static_cast<armor::detail::bucket_int128>(r.count) * u.per.count();
        if (scaled % r.per.count() == 0) {
          return fmt::format_to(ctx.out(), "{}/{}", static_cast<std::int64_t>(scaled / r.per.count()), u.name);
        }
      }
    }
    return armor::detail::fmt_duration(fmt::format_to(ctx.out(), "{}/", r.count), r.per);
  }
};

/// "granted 1 of 10 (9 left)"; "denied 3 of 10 (0 left, retry after 250ms)";
/// "too_large: 11 > burst 10"; "invalid: -1 tokens".
template <>
struct fmt::formatter<armor::bucket_decision> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::bucket_decision& d, FormatContext& ctx) const -> decltype(ctx.out()) {
    switch (d.status()) {
      case armor::bucket_status::granted: {
        auto out = fmt::format_to(ctx.out(), "granted {} of {} ({} left", d.requested(), d.limit(), d.remaining());
        if (d.wait().count() > 0) out = armor::detail::fmt_duration(fmt::format_to(out, ", due in "), d.wait());
        return fmt::format_to(out, ")");
      }
      case armor::bucket_status::denied: {
        auto out = fmt::format_to(ctx.out(), "denied {} of {} ({} left, retry after ", d.requested(), d.limit(),
                                  d.remaining());
        return fmt::format_to(armor::detail::fmt_duration(out, d.retry_after()), ")");
      }
      case armor::bucket_status::too_large:
        return fmt::format_to(ctx.out(), "too_large: {} > burst {}", d.requested(), d.limit());
      case armor::bucket_status::invalid:
        break;
    }
    return fmt::format_to(ctx.out(), "invalid: {} tokens", d.requested());
  }
};

/// "rate=100/s burst=10 available=7 until_full=30ms granted=12 rejected=3 too_large=0"
/// (the counters only when the bucket counts calls).
template <>
struct fmt::formatter<armor::token_bucket_stats> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::token_bucket_stats& s, FormatContext& ctx) const -> decltype(ctx.out()) {
    auto out = fmt::format_to(ctx.out(), "rate={} burst={} available={} until_full=", s.rate, s.burst, s.available);
    out = armor::detail::fmt_duration(out, s.until_full);
    if (!s.counting) return out;
    return fmt::format_to(out, " granted={} rejected={} too_large={}", s.granted, s.rejected, s.too_large);
  }
};

// ---------------------------------------------------------------- bulkhead

/// "in_use=3/10 queued=2/50".
template <>
struct fmt::formatter<armor::bulkhead_stats> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::bulkhead_stats& s, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::format_to(ctx.out(), "in_use={}/{} queued={}/{}", s.in_use, s.max_concurrent, s.queued, s.max_queue);
  }
};

// ---------------------------------------------------------------- quota tracker

/// "granted"; "exhausted: window 0 at 50/50, retry after 11h58m";
/// "too_large: window 1 limit 10"; "invalid"; "unavailable".
template <>
struct fmt::formatter<armor::quota_decision> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::quota_decision& d, FormatContext& ctx) const -> decltype(ctx.out()) {
    switch (d.status()) {
      case armor::quota_status::exhausted: {
        auto out = fmt::format_to(ctx.out(), "exhausted: window {} at {}/{}, retry after ", d.window(), d.used(),
                                  d.limit());
        return armor::detail::fmt_duration(out, d.retry_after());
      }
      case armor::quota_status::too_large:
        return fmt::format_to(ctx.out(), "too_large: window {} limit {}", d.window(), d.limit());
      default:
        break;
    }
    return fmt::format_to(ctx.out(), "{}", d.status());
  }
};

/// "used=40/50 (80%) resets_in=12h exhausted_in=3h".
template <>
struct fmt::formatter<armor::quota_usage> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::quota_usage& u, FormatContext& ctx) const -> decltype(ctx.out()) {
    auto out = fmt::format_to(ctx.out(), "used={}/{} (", u.used, u.limit);
    out = armor::detail::fmt_percent(out, u.fraction());
    out = armor::detail::fmt_duration(fmt::format_to(out, ") resets_in="), u.resets_in);
    if (u.exhausted_in) out = armor::detail::fmt_duration(fmt::format_to(out, " exhausted_in="), *u.exhausted_in);
    return out;
  }
};

/// "window 0 reached 80%: 40/50, resets in 12h".
template <>
struct fmt::formatter<armor::quota_alert> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::quota_alert& a, FormatContext& ctx) const -> decltype(ctx.out()) {
    auto out = armor::detail::fmt_percent(fmt::format_to(ctx.out(), "window {} reached ", a.window), a.threshold);
    out = fmt::format_to(out, ": {}/{}, resets in ", a.used, a.limit);
    return armor::detail::fmt_duration(out, a.resets_in);
  }
};

/// "exhausted=3 too_large=1 invalid=0 unavailable=0 alerts=2".
template <>
struct fmt::formatter<armor::quota_tracker_stats> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::quota_tracker_stats& s, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::format_to(ctx.out(), "exhausted={} too_large={} invalid={} unavailable={} alerts={}", s.exhausted,
                          s.too_large, s.invalid, s.unavailable, s.alerts);
  }
};

// ---------------------------------------------------------------- verdicts, failures, results, errors

/// "success"; "failure (retryable, retry after 2s): operation_failed";
/// "timeout: deadline_exceeded".
template <>
struct fmt::formatter<armor::verdict> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::verdict& v, FormatContext& ctx) const -> decltype(ctx.out()) {
    auto out = fmt::format_to(ctx.out(), "{}", v.kind);
    if (v.ok()) return out;
    if (v.retryable || v.retry_after) {
      out = fmt::format_to(out, " ({}", v.retryable ? "retryable" : "not retryable");
      if (v.retry_after) out = armor::detail::fmt_duration(fmt::format_to(out, ", retry after "), *v.retry_after);
      out = fmt::format_to(out, ")");
    }
    if (v.code.value() == 0) return out;
    return armor::detail::fmt_code(fmt::format_to(out, ": "), v.code);
  }
};

/// "circuit_open (retry after 30s)"; "retries_exhausted: <the cause's what()>".
template <>
struct fmt::formatter<armor::failure> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::failure& f, FormatContext& ctx) const -> decltype(ctx.out()) {
    auto out = armor::detail::fmt_code(ctx.out(), f.code);
    if (f.retry_after) out = fmt::format_to(armor::detail::fmt_duration(fmt::format_to(out, " (retry after "), *f.retry_after), ")");
    if (f.cause) {
      try {
        std::rethrow_exception(f.cause);
      } catch (const std::exception& e) {
        out = fmt::format_to(out, ": {}", e.what());
      } catch (...) {
        out = fmt::format_to(out, ": (an exception not derived from std::exception)");
      }
    }
    return out;
  }
};

/// A value as the value formats (or "ok" for result<void> and for values fmt
/// cannot format); a failure as "error: " and the failure.
template <class T>
struct fmt::formatter<armor::result<T>> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::result<T>& r, FormatContext& ctx) const -> decltype(ctx.out()) {
    if (!r) return fmt::format_to(ctx.out(), "error: {}", r.error());
    if constexpr (!std::is_void_v<T>) {
      if constexpr (fmt::is_formattable<T>::value) return fmt::format_to(ctx.out(), "{}", *r);
    }
    return fmt::format_to(ctx.out(), "ok");
  }
};

/// "rate_limited (retry after 100ms): rate limited" (the code's name, its
/// retry_after, and what()).
template <>
struct fmt::formatter<armor::error> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const armor::error& e, FormatContext& ctx) const -> decltype(ctx.out()) {
    auto out = armor::detail::fmt_code(ctx.out(), e.code());
    if (e.retry_after()) {
      out = fmt::format_to(armor::detail::fmt_duration(fmt::format_to(out, " (retry after "), *e.retry_after()), ")");
    }
    return fmt::format_to(out, ": {}", e.what());
  }
};
