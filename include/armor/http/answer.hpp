// armor/http/answer.hpp: the HTTP answer a server gives when armor refused
// or ended a call, so any refusal (a rate limit, a quota, an open breaker, a
// full bulkhead, a deadline) becomes a response in two lines:
//
//     auto r = limits.try_execute([&] { return handle(request); });
//     if (!r) {
//         const armor::http::answer a = armor::http::answer_for(r.error());
//         response.status = a.status;                       // 429, 503, 504...
//         armor::http::answer_headers(a, [&](std::string_view name, std::string_view value) {
//             response.set_header(std::string(name), std::string(value));  // Retry-After
//         });
//     }
//
// The mapping, and when to add the RateLimit headers of a token bucket's own
// decision as well: docs/http.md#answering-a-refused-call.
#pragma once

#include <armor/error.hpp>
#include <armor/http/date.hpp>
#include <armor/http/status.hpp>
#include <armor/result.hpp>

#include <array>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string_view>
#include <system_error>

namespace armor::http {

/// The status (and the wait, when one is known) a server answers for a call
/// armor refused or ended (see answer_for()).
struct answer {
  int status = 500;
  /// Sent as Retry-After (whole seconds, rounded up, at least 1); none when
  /// no wait is known to help.
  std::optional<std::chrono::nanoseconds> retry_after{};

  /// The status's reason phrase ("Too Many Requests"), or "" for a status
  /// armor does not know.
  [[nodiscard]] std::string_view reason() const noexcept {
    return armor::http::detail::status_category_impl::reason_phrase(status);
  }
};

/// The answer for why a call produced no value:
///
/// - 429 Too Many Requests: `rate_limited`, `quota_exhausted` (this client
///   asks too much; come back after retry_after);
/// - 413 Content Too Large: `request_too_large` (the call's cost exceeds
///   what the limit can ever grant: waiting cannot help, so no Retry-After);
/// - 503 Service Unavailable: `circuit_open`, `bulkhead_full`,
///   `concurrency_limited`, `client_throttled`, `overloaded`, `draining`,
///   `storage_unavailable`, `cancelled` (the service, or what it depends on, cannot take the call
///   now; nothing the client did);
/// - 504 Gateway Timeout: `deadline_exceeded`, `wait_exceeds_deadline`;
/// - `operation_failed_status` (500 by default; a proxy may pass 502) when
///   the operation itself failed (`operation_failed`, `retries_exhausted`)
///   or for any code armor does not know.
///
/// retry_after is the failure's, kept for 429 and 503 only; a wait of
/// nanoseconds::max() (no wait known to help) is dropped.
[[nodiscard]] inline answer answer_for(std::error_code code, std::optional<std::chrono::nanoseconds> retry_after,
                                       int operation_failed_status = 500) noexcept {
  int status = operation_failed_status;
  bool keeps_wait = false;
  if (code.category() == error_category()) {
    switch (static_cast<errc>(code.value())) {
      case errc::rate_limited:
      case errc::quota_exhausted:
        status = 429;
        keeps_wait = true;
        break;
      case errc::request_too_large:
        status = 413;
        break;
      case errc::circuit_open:
      case errc::bulkhead_full:
      case errc::concurrency_limited:
      case errc::client_throttled:
      case errc::overloaded:
      case errc::draining:
      case errc::no_host:
      case errc::storage_unavailable:
      case errc::cancelled:
        status = 503;
        keeps_wait = true;
        break;
      case errc::deadline_exceeded:
      case errc::wait_exceeds_deadline:
        status = 504;
        break;
      case errc::retries_exhausted:
      case errc::operation_failed:
      case errc::invalid_argument:
        break;
    }
  }
  answer a{status, std::nullopt};
  if (keeps_wait && retry_after && *retry_after != std::chrono::nanoseconds::max()) {
    a.retry_after = *retry_after < std::chrono::nanoseconds::zero() ? std::chrono::nanoseconds::zero() : *retry_after;
  }
  return a;
}

/// The answer for a failed call's failure (its code and retry_after).
[[nodiscard]] inline answer answer_for(const failure& f, int operation_failed_status = 500) noexcept {
  return answer_for(f.code, f.retry_after, operation_failed_status);
}

/// Emits the answer's headers as `emit(name, value)`: `Retry-After` (whole
/// seconds, rounded up, at least 1) when the answer has a wait; nothing
/// otherwise. The views are valid during the call only.
template <class Emit>
  requires std::invocable<Emit&, std::string_view, std::string_view>
void answer_headers(const answer& a, Emit&& emit) {
  if (!a.retry_after) return;
  std::array<char, 24> buf{};
  const auto res = std::to_chars(buf.data(), buf.data() + buf.size(), retry_after_seconds(*a.retry_after));
  emit(std::string_view("Retry-After"), std::string_view(buf.data(), static_cast<std::size_t>(res.ptr - buf.data())));
}

}  // namespace armor::http
