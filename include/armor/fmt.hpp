// armor/fmt.hpp: fmt formatters for armor's types (needs fmt 9 or later;
// link armor::fmt). Nothing here names a policy: what a type prints comes
// from the type itself.
//
//     #include <armor/fmt.hpp>
//     fmt::print("{}\n", breaker.stats());       // state=closed opened=1 failures=3 ...
//     fmt::print("{}\n", bucket.try_acquire());  // granted, or "rate_limited (retry after 100ms)"
//     fmt::print("{:>9}|\n", armor::breaker_state::open);   // "     open|"
//
// Formatted: armor's enumerations (by the `to_string` beside them, with a
// string's format spec), structs with `fields()` (armor/stats.hpp: stats
// snapshots, events) as `name=value` pairs, decisions, verdicts, failures,
// results, errors and armor::rate. "Armor's" means declared in a namespace
// that declares armor_fmt_owned (armor, armor::http; see error.hpp): a
// user's own enum with a to_string is left alone. For logs and debugging,
// not for a hot path. What each type prints: docs/observability.md#fmt.
#pragma once

#include <armor/decision.hpp>
#include <armor/error.hpp>
#include <armor/result.hpp>
#include <armor/stats.hpp>
#include <armor/rate.hpp>
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

// Outside namespace armor, so that only argument-dependent lookup finds
// armor_fmt_owned: a type is armor's when its own namespace declares it.
namespace armor_fmt_adl {
template <class T>
concept owned = requires(const T* p) {
  { armor_fmt_owned(p) } -> std::same_as<bool>;
};
}  // namespace armor_fmt_adl

namespace armor::detail {

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

/// An error code: armor's by name ("circuit_open"), any other as
/// "category:value (message)".
template <class Out>
Out fmt_code(Out out, const std::error_code& code) {
  if (code.category() == error_category()) return fmt::format_to(out, "{}", to_string(static_cast<errc>(code.value())));
  return fmt::format_to(out, "{}:{} ({})", code.category().name(), code.value(), code.message());
}

/// An enumeration of armor's (see armor_fmt_adl::owned) with a `to_string`
/// beside it that returns its name.
template <class E>
concept named_enum = std::is_enum_v<E> && armor_fmt_adl::owned<E> && requires(E e) {
  { to_string(e) } -> std::same_as<std::string_view>;
};

/// A struct of armor's that lists its fields (stats snapshots, events).
template <class S>
concept described = armor_fmt_adl::owned<S> && requires { S::fields(); };

/// A decision of armor's.
template <class D>
concept armor_decision = armor_fmt_adl::owned<D> && decision_like<D>;

/// Writes one field's value: durations compactly, enums by name, bool as
/// true/false, anything else as fmt formats it.
template <class Out, class T>
Out fmt_value(Out out, const T& v) {
  if constexpr (is_optional_v<T>) {
    return v ? fmt_value(out, *v) : fmt::format_to(out, "none");
  } else if constexpr (is_duration_v<T>) {
    return fmt_duration(out, std::chrono::duration_cast<std::chrono::nanoseconds>(v));
  } else if constexpr (named_enum<T>) {
    return fmt::format_to(out, "{}", to_string(v));
  } else if constexpr (std::is_same_v<T, std::error_code>) {
    return v ? fmt_code(out, v) : fmt::format_to(out, "none");
  } else if constexpr (described<T>) {
    return fmt::format_to(out, "{{{}}}", v);  // a snapshot inside a snapshot (a histogram's)
  } else {
    return fmt::format_to(out, "{}", v);
  }
}

/// The base of every armor formatter that takes no format spec.
struct fmt_no_spec {
  constexpr auto parse(fmt::format_parse_context& ctx) -> decltype(ctx.begin()) {
    auto it = ctx.begin();
    if (it != ctx.end() && *it != '}') throw fmt::format_error("armor: this type takes no format spec; use {}");
    return it;
  }
};

}  // namespace armor::detail

/// Enumerations: the name from `to_string`, formatted as a string.
template <class E>
  requires armor::detail::named_enum<E>
struct fmt::formatter<E, char> : fmt::formatter<fmt::string_view> {
  template <class FormatContext>
  auto format(E e, FormatContext& ctx) const -> decltype(ctx.out()) {
    const std::string_view name = to_string(e);
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(name.data(), name.size()), ctx);
  }
};

/// Stats snapshots and events: "name=value name=value ...".
template <class S>
  requires armor::detail::described<S>
struct fmt::formatter<S, char> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const S& s, FormatContext& ctx) const -> decltype(ctx.out()) {
    auto out = ctx.out();
    bool first = true;
    armor::detail::for_each_field<S>([&](const auto& f) {
      if (!armor::detail::present(f, s)) return;
      if (!first) *out++ = ' ';
      first = false;
      out = fmt::format_to(out, "{}=", f.name);
      out = armor::detail::fmt_value(out, s.*(f.member));
    });
    return out;
  }
};

/// Decisions: "granted", or "<code> (retry after <duration>)".
template <class D>
  requires(armor::detail::armor_decision<D> && !armor::detail::described<D>)
struct fmt::formatter<D, char> : armor::detail::fmt_no_spec {
  template <class FormatContext>
  auto format(const D& d, FormatContext& ctx) const -> decltype(ctx.out()) {
    if (d) return fmt::format_to(ctx.out(), "granted");
    auto out = armor::detail::fmt_code(ctx.out(), d.code());
    const std::chrono::nanoseconds after = d.retry_after();
    if (after == std::chrono::nanoseconds::max()) return out;
    return fmt::format_to(armor::detail::fmt_duration(fmt::format_to(out, " (retry after "), after), ")");
  }
};

// ---------------------------------------------------------------- rate

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
