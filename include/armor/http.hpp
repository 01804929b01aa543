// armor/http.hpp: HTTP for armor. Judging responses, reading the server's
// hints (Retry-After, rate-limit headers) and pacing a client by them.
//
//     using namespace std::chrono_literals;
//     namespace http = armor::http;
//
//     // 408/429/500/502/503/504 are retried (after the server's Retry-After),
//     // other 4xx are the caller's problem, 2xx/3xx succeed.
//     auto p = armor::pipeline{
//         armor::classify{http::status_classifier{}},
//         armor::deadline{10s},
//         armor::backoff{{.max_attempts = 4, .initial = 200ms}},
//         std::ref(bucket),
//     };
//     http::pacer pace{bucket, {.ceiling = {50, 1s}}};
//     auto res = p.execute([&](const armor::context& ctx) {
//         auto r = client.get(url, ctx.remaining());
//         pace.observe(r);                 // spread the remaining quota until its reset
//         return r;
//     });
//
// Any response type works once armor can read its status and its headers
// (see "Reading responses" below): types with an `int status` member and a
// `headers` range of name/value pairs (cpp-httplib's httplib::Response) work
// as they are; armor::http::header_map collects headers from libcurl's
// header callback; anything else supplies two functions found by
// argument-dependent lookup:
//
//     std::optional<std::string_view> armor_http_header(const my_response&, std::string_view name);
//     int armor_http_status(const my_response&);
//
// Parsing is strict and total: every parser takes any byte string (embedded
// NULs, megabytes of digits, half a date) and answers either a value or
// std::nullopt, never throws, never allocates, never reads the locale, never
// overflows. A hint armor does not understand is ignored, not guessed at.
//
// This header includes no third-party header. See docs/http.md.
#pragma once

#include <armor/clock.hpp>
#include <armor/detail/http_parse.hpp>
#include <armor/detail/time.hpp>
#include <armor/error.hpp>
#include <armor/token_bucket.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace armor::http {

/// The wall clock's time point: dates in headers are wall time.
using wall_time = std::chrono::system_clock::time_point;

// ===========================================================================
// Status codes as error codes

namespace detail {

class status_category_impl final : public std::error_category {
 public:
  constexpr status_category_impl() noexcept = default;
  const char* name() const noexcept override { return "http"; }
  std::string message(int status) const override {
    std::string text = "HTTP " + std::to_string(status);
    const std::string_view reason = reason_phrase(status);
    if (!reason.empty()) {
      text += ' ';
      text += reason;
    }
    return text;
  }
  std::error_condition default_error_condition(int status) const noexcept override {
    switch (status) {
      case 408:
      case 504: return std::errc::timed_out;
      case 429:
      case 503: return std::errc::resource_unavailable_try_again;
      default: return {status, *this};
    }
  }

  static constexpr std::string_view reason_phrase(int status) noexcept {
    switch (status) {
      case 400: return "Bad Request";
      case 401: return "Unauthorized";
      case 403: return "Forbidden";
      case 404: return "Not Found";
      case 405: return "Method Not Allowed";
      case 408: return "Request Timeout";
      case 409: return "Conflict";
      case 410: return "Gone";
      case 413: return "Content Too Large";
      case 422: return "Unprocessable Content";
      case 425: return "Too Early";
      case 429: return "Too Many Requests";
      case 500: return "Internal Server Error";
      case 501: return "Not Implemented";
      case 502: return "Bad Gateway";
      case 503: return "Service Unavailable";
      case 504: return "Gateway Timeout";
      default: return {};
    }
  }
};

// Constant-initialised, like armor's own category: verdicts are built per attempt.
inline const status_category_impl status_category_instance{};

}  // namespace detail

/// The error category of HTTP status codes: `error_code{503, status_category()}`
/// reads "HTTP 503 Service Unavailable", and 408/504 compare equal to
/// std::errc::timed_out, 429/503 to std::errc::resource_unavailable_try_again.
[[nodiscard]] inline const std::error_category& status_category() noexcept {
  return detail::status_category_instance;
}

/// An HTTP status as a std::error_code (what a failure verdict carries).
[[nodiscard]] inline std::error_code make_status_code(int status) noexcept { return {status, status_category()}; }

// ===========================================================================
// Judging a status

/// What a status means for the call.
enum class status_rule : std::uint8_t {
  success,            ///< the upstream did its job; includes client errors (4xx) by default
  retryable_failure,  ///< the upstream failed and may do better later: retry, count against its health
  failure,            ///< the upstream failed; retrying will not help: count it, do not retry
};

