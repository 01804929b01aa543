// armor/result.hpp: armor::result<R>, the value of a call or why there is
// none (armor::failure: code, retry_after, cause).
//
// try_execute() returns armor::result<R> and never throws for armor's own
// reasons, so a server can turn a refusal straight into a response:
//
//     auto r = limits.try_execute([&] { return handle(request); });
//     if (!r && r.code() == armor::errc::rate_limited)
//         return too_many_requests(r.retry_after());   // 429 + Retry-After
//     return *r;
//
// What execute() and try_execute() return and throw:
// docs/architecture.md#results-resulthpp-errorhpp.
#pragma once

#include <armor/error.hpp>

#include <chrono>
#include <exception>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace armor {

/// Why a call produced no value.
///
/// - `code`: armor's reason (`errc::circuit_open`, `rate_limited`, ...), or
///   `errc::operation_failed` / `errc::retries_exhausted` when the operation's
///   own failure ended the call.
/// - `retry_after`: how long to wait before trying again, when known (from a
///   policy, or from the server's `Retry-After` as classified).
/// - `cause`: the operation's last exception, if it threw. Kept even when armor
///   stopped the call afterwards (an open breaker after failed attempts).
struct failure {
  std::error_code code;
  std::optional<std::chrono::nanoseconds> retry_after;
  std::exception_ptr cause;

  /// True when the operation's own failure ended the call (its exception is
  /// the cause), false when armor stopped it.
  [[nodiscard]] bool from_operation() const noexcept {
    return cause && (code == errc::operation_failed || code == errc::retries_exhausted);
  }

  /// Throws what execute() would have thrown: the operation's own exception
  /// when it ended the call, armor::error otherwise.
  [[noreturn]] void raise() const {
    if (from_operation()) std::rethrow_exception(cause);
    throw error(code, retry_after);
  }
};

namespace detail {
/// Tags the value of a call whose last attempt was judged a failure.
struct judged_failure_t {
  explicit judged_failure_t() = default;
};
inline constexpr judged_failure_t judged_failure{};
}  // namespace detail

/// A value of type T (nothing, for T = void) or a failure.
///
/// A value the pipeline's classifier judged a failure (a 500 after the last
/// retry, a 501 that is not retried) is still returned as a value: the
/// caller may want the body. `ok()` tells the two apart in one call.
template <class T>
class result {
  static_assert(!std::is_reference_v<T>, "armor::result<T>: T must not be a reference");
  using stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

 public:
  using value_type = T;

  /// A value, constructed in place from args.
  template <class... Args>
  explicit result(std::in_place_t, Args&&... args) : v_(std::in_place_index<0>, std::forward<Args>(args)...) {}
  /// A value (implicit, so `return value;` works).
  template <class U = stored>
    requires(!std::is_void_v<T> && std::is_constructible_v<stored, U &&> &&
             !std::is_same_v<std::remove_cvref_t<U>, result> && !std::is_same_v<std::remove_cvref_t<U>, failure>)
  result(U&& value) : v_(std::in_place_index<0>, std::forward<U>(value)) {}  // NOLINT(google-explicit-constructor)
  /// A failure (implicit).
  result(failure f) : v_(std::in_place_index<1>, std::move(f)) {}  // NOLINT(google-explicit-constructor)
  /// A value judged a failure (the drivers build these).
  template <class... Args>
  explicit result(detail::judged_failure_t, Args&&... args)
      : v_(std::in_place_index<0>, std::forward<Args>(args)...), judged_failure_(true) {}

  /// True when there is a value, whatever the classifier judged it.
  [[nodiscard]] bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }
  /// True when there is a value and the pipeline judged it a success (or a
  /// fallback gave it). False for a failure, and for a value the classifier
  /// judged a failure or throttled that armor returned because it stopped
  /// retrying: `if (r.ok()) use(*r); else if (r) /* the upstream's bad answer */`.
  [[nodiscard]] bool ok() const noexcept { return has_value() && !judged_failure_; }

  /// The value; throws what execute() would have thrown when there is none.
  decltype(auto) value() & { return get(*this); }
  decltype(auto) value() const& { return get(*this); }
  decltype(auto) value() && { return get(std::move(*this)); }

  /// The value, or `fallback` when there is none.
  template <class U>
    requires(!std::is_void_v<T>)
  [[nodiscard]] T value_or(U&& fallback) const& {
    return has_value() ? std::get<0>(v_) : static_cast<T>(std::forward<U>(fallback));
  }

  template <class U = T>
    requires(!std::is_void_v<U>)
  U& operator*() & noexcept { return std::get<0>(v_); }
  template <class U = T>
    requires(!std::is_void_v<U>)
  const U& operator*() const& noexcept { return std::get<0>(v_); }
  template <class U = T>
    requires(!std::is_void_v<U>)
  U* operator->() noexcept { return &std::get<0>(v_); }
  template <class U = T>
    requires(!std::is_void_v<U>)
  const U* operator->() const noexcept { return &std::get<0>(v_); }

  /// The failure. Precondition: `!has_value()`.
  [[nodiscard]] const failure& error() const& noexcept { return std::get<1>(v_); }

  /// The failure's code, or an empty error_code when there is a value.
  [[nodiscard]] std::error_code code() const noexcept { return has_value() ? std::error_code{} : error().code; }

  /// The failure's retry_after, or nothing when there is a value.
  [[nodiscard]] std::optional<std::chrono::nanoseconds> retry_after() const noexcept {
    return has_value() ? std::nullopt : error().retry_after;
  }

 private:
  template <class Self>
  static decltype(auto) get(Self&& self) {
    if (!self.has_value()) std::get<1>(self.v_).raise();
    if constexpr (std::is_void_v<T>) {
      return;
    } else {
      return std::get<0>(std::forward<Self>(self).v_);
    }
  }

  std::variant<stored, failure> v_;
  bool judged_failure_ = false;
};

}  // namespace armor
