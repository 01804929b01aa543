// armor/http/rate_limit.hpp: rate-limit headers, both ways. A client reads
// what a server says about its quota (read_rate_limit: RateLimit,
// X-RateLimit-*, X-Rate-Limit-*, OpenAI's, Retry-After-like resets); a
// server writes them for its own limiter's decisions (rate_limit_headers).
//
//     // Client: how many calls are left, and when the window resets.
//     const armor::http::rate_limit_info info = armor::http::read_rate_limit(response, now);
//
//     // Server: answer with RateLimit-*, X-RateLimit-* and, on a refusal, Retry-After.
//     if (auto d = bucket.try_acquire(); !d) {
//         armor::http::rate_limit_headers(d, [&](std::string_view name, std::string_view value) {
//             res.set_header(name, value);
//         });
//     }
//
// The header families read, the reset rule (a wait or a Unix time?) and the
// headers written are catalogued in docs/http.md ("Rate-limit headers").
#pragma once

#include <armor/detail/http_parse.hpp>
#include <armor/detail/time.hpp>
#include <armor/http/date.hpp>
#include <armor/http/headers.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <optional>
#include <string_view>
#include <type_traits>

namespace armor::http {

// ---------------------------------------------------------------------------
// Reading a server's rate-limit headers

/// What a server said about its rate limit, as far as it said it. Every
/// field is optional: servers send different subsets.
struct rate_limit_info {
  /// Requests (or units) allowed per window.
  std::optional<std::int64_t> limit;
  /// Requests left in the current window.
  std::optional<std::int64_t> remaining;
  /// Requests used in the current window (GitHub's X-RateLimit-Used).
  std::optional<std::int64_t> used;
  /// Time from `now` until the window resets (zero when already past).
  std::optional<std::chrono::nanoseconds> reset_after;
  /// The wall time at which the window resets (now + reset_after).
  std::optional<wall_time> reset_at;
  /// The length of the policy's window (RateLimit-Policy's w).
  std::optional<std::chrono::nanoseconds> window;

