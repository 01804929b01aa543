// armor/verdict.hpp: armor::verdict, how the outcome of one attempt is
// judged, and armor::classify, which gives a pipeline its own judge.
//
// Each attempt's value or exception is classified once into a verdict that
// every policy reads by its own rule: the retry layer retries what is
// `retryable`; the breaker asks armor::health (a failure or timeout is
// unhealthy; a throttled answer, a refusal or a cancellation neither). The
// default classifier says:
//
//   - an exception is a retryable failure (armor::error from a nested
//     pipeline keeps its meaning: rejected, timeout or cancelled);
//   - a truthy std::error_code is a retryable failure with that code;
//   - a result-like value (has_value() == false: std::expected,
//     armor::result, ...) is a retryable failure;
//   - anything else, including void, is a success.
//
// A service that knows better gives its own, e.g. for HTTP responses:
//
//     auto p = armor::pipeline{armor::classify{[](const response& r) {
//         if (r.status >= 500) return armor::verdict::failure();
//         return armor::verdict::success();       // a 404 is the caller's problem
//     }}, armor::backoff{{.max_attempts = 3}}};
//
// Verdict kinds and what each policy does with them:
// docs/architecture.md#verdicts-and-classifiers-verdicthpp.
#pragma once

#include <armor/error.hpp>
#include <armor/result.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace armor {

/// What kind of end an attempt had.
enum class outcome : std::uint8_t {
  success,    ///< the upstream did its job (a client error such as 404 may count here)
  failure,    ///< the upstream failed: counts against its health
  rejected,   ///< armor refused the attempt before it ran (open breaker, no tokens...)
  timeout,    ///< the time budget ran out
  cancelled,  ///< the caller gave up; says nothing about the upstream
  /// The upstream answered "not now, not you": a 429, an exhausted rate
  /// limit. Retryable after its retry_after; by default no sign of bad
  /// health (the upstream is working: it is limiting this client).
  throttled,
};

/// The name of an outcome (`success`, `failure`, ...).
[[nodiscard]] constexpr std::string_view to_string(outcome o) noexcept {
  switch (o) {
    case outcome::success: return "success";
    case outcome::failure: return "failure";
    case outcome::rejected: return "rejected";
    case outcome::timeout: return "timeout";
    case outcome::cancelled: return "cancelled";
    case outcome::throttled: return "throttled";
  }
  return "unknown";
}

/// The judgement of one attempt, handed to every policy on the way out.
/// `retry_after` is a hint from the server or a policy; `code` says why.
struct verdict {
  outcome kind = outcome::success;
  bool retryable = false;
  std::optional<std::chrono::nanoseconds> retry_after;
  /// Why, when it is not a success; "no error" (value 0) otherwise. Not
  /// std::error_code{}: building that calls std::system_category() out of
  /// line, and a verdict is built on every attempt.
  std::error_code code{0, error_category()};

  [[nodiscard]] constexpr bool ok() const noexcept { return kind == outcome::success; }

  [[nodiscard]] static verdict success() noexcept { return {}; }
  /// A failure of the upstream; retryable unless told otherwise.
  [[nodiscard]] static verdict failure(std::error_code code = errc::operation_failed, bool retryable = true,
                                       std::optional<std::chrono::nanoseconds> retry_after = std::nullopt) noexcept {
    return {outcome::failure, retryable, retry_after, code};
  }
  /// A failure that retrying cannot fix (a 400, a bad credential).
  [[nodiscard]] static verdict permanent_failure(std::error_code code = errc::operation_failed) noexcept {
    return failure(code, false);
  }
  /// A retryable failure with the server's hint (a 503 with Retry-After).
  [[nodiscard]] static verdict retry_later(std::chrono::nanoseconds after,
                                           std::error_code code = errc::operation_failed) noexcept {
    return failure(code, true, after);
  }
  /// The upstream throttled this client (a 429, an exhausted rate limit):
  /// retryable, after `retry_after` when the server said how long; not a
  /// failure of the upstream (see armor::health).
  [[nodiscard]] static verdict throttled(std::error_code code = errc::operation_failed,
                                         std::optional<std::chrono::nanoseconds> retry_after = std::nullopt) noexcept {
    return {outcome::throttled, true, retry_after, code};
  }
};

/// What one outcome says about the upstream's health, to a policy that
/// watches it (armor::circuit_breaker).
enum class health : std::uint8_t {
  healthy,    ///< counts as a success
  unhealthy,  ///< counts as a failure
  neutral,    ///< counts as neither: says nothing about the upstream
};

/// The name of a health value (`healthy`, `unhealthy`, `neutral`).
[[nodiscard]] constexpr std::string_view to_string(health h) noexcept {
  switch (h) {
    case health::healthy: return "healthy";
    case health::unhealthy: return "unhealthy";
    case health::neutral: return "neutral";
  }
  return "unknown";
}

/// A policy's own rule for what an outcome says about health: a plain
/// function (a captureless lambda converts to one), so a policy holds it in
/// one pointer and calls it without allocating. It must not throw.
using health_rule = health (*)(const verdict&) noexcept;

