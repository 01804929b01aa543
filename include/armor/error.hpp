// armor/error.hpp: armor's error codes and its exception type.
//
// armor::errc plugs into <system_error>, so its values compare with
// std::error_code, travel through Asio completion handlers, and map onto the
// portable std::errc conditions where one fits:
//
//     std::error_code ec = armor::errc::deadline_exceeded;
//     if (ec == armor::errc::rate_limited) respond_429();
//     if (ec == std::errc::timed_out) respond_504();   // true for deadline_exceeded
//
// armor::error is what execute() throws for armor's own reasons; it carries
// the code and, when armor knows it, how long to wait before trying again.
// See docs/architecture.md#results-resulthpp-errorhpp.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace armor {

/// Why armor stopped a call, or refused a configuration.
enum class errc {
  circuit_open = 1,       ///< the circuit breaker is open (or half-open and full of probes)
  rate_limited,           ///< a rate limiter has no tokens now
  quota_exhausted,        ///< a usage quota for the current window is spent
  deadline_exceeded,      ///< the call's time budget ran out
  bulkhead_full,          ///< the concurrency limit is reached
  retries_exhausted,      ///< every attempt failed; the last failure is the cause
  operation_failed,       ///< the operation failed and was not retried
  cancelled,              ///< the caller cancelled the call
  request_too_large,      ///< asked for more than a limit can ever grant (n > burst)
  invalid_argument,       ///< bad configuration or input, refused up front
  storage_unavailable,    ///< a storage backend could not be reached or read
  /// A wait (for a token, a reservation) would have ended at or past the
  /// deadline, so the call was refused at once, before the deadline, without
  /// waiting and without calling the operation. The deadline is not spent:
  /// retry_after says how long the wait would have been. Like
  /// deadline_exceeded it compares equal to std::errc::timed_out.
  wait_exceeds_deadline,
  concurrency_limited,    ///< an adaptive concurrency limit is reached (armor::adaptive_limit)
  /// Refused locally by an adaptive throttle: the upstream has been
  /// refusing or failing this client's recent requests, so a share of new
  /// ones is not sent (armor::adaptive_throttle). The upstream was not called.
  client_throttled,
  /// Refused by a load shedder: the service is short of a resource (memory,
  /// CPU, file descriptors...) or an operator forced a mode that refuses
  /// this call's priority (armor::load_shedder). Answer 503 with Retry-After.
  overloaded,
  /// Refused because the service is draining for shutdown (armor::drain):
  /// no new call is admitted while the calls in flight finish. Not worth a
  /// retry against this instance; another instance may take it.
  draining,
  /// Refused by a host set with no host listed (armor::host_set): there is
  /// nowhere to send the call until the list is updated.
  no_host,
};

/// Marks the types of namespace armor as armor's own, for the generic
/// formatters of armor/fmt.hpp; found by argument-dependent lookup only, so
/// a user's enum with a `to_string` is never formatted by armor. A library
/// built on armor can declare the same function in its own namespace to
/// have its enums, stats and decisions formatted the same way.
template <class T>
constexpr bool armor_fmt_owned(const T*) noexcept {
  return true;
}

/// The name of an errc, as written in the code (`rate_limited`).
[[nodiscard]] constexpr std::string_view to_string(errc e) noexcept {
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
    case errc::wait_exceeds_deadline: return "wait_exceeds_deadline";
    case errc::concurrency_limited: return "concurrency_limited";
    case errc::client_throttled: return "client_throttled";
    case errc::overloaded: return "overloaded";
    case errc::draining: return "draining";
    case errc::no_host: return "no_host";
  }
  return "unknown";
}

}  // namespace armor

// Declared before any use, so that errc converts to std::error_code everywhere.
template <>
struct std::is_error_code_enum<armor::errc> : std::true_type {};

namespace armor {
namespace detail {

class error_category_impl final : public std::error_category {
 public:
  constexpr error_category_impl() noexcept = default;

  const char* name() const noexcept override { return "armor"; }

  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::circuit_open: return "circuit open";
      case errc::rate_limited: return "rate limited";
      case errc::quota_exhausted: return "quota exhausted";
      case errc::deadline_exceeded: return "deadline exceeded";
      case errc::bulkhead_full: return "bulkhead full";
      case errc::retries_exhausted: return "retries exhausted";
      case errc::operation_failed: return "operation failed";
      case errc::cancelled: return "cancelled";
      case errc::request_too_large: return "request larger than the limit can ever grant";
      case errc::invalid_argument: return "invalid argument";
      case errc::storage_unavailable: return "storage unavailable";
      case errc::wait_exceeds_deadline: return "wait would not fit before the deadline";
      case errc::concurrency_limited: return "an adaptive concurrency limit is reached";
      case errc::client_throttled: return "refused locally: the upstream has been refusing this client";
      case errc::overloaded: return "overloaded: the service is shedding load";
      case errc::draining: return "draining: the service is shutting down";
      case errc::no_host: return "no host: the host set lists no host";
    }
    return "unknown armor error";
  }

  std::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<errc>(ev)) {
      // A wait refused for the deadline is the time budget's doing too:
      // portable code that handles timed_out (a 504, "took too long")
      // handles it alike; armor::errc tells the two apart.
      case errc::deadline_exceeded:
      case errc::wait_exceeds_deadline: return std::errc::timed_out;
      case errc::cancelled: return std::errc::operation_canceled;
      case errc::invalid_argument: return std::errc::invalid_argument;
      case errc::request_too_large: return std::errc::value_too_large;
      case errc::bulkhead_full:
      case errc::concurrency_limited:
      case errc::overloaded: return std::errc::resource_unavailable_try_again;
      default: return {ev, *this};
    }
  }
};

}  // namespace detail

namespace detail {
// Constant-initialised (std::error_category's constructor is constexpr), so
// it is usable during static initialisation and reading it costs no guard
// check: verdicts build error codes on the hot path.
inline const error_category_impl error_category_instance{};
}  // namespace detail

/// The category of armor::errc. One instance per program.
[[nodiscard]] inline const std::error_category& error_category() noexcept { return detail::error_category_instance; }

/// Found by argument-dependent lookup; makes `std::error_code ec = errc::x` work.
[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// The exception armor throws: from execute() when armor itself stopped the
/// call (with the time to wait when known), and from constructors that refuse
/// a bad configuration (code errc::invalid_argument, message naming the option).
class error : public std::system_error {
 public:
  explicit error(std::error_code code, std::optional<std::chrono::nanoseconds> retry_after = std::nullopt)
      : std::system_error(code), retry_after_(retry_after) {}
  error(std::error_code code, const std::string& what,
        std::optional<std::chrono::nanoseconds> retry_after = std::nullopt)
      : std::system_error(code, what), retry_after_(retry_after) {}

  /// How long the caller should wait before trying again, when armor knows
  /// (an open breaker's remaining open time, a rate limiter's refill time).
  [[nodiscard]] std::optional<std::chrono::nanoseconds> retry_after() const noexcept { return retry_after_; }

 private:
  std::optional<std::chrono::nanoseconds> retry_after_;
};

namespace detail {

/// Refuses a configuration: throws armor::error(invalid_argument) whose
/// message names the option, e.g. "armor::deadline: budget must be positive".
[[noreturn]] inline void invalid_config(const std::string& what) {
  throw error(errc::invalid_argument, what);
}

}  // namespace detail
}  // namespace armor