/// The default rule for a status:
///
///   - 408, 429, 500, 502, 503, 504: retryable_failure;
///   - any other 5xx (501, 505, ...) and anything outside 100..599: failure;
///   - 1xx, 2xx, 3xx: success;
///   - any other 4xx: success. A client error (a 404, a 400, a 401) says
///     nothing bad about the upstream's health (it answered, correctly), so
///     it must not open a breaker, and retrying the same request cannot
///     fix it. The caller still gets the response and decides.
[[nodiscard]] constexpr status_rule default_status_rule(int status) noexcept {
  switch (status) {
    case 408:
    case 429:
    case 500:
    case 502:
    case 503:
    case 504: return status_rule::retryable_failure;
    default: break;
  }
  if (status < 100 || status > 599 || status >= 500) return status_rule::failure;
  return status_rule::success;
}

/// The verdict for a status under a rule: success (code 0), or a failure
/// whose code is make_status_code(status); `retry_after` is kept only on a
/// retryable failure (a retry layer uses it instead of its own delay).
[[nodiscard]] inline verdict verdict_for(status_rule rule, int status,
                                         std::optional<std::chrono::nanoseconds> retry_after = std::nullopt) noexcept {
  switch (rule) {
    case status_rule::success: return verdict::success();
    case status_rule::retryable_failure: return verdict::failure(make_status_code(status), true, retry_after);
    case status_rule::failure: break;
  }
  return verdict::failure(make_status_code(status), false);
}

/// armor's default judgement of a status (default_status_rule), with the
/// server's Retry-After when the caller has parsed one.
[[nodiscard]] inline verdict classify_status(int status,
                                             std::optional<std::chrono::nanoseconds> retry_after = std::nullopt) noexcept {
  return verdict_for(default_status_rule(status), status, retry_after);
}

// ===========================================================================
// Transport errors

/// True for the errors of a connection that may work if tried again: the
/// peer refused, reset or aborted it, it timed out, the network or host was
/// unreachable or down, the pipe broke, the local side ran out of ephemeral
/// ports or buffers, or a call was interrupted. Compared through
/// std::errc conditions, so system, generic and Asio's system errors all
/// match.
[[nodiscard]] inline bool is_transient_transport_error(std::error_code ec) noexcept {
  using e = std::errc;
  for (const e c : {e::connection_refused, e::connection_reset, e::connection_aborted, e::timed_out,
                    e::host_unreachable, e::network_unreachable, e::network_down, e::network_reset, e::broken_pipe,
                    e::not_connected, e::resource_unavailable_try_again, e::interrupted, e::address_not_available,
                    e::no_buffer_space, e::address_in_use}) {
    if (ec == c) return true;
  }
  return false;
}

/// The verdict for a request that got no response: no error is a success;
/// a transient transport error (is_transient_transport_error) is a
/// retryable failure; any other error (a bad address, a refused
/// certificate, a protocol error) is a failure that retrying will not fix.
/// Both failures count against the upstream's health.
[[nodiscard]] inline verdict classify_transport_error(std::error_code ec) noexcept {
  if (!ec) return verdict::success();
  return verdict::failure(ec, is_transient_transport_error(ec));
}

/// Same, for a std::errc value.
[[nodiscard]] inline verdict classify_transport_error(std::errc e) noexcept {
  return classify_transport_error(std::make_error_code(e));
}

// ===========================================================================
// Dates and Retry-After

/// The longest server hint armor accepts: 366 days. A Retry-After or a
/// rate-limit reset further away is rejected as garbage rather than obeyed:
/// it is far more likely a bug (a Unix time sent as delta-seconds would mean
/// 55 years) than an instruction, and no quota window runs longer than a year.
inline constexpr std::chrono::seconds max_server_hint{366LL * 24 * 3600};

