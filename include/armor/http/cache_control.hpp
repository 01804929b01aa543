// armor/http/cache_control.hpp: a response's Cache-Control read into the
// freshness of an armor::cache entry (max-age, stale-while-revalidate,
// stale-if-error, no-store, no-cache, must-revalidate).
//
//     auto cc = armor::http::parse_cache_control("max-age=300, stale-if-error=86400");
//     auto item = armor::http::cache_item_from(cc, std::make_shared<const std::string>(body));
//     // item.freshness: 300 s fresh, a day on errors; item.store: true
//
// The parser is tolerant and total: any bytes in, never a throw or an
// allocation. Unknown directives are ignored, the first of duplicates
// counts, an invalid max-age makes the response stale. See docs/cache.md
// ("HTTP: Cache-Control").
#pragma once

#include <armor/cache.hpp>
#include <armor/detail/http_parse.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

namespace armor::http {

/// The directives of a response's Cache-Control that a client cache uses.
struct cache_control {
  std::optional<std::chrono::seconds> max_age;
  std::optional<std::chrono::seconds> stale_while_revalidate;
  std::optional<std::chrono::seconds> stale_if_error;
  bool no_store = false;         ///< never store it
  bool no_cache = false;         ///< never answer it without revalidating: not stored either
  bool must_revalidate = false;  ///< never answer it stale (proxy-revalidate counts too)

  /// Whether armor::cache should store the response at all.
  [[nodiscard]] constexpr bool storable() const noexcept { return !no_store && !no_cache; }

  /// The entry's freshness: the directives given, `defaults` for the rest.
  /// must-revalidate (or no-cache) forbids stale answers: both windows are 0.
  [[nodiscard]] constexpr cache_freshness freshness(const cache_freshness& defaults = {}) const noexcept {
    cache_freshness f = defaults;
    if (max_age) f.max_age = *max_age;
    if (stale_while_revalidate) f.stale_while_revalidate = *stale_while_revalidate;
    if (stale_if_error) f.stale_if_error = *stale_if_error;
    if (must_revalidate || no_cache) {
      f.stale_while_revalidate = std::chrono::nanoseconds::zero();
      f.stale_if_error = std::chrono::nanoseconds::zero();
    }
    if (no_cache) f.max_age = std::chrono::nanoseconds::zero();
    return f;
  }
};

namespace detail {

/// delta-seconds (RFC 9111 1.2.2): digits only; larger than 2^31 reads as
/// 2^31. Nothing for anything else.
[[nodiscard]] constexpr std::optional<std::chrono::seconds> delta_seconds(std::string_view v) noexcept {
  constexpr std::int64_t cap = std::int64_t{1} << 31;
  if (v.empty()) return std::nullopt;
  std::int64_t n = 0;
  for (const char c : v) {
    if (!armor::detail::http_digit(c)) return std::nullopt;
    n = n * 10 + (c - '0');
    if (n > cap) n = cap;
  }
  return std::chrono::seconds{n};
}

}  // namespace detail

/// Reads a Cache-Control value (several header lines: join them with ", ").
/// Directive names are case-insensitive; blanks around members and around
/// '=' and quoted values (`max-age="60"`) are accepted; empty members,
/// unknown directives and a missing or bad value of stale-while-revalidate
/// or stale-if-error are ignored; a bad max-age (`max-age=soon`, `-1`)
/// reads as max-age=0, the response is stale (RFC 9111 4.2.1).
[[nodiscard]] constexpr cache_control parse_cache_control(std::string_view value) noexcept {
  namespace ad = armor::detail;
  cache_control cc;
  bool seen_max_age = false, seen_swr = false, seen_sie = false;
  std::size_t pos = 0;
  while (pos < value.size()) {
    const std::string_view member = ad::http_next_member(value, pos);
    if (member.empty()) continue;
    const std::size_t eq = member.find('=');
    const std::string_view name = ad::http_trim(member.substr(0, eq));
    std::string_view arg = eq == std::string_view::npos ? std::string_view{} : ad::http_trim(member.substr(eq + 1));
    if (arg.size() >= 2 && arg.front() == '"' && arg.back() == '"') arg = arg.substr(1, arg.size() - 2);
    if (ad::http_iequals(name, "max-age")) {
      if (!seen_max_age) cc.max_age = detail::delta_seconds(arg).value_or(std::chrono::seconds{0});
      seen_max_age = true;
    } else if (ad::http_iequals(name, "stale-while-revalidate")) {
      if (!seen_swr) cc.stale_while_revalidate = detail::delta_seconds(arg);
      seen_swr = true;
    } else if (ad::http_iequals(name, "stale-if-error")) {
      if (!seen_sie) cc.stale_if_error = detail::delta_seconds(arg);
      seen_sie = true;
    } else if (ad::http_iequals(name, "no-store")) {
      cc.no_store = true;
    } else if (ad::http_iequals(name, "no-cache")) {
      cc.no_cache = true;  // qualified or not: the most restrictive reading
    } else if (ad::http_iequals(name, "must-revalidate") || ad::http_iequals(name, "proxy-revalidate")) {
      cc.must_revalidate = true;
    }
  }
  return cc;
}

/// What an operation returns to armor::cache for a response with this
/// Cache-Control: the value, its freshness, and whether to store it.
template <class T>
[[nodiscard]] cache_item<T> cache_item_from(const cache_control& cc, std::shared_ptr<const T> value,
                                            const cache_freshness& defaults = {}) {
  return cache_item<T>{std::move(value), cc.freshness(defaults), cc.storable()};
}

}  // namespace armor::http
