// armor/decision.hpp: the one shape of every standalone decision: the
// concept armor::decision_like and armor::decision<Permit>.
//
// Each policy that can be asked directly, outside a pipeline
// (circuit_breaker::try_acquire, token_bucket::try_acquire,
// quota_tracker::try_consume, bulkhead::try_acquire), answers with a value
// of this shape:
//
//     if (auto d = breaker.try_acquire()) {
//         auto permit = std::move(d).permit();   // when the policy hands one out
//         breaker.record(std::move(permit), call_upstream());
//     } else {
//         log(d.code().message(), d.retry_after());
//     }
//
// `explicit operator bool` (granted or not), `code()` (why not: an
// armor::errc; empty when granted), `retry_after()` (how long until asking
// again may succeed: zero when granted, nanoseconds::max() when no wait is
// known to help) and `permit()` (what the grant holds, for policies that
// hand one out). armor::decision<Permit> is that shape with nothing more; a
// policy whose answer carries more (a token bucket's remaining tokens, a
// quota's usage) has its own type that meets armor::decision_like. See
// docs/architecture.md#one-shape-for-every-policy.
#pragma once

#include <armor/error.hpp>

#include <chrono>
#include <concepts>
#include <system_error>
#include <type_traits>
#include <utility>

namespace armor {

/// The permit of a policy that holds nothing between admit and settle.
struct no_permit {};

/// What every standalone decision offers (see the top of this header).
template <class D>
concept decision_like = std::is_constructible_v<bool, const D&> && !std::is_convertible_v<const D&, bool> &&
                        requires(const D& d) {
                          { d.code() } noexcept -> std::same_as<std::error_code>;
                          { d.retry_after() } noexcept -> std::same_as<std::chrono::nanoseconds>;
                        };

/// A policy's answer: granted with a permit, or refused with a code and the
/// time after which asking again may succeed. Move-only when the permit is.
template <class Permit = no_permit>
class decision {
 public:
  using permit_type = Permit;

  /// Granted, holding `p`.
  [[nodiscard]] static decision granted(Permit p = {}) noexcept(std::is_nothrow_move_constructible_v<Permit>) {
    return decision{std::move(p), errc{}, std::chrono::nanoseconds::zero()};
  }
  /// Refused with `code`; `retry_after` as described at the top of the header.
  [[nodiscard]] static decision refused(errc code, std::chrono::nanoseconds retry_after) noexcept {
    return decision{Permit{}, code, retry_after};
  }

  [[nodiscard]] explicit operator bool() const noexcept { return code_ == errc{}; }
  /// Why the call was refused; an empty error_code when it was granted.
  [[nodiscard]] std::error_code code() const noexcept {
    return code_ == errc{} ? std::error_code{} : std::error_code{code_};
  }
  /// Zero when granted; nanoseconds::max() when no wait is known to help.
  [[nodiscard]] std::chrono::nanoseconds retry_after() const noexcept { return retry_after_; }

  /// The permit (empty when refused).
  [[nodiscard]] Permit& permit() & noexcept { return permit_; }
  [[nodiscard]] const Permit& permit() const& noexcept { return permit_; }
  /// By value from a temporary decision, so that
  /// `auto p = bulkhead.try_acquire().permit();` cannot leave a dangling
  /// reference to a permit that was already given back.
  [[nodiscard]] Permit permit() && noexcept(std::is_nothrow_move_constructible_v<Permit>) { return std::move(permit_); }

 private:
  decision(Permit p, errc code, std::chrono::nanoseconds retry_after) noexcept(
      std::is_nothrow_move_constructible_v<Permit>)
      : permit_(std::move(p)), code_(code), retry_after_(retry_after) {}

  Permit permit_;
  errc code_;
  std::chrono::nanoseconds retry_after_;
};

static_assert(decision_like<decision<>>);

}  // namespace armor