/// Parses an HTTP-date (RFC 9110 section 5.6.7) in any of its three forms:
///
///   IMF-fixdate   "Sun, 06 Nov 1994 08:49:37 GMT"
///   RFC 850       "Sunday, 06-Nov-94 08:49:37 GMT"
///   ANSI asctime  "Sun Nov  6 08:49:37 1994"
///
/// Day and month names are matched case-insensitively (and so is "GMT");
/// the weekday must be a valid name but is not checked against the date;
/// blanks around the value are ignored. The date must exist (no 31 Feb);
/// second 60 (a leap second) reads as the next minute's first second. A
/// two-digit RFC 850 year is the most recent year with those digits that
/// is not more than 50 years after `now` (RFC 9110). Anything else, and a
/// date outside what system_clock::time_point can hold, gives nullopt.
[[nodiscard]] inline std::optional<wall_time> parse_http_date(std::string_view value, wall_time now) noexcept {
  using namespace std::chrono;
  const std::int64_t now_s = duration_cast<seconds>(now.time_since_epoch()).count();
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
/// wait from `now`:
///
///   - delta-seconds: one or more digits, nothing else ("120"; leading
///     zeros allowed; no sign, fraction, unit or second value);
///   - an HTTP-date (see parse_http_date): the time until it, or zero
///     when it is already past (retry now).
///
/// Blanks around the value are ignored. nullopt for anything else, for a
/// number too large for int64, and for a wait longer than max_server_hint
/// (rejected, not clamped: such a value is ignored as a hint).
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
  // Both within the clock's range and ordered: the difference cannot overflow
  // a nanosecond count unless it is far beyond max_server_hint, checked first.
  const auto diff_s = duration_cast<seconds>(*at - now);
  if (diff_s > max_server_hint) return std::nullopt;
  return duration_cast<nanoseconds>(*at - now);
}

// ===========================================================================
// Reading responses

/// Headers collected one line at a time, as libcurl's CURLOPT_HEADERFUNCTION
/// delivers them (see examples/curl_client.cpp), or added by name.
///
/// A status line ("HTTP/1.1 503 Service Unavailable", "HTTP/2 200") starts
/// a new response: what was collected before (a redirect's, a
/// "100 Continue"'s headers) is dropped and status() is set. Names are
/// looked up case-insensitively; the first field with a name wins. Obsolete
/// line folding is not supported (RFC 9112 deprecates it): a continuation
/// line is ignored.
///
/// Allocation: the map keeps its fields in one std::string and one
/// std::vector, which grow as needed; clear() keeps their capacity, so a
/// map reused for each request of a connection stops allocating.
class header_map {
 public:
  /// Forgets every field and the status; keeps the storage.
  void clear() noexcept {
    text_.clear();
    fields_.clear();
    status_ = 0;
  }

  /// Takes one raw header line ("Name: value\r\n", or a status line).
  /// Lines that are neither (the blank line ending the header block, a
  /// line without a colon, a continuation line) are ignored.
  void add_line(std::string_view line) {
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    if (line.size() >= 5 && line.substr(0, 5) == "HTTP/") {
      clear();
      const std::size_t sp = line.find(' ');
      if (sp != std::string_view::npos && line.size() - sp > 3) {
        const auto code = armor::detail::http_uint(line.substr(sp + 1, 3));
        if (code && (line.size() - sp == 4 || line[sp + 4] == ' ')) status_ = static_cast<int>(*code);
      }
      return;
    }
    if (line.empty() || armor::detail::http_ows(line.front())) return;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return;
    add(line.substr(0, colon), line.substr(colon + 1));
  }

  /// Adds a field (the value is trimmed of blanks).
  void add(std::string_view name, std::string_view value) {
    value = armor::detail::http_trim(value);
    const std::size_t at = text_.size();
    text_.append(name);
    text_.append(value);
    fields_.push_back({at, name.size(), value.size()});
  }

  /// Sets the status (when the headers came without a status line).
  void set_status(int status) noexcept { status_ = status; }
  /// The status of the last status line seen; 0 before any.
  [[nodiscard]] int status() const noexcept { return status_; }

  /// The value of the first field called `name` (any case), or nothing.
  /// The view lives until the map is next changed.
  [[nodiscard]] std::optional<std::string_view> find(std::string_view name) const noexcept {
    for (const field& f : fields_) {
      if (armor::detail::http_iequals(std::string_view(text_).substr(f.at, f.name), name)) {
        return std::string_view(text_).substr(f.at + f.name, f.value);
      }
    }
    return std::nullopt;
  }

  /// The number of fields.
  [[nodiscard]] std::size_t size() const noexcept { return fields_.size(); }

  friend std::optional<std::string_view> armor_http_header(const header_map& h, std::string_view name) noexcept {
    return h.find(name);
  }
  friend int armor_http_status(const header_map& h) noexcept { return h.status(); }