/// armor's health rule, the default of every policy that takes one: a
/// success is healthy; a failure (retryable or not) and a timeout are
/// unhealthy; throttled, rejected and cancelled are neutral (the upstream
/// was working, or was never asked).
[[nodiscard]] constexpr health default_health(const verdict& v) noexcept {
  switch (v.kind) {
    case outcome::success: return health::healthy;
    case outcome::failure:
    case outcome::timeout: return health::unhealthy;
    case outcome::throttled:
    case outcome::rejected:
    case outcome::cancelled: return health::neutral;
  }
  return health::neutral;
}

/// Wraps a user classifier for a pipeline. `fn` is called with the
/// operation's value (`const R&`) when it can take one, and with the
/// exception (`std::exception_ptr`) when it can take that; whatever it cannot
/// take goes to default_classifier. It must return armor::verdict.
template <class F>
struct classify {
  F fn;
};
template <class F>
classify(F) -> classify<F>;

namespace detail {

template <class T>
concept result_like = requires(const T& t) {
  { t.has_value() } -> std::convertible_to<bool>;
  t.error();
};

template <class T>
struct is_armor_result : std::false_type {};
template <class T>
struct is_armor_result<result<T>> : std::true_type {};

}  // namespace detail

/// armor's default judgement (see the top of this header). Stateless.
struct default_classifier {
  /// A returned value.
  template <class T>
  [[nodiscard]] verdict operator()(const T& value) const noexcept {
    if constexpr (std::is_same_v<T, std::error_code>) {
      return value ? verdict::failure(value) : verdict::success();
    } else if constexpr (detail::is_armor_result<T>::value) {
      if (value.has_value()) return verdict::success();
      return from_code(value.code(), value.retry_after());
    } else if constexpr (detail::result_like<T>) {
      if (value.has_value()) return verdict::success();
      if constexpr (std::is_convertible_v<decltype(value.error()), std::error_code>) {
        return verdict::failure(static_cast<std::error_code>(value.error()));
      } else {
        return verdict::failure();
      }
    } else {
      return verdict::success();
    }
  }

  /// An exception the operation threw.
  [[nodiscard]] verdict operator()(const std::exception_ptr& e) const noexcept {
    try {
      std::rethrow_exception(e);
    } catch (const error& ex) {
      return from_code(ex.code(), ex.retry_after());
    } catch (const std::system_error& ex) {
      return verdict::failure(ex.code());
    } catch (...) {
      return verdict::failure();
    }
  }

  /// A void operation that returned.
  [[nodiscard]] verdict operator()() const noexcept { return verdict::success(); }

 private:
  // A code from a nested armor pipeline keeps its meaning: its refusal is a
  // rejection (not the upstream's failure), its deadline a timeout. A wait
  // it refused for its deadline, or an adaptive throttle's local refusal, is
  // a refusal: the upstream was not called.
  static verdict from_code(std::error_code code, std::optional<std::chrono::nanoseconds> retry_after) noexcept {
    if (code.category() == error_category()) {
      switch (static_cast<errc>(code.value())) {
        case errc::circuit_open:
        case errc::rate_limited:
        case errc::quota_exhausted:
        case errc::bulkhead_full:
        case errc::concurrency_limited:
        case errc::wait_exceeds_deadline:
        case errc::client_throttled:
        case errc::overloaded:
          return {outcome::rejected, true, retry_after, code};
        case errc::draining:
        case errc::no_host:
          return {outcome::rejected, false, retry_after, code};
        case errc::deadline_exceeded:
          return {outcome::timeout, true, retry_after, code};
        case errc::cancelled:
          return {outcome::cancelled, false, retry_after, code};
        default:
          break;
      }
    }
    return verdict::failure(code, true, retry_after);
  }
};

namespace detail {

template <class K>
struct is_classify : std::false_type {};
template <class F>
struct is_classify<classify<F>> : std::true_type {};

/// What a pipeline accepts as its classifier.
template <class K>
concept classifier_type = std::is_same_v<K, default_classifier> || is_classify<K>::value;

/// Judges a value with the user's classifier when it takes one, else the default.
template <class K, class T>
[[nodiscard]] verdict judge_value(const K& k, const T& value) {
  if constexpr (is_classify<K>::value) {
    if constexpr (std::is_invocable_r_v<verdict, const decltype(k.fn)&, const T&>) return k.fn(value);
  }
  return default_classifier{}(value);
}

/// Judges a completed void operation.
template <class K>
[[nodiscard]] verdict judge_void(const K& k) {
  if constexpr (is_classify<K>::value) {
    if constexpr (std::is_invocable_r_v<verdict, const decltype(k.fn)&>) return k.fn();
  }
  return default_classifier{}();
}

/// Judges an exception with the user's classifier when it takes one, else the default.
template <class K>
[[nodiscard]] verdict judge_exception(const K& k, const std::exception_ptr& e) {
  if constexpr (is_classify<K>::value) {
    if constexpr (std::is_invocable_r_v<verdict, const decltype(k.fn)&, const std::exception_ptr&>) return k.fn(e);
  }
  return default_classifier{}(e);
}

}  // namespace detail
}  // namespace armor
