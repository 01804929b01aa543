// armor/pipeline.hpp: armor::pipeline, policies stacked around a call, and
// the sync driver that runs them.
//
//     auto p = armor::pipeline{
//         armor::deadline{2s},                     // outermost first
//         armor::backoff{{.max_attempts = 4}},
//         std::ref(shared_breaker),                // shared with other pipelines
//     };
//     std::string body = p.execute([&](const armor::context& ctx) {
//         return http_get(url, ctx.remaining());
//     });
//
// execute(f) returns what the operation returned (even a value judged a
// failure, once armor stops retrying), rethrows the operation's exception
// when that ended the call, and throws armor::error when armor stopped it
// (open breaker, no tokens, deadline); try_execute(f) returns
// armor::result<R> instead and never throws for armor's reasons.
//
// Thread-safety: execute and try_execute are const and may be called from
// any number of threads at once. Cost: no heap allocation, no virtual call
// and no lock per call on the success path; one clock read per attempt. How
// the driver runs the layers, time and deadlines:
// docs/architecture.md#the-sync-driver-pipelinehpp.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/detail/config.hpp>
#include <armor/error.hpp>
#include <armor/policy.hpp>
#include <armor/result.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

namespace armor {

namespace detail {

/// How the driver calls the user's operation: with the context when it takes
/// one, else with nothing.
template <class F>
[[nodiscard]] constexpr bool takes_context() {
  return std::is_invocable_v<F&, const context&>;
}

template <class F>
decltype(auto) call_operation(F& f, const context& ctx) {
  if constexpr (takes_context<F>()) {
    return std::invoke(f, ctx);
  } else {
    static_assert(std::is_invocable_v<F&>,
                  "armor: the operation must be callable as f(const armor::context&) or as f()");
    return std::invoke(f);
  }
}

/// The type an operation returns, without references or cv-qualifiers
/// (a returned reference is copied into the result).
template <class F>
using operation_result_t = std::remove_cvref_t<decltype(call_operation(std::declval<F&>(), std::declval<const context&>()))>;

/// What one call has come to so far: the last attempt's value or exception,
/// its verdict, and whether armor (rather than the operation) ended it.
template <class R>
struct call_outcome {
  using stored = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

  std::optional<stored> value;  ///< what the last attempt returned
  std::exception_ptr exception; ///< what the last attempt threw
  verdict v;
  bool stopped_by_armor = false;
  bool recovered = false;  ///< a fallback gave the value; outer fallbacks leave it alone

  /// armor ends the call here. The last exception stays as the cause.
  void stop(outcome kind, std::error_code code, std::optional<std::chrono::nanoseconds> retry_after,
            bool retryable) noexcept {
    value.reset();
    v = verdict{kind, retryable, retry_after, code};
    stopped_by_armor = true;
  }

  /// Why this outcome is not a success, as the failure a fallback sees: what
  /// finish() would report, and for a value judged a failure (an error code,
  /// a 503 response) the verdict's code.
  [[nodiscard]] failure current_failure(unsigned attempts) const {
    if (stopped_by_armor) return failure{v.code, v.retry_after, exception};
    if (exception) {
      const bool exhausted = attempts > 1 && v.retryable;
      return failure{exhausted ? errc::retries_exhausted : errc::operation_failed, v.retry_after, exception};
    }
    return failure{v.code, v.retry_after, nullptr};
  }