 private:
  struct field {
    std::size_t at;
    std::size_t name;
    std::size_t value;
  };
  std::string text_;
  std::vector<field> fields_;
  int status_ = 0;
};

namespace detail {

template <class R>
concept adl_header = requires(const R& r, std::string_view name) {
  { armor_http_header(r, name) } -> std::convertible_to<std::optional<std::string_view>>;
};

template <class R>
concept adl_status = requires(const R& r) {
  { armor_http_status(r) } -> std::convertible_to<int>;
};

template <class R>
concept member_headers = requires(const R& r) {
  std::begin(r.headers);
  std::end(r.headers);
  { std::string_view((*std::begin(r.headers)).first) };
  { std::string_view((*std::begin(r.headers)).second) };
};

template <class R>
concept member_status = requires(const R& r) {
  { r.status } -> std::convertible_to<int>;
};

}  // namespace detail

/// A type armor can read an HTTP status and headers from (see the top of
/// this header): `armor_http_header` / `armor_http_status` found by
/// argument-dependent lookup, else an `int status` member and a `headers`
/// range of pairs whose first and second convert to std::string_view.
template <class R>
concept response = (detail::adl_header<R> || detail::member_headers<R>) &&
                   (detail::adl_status<R> || detail::member_status<R>);

/// The value of the first header called `name` (case-insensitive when armor
/// searches a `headers` range; as the user function decides otherwise).
template <response R>
[[nodiscard]] std::optional<std::string_view> header(const R& r, std::string_view name) {
  if constexpr (detail::adl_header<R>) {
    return armor_http_header(r, name);
  } else {
    for (const auto& field : r.headers) {
      if (armor::detail::http_iequals(std::string_view(field.first), name)) return std::string_view(field.second);
    }
    return std::nullopt;
  }
}

/// The status of a response.
template <response R>
[[nodiscard]] int status(const R& r) {
  if constexpr (detail::adl_status<R>) {
    return armor_http_status(r);
  } else {
    return static_cast<int>(r.status);
  }
}

// ===========================================================================
// Rate-limit headers

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
/// anything else, a number in [10^11, 10^12) or above, and a reset more
/// than max_server_hint away.
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
  rate_limit_reset r;
  r.after = nanoseconds{*after_ns};
  r.at = at_ns ? wall_time{duration_cast<wall_time::duration>(nanoseconds{*at_ns})}
               : now + duration_cast<wall_time::duration>(r.after);
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
/// 08+: `"name";q=<quota>;w=<seconds>`), by limit (draft 07: `100;w=60`),
/// or the only one listed. Fills limit (q) and window (w).
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
  if (count == 1) {
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
///      armor::rate_limit_headers sends);
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
  if (!out.window) {
    if (const auto p = header(r, "RateLimit-Policy")) detail::read_ietf_policy(*p, nullptr, out);
  }
  if (!out.limit) {
    if (const auto v = header(r, "RateLimit-Limit")) detail::read_old_ietf_limit(*v, out);
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

// ===========================================================================
// A classifier for responses

/// Judges HTTP responses for a pipeline: `armor::classify{status_classifier{}}`.
///
/// The status decides through default_status_rule, or through up to
/// `max_overrides` per-status overrides (`set(404, status_rule::failure)`),
/// held in a small fixed array: no allocation, copied by value.
///
/// A retryable failure carries the server's wait as `retry_after`, which a
/// retry layer (armor::backoff) uses instead of its own delay: the
/// Retry-After header; or, for a 429 without it, the rate-limit reset when
/// the rate-limit headers say nothing remains. GitHub answers an exhausted
/// primary rate limit with 403 and X-RateLimit-Remaining: 0 (and its
/// secondary limits with 403 + Retry-After): with `github_403` (on by
/// default) such a 403 is a retryable failure too; a 403 without those
/// headers follows the rules.
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

  /// Treats GitHub's rate-limit 403s as retryable (see above). On by default.
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
    const bool maybe_github = github_403_ && s == 403 && base != status_rule::retryable_failure;
    if (base != status_rule::retryable_failure && !maybe_github) return verdict_for(base, s);
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
    return verdict_for(status_rule::retryable_failure, s, after);
  }

  struct entry {
    std::int16_t status = 0;
    status_rule rule = status_rule::success;
  };
  std::array<entry, max_overrides> overrides_{};
  std::size_t count_ = 0;
  bool github_403_ = true;
};

// ===========================================================================
// Pacing by server feedback