  /// True when the server said nothing armor understood.
  [[nodiscard]] bool empty() const noexcept {
    return !limit && !remaining && !used && !reset_after && !window;
  }
};

/// A reset time read from a header, as a wait and as a wall time.
struct rate_limit_reset {
  std::chrono::nanoseconds after{0};
  wall_time at{};
};

/// Parses a rate-limit reset value, whichever way the server wrote it:
///
///   - a number below 10^9 (fraction allowed): seconds from now. The IETF
///     draft's RateLimit-Reset and "t", Discord's X-RateLimit-Reset-After.
///   - a number in [10^9, 10^11): Unix time in seconds (fraction allowed).
///     GitHub, X (Twitter) and Discord send X-RateLimit-Reset this way.
///     10^9 seconds is 31.7 years, longer than any window, and every Unix
///     time since September 2001 is above it, so the two cannot be confused.
///   - a number in [10^12, 10^14): Unix time in milliseconds (some APIs).
///   - a Go duration ("6m0s", "1.5s", "20ms"), as OpenAI sends in
///     x-ratelimit-reset-requests: from now.
///   - an HTTP-date: that time.
///
/// A time in the past is a reset already due (after = 0). nullopt for
/// anything else, a number in [10^11, 10^12) or above, a reset more than
/// max_server_hint away, and a reset time a wall_time cannot hold.
[[nodiscard]] inline std::optional<rate_limit_reset> parse_rate_limit_reset(std::string_view value,
                                                                            wall_time now) noexcept {
  using namespace std::chrono;
  namespace d = armor::detail;
  const std::string_view v = d::http_trim(value);
  if (v.empty()) return std::nullopt;
  const std::int64_t now_ns = d::to_ns(now.time_since_epoch());
  std::optional<std::int64_t> after_ns;
  std::optional<std::int64_t> at_ns;
  if (v.find_first_not_of("0123456789.") == std::string_view::npos) {
    const std::size_t dot = v.find('.');
    const auto whole = d::http_uint(v.substr(0, dot == std::string_view::npos ? v.size() : dot));
    if (!whole) return std::nullopt;
    if (*whole < 1'000'000'000) {
      after_ns = d::http_decimal_ns(v, 1'000'000'000);
    } else if (*whole < 100'000'000'000) {
      at_ns = d::http_decimal_ns(v, 1'000'000'000);
    } else if (*whole >= 1'000'000'000'000 && *whole < 100'000'000'000'000) {
      at_ns = d::http_decimal_ns(v, 1'000'000);
    } else {
      return std::nullopt;
    }
    if (!after_ns && !at_ns) return std::nullopt;
  } else if (d::http_digit(v.front())) {
    after_ns = d::http_go_duration_ns(v);
    if (!after_ns) return std::nullopt;
  } else {
    const auto date = parse_http_date(v, now);
    if (!date) return std::nullopt;
    at_ns = d::to_ns(date->time_since_epoch());
  }
  if (at_ns) after_ns = std::max<std::int64_t>(0, d::saturating_sub(*at_ns, now_ns));
  if (*after_ns > duration_cast<nanoseconds>(max_server_hint).count()) return std::nullopt;
  if (!at_ns) {
    // A wait: the reset is at now + wait, which a `now` within the wait of
    // the clock's end cannot hold.
    std::int64_t sum = 0;
    if (__builtin_add_overflow(now_ns, *after_ns, &sum)) return std::nullopt;
    at_ns = sum;
  }
  rate_limit_reset r;
  r.after = nanoseconds{*after_ns};
  r.at = wall_time{duration_cast<wall_time::duration>(nanoseconds{*at_ns})};
  return r;
}

/// A non-negative integer header value ("5000"); nullopt for anything else.
[[nodiscard]] inline std::optional<std::int64_t> parse_rate_limit_count(std::string_view value) noexcept {
  return armor::detail::http_uint(armor::detail::http_trim(value));
}

namespace detail {

/// The IETF RateLimit field, drafts 07 to 10: the chosen policy's numbers.
struct ietf_rate_limit {
  std::string_view name;
  std::optional<std::int64_t> limit;      // draft 07's limit=
  std::optional<std::int64_t> remaining;  // r (draft 08+), remaining= (07)
  std::optional<std::string_view> reset;  // t (draft 08+), reset= (07)
};

/// Reads `RateLimit`. Draft 08 and later send one item per policy,
/// `"name";r=<remaining>;t=<seconds>`; draft 07 a dictionary,
/// `limit=100, remaining=50, reset=30`. With several policies the one with
/// the fewest remaining is chosen: it is the one the client hits first.
[[nodiscard]] constexpr std::optional<ietf_rate_limit> read_ietf_rate_limit(std::string_view value) noexcept {
  namespace d = armor::detail;
  std::optional<ietf_rate_limit> best;
  ietf_rate_limit dict;
  bool is_dict = false;
  std::size_t pos = 0;
  while (pos < value.size()) {
    const std::string_view m = d::http_next_member(value, pos);
    if (m.empty()) continue;
    const d::http_member parts = d::http_split_member(m);
    const std::size_t eq = parts.value.find('=');
    if (eq != std::string_view::npos && parts.value.front() != '"') {
      // draft 07 dictionary member
      const std::string_view key = d::http_trim(parts.value.substr(0, eq));
      const std::string_view val = d::http_trim(parts.value.substr(eq + 1));
      if (d::http_iequals(key, "limit")) {
        dict.limit = d::http_uint(val);
      } else if (d::http_iequals(key, "remaining")) {
        dict.remaining = d::http_uint(val);
      } else if (d::http_iequals(key, "reset")) {
        dict.reset = val;
      }
      is_dict = true;
      continue;
    }
    ietf_rate_limit item;
    item.name = d::http_item_name(parts.value);
    if (const auto r = d::http_param(parts.params, "r")) item.remaining = d::http_uint(*r);
    item.reset = d::http_param(parts.params, "t");
    if (!item.remaining) continue;
    if (!best || *item.remaining < *best->remaining) best = item;
  }
  if (best) return best;
  if (is_dict && dict.remaining) return dict;
  return std::nullopt;
}

/// Reads `RateLimit-Policy` for the policy `rl` refers to: by name (draft
/// 08+: `"name";q=<quota>;w=<seconds>`), by limit (drafts 06 and 07:
/// `100;w=60`), or the only one listed unless its quota contradicts
/// `rl`'s limit. Fills limit (q) and window (w).
constexpr void read_ietf_policy(std::string_view value, const ietf_rate_limit* rl, rate_limit_info& out) noexcept {
  namespace d = armor::detail;
  std::size_t pos = 0;
  int count = 0;
  std::optional<std::int64_t> first_quota;
  std::optional<std::int64_t> first_window;
  while (pos < value.size()) {
    const std::string_view m = d::http_next_member(value, pos);
    if (m.empty()) continue;
    ++count;
    const d::http_member parts = d::http_split_member(m);
    std::optional<std::int64_t> quota;
    if (const auto q = d::http_param(parts.params, "q")) {
      quota = d::http_uint(*q);
    } else {
      quota = d::http_uint(parts.value);  // draft 07: the item is the quota
    }
    std::optional<std::int64_t> window;
    if (const auto w = d::http_param(parts.params, "w")) window = d::http_uint(*w);
    if (count == 1) {
      first_quota = quota;
      first_window = window;
    }
    const bool quoted = !parts.value.empty() && parts.value.front() == '"';
    const bool named_match = rl != nullptr && !rl->name.empty() && quoted && d::http_item_name(parts.value) == rl->name;
    const bool limit_match = rl != nullptr && rl->limit && quota && *quota == *rl->limit;
    if (named_match || limit_match) {
      if (quota && !out.limit) out.limit = quota;
      if (window && *window <= max_server_hint.count()) out.window = std::chrono::seconds{*window};
      return;
    }
  }
  // The only policy listed: unless its quota contradicts a limit known
  // already (then its window is not that limit's).
  if (count == 1 && !(rl != nullptr && rl->limit && first_quota && *first_quota != *rl->limit)) {
    if (first_quota && !out.limit) out.limit = first_quota;
    if (first_window && *first_window <= max_server_hint.count()) out.window = std::chrono::seconds{*first_window};
  }
}

/// The name families read_rate_limit tries, in order.
struct rate_limit_names {
  std::string_view limit, remaining, used, reset, reset_after;
};
inline constexpr rate_limit_names rate_limit_families[] = {
    {"RateLimit-Limit", "RateLimit-Remaining", {}, "RateLimit-Reset", {}},                       // IETF drafts <= 06
    {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Used", "X-RateLimit-Reset",      // GitHub, Discord, ...
     "X-RateLimit-Reset-After"},
    {"X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", {}, "X-Rate-Limit-Reset", {}},              // X (Twitter)
    {"X-RateLimit-Limit-Requests", "X-RateLimit-Remaining-Requests", {}, "X-RateLimit-Reset-Requests", {}},  // OpenAI
};

/// The leading integer of a RateLimit-Limit value ("100" or draft 03-05's
/// "100, 100;w=60"), and the window of the policy member with that quota.
constexpr void read_old_ietf_limit(std::string_view value, rate_limit_info& out) noexcept {
  namespace d = armor::detail;
  std::size_t pos = 0;
  bool first = true;
  std::optional<std::int64_t> limit;
  while (pos < value.size()) {
    const d::http_member parts = d::http_split_member(d::http_next_member(value, pos));
    const auto n = d::http_uint(parts.value);
    if (first) {
      limit = n;
      first = false;
      if (!limit) return;
      continue;
    }
    if (n && *n == *limit && !out.window) {
      if (const auto w = d::http_param(parts.params, "w")) {
        const auto secs = d::http_uint(*w);
        if (secs && *secs <= max_server_hint.count()) out.window = std::chrono::seconds{*secs};
      }
    }
  }
  if (limit && !out.limit) out.limit = limit;
}

}  // namespace detail

/// Reads what a response says about the server's rate limit. `now` is the
/// wall time the response arrived (resets given as Unix times or dates are
/// converted to a wait from it; resets given as waits to a time from it).
///
/// Fields are taken from the first of these that has them:
///
///   1. `RateLimit` and `RateLimit-Policy` (IETF draft-ietf-httpapi-
///      ratelimit-headers 07 to 10; see detail::read_ietf_rate_limit);
///   2. `RateLimit-Limit` / `-Remaining` / `-Reset` (drafts up to 06; what
///      rate_limit_headers below writes);
///   3. `X-RateLimit-Limit` / `-Remaining` / `-Used` / `-Reset` (GitHub,
///      Discord, GitLab, most others), preferring Discord's
///      `X-RateLimit-Reset-After` for the reset when present;
///   4. `X-Rate-Limit-Limit` / `-Remaining` / `-Reset` (X, formerly Twitter);
///   5. `X-RateLimit-Limit-Requests` / `-Remaining-Requests` /
///      `-Reset-Requests` (OpenAI; the reset is a Go duration, "6m0s").
///
/// Every reset goes through parse_rate_limit_reset, which tells Unix times
/// (>= 10^9) from waits (< 10^9). A field whose value is malformed is
/// treated as absent. Allocates nothing.
template <response R>
[[nodiscard]] rate_limit_info read_rate_limit(const R& r, wall_time now) {
  rate_limit_info out;
  auto take_reset = [&](std::optional<std::string_view> v) {
    if (!v || out.reset_after) return;
    if (const auto reset = parse_rate_limit_reset(*v, now)) {
      out.reset_after = reset->after;
      out.reset_at = reset->at;
    }
  };
  if (const auto v = header(r, "RateLimit")) {
    if (const auto rl = detail::read_ietf_rate_limit(*v)) {
      out.remaining = rl->remaining;
      take_reset(rl->reset);
      if (rl->limit) out.limit = rl->limit;
      if (const auto p = header(r, "RateLimit-Policy")) detail::read_ietf_policy(*p, &*rl, out);
    }
  }
  // Drafts up to 06: RateLimit-Limit is the limit (the "expiring limit");
  // RateLimit-Policy gives the window of the policy with that quota.
  if (!out.limit) {
    if (const auto v = header(r, "RateLimit-Limit")) detail::read_old_ietf_limit(*v, out);
  }
  if (!out.window) {
    if (const auto p = header(r, "RateLimit-Policy")) {
      detail::ietf_rate_limit known;
      known.limit = out.limit;
      detail::read_ietf_policy(*p, out.limit ? &known : nullptr, out);
    }
  }
  for (const detail::rate_limit_names& n : detail::rate_limit_families) {
    if (!out.limit) {
      if (const auto v = header(r, n.limit)) out.limit = parse_rate_limit_count(*v);
    }
    if (!out.remaining) {
      if (const auto v = header(r, n.remaining)) out.remaining = parse_rate_limit_count(*v);
    }
    if (!out.used && !n.used.empty()) {
      if (const auto v = header(r, n.used)) out.used = parse_rate_limit_count(*v);
    }
    if (!n.reset_after.empty()) take_reset(header(r, n.reset_after));
    take_reset(header(r, n.reset));
  }
  return out;
}

/// Same, reading the wall clock once.
template <response R>
[[nodiscard]] rate_limit_info read_rate_limit(const R& r) {
  return read_rate_limit(r, std::chrono::system_clock::now());
}

// ---------------------------------------------------------------------------
// Writing rate-limit headers, for a server that limits its clients

/// A rate limiter's answer that the writers below can put into headers:
/// contextually convertible to bool (granted), with the header numbers
/// limit() (RateLimit-Limit), remaining() (RateLimit-Remaining), reset()
/// (time until the limit is whole again: RateLimit-Reset) and retry_after()
/// (for a refusal: the wait, nanoseconds::max() when no wait helps).
/// armor::token_bucket's and armor::redis_token_bucket's decisions are such types.
template <class D>
concept rate_limit_decision = std::is_constructible_v<bool, const D&> && requires(const D& d) {
  { d.limit() } -> std::convertible_to<std::int64_t>;
  { d.remaining() } -> std::convertible_to<std::int64_t>;
  { d.reset() } -> std::convertible_to<std::chrono::nanoseconds>;
  { d.retry_after() } -> std::convertible_to<std::chrono::nanoseconds>;
};

/// A decision whose limiter also says its refill rate: `rate()` returning
/// something with `count` and `per` (an armor::rate, as
/// token_bucket_decision's). rate_limit_headers() then writes
/// RateLimit-Policy too.
template <class D>
concept rate_limit_decision_with_rate = rate_limit_decision<D> && requires(const D& d) {
  { d.rate().count } -> std::convertible_to<std::int64_t>;
  { d.rate().per } -> std::convertible_to<std::chrono::nanoseconds>;
};

/// A quota policy item of RateLimit-Policy: `quota` units per `window`.
struct rate_limit_policy {
  std::int64_t quota = 0;
  std::chrono::seconds window{0};

  friend constexpr bool operator==(const rate_limit_policy&, const rate_limit_policy&) noexcept = default;
};

namespace detail {
__extension__ typedef __int128 http_int128;
}  // namespace detail

/// The RateLimit-Policy item that describes a token bucket refilling
/// `count` tokens every `per` with a burst of `burst` (IETF draft: `q;w=`,
/// the window in whole seconds). The rule:
///
///   - the window is the time an empty bucket takes to fill again, rounded
///     up to whole seconds and then to the next window in which the bucket
///     refills a whole number of tokens; the quota is the tokens it refills
///     in that window. So the quota is the burst whenever the burst refills
///     in whole seconds (10/s with burst 10: `10;w=1`; 100/min with burst 10:
///     `10;w=6`), and quota / window is exactly the refill rate (10/s with
///     burst 5: `10;w=1`; 5000/h with burst 1: `25;w=18`);
///   - when no such window lies within 366 days (odd nanosecond rates), the
///     window is the fill time rounded up and the quota is rounded down:
///     never more than the rate.
///
/// The quota is never below the burst. nullopt for a rate or burst that is
/// not positive, or numbers too large for the header.
[[nodiscard]] constexpr std::optional<rate_limit_policy> rate_limit_policy_for(std::int64_t count,
                                                                              std::chrono::nanoseconds per,
                                                                              std::int64_t burst) noexcept {
  using i128 = detail::http_int128;
  constexpr std::int64_t second = 1'000'000'000;
  constexpr std::int64_t int64_max = 0x7fff'ffff'ffff'ffff;
  std::int64_t c = count;
  std::int64_t p = per.count();
  if (c <= 0 || p <= 0 || burst < 1) return std::nullopt;
  const std::int64_t g = std::gcd(c, p);
  c /= g;
  p /= g;
  // c tokens every p ns: c * 1e9 / p tokens a second. The burst refills in
  // burst * p / (c * 1e9) seconds: `fill`, rounded up, at least 1.
  const i128 c_s = static_cast<i128>(c) * second;
  const i128 burst_p = static_cast<i128>(burst) * p;
  i128 fill = burst_p / c_s + (burst_p % c_s != 0 ? 1 : 0);
  if (fill < 1) fill = 1;
  if (fill > int64_max) return std::nullopt;
  // A window of W seconds refills c * W * 1e9 / p tokens: whole when W is a
  // multiple of p / gcd(p, 1e9) (c and p are coprime).
  const std::int64_t step = p / std::gcd(p, second);
  i128 window = (fill + step - 1) / step * step;
  if (window != fill && window > max_server_hint.count()) window = fill;
  // quota = floor(c * 1e9 * window / p), without overflowing.
  const i128 whole = c_s / p;
  const i128 part = c_s % p;
  if (whole != 0 && window > int64_max / whole) return std::nullopt;
  const i128 quota = whole * window + part * window / p;
  if (quota > int64_max) return std::nullopt;
  return rate_limit_policy{static_cast<std::int64_t>(quota),
                           std::chrono::seconds{static_cast<std::int64_t>(window)}};
}

/// Which headers rate_limit_headers() writes.
struct rate_limit_header_options {
  /// RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset (IETF draft
  /// "RateLimit header fields for HTTP", up to draft 06; Reset in seconds
  /// from now).
  bool standard = true;
  /// With `standard`, RateLimit-Policy too, for a decision that says its
  /// rate (rate_limit_decision_with_rate): rate_limit_policy_for()'s `q;w=`.
  bool policy = true;
  /// X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset.
  bool x_prefixed = true;
  /// Retry-After on a refusal, in whole seconds rounded up.
  bool retry_after = true;
  /// Wall time now. When given, X-RateLimit-Reset is the Unix time (seconds,
  /// rounded up) at which the limit is whole again, as GitHub sends it;
  /// otherwise it is seconds from now, like RateLimit-Reset.
  std::optional<wall_time> wall_now{};
};

/// Writes the rate-limit response headers of a decision by calling
/// `emit(name, value)` once per header, both std::string_view (the value's
/// characters live only during the call; copy them). Allocates nothing.
/// Numbers: limit(), remaining(), reset() in seconds rounded up, and
/// Retry-After = retry_after() in seconds rounded up, only for a refusal
/// that waiting can fix (never for a request larger than the burst, whose
/// retry_after() is nanoseconds::max()). A decision that says its rate
/// also gets RateLimit-Policy: rate_limit_policy_for(rate, limit()).
template <rate_limit_decision D, class Emit>
  requires std::invocable<Emit&, std::string_view, std::string_view>
void rate_limit_headers(const D& d, Emit&& emit, const rate_limit_header_options& options = {}) {
  std::array<char, 24> buf{};
  auto put = [&](std::string_view name, std::int64_t value) {
    const auto res = std::to_chars(buf.data(), buf.data() + buf.size(), value);
    emit(name, std::string_view(buf.data(), static_cast<std::size_t>(res.ptr - buf.data())));
  };
  const std::chrono::nanoseconds until_whole = d.reset();
  const std::int64_t reset = detail::ceil_seconds(until_whole);
  if (options.standard) {
    put("RateLimit-Limit", d.limit());
    put("RateLimit-Remaining", d.remaining());
    put("RateLimit-Reset", reset);
    if constexpr (rate_limit_decision_with_rate<D>) {
      if (options.policy) {
        const auto r = d.rate();
        if (const auto q = rate_limit_policy_for(r.count, r.per, d.limit())) {
          std::array<char, 48> item{};  // "<quota>;w=<seconds>"
          char* const end = item.data() + item.size();
          char* it = std::to_chars(item.data(), end, q->quota).ptr;
          if (end - it > 3) {  // always (20 digits at most each); said so for the optimizer
            it[0] = ';';
            it[1] = 'w';
            it[2] = '=';
            it = std::to_chars(it + 3, end, q->window.count()).ptr;
            emit(std::string_view("RateLimit-Policy"),
                 std::string_view(item.data(), static_cast<std::size_t>(it - item.data())));
          }
        }
      }
    }
  }
  if (options.x_prefixed) {
    put("X-RateLimit-Limit", d.limit());
    put("X-RateLimit-Remaining", d.remaining());
    if (options.wall_now) {
      const auto whole_at = options.wall_now->time_since_epoch() + until_whole;
      put("X-RateLimit-Reset", detail::ceil_seconds(std::chrono::duration_cast<std::chrono::nanoseconds>(whole_at)));
    } else {
      put("X-RateLimit-Reset", reset);
    }
  }
  if (options.retry_after && !static_cast<bool>(d)) {
    const std::chrono::nanoseconds wait = d.retry_after();
    if (wait != std::chrono::nanoseconds::max()) put("Retry-After", detail::ceil_seconds(wait));
  }
}

/// The headers of a decision as a small fixed-capacity list (no allocation),
/// for code that prefers a range to a callback:
///
///     for (const auto& h : armor::http::rate_limit_headers(d)) res.set(h.name, h.value());
class rate_limit_header_list {
 public:
  struct field {
    std::string_view name;
    [[nodiscard]] std::string_view value() const noexcept { return {chars.data(), size}; }
    std::array<char, 48> chars{};
    std::size_t size = 0;
  };

  [[nodiscard]] const field* begin() const noexcept { return fields_.data(); }
  [[nodiscard]] const field* end() const noexcept { return fields_.data() + count_; }
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] const field& operator[](std::size_t i) const noexcept { return fields_[i]; }

  /// The value of the header `name` (exact spelling), or empty.
  [[nodiscard]] std::optional<std::string_view> find(std::string_view name) const noexcept {
    for (const field& f : *this) {
      if (f.name == name) return f.value();
    }
    return std::nullopt;
  }

  void add(std::string_view name, std::string_view value) noexcept {
    if (count_ == fields_.size() || value.size() > field{}.chars.size()) return;
    field& f = fields_[count_++];
    f.name = name;  // always one of the static names above
    f.size = value.copy(f.chars.data(), f.chars.size());
  }

 private:
  std::array<field, 8> fields_{};
  std::size_t count_ = 0;
};

/// The headers of a decision as a list (see the callback form for the numbers).
template <rate_limit_decision D>
[[nodiscard]] rate_limit_header_list rate_limit_headers(const D& d, const rate_limit_header_options& options = {}) {
  rate_limit_header_list list;
  rate_limit_headers(
      d, [&](std::string_view name, std::string_view value) { list.add(name, value); }, options);
  return list;
}

}  // namespace armor::http