  /// The armor::result this outcome amounts to. `attempts` is how many times
  /// the operation ran.
  result<R> finish(unsigned attempts) && {
    if (stopped_by_armor) return failure{v.code, v.retry_after, exception};
    if (value) {
      if (v.ok() || recovered) return result<R>(std::in_place, std::move(*value));
      return result<R>(detail::judged_failure, std::move(*value));
    }
    const bool exhausted = attempts > 1 && v.retryable;
    return failure{exhausted ? errc::retries_exhausted : errc::operation_failed, v.retry_after, exception};
  }
};

/// Grants the Asio driver (armor/asio.hpp) the same access to a pipeline's
/// layers, clock and classifier as the sync driver has.
struct pipeline_access;

/// The Asio driver's entry points for an operation type F. Declared here,
/// defined in armor/asio.hpp: pipeline.hpp never includes Asio, and calling
/// async_execute without including armor/asio.hpp fails to compile.
template <class F>
struct async_entry;

// The decision points of a driver. Both drivers call these, so every rule
// about deadlines, waits and attempts is written once; only how a driver
// waits differs.

/// now + delay, saturating.
[[nodiscard]] ARMOR_ALWAYS_INLINE timestamp wake_time(const context& ctx, std::chrono::nanoseconds delay) noexcept {
  return timestamp{std::chrono::nanoseconds{detail::saturating_add(ctx.now().time_since_epoch().count(), delay.count())}};
}

/// What to do with an admission: true to run the inner layers (after
/// sleeping until `wake` when it is later than now), false when the call
/// stops here (`out` says why). A wait that would end at or past the deadline
/// is refused at once: waiting would leave no time for the attempt. Before
/// the deadline that is wait_exceeds_deadline (the budget is not spent, the
/// wait would not fit in it); once the deadline has passed,
/// deadline_exceeded, as for an attempt. Either way retry_after is the wait.
template <class Permit, class R>
[[nodiscard]] ARMOR_ALWAYS_INLINE bool admitted(const context& ctx, const admission<Permit>& adm, call_outcome<R>& out,
                            timestamp& wake) noexcept {
  wake = ctx.now();
  if (ARMOR_LIKELY(adm.kind == admission_kind::admitted)) return true;
  if (adm.kind == admission_kind::wait) {
    if (adm.delay > std::chrono::nanoseconds::zero()) {
      wake = wake_time(ctx, adm.delay);
      if (wake >= ctx.deadline()) {
        out.stop(outcome::rejected, ctx.expired() ? errc::deadline_exceeded : errc::wait_exceeds_deadline,
                 adm.delay, true);
        return false;
      }
    }
    return true;
  }
  // rejected; or an invitation to queue that this layer cannot take up.
  out.stop(outcome::rejected, adm.code, adm.retry_after, adm.retryable);
  return false;
}

/// When a queued wait (see queue_waiter) gives up: after the policy's
/// longest wait, or at the deadline, whichever comes first.
template <class Permit>
[[nodiscard]] ARMOR_ALWAYS_INLINE timestamp queue_give_up(const context& ctx, const admission<Permit>& adm) noexcept {
  return std::min(wake_time(ctx, std::max(adm.delay, std::chrono::nanoseconds::zero())), ctx.deadline());
}

/// After a queued wait ended (woken, or at `give_up`): true when the policy
/// handed the waiter a slot; otherwise `out` is stopped with the policy's
/// code and retry_after, or deadline_exceeded (no retry_after) when the
/// deadline ended the wait. A slot handed over after the deadline passed
/// (`ctx.now()` read after the wait) is dropped at once, so it passes on to
/// the next in line, and the call fails with deadline_exceeded.
template <class Permit, class R>
[[nodiscard]] bool queue_served(const context& ctx, admission<Permit>& adm, timestamp give_up,
                                call_outcome<R>& out) noexcept {
  if (adm.permit.leave_queue()) {
    if (!ctx.expired()) return true;
    { [[maybe_unused]] const Permit late = std::move(adm.permit); }  // released unsettled
    out.stop(outcome::rejected, errc::deadline_exceeded, std::nullopt, true);
    return false;
  }
  const bool deadline_bound = give_up >= ctx.deadline();
  if (deadline_bound) {
    out.stop(outcome::rejected, errc::deadline_exceeded, std::nullopt, true);
  } else {
    out.stop(outcome::rejected, adm.code, adm.retry_after, true);
  }
  return false;
}

/// What to do with an enqueue() answer other than `queued`: true to run.
template <class Permit, class R>
[[nodiscard]] bool queue_admitted(const admission<Permit>& adm, call_outcome<R>& out) noexcept {
  if (adm.kind == admission_kind::admitted) return true;
  out.stop(outcome::rejected, adm.code, adm.retry_after, adm.retryable);
  return false;
}

/// The sync driver's place in a queue: the calling thread blocks on a
/// condition variable until the policy wakes it or the wait times out.
class sync_waiter final : public queue_waiter {
 public:
  sync_waiter() noexcept : queue_waiter(&on_wake) {}