/// The options of pace() and armor::http::pacer.
struct pacer_options {
  /// The fastest the client may go, whatever the server says: its own
  /// limit (the rate the bucket was built with is a good choice). Required.
  armor::rate ceiling{};
  /// The largest burst the pacer allows; the burst also never exceeds what
  /// remains. >= 1. The default 1 spaces calls evenly.
  std::int64_t max_burst = 1;
  /// Added to every reset time before dividing: covers clock skew between
  /// client and server, and requests in flight. >= 0.
  std::chrono::nanoseconds margin{std::chrono::seconds{1}};
  /// Requests of each window left unused (for other clients of the same
  /// quota, or for interactive use). >= 0.
  std::int64_t reserve = 0;
  /// The shortest reset time the pacer divides by. A reset nearer than this
  /// counts as this far: a burst of stale headers at the very end of a
  /// window must not produce an absurd rate. > 0.
  std::chrono::nanoseconds min_horizon{std::chrono::milliseconds{100}};
};

/// What the pacer wants the bucket to be.
struct pace_target {
  armor::rate rate{};
  std::int64_t burst = 1;
  /// The server says nothing remains: take every token left in the bucket,
  /// so that no call goes out before the reset.
  bool drain = false;

  friend constexpr bool operator==(const pace_target&, const pace_target&) noexcept = default;
};

namespace detail {

inline void check_pacer_options(const pacer_options& o) {
  if (o.ceiling.count <= 0 || o.ceiling.per.count() <= 0 || o.ceiling.count > o.ceiling.per.count()) {
    armor::detail::invalid_config(
        "armor::http::pacer: ceiling must be a positive rate of at most one per nanosecond (got " +
        std::to_string(o.ceiling.count) + " per " + std::to_string(o.ceiling.per.count()) + " ns)");
  }
  if (o.max_burst < 1) {
    armor::detail::invalid_config("armor::http::pacer: max_burst must be at least 1 (got " +
                                  std::to_string(o.max_burst) + ")");
  }
  if (o.margin.count() < 0) {
    armor::detail::invalid_config("armor::http::pacer: margin must not be negative (got " +
                                  std::to_string(o.margin.count()) + " ns)");
  }
  if (o.reserve < 0) {
    armor::detail::invalid_config("armor::http::pacer: reserve must not be negative (got " +
                                  std::to_string(o.reserve) + ")");
  }
  if (o.min_horizon.count() <= 0) {
    armor::detail::invalid_config("armor::http::pacer: min_horizon must be positive (got " +
                                  std::to_string(o.min_horizon.count()) + " ns)");
  }
}

/// a/b < c/d for positive rates, exactly.
[[nodiscard]] constexpr bool rate_less(const armor::rate& a, const armor::rate& b) noexcept {
  return static_cast<armor::detail::bucket_int128>(a.count) * b.per.count() <
         static_cast<armor::detail::bucket_int128>(b.count) * a.per.count();
}

}  // namespace detail

