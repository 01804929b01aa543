// armor/policy.hpp: the protocol every policy speaks.
//
// Policies decide; drivers act. A policy never sleeps, blocks or starts a
// timer: it answers questions from the time in the context, and a driver (the
// sync driver in pipeline.hpp, the Asio driver in asio.hpp) does the waiting.
//
//   admit(ctx)            -> admission: admitted{permit} | rejected{code, retry_after}
//                                       | wait{delay, permit}
//   settle(ctx, permit, v)   records verdict v of the attempt this layer admitted
//   next(ctx, v, state)   -> step: done | again{delay}      (only looping policies)
//
// A permit is a small RAII value owned by the driver between admit and
// settle. Dropping it unsettled (an exception, a destroyed coroutine, a wait
// the driver refused because it would outlast the deadline) must release
// whatever it holds. A wait carries a reservation already made.
//
// A user policy is any type that meets armor::policy, for example:
//
//     struct count_calls {
//         using permit_type = armor::no_permit;
//         std::atomic<long> calls{0};
//         armor::admission<> admit(armor::context&) noexcept {
//             calls.fetch_add(1, std::memory_order_relaxed);
//             return armor::admission<>::admit();
//         }
//         void settle(armor::context&, armor::no_permit, const armor::verdict&) noexcept {}
//     };
//
// Policies are called concurrently from every thread that uses the pipeline;
// admit/settle/next must be thread-safe.
#pragma once

#include <armor/context.hpp>
#include <armor/error.hpp>
#include <armor/verdict.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

namespace armor {

/// The permit of a policy that holds nothing between admit and settle.
struct no_permit {};

/// The default event listener of a policy: none. Policies take their
/// listener as a template argument and test for this type at compile time,
/// so a policy without a listener pays nothing for the feature (no branch,
/// no std::function, no allocation).
struct no_listener {};

/// What admit() answers.
enum class admission_kind : std::uint8_t {
  admitted,  ///< go ahead now
  rejected,  ///< do not run the attempt; fail with `code`
  wait,      ///< go ahead after `delay`; the permit holds the reservation
};

/// A policy's answer to admit(). Permit must be default-constructible and
/// movable; a rejected admission holds a default (empty) permit.
template <class Permit = no_permit>
struct admission {
  admission_kind kind = admission_kind::admitted;
  Permit permit{};
  std::chrono::nanoseconds delay{};                     ///< wait: how long
  std::error_code code{};                               ///< rejected: why
  std::optional<std::chrono::nanoseconds> retry_after;  ///< rejected: when it may succeed
  bool retryable = false;                               ///< rejected: worth a retry later

  [[nodiscard]] static admission admit(Permit p = {}) noexcept(std::is_nothrow_move_constructible_v<Permit>) {
    admission a;
    a.permit = std::move(p);
    return a;
  }
  [[nodiscard]] static admission reject(std::error_code code,
                                        std::optional<std::chrono::nanoseconds> retry_after = std::nullopt,
                                        bool retryable = true) noexcept {
    admission a;
    a.kind = admission_kind::rejected;
    a.code = code;
    a.retry_after = retry_after;
    a.retryable = retryable;
    return a;
  }
  [[nodiscard]] static admission wait(std::chrono::nanoseconds delay, Permit p) noexcept(
      std::is_nothrow_move_constructible_v<Permit>) {
    admission a;
    a.kind = admission_kind::wait;
    a.delay = delay;
    a.permit = std::move(p);
    return a;
  }
};

/// A looping policy's answer to next(): stop here, or run the inner layers
/// again after `delay`.
struct step {
  bool again = false;
  std::chrono::nanoseconds delay{};

  [[nodiscard]] static constexpr step done() noexcept { return {}; }
  [[nodiscard]] static constexpr step retry_after(std::chrono::nanoseconds d) noexcept { return {true, d}; }
};

/// The policy protocol: admit and settle (see the top of this header).
template <class P>
concept policy = requires(P& p, context& ctx, const verdict& v, typename P::permit_type&& permit) {
  typename P::permit_type;
  { p.admit(ctx) } -> std::same_as<admission<typename P::permit_type>>;
  { p.settle(ctx, std::move(permit), v) } -> std::same_as<void>;
};

/// A policy that may run the layers inside it again (retry, hedging). The
/// driver keeps one `loop_state` per call, value-initialised, and asks
/// next() after each round.
template <class P>
concept looping_policy = policy<P> && requires(P& p, const context& ctx, const verdict& v, typename P::loop_state& s) {
  typename P::loop_state;
  { p.next(ctx, v, s) } -> std::same_as<step>;
};

namespace detail {

/// A layer as a pipeline stores it: a policy, or std::reference_wrapper to
/// one so that several pipelines share its state.
template <class L>
using policy_of = std::remove_reference_t<std::unwrap_reference_t<std::remove_cv_t<L>>>;

template <class L>
concept layer = policy<policy_of<L>>;

template <class T>
inline constexpr bool is_reference_wrapper_v = false;
template <class T>
inline constexpr bool is_reference_wrapper_v<std::reference_wrapper<T>> = true;

/// The policy a layer stands for (cv-qualified layers included: a const
/// std::reference_wrapper still leads to its policy).
template <class L>
[[nodiscard]] constexpr decltype(auto) unwrap(L& l) noexcept {
  if constexpr (is_reference_wrapper_v<std::remove_cv_t<L>>) {
    return l.get();
  } else {
    return (l);
  }
}

/// True when a policy wants the clock read again after the operation, before
/// settle (to time the call: slow-call detection). Declared by the policy as
/// `static constexpr bool needs_completion_time = true;`.
template <class P>
constexpr bool needs_completion_time() {
  if constexpr (requires { P::needs_completion_time; }) {
    return P::needs_completion_time;
  } else {
    return false;
  }
}

/// Whether this policy instance wants the completion time. A policy that
/// declares needs_completion_time may narrow it per instance with
/// `bool wants_completion_time() const noexcept` (a breaker with no
/// slow-call rule does not need to time calls); the driver then skips the
/// second clock read on the success path.
template <class P>
[[nodiscard]] bool wants_completion_time(const P& p) noexcept {
  if constexpr (requires { p.wants_completion_time(); }) {
    return p.wants_completion_time();
  } else {
    return needs_completion_time<P>();
  }
}

/// True when a policy's own clock (its `clock_type`, if it declares one) is
/// the pipeline's clock.
template <class P, class Clock>
constexpr bool clock_agrees() {
  if constexpr (requires { typename P::clock_type; }) {
    return std::is_same_v<typename P::clock_type, Clock>;
  } else {
    return true;
  }
}

}  // namespace detail
}  // namespace armor