  /// Blocks until woken or until `t` (a std::chrono time point).
  template <class TimePoint>
  void wait_until(TimePoint t) {
    std::unique_lock lock(mutex_);
    cv_.wait_until(lock, t, [this] { return woken_; });
  }

  [[nodiscard]] bool woken() {
    const std::lock_guard lock(mutex_);
    return woken_;
  }

 private:
  static void on_wake(queue_waiter& w) noexcept {
    auto& self = static_cast<sync_waiter&>(w);
    const std::lock_guard lock(self.mutex_);
    self.woken_ = true;
    self.cv_.notify_one();
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  bool woken_ = false;
};

/// For a layer that recovers (armor::fallback): turns a failed outcome into
/// the fallback's value when the policy handles that failure. The verdict
/// stays as it was (layers outside still see that the call failed); an
/// exception from the fallback function ends the call as the operation's
/// own exception would.
template <class P, class R>
void recover(P& pol, const context& ctx, call_outcome<R>& out) {
  if (ARMOR_LIKELY(out.v.ok()) || out.recovered) return;
  const failure why = out.current_failure(ctx.attempt());
  if (!pol.handles(out.v, why)) return;
  try {
    if constexpr (std::is_void_v<R>) {
      pol.template recover<R>(why, ctx);
      out.value.emplace();
    } else {
      out.value.emplace(pol.template recover<R>(why, ctx));
    }
    out.exception = nullptr;
    out.recovered = true;
  } catch (...) {
    out.value.reset();
    out.exception = std::current_exception();
    // Not retryable; the original retry_after still tells when to try again.
    out.v = verdict::failure(errc::operation_failed, false, out.v.retry_after);
  }
  out.stopped_by_armor = false;
}

/// True when a clock is one a driver can block on for real (a condition
/// variable, an Asio timer); other clocks (manual_clock) are moved instead.
template <class Clock>
inline constexpr bool is_real_clock_v = std::is_same_v<Clock, steady_clock> || std::is_same_v<Clock, system_clock>;

/// After a looping layer's next(): true to go round again after sleeping
/// until `wake`. A delay that would end at or past the deadline is not
/// slept; the loop stops with the last outcome (a stop always wins over a
/// requested delay).
[[nodiscard]] ARMOR_ALWAYS_INLINE bool loop_again(const context& ctx, const step& s, timestamp& wake) noexcept {
  if (!s.again) return false;
  wake = wake_time(ctx, std::max(s.delay, std::chrono::nanoseconds::zero()));
  return wake < ctx.deadline();
}

/// Before calling the operation: false (and `out` stopped) when the budget
/// is already spent; otherwise starts a new attempt.
template <class R>
[[nodiscard]] ARMOR_ALWAYS_INLINE bool begin_attempt(context& ctx, call_outcome<R>& out) noexcept {
  if (ctx.expired()) {
    out.stop(outcome::rejected, errc::deadline_exceeded, std::nullopt, true);
    return false;
  }
  context_access::begin_attempt(ctx);
  out.stopped_by_armor = false;
  out.recovered = false;
  out.value.reset();
  if (ARMOR_UNLIKELY(out.exception != nullptr)) out.exception = nullptr;  // a retry after a throw
  return true;
}

/// Stores a verdict field by field: a whole-struct copy of a verdict just
/// built makes GCC store it in pieces and reload it in 16-byte halves (a
/// store-forwarding stall on every call).
ARMOR_ALWAYS_INLINE void set_verdict(verdict& to, const verdict& v) noexcept {
  to.kind = v.kind;
  to.retryable = v.retryable;
  if (v.retry_after.has_value()) {
    to.retry_after.emplace(*v.retry_after);
  } else {
    to.retry_after.reset();
  }
  to.code.assign(v.code.value(), v.code.category());
}

/// Classifies what the attempt left in `out` (a value or an exception).
template <class K, class R>
ARMOR_ALWAYS_INLINE void judge_attempt(const K& classifier, call_outcome<R>& out) {
  if (out.exception) {
    out.v = judge_exception(classifier, out.exception);
  } else if constexpr (std::is_void_v<R>) {
    set_verdict(out.v, judge_void(classifier));
  } else {
    set_verdict(out.v, judge_value(classifier, *out.value));
  }
}

/// After an attempt, with a fresh clock reading (always after a failure: the
/// retry layer measures its delay from it; after every attempt when a layer
/// times calls). A failure that ends past the deadline is a timeout: the
/// upstream was too slow, which a breaker counts as a failure. A throttled
/// answer stays throttled: the upstream said why it did not serve the call.
template <class R>
ARMOR_ALWAYS_INLINE void end_attempt(context& ctx, timestamp now, call_outcome<R>& out) noexcept {
  context_access::set_now(ctx, now);
  if (out.v.kind == outcome::failure && ctx.expired()) out.v.kind = outcome::timeout;
}

/// For a layer that injects faults (armor::fault_injector): when an
/// injected delay would end at or past the deadline, the driver sleeps to
/// the deadline only, and the attempt ends there as an upstream that did
/// not answer in time would: one attempt, judged a timeout.
[[nodiscard]] ARMOR_ALWAYS_INLINE bool injected_delay_outlasts(const context& ctx, timestamp wake) noexcept {
  return ctx.has_deadline() && wake >= ctx.deadline();
}

template <class R>
void injected_timeout(context& ctx, call_outcome<R>& out) noexcept {
  context_access::begin_attempt(ctx);
  out.value.reset();
  out.exception = nullptr;
  out.recovered = false;
  out.stop(outcome::timeout, errc::deadline_exceeded, std::nullopt, true);
}

/// An injected failure in place of the layers inside and the operation: one
/// attempt (none on a spent budget, as for a real one) whose exception,
/// value or error code comes from the injector. An exception or a value is
/// judged by the classifier like a real one; an error code is a retryable
/// failure with that code. False when no attempt was made.
template <class P, class K, class R>
[[nodiscard]] bool inject_failure(const P& pol, const typename P::permit_type& permit, const K& classifier,
                                  context& ctx, call_outcome<R>& out) {
  if (!begin_attempt(ctx, out)) return false;
  if (permit.throws()) {
    out.exception = pol.injected_exception();
    judge_attempt(classifier, out);
  } else if (permit.returns_value()) {
    if constexpr (!std::is_void_v<typename P::result_type>) {
      using stored = typename call_outcome<R>::stored;
      static_assert(std::is_constructible_v<stored, const typename P::result_type&>,
                    "armor::fault_injector<Result>: the operation's result type cannot be built from the "
                    "injector's Result; give the injector a value of the operation's type");
      if constexpr (std::is_constructible_v<stored, const typename P::result_type&>) {
        out.value.emplace(pol.injected_result());
        judge_attempt(classifier, out);
      }
    }
  } else {
    out.stop(outcome::failure, pol.injected_error(), std::nullopt, true);
  }
  return true;
}

}  // namespace detail

/// Policies stacked around an operation, outermost first, driven
/// synchronously through `Clock`. Usually built with class template argument
/// deduction: `armor::pipeline{policies...}`, `armor::pipeline{clock,
/// policies...}`, or with a classifier: `armor::pipeline{clock,
/// armor::classify{fn}, policies...}`. A layer is a policy held by value, or
/// `std::ref(policy)` to share one policy (and its state) between pipelines.
template <sleeping_clock Clock, detail::classifier_type Classifier, detail::layer... Layers>
class pipeline {
  static_assert((detail::clock_agrees<detail::policy_of<Layers>, Clock>() && ...),
                "armor::pipeline: a policy's clock_type differs from the pipeline's clock; "
                "give the pipeline the clock its policies use");