/// The pacing decision, as a pure function of what the server said and of
/// the bucket it is for. With R = remaining - reserve requests left until
/// the reset in T = reset_after + margin (at least min_horizon), and `held`
/// the tokens the bucket holds now:
///
///   - burst = min(max_burst, R), at least 1;
///   - the bucket keeps at most `burst` of the tokens it holds (set_rate
///     drops the rest, and never adds any), so it can grant H = min(held,
///     burst) at once;
///   - one token every T / (R - H), rounded up to the nanosecond: what the
///     bucket holds plus what refills before the reset is at most R, so the
///     quota cannot run out early;
///   - when R - H is 0, one token every T: the next comes after the reset;
///     when R <= 0, drain (take what the bucket holds);
///   - never faster than the ceiling;
///   - the burst is lowered, if need be, until a bucket with `max_wait` can
///     hold it (burst * interval + max_wait within a token bucket's span of
///     2^57 ticks), so set_rate accepts the target.
///
/// nullopt when the headers lack `remaining` or a reset (the bucket should
/// be left as it is), or when no burst fits `max_wait` at the target rate.
/// Allocates nothing; the options must be valid (pacer checks them at
/// construction).
[[nodiscard]] constexpr std::optional<pace_target> pace(const rate_limit_info& info, const pacer_options& o,
                                                        std::int64_t held,
                                                        std::chrono::nanoseconds max_wait = {}) noexcept {
  if (!info.remaining || !info.reset_after || max_wait.count() < 0) return std::nullopt;
  const std::int64_t left = armor::detail::saturating_sub(*info.remaining, o.reserve);
  std::int64_t horizon = armor::detail::saturating_add(info.reset_after->count(), o.margin.count());
  if (horizon < o.min_horizon.count()) horizon = o.min_horizon.count();
  pace_target t;
  t.burst = std::clamp<std::int64_t>(left, 1, o.max_burst);
  t.drain = left <= 0;
  const std::int64_t kept = t.drain ? 0 : std::clamp<std::int64_t>(held, 0, t.burst);
  const std::int64_t spread = left - kept;  // no overflow: 0 <= kept <= left when left >= 1
  // One token per interval, rounded up: never faster than spread / horizon.
  const std::int64_t interval = spread > 0 ? horizon / spread + (horizon % spread != 0 ? 1 : 0) : horizon;
  t.rate = {1, std::chrono::nanoseconds{interval}};
  if (detail::rate_less(o.ceiling, t.rate)) t.rate = o.ceiling;
  // The bucket's state holds burst * period + max_wait * count ticks (rate in
  // lowest terms) within 2^57: lower the burst until it fits.
  const std::int64_t g = std::gcd(t.rate.count, t.rate.per.count());
  const std::int64_t count = t.rate.count / g;
  const std::int64_t period = t.rate.per.count() / g;
  std::int64_t wait_ticks = 0;
  if (__builtin_mul_overflow(max_wait.count(), count, &wait_ticks) || wait_ticks >= armor::detail::bucket_max_span) {
    return std::nullopt;
  }
  const std::int64_t fits = (armor::detail::bucket_max_span - wait_ticks) / period;
  if (fits < 1) return std::nullopt;
  if (t.burst > fits) t.burst = fits;
  return t;
}

/// Keeps a token bucket's rate where the server's quota lasts until its
/// reset (see pace()). Holds the bucket by reference; the bucket must
/// outlive it. observe() may be called from any thread: it only calls the
/// bucket's set_rate, which is lock-free and safe alongside acquires.
/// Responses observed out of order are applied in the order observed.
///
///     armor::token_bucket bucket{{.rate = {50, 1s}, .burst = 5, .max_wait = 30s}};
///     armor::http::pacer pace{bucket, {.ceiling = {50, 1s}, .max_burst = 5}};
///     ... auto res = get(...); pace.observe(res); ...
template <class Bucket>
class pacer {
 public:
  /// Throws armor::error(invalid_argument) naming a bad option, or when
  /// the bucket could not take the ceiling with max_burst (with its max_wait).
  pacer(Bucket& bucket, const pacer_options& options) : bucket_(&bucket), options_(options) {
    detail::check_pacer_options(options_);
    (void)armor::detail::checked_bucket_config(options_.ceiling, options_.max_burst, bucket.max_wait(),
                                               "armor::http::pacer (ceiling and max_burst)");
  }

  /// Applies what a response says (a response type, or a rate_limit_info),
  /// read at wall time `wall_now`; the bucket is changed at its own clock's
  /// `now`. Returns the target applied, or nullopt when the response says
  /// too little (nothing changes).
  std::optional<pace_target> observe(const rate_limit_info& info, timestamp now) {
    const auto t = pace(info, options_, bucket_->available(now), bucket_->max_wait());
    if (!t) return t;
    bucket_->set_rate(t->rate, t->burst, now);
    if (t->drain) {
      const std::int64_t left = bucket_->available(now);
      if (left > 0) (void)bucket_->try_acquire(left, now);
    }
    return t;
  }

  /// Same, reading the bucket's clock.
  std::optional<pace_target> observe(const rate_limit_info& info) {
    return observe(info, to_timestamp(bucket_->clock().now()));
  }

  /// Reads a response's rate-limit headers (at `wall_now`) and applies them.
  template <response R>
  std::optional<pace_target> observe(const R& r, wall_time wall_now, timestamp now) {
    return observe(read_rate_limit(r, wall_now), now);
  }

  /// Same, reading the wall clock and the bucket's clock.
  template <response R>
  std::optional<pace_target> observe(const R& r) {
    return observe(read_rate_limit(r, std::chrono::system_clock::now()));
  }

  [[nodiscard]] const pacer_options& options() const noexcept { return options_; }

 private:
  Bucket* bucket_;
  pacer_options options_;
};

template <class Bucket>
pacer(Bucket&, const pacer_options&) -> pacer<Bucket>;

}  // namespace armor::http
