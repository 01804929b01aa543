// armor/http/status.hpp: what an HTTP status, or a request that got no
// response, means for a call: status codes as std::error_code, the rule for
// each status (status_rule), and the verdicts a pipeline's classifier returns.
//
//     armor::verdict v = armor::http::classify_status(503);   // retryable failure, "HTTP 503 Service Unavailable"
//     armor::verdict w = armor::http::classify_status(429);   // throttled: retried, not a failure
//     armor::verdict t = armor::http::classify_transport_error(std::errc::connection_reset);  // retryable
//
// The rules, per status, are in docs/http.md ("Judging responses").
#pragma once

#include <armor/verdict.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace armor::http {

// The types of armor::http are armor's own for armor/fmt.hpp (see error.hpp).
using armor::armor_fmt_owned;

// ---------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------
// Judging a status

/// What a status means for the call.
enum class status_rule : std::uint8_t {
  success,            ///< the upstream did its job; includes client errors (4xx) by default
  retryable_failure,  ///< the upstream failed and may do better later: retry, count against its health
  failure,            ///< the upstream failed; retrying will not help: count it, do not retry
  /// The upstream limits this client (429): retry after its wait; by
  /// default not counted against its health (verdict kind `throttled`).
  throttled,
};

/// The name of a status_rule, as written in the code (`retryable_failure`).
[[nodiscard]] constexpr std::string_view to_string(status_rule r) noexcept {
  switch (r) {
    case status_rule::success: return "success";
    case status_rule::retryable_failure: return "retryable_failure";
    case status_rule::failure: return "failure";
    case status_rule::throttled: return "throttled";
  }
  return "unknown";
}

/// The default rule for a status: 429 is throttled; 408, 500, 502, 503, 504
/// are retryable failures (a 503 too, with or without Retry-After: the
/// service is unavailable to every client, which is the upstream's health);
/// any other 5xx and anything outside 100..599 are failures; 1xx, 2xx, 3xx
/// and every other 4xx are successes (a client error says nothing bad about
/// the upstream's health, and retrying the same request cannot fix it; the
/// caller still gets the response and decides).
[[nodiscard]] constexpr status_rule default_status_rule(int status) noexcept {
  switch (status) {
    case 429: return status_rule::throttled;
    case 408:
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
/// or throttled verdict whose code is make_status_code(status), except for
/// status 0 (no status at all: not an HTTP response), whose code is
/// std::errc::protocol_error, because an error code of value 0 means
/// success. `retry_after` is kept only on a retryable failure and a
/// throttled verdict (a retry layer uses it instead of its own delay).
[[nodiscard]] inline verdict verdict_for(status_rule rule, int status,
                                         std::optional<std::chrono::nanoseconds> retry_after = std::nullopt) noexcept {
  const std::error_code code = status == 0 ? std::make_error_code(std::errc::protocol_error) : make_status_code(status);
  switch (rule) {
    case status_rule::success: return verdict::success();
    case status_rule::retryable_failure: return verdict::failure(code, true, retry_after);
    case status_rule::throttled: return verdict::throttled(code, retry_after);
    case status_rule::failure: break;
  }
  return verdict::failure(code, false);
}

/// armor's default judgement of a status (default_status_rule), with the
/// server's Retry-After when the caller has parsed one.
[[nodiscard]] inline verdict classify_status(int status,
                                             std::optional<std::chrono::nanoseconds> retry_after = std::nullopt) noexcept {
  return verdict_for(default_status_rule(status), status, retry_after);
}

// ---------------------------------------------------------------------------
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

}  // namespace armor::http