 public:
  using clock_type = Clock;
  using classifier_type = Classifier;

  /// Policies only; steady_clock and the default classifier.
  explicit pipeline(Layers... layers)
    requires(std::default_initializable<Clock> && std::default_initializable<Classifier>)
      : layers_(std::move(layers)...) {}

  /// A clock (a manual_clock in tests) and policies.
  explicit pipeline(Clock clock, Layers... layers)
    requires std::default_initializable<Classifier>
      : clock_(std::move(clock)), layers_(std::move(layers)...) {}

  /// A classifier and policies.
  explicit pipeline(Classifier classifier, Layers... layers)
    requires std::default_initializable<Clock>
      : classifier_(std::move(classifier)), layers_(std::move(layers)...) {}

  /// A clock, a classifier and policies.
  pipeline(Clock clock, Classifier classifier, Layers... layers)
      : clock_(std::move(clock)), classifier_(std::move(classifier)), layers_(std::move(layers)...) {}

  /// Runs `f` through every layer. Returns what `f` returned; rethrows the
  /// operation's exception when that ended the call; throws armor::error when
  /// armor stopped the call (see the top of this header).
  template <class F>
  detail::operation_result_t<F> execute(F&& f, const call_options& options = detail::no_call_options) const {
    static_assert(!has_hedge,
                  "armor::hedge: hedging runs attempts side by side, which the sync driver cannot do; "
                  "call async_execute / async_try_execute (armor/asio.hpp) instead, or take the hedge out of this "
                  "pipeline");
    using R = detail::operation_result_t<F>;
    context ctx(read_clock(), options);
    detail::call_outcome<R> out;
    run<0>(ctx, f, out);
    // The common case returns straight from the outcome; every other ending
    // throws exactly what try_execute(f).value() would.
    if (ARMOR_LIKELY(out.value.has_value() && !out.stopped_by_armor)) {
      if constexpr (std::is_void_v<R>) {
        return;
      } else {
        return std::move(*out.value);
      }
    }
    std::move(out).finish(ctx.attempt()).error().raise();
  }

