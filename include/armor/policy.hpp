// armor/policy.hpp: the protocol every policy speaks: the concepts
// armor::policy, looping_policy and queueing_policy, and the answers
// (admission, step) and permits they trade in.
//
// Policies decide; drivers act. A policy never sleeps, blocks or starts a
// timer: admit(ctx) answers admitted, rejected or wait from the time in the
// context, settle(ctx, permit, verdict) records the attempt it admitted, and
// a looping policy's next() says whether to go round again. A user policy is
// any type that meets armor::policy, for example:
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
// Policies are called concurrently from every thread that uses the
// pipeline: admit/settle/next must be thread-safe. A permit dropped
// unsettled gives back what it holds. The protocol, queueing and permits:
// docs/architecture.md#the-protocol-policyhpp.
#pragma once

#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/error.hpp>
#include <armor/listener.hpp>
#include <armor/verdict.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace armor {

/// What admit() answers.
enum class admission_kind : std::uint8_t {
  admitted,  ///< go ahead now
  rejected,  ///< do not run the attempt; fail with `code`
  wait,      ///< go ahead after `delay`; the permit holds the reservation
  queue,     ///< (queueing policies) nothing free now: the driver may join the policy's queue with enqueue()
  queued,    ///< (from enqueue) in the queue: wait for the waiter's wake-up, at most `delay`; see queue_waiter
};

/// The name of an admission_kind (`admitted`, `rejected`, ...).
[[nodiscard]] constexpr std::string_view to_string(admission_kind k) noexcept {
  switch (k) {
    case admission_kind::admitted: return "admitted";
    case admission_kind::rejected: return "rejected";
    case admission_kind::wait: return "wait";
    case admission_kind::queue: return "queue";
    case admission_kind::queued: return "queued";
  }
  return "unknown";
}

/// A policy's answer to admit(). Permit must be default-constructible and
/// movable; a rejected admission holds a default (empty) permit.
template <class Permit = no_permit>
struct admission {
  admission_kind kind = admission_kind::admitted;
  Permit permit{};
  std::chrono::nanoseconds delay{};                     ///< wait: how long
  /// rejected: why. Empty (value 0) otherwise, in armor's category, as a
  /// verdict's: std::error_code{} would call std::system_category(), an
  /// out-of-line library call, in every admission.
  std::error_code code{0, error_category()};
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
  /// For queueing policies: nothing free now, but the caller may join the
  /// queue (the driver calls enqueue()). A driver that cannot queue treats it
  /// as a rejection with `code`.
  [[nodiscard]] static admission queue(std::error_code code) noexcept {
    admission a;
    a.kind = admission_kind::queue;
    a.code = code;
    a.retryable = true;
    return a;
  }
  /// For queueing policies' enqueue(): in the queue, for at most `longest`;
  /// a wait that ends unserved fails with `code`. The permit holds the place.
  [[nodiscard]] static admission queued(std::chrono::nanoseconds longest, Permit p, std::error_code code) noexcept(
      std::is_nothrow_move_constructible_v<Permit>) {
    admission a;
    a.kind = admission_kind::queued;
    a.delay = longest;
    a.permit = std::move(p);
    a.code = code;
    a.retryable = true;
    return a;
  }
};

/// A driver's place in a queueing policy's wait queue (armor::bulkhead or
/// armor::adaptive_limit with a queue). The driver owns it (on its stack, or in its coroutine frame)
/// and keeps it alive until the permit enqueue() returned has left the
/// queue; the policy links it into its queue and, when it grants the waiter
/// a slot, sets `granted` and calls wake() (under the policy's own lock, so
/// wake() must be quick and must not call back into the policy).
///
/// The protocol, for a policy P that meets armor::queueing_policy:
///
///     auto a = p.admit(ctx);              // kind queue: full, but there is a queue
///     waiter w{...};                      // the driver's, with its wake-up
///     auto q = p.enqueue(ctx, w);         // admitted | rejected | queued{delay, permit}
///     // queued: wait until w is woken or `delay` (or the deadline) has passed, then
///     bool in = q.permit.leave_queue();   // true: granted, the permit holds the slot;
///                                         // false: not granted, the permit is empty
///
/// Dropping a queued permit without leave_queue() (an exception, a destroyed
/// coroutine) takes the waiter out of the queue, or gives back the slot if
/// it was granted meanwhile: no slot is ever lost.
class queue_waiter {
 public:
  /// How the driver is told: called once, by the policy, under its lock.
  using wake_fn = void (*)(queue_waiter&) noexcept;

  explicit queue_waiter(wake_fn fn) noexcept : wake_(fn) {}
  queue_waiter(const queue_waiter&) = delete;
  queue_waiter& operator=(const queue_waiter&) = delete;
  ~queue_waiter() = default;

  /// For the policy: tells the driver its turn has come.
  void wake() noexcept { wake_(*this); }

  // Owned by the policy while the waiter is queued, under the policy's lock.
  queue_waiter* prev = nullptr;  ///< the policy's queue links
  queue_waiter* next = nullptr;
  bool granted = false;          ///< set by the policy before wake()

 private:
  wake_fn wake_;
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

/// A policy that can make callers wait in line for a slot that another call
/// will give back (see queue_waiter): admit() may answer `queue`, and then
/// enqueue() puts the driver's waiter in the queue. The permit of a queued
/// admission has `bool leave_queue() noexcept`.
template <class P>
concept queueing_policy = policy<P> && requires(P& p, context& ctx, queue_waiter& w, typename P::permit_type& permit) {
  { p.enqueue(ctx, w) } -> std::same_as<admission<typename P::permit_type>>;
  { permit.leave_queue() } noexcept -> std::same_as<bool>;
};

namespace detail {

/// True for a policy that turns a failed call into a value (armor::fallback).
/// Declared by the policy as `static constexpr bool recovers = true;` with
/// `bool handles(const verdict&, const failure&) const noexcept` and
/// `template <class R> R recover(const failure&, const context&)`.
template <class P>
constexpr bool recovers() {
  if constexpr (requires { P::recovers; }) {
    return P::recovers;
  } else {
    return false;
  }
}

/// True for a policy that runs the layers inside it several times at once
/// (armor::hedge). Declared as `static constexpr bool hedges = true;`. Only
/// the Asio driver can run such a layer.
template <class P>
constexpr bool hedges() {
  if constexpr (requires { P::hedges; }) {
    return P::hedges;
  } else {
    return false;
  }
}

/// True for a policy whose permits carry faults for the driver to inject
/// (armor::fault_injector). Declared as `static constexpr bool
/// injects_faults = true;`; its permit has `bool injects()`, `latency()`,
/// `bool fails()`, `throws()` and `returns_value()`, and the policy `injected_exception()`,
/// `injected_error()` and (with a result type) `injected_result()`.
template <class P>
constexpr bool injects_faults() {
  if constexpr (requires { P::injects_faults; }) {
    return P::injects_faults;
  } else {
    return false;
  }
}

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