  /// Runs `f` through every layer. Returns its value, or the failure that
  /// ended the call; never throws for armor's reasons (an exception escaping
  /// the user's classifier or clock still propagates).
  template <class F>
  [[nodiscard]] result<detail::operation_result_t<F>> try_execute(
      F&& f, const call_options& options = detail::no_call_options) const {
    using R = detail::operation_result_t<F>;
    static_assert(!std::is_same_v<R, failure>, "armor: an operation must not return armor::failure");
    static_assert(!has_hedge,
                  "armor::hedge: hedging runs attempts side by side, which the sync driver cannot do; "
                  "call async_execute / async_try_execute (armor/asio.hpp) instead, or take the hedge out of this "
                  "pipeline");
    context ctx(read_clock(), options);
    detail::call_outcome<R> out;
    run<0>(ctx, f, out);
    return std::move(out).finish(ctx.attempt());
  }

  /// Asio: `co_await p.async_execute(f)`, where `f()` or `f(ctx)` returns
  /// `asio::awaitable<R>`. Results, errors and verdicts as in execute();
  /// waits are timers on the coroutine's executor, and the deadline cancels
  /// the operation in flight. Needs `#include <armor/asio.hpp>`.
  template <class F>
  auto async_execute(F f, call_options options = {}) const {
    return detail::async_entry<F>::execute(*this, std::move(f), options);
  }

  /// Asio: `co_await p.async_try_execute(f)`, the coroutine form of
  /// try_execute(). Needs `#include <armor/asio.hpp>`.
  template <class F>
  auto async_try_execute(F f, call_options options = {}) const {
    return detail::async_entry<F>::try_execute(*this, std::move(f), options);
  }

  /// The classifier that judges each attempt.
  [[nodiscard]] const Classifier& classifier() const noexcept { return classifier_; }

  /// The policy at position I (outermost is 0), e.g. to read its stats.
  template <std::size_t I>
  [[nodiscard]] auto& layer() const noexcept {
    return detail::unwrap(std::get<I>(layers_));
  }

  /// The number of layers.
  [[nodiscard]] static constexpr std::size_t size() noexcept { return sizeof...(Layers); }

  /// The clock the driver reads and sleeps through.
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  friend struct detail::pipeline_access;

  static constexpr bool times_calls = (detail::needs_completion_time<detail::policy_of<Layers>>() || ...);
  static constexpr bool has_hedge = (detail::hedges<detail::policy_of<Layers>>() || ...);

  [[nodiscard]] timestamp read_clock() const noexcept(noexcept(clock_.now())) { return to_timestamp(clock_.now()); }

  // Sleeps until `t`, then takes the attempt's new clock reading.
  void sleep_until(context& ctx, timestamp t) const {
    clock_.sleep_until(from_timestamp<Clock>(t));
    detail::context_access::set_now(ctx, read_clock());
  }

  // Layer I and everything inside it. A looping layer (retry) re-runs only
  // the layers inside it.
  template <std::size_t I, class F, class R>
  void run(context& ctx, F& f, detail::call_outcome<R>& out) const {
    if constexpr (I == sizeof...(Layers)) {
      run_operation(ctx, f, out);
    } else {
      auto& pol = detail::unwrap(std::get<I>(layers_));
      using P = std::remove_cvref_t<decltype(pol)>;
      if constexpr (looping_policy<P>) {
        typename P::loop_state state{};
        for (;;) {
          run_layer<I>(pol, ctx, f, out);
          timestamp wake{};
          if (!detail::loop_again(ctx, pol.next(std::as_const(ctx), out.v, state), wake)) return;
          if (wake > ctx.now()) sleep_until(ctx, wake);
        }
      } else {
        run_layer<I>(pol, ctx, f, out);
      }
    }
  }

  // One admission of layer I: admit, wait if told to, run the inner layers,
  // settle. The deadline the layer may have tightened is restored on the way
  // out, so a deadline inside a retry layer is a per-attempt timeout.
  template <std::size_t I, class P, class F, class R>
  void run_layer(P& pol, context& ctx, F& f, detail::call_outcome<R>& out) const {
    const timestamp outer_deadline = ctx.deadline();
    auto adm = pol.admit(ctx);
    if constexpr (queueing_policy<P>) {
      if (ARMOR_UNLIKELY(adm.kind == admission_kind::queue)) {
        run_queued<I>(pol, ctx, f, out);
        detail::context_access::set_deadline(ctx, outer_deadline);
        if constexpr (detail::recovers<P>()) detail::recover(pol, std::as_const(ctx), out);
        return;
      }
    }
    if constexpr (detail::injects_faults<P>()) {
      if (ARMOR_UNLIKELY(adm.permit.injects())) {
        run_injected<I>(pol, ctx, f, out, adm.permit);
        detail::context_access::set_deadline(ctx, outer_deadline);
        return;
      }
    }
    timestamp wake{};
    if (detail::admitted(ctx, adm, out, wake)) {
      if (wake > ctx.now()) sleep_until(ctx, wake);
      run<I + 1>(ctx, f, out);
      pol.settle(ctx, std::move(adm.permit), out.v);
    }
    // Otherwise leaving this scope drops the permit, which gives any
    // reservation it holds back.
    detail::context_access::set_deadline(ctx, outer_deadline);
    if constexpr (detail::recovers<P>()) detail::recover(pol, std::as_const(ctx), out);
  }

  // A fault injector's permit carries a fault: sleep the injected delay
  // (only to the deadline when it would outlast it: a timeout), then run
  // the inner layers, or inject the failure in their place.
  template <std::size_t I, class P, class F, class R>
  void run_injected(P& pol, context& ctx, F& f, detail::call_outcome<R>& out, typename P::permit_type& permit) const {
    if (permit.latency() > std::chrono::nanoseconds::zero()) {
      const timestamp wake = detail::wake_time(ctx, permit.latency());
      if (detail::injected_delay_outlasts(ctx, wake)) {
        if (ctx.deadline() > ctx.now()) sleep_until(ctx, ctx.deadline());
        detail::injected_timeout(ctx, out);
        pol.settle(ctx, std::move(permit), out.v);
        return;
      }
      sleep_until(ctx, wake);
    }
    if (permit.fails()) {
      if (detail::inject_failure(pol, permit, classifier_, ctx, out) && (!out.v.ok() || wants_completion_time())) {
        detail::end_attempt(ctx, read_clock(), out);
      }
    } else {
      run<I + 1>(ctx, f, out);
    }
    pol.settle(ctx, std::move(permit), out.v);
  }

  // A queueing layer found no free slot: join its queue and block until a
  // slot is handed over, the layer's longest wait passes, or the deadline.
  // Over a clock this driver cannot block on, the clock is moved to the end
  // of the wait instead.
  template <std::size_t I, class P, class F, class R>
  void run_queued(P& pol, context& ctx, F& f, detail::call_outcome<R>& out) const {
    detail::sync_waiter waiter;
    auto adm = pol.enqueue(ctx, waiter);
    if (adm.kind == admission_kind::queued) {
      const timestamp give_up = detail::queue_give_up(ctx, adm);
      if constexpr (detail::is_real_clock_v<Clock>) {
        waiter.wait_until(from_timestamp<Clock>(give_up));
      } else {
        if (!waiter.woken()) clock_.sleep_until(from_timestamp<Clock>(give_up));
      }
      detail::context_access::set_now(ctx, read_clock());
      if (!detail::queue_served(ctx, adm, give_up, out)) return;
    } else if (!detail::queue_admitted(adm, out)) {
      return;
    }
    run<I + 1>(ctx, f, out);
    pol.settle(ctx, std::move(adm.permit), out.v);
  }

  // The innermost layer: one attempt of the operation.
  template <class F, class R>
  void run_operation(context& ctx, F& f, detail::call_outcome<R>& out) const {
    if (!detail::begin_attempt(ctx, out)) return;
    try {
      if constexpr (std::is_void_v<R>) {
        detail::call_operation(f, std::as_const(ctx));
        out.value.emplace();
      } else {
        out.value.emplace(detail::call_operation(f, std::as_const(ctx)));
      }
    } catch (...) {
      out.exception = std::current_exception();
    }
    detail::judge_attempt(classifier_, out);
    if (!out.v.ok() || wants_completion_time()) detail::end_attempt(ctx, read_clock(), out);
  }

  // Whether any layer wants the clock read after the attempt. Decided per
  // instance, at no cost when no layer type can want it.
  [[nodiscard]] bool wants_completion_time() const noexcept {
    if constexpr (!times_calls) {
      return false;
    } else {
      return std::apply([](const auto&... l) { return (detail::wants_completion_time(detail::unwrap(l)) || ...); },
                        layers_);
    }
  }

  [[no_unique_address]] Clock clock_{};
  [[no_unique_address]] Classifier classifier_{};
  // Policies are thread-safe objects whose admit/settle change their own
  // (atomic) state; a const pipeline still drives them.
  mutable std::tuple<Layers...> layers_;
};

template <class... Ls>
  requires(detail::layer<Ls> && ...)
pipeline(Ls...) -> pipeline<steady_clock, default_classifier, Ls...>;

template <class C, class... Ls>
  requires(sleeping_clock<C> && !detail::layer<C> && (detail::layer<Ls> && ...))
pipeline(C, Ls...) -> pipeline<C, default_classifier, Ls...>;

template <class F, class... Ls>
  requires(detail::layer<Ls> && ...)
pipeline(classify<F>, Ls...) -> pipeline<steady_clock, classify<F>, Ls...>;

template <class C, class F, class... Ls>
  requires(sleeping_clock<C> && (detail::layer<Ls> && ...))
pipeline(C, classify<F>, Ls...) -> pipeline<C, classify<F>, Ls...>;

}  // namespace armor
