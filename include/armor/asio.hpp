// armor/asio.hpp: the Asio driver: the same pipeline around operations that
// return asio::awaitable, with real cancellation. Only this header includes
// Asio (standalone, ASIO_STANDALONE, 1.22 or later); link armor::asio.
//
//     asio::awaitable<std::string> fetch(const armor::context& ctx);  // your operation
//
//     asio::awaitable<std::string> fetch_with_retries() {
//         const auto p = armor::pipeline{armor::deadline{2s}, armor::backoff{{.max_attempts = 3}}};
//         co_return co_await p.async_execute([&](const armor::context& ctx) { return fetch(ctx); });
//     }
//
// Policies decide as under the sync driver (armor/pipeline.hpp); only
// waiting and cancelling differ. Waits are timers on the coroutine's
// executor (no thread blocks); the deadline cancels the operation in flight
// and returns once it has finished (errc::deadline_exceeded); cancelling
// the calling coroutine ends the call with errc::cancelled. Callbacks and
// futures come from co_spawn: `asio::co_spawn(ex, p.async_execute(f),
// asio::use_future)`. Signatures, deadlines, cancellation, hedging, threads,
// costs, and a complete server and client: docs/asio.md.
#pragma once

#include <armor/cache.hpp>
#include <armor/coalesce.hpp>
#include <armor/drain.hpp>
#include <armor/health_check.hpp>
#include <armor/hedge.hpp>
#include <armor/pipeline.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/concurrent_channel.hpp>
#include <asio/experimental/parallel_group.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>
#include <asio/steady_timer.hpp>
#include <asio/system_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/version.hpp>

#if ASIO_VERSION >= 102400
#include <asio/deferred.hpp>
#else
#include <asio/experimental/deferred.hpp>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <optional>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace armor::detail {

#if ASIO_VERSION >= 102400
inline constexpr auto asio_deferred = ::asio::deferred;
#else
inline constexpr auto asio_deferred = ::asio::experimental::deferred;
#endif

/// The value and executor types of an asio::awaitable.
template <class A>
struct awaitable_traits {
  static_assert(sizeof(A) == 0, "armor: an async operation must return asio::awaitable<R>");
};
template <class T, class Executor>
struct awaitable_traits<::asio::awaitable<T, Executor>> {
  using value_type = T;
  using executor_type = Executor;
};

template <class F>
using async_operation_t = std::remove_cvref_t<decltype(call_operation(std::declval<F&>(), std::declval<const context&>()))>;

struct pipeline_access {
  template <class P>
  static auto& layers(const P& p) noexcept {
    return p.layers_;
  }
  template <class P>
  static const auto& clock(const P& p) noexcept {
    return p.clock_;
  }
  template <class P>
  static bool wants_completion_time(const P& p) noexcept {
    return p.wants_completion_time();
  }
};

/// The Asio driver's place in a queue (see queue_waiter): the coroutine
/// waits on a one-message channel, which the policy's wake-up fills from
/// whichever thread released the slot (try_send is thread-safe and posts
/// the receiver's completion, never runs it inline). The message is only a
/// wake-up: whether the slot was granted is read from the policy afterwards
/// (leave_queue), so a message Asio 1.22 drops after a cancelled receive
/// loses nothing.
template <class Executor>
class asio_waiter final : public queue_waiter {
 public:
  // (Asio 1.22 cannot instantiate a channel of void(error_code) alone.)
  using channel_type = ::asio::experimental::concurrent_channel<Executor, void(std::error_code, int)>;

  explicit asio_waiter(const Executor& ex) : queue_waiter(&on_wake), channel_(ex, 1) {}

  [[nodiscard]] channel_type& channel() noexcept { return channel_; }
  [[nodiscard]] bool woken() const noexcept { return woken_.load(std::memory_order_acquire); }

 private:
  static void on_wake(queue_waiter& w) noexcept {
    auto& self = static_cast<asio_waiter&>(w);
    self.woken_.store(true, std::memory_order_release);
    (void)self.channel_.try_send(std::error_code{}, 0);
  }

  channel_type channel_;
  std::atomic<bool> woken_{false};
};

template <class Tuple>
struct has_hedge_layer;
template <class... Ls>
struct has_hedge_layer<std::tuple<Ls...>> : std::bool_constant<(hedges<policy_of<Ls>>() || ...)> {};

/// Runs one call of pipeline P around operation F on Asio. One instance per
/// call, living in the call's coroutine frame.
template <class P, class F>
class async_call {
 public:
  using awaitable_type = async_operation_t<F>;
  using R = typename awaitable_traits<awaitable_type>::value_type;
  using executor_type = typename awaitable_traits<awaitable_type>::executor_type;
  template <class T>
  using task = ::asio::awaitable<T, executor_type>;
  using clock_type = typename P::clock_type;

  async_call(const P& p, F& f) noexcept : p_(p), f_(f) {}

  task<result<R>> run(const call_options& options) {
    context ctx(read_clock(), options);
    call_outcome<R> out;
    co_await run_layers<0>(ctx, out);
    co_return std::move(out).finish(ctx.attempt());
  }

 private:
  using layers_type = std::remove_cvref_t<decltype(pipeline_access::layers(std::declval<const P&>()))>;
  static constexpr std::size_t layer_count = std::tuple_size_v<layers_type>;
  static constexpr bool real_clock = is_real_clock_v<clock_type>;
  static constexpr auto use_awaitable = ::asio::use_awaitable_t<executor_type>{};
  using timer_type = std::conditional_t<std::is_same_v<clock_type, system_clock>,
                                        ::asio::basic_waitable_timer<std::chrono::system_clock>,
                                        ::asio::basic_waitable_timer<std::chrono::steady_clock>>;

  static_assert(!has_hedge_layer<layers_type>::value || is_idempotent_v<F>,
                "armor::hedge runs the operation more than once, side by side: mark it safe to repeat by "
                "passing armor::idempotent{op} to async_execute / async_try_execute");

  [[nodiscard]] timestamp read_clock() const { return to_timestamp(pipeline_access::clock(p_).now()); }

  // Whether the caller cancelled us (through the coroutine's cancellation
  // slot). Read inline with `co_await ::asio::this_coro::cancellation_state`
  // at each use, never through a nested coroutine: once cancelled, Asio
  // throws operation_aborted from every co_await of a nested awaitable.
  static bool is_cancelled(const ::asio::cancellation_state& state) noexcept {
    return state.cancelled() != ::asio::cancellation_type::none;
  }

  // Waits until `t` without blocking the thread. False when the caller
  // cancelled the wait.
  task<bool> sleep_until(context& ctx, timestamp t) {
    auto ex = co_await ::asio::this_coro::executor;
    bool ok = true;
    if constexpr (real_clock) {
      timer_type timer(ex);
      timer.expires_at(from_timestamp<clock_type>(t));
      try {
        co_await timer.async_wait(use_awaitable);
      } catch (const std::system_error&) {
        ok = false;  // operation_aborted: the caller cancelled
      }
    } else {
      // A virtual clock: move it, then let the executor run others.
      pipeline_access::clock(p_).sleep_until(from_timestamp<clock_type>(t));
      try {
        co_await ::asio::post(ex, use_awaitable);
      } catch (const std::system_error&) {
        ok = false;  // operation_aborted: the caller cancelled
      }
    }
    if (ok && is_cancelled(co_await ::asio::this_coro::cancellation_state)) ok = false;
    context_access::set_now(ctx, read_clock());
    co_return ok;
  }

  template <class Out>
  static void stop_cancelled(Out& out) noexcept {
    out.stop(outcome::cancelled, errc::cancelled, std::nullopt, false);
  }

  template <std::size_t I>
  task<void> run_layers(context& ctx, call_outcome<R>& out) {
    if constexpr (I == layer_count) {
      co_await run_operation(ctx, out);
    } else {
      auto& pol = unwrap(std::get<I>(pipeline_access::layers(p_)));
      using Pol = std::remove_cvref_t<decltype(pol)>;
      if constexpr (looping_policy<Pol>) {
        typename Pol::loop_state state{};
        for (;;) {
          co_await run_layer<I>(pol, ctx, out);
          if (out.v.kind == outcome::cancelled) co_return;
          timestamp wake{};
          if (!loop_again(ctx, pol.next(std::as_const(ctx), out.v, state), wake)) co_return;
          if (wake > ctx.now() && !co_await sleep_until(ctx, wake)) {
            stop_cancelled(out);
            co_return;
          }
        }
      } else {
        co_await run_layer<I>(pol, ctx, out);
      }
    }
  }

  template <std::size_t I, class Pol>
  task<void> run_layer(Pol& pol, context& ctx, call_outcome<R>& out) {
    const timestamp outer_deadline = ctx.deadline();
    auto adm = pol.admit(ctx);
    if constexpr (queueing_policy<Pol>) {
      if (adm.kind == admission_kind::queue) {
        co_await run_queued<I>(pol, ctx, out);
        context_access::set_deadline(ctx, outer_deadline);
        if constexpr (recovers<Pol>()) recover(pol, std::as_const(ctx), out);
        co_return;
      }
    }
    if constexpr (injects_faults<Pol>()) {
      if (adm.permit.injects()) {
        co_await run_injected<I>(pol, ctx, out, adm.permit);
        context_access::set_deadline(ctx, outer_deadline);
        co_return;
      }
    }
    timestamp wake{};
    if (admitted(ctx, adm, out, wake)) {
      if (wake > ctx.now() && !co_await sleep_until(ctx, wake)) {
        stop_cancelled(out);  // the permit is dropped below: its reservation goes back
      } else {
        if constexpr (hedges<Pol>()) {
          co_await run_hedged<I>(pol, ctx, out);
        } else {
          co_await run_layers<I + 1>(ctx, out);
        }
        pol.settle(ctx, std::move(adm.permit), out.v);
      }
    }
    context_access::set_deadline(ctx, outer_deadline);
    if constexpr (recovers<Pol>()) recover(pol, std::as_const(ctx), out);
  }

  // A fault injector's permit carries a fault: wait out the injected delay
  // on a timer (only to the deadline when it would outlast it: a timeout),
  // then run the inner layers, or inject the failure in their place. A
  // cancelled wait drops the permit, which gives back its place.
  template <std::size_t I, class Pol>
  task<void> run_injected(Pol& pol, context& ctx, call_outcome<R>& out, typename Pol::permit_type& permit) {
    if (permit.latency() > std::chrono::nanoseconds::zero()) {
      const timestamp wake = wake_time(ctx, permit.latency());
      const bool outlasts = injected_delay_outlasts(ctx, wake);
      const timestamp until = outlasts ? ctx.deadline() : wake;
      if (until > ctx.now() && !co_await sleep_until(ctx, until)) {
        stop_cancelled(out);
        co_return;
      }
      if (outlasts) {
        injected_timeout(ctx, out);
        pol.settle(ctx, std::move(permit), out.v);
        co_return;
      }
    }
    if (permit.fails()) {
      if (inject_failure(pol, permit, p_.classifier(), ctx, out) &&
          (!out.v.ok() || pipeline_access::wants_completion_time(p_))) {
        end_attempt(ctx, read_clock(), out);
      }
    } else if constexpr (hedges<Pol>()) {
      co_await run_hedged<I>(pol, ctx, out);
    } else {
      co_await run_layers<I + 1>(ctx, out);
    }
    pol.settle(ctx, std::move(permit), out.v);
  }

  // A queueing layer found no free slot: wait in its queue without blocking
  // the thread until a slot is handed over (the waiter's channel), the
  // layer's longest wait passes or the deadline (a timer), or the caller
  // cancels. Dropping the permit on any early exit gives back the place, or
  // the slot if one was handed over meanwhile.
  template <std::size_t I, class Pol>
  task<void> run_queued(Pol& pol, context& ctx, call_outcome<R>& out) {
    auto ex = co_await ::asio::this_coro::executor;
    asio_waiter<executor_type> waiter(ex);
    auto adm = pol.enqueue(ctx, waiter);
    if (adm.kind == admission_kind::queued) {
      const timestamp give_up = queue_give_up(ctx, adm);
      if constexpr (real_clock) {
        timer_type timer(ex);
        timer.expires_at(deadline_time(give_up));
        auto [order, receive_error, unused, timer_error] =
            co_await ::asio::experimental::make_parallel_group(waiter.channel().async_receive(asio_deferred),
                                                               timer.async_wait(asio_deferred))
                .async_wait(::asio::experimental::wait_for_one(), use_awaitable);
        (void)order;
        (void)receive_error;
        (void)unused;
        (void)timer_error;
        if (is_cancelled(co_await ::asio::this_coro::cancellation_state)) {
          stop_cancelled(out);
          co_return;
        }
        context_access::set_now(ctx, read_clock());
      } else {
        if (!waiter.woken() && !co_await sleep_until(ctx, give_up)) {
          stop_cancelled(out);
          co_return;
        }
        context_access::set_now(ctx, read_clock());
      }
      if (!queue_served(ctx, adm, give_up, out)) co_return;
    } else if (!queue_admitted(adm, out)) {
      co_return;
    }
    if constexpr (hedges<Pol>()) {
      co_await run_hedged<I>(pol, ctx, out);
    } else {
      co_await run_layers<I + 1>(ctx, out);
    }
    pol.settle(ctx, std::move(adm.permit), out.v);
  }

  // Puts k on the hedge's channel. Not try_send: Asio 1.22's channel stops
  // buffering once a receive has been cancelled (cancel_by_key leaves it
  // blocking), so try_send could drop the message; an async_send waits for
  // the receiver instead, and needs nothing of ours once delivered.
  template <class Channel>
  static void report(Channel& ch, std::size_t k) {
    ch.async_send(std::error_code{}, k, ::asio::detached);
  }

  // One hedged attempt: the layers inside the hedge, on its own context.
  struct hedge_slot {
    std::optional<context> ctx;
    call_outcome<R> out;
    ::asio::cancellation_signal cancel;
    std::exception_ptr error;  // an exception that escaped a policy
    bool ended = false;        // written on the spawn executor only
  };

  // The layers inside a hedge, run up to pol.max_attempts() times side by
  // side (see armor/hedge.hpp). Attempts run as their own coroutines on one
  // strand of our executor; each reports its end on a channel, and every
  // cancellation is emitted from that strand. The call does not return
  // before every attempt has ended, so nothing outlives this frame.
  template <std::size_t I, class Pol>
  task<void> run_hedged(Pol& pol, context& ctx, call_outcome<R>& out) {
    constexpr std::size_t limit = Pol::attempt_limit;
    constexpr std::size_t cancel_done = limit;  // the channel message of the canceller
    auto ex = co_await ::asio::this_coro::executor;
    // Once the caller cancels us, Asio would throw from every co_await that
    // follows, and this frame must outlive the attempts: wait for them
    // without that, and put the caller's setting back before returning.
    const bool caller_throws = co_await ::asio::this_coro::throw_if_cancelled();
    co_await ::asio::this_coro::throw_if_cancelled(false);
    auto spawn_ex = [&] {
      if constexpr (std::is_constructible_v<executor_type, ::asio::strand<executor_type>>) {
        return ::asio::make_strand(ex);
      } else {
        return ex;  // a concrete executor type: attempts run on it directly
      }
    }();
    ::asio::experimental::concurrent_channel<executor_type, void(std::error_code, std::size_t)> ended(ex, limit + 1);
    std::array<hedge_slot, limit> slots;
    const std::size_t max_attempts = std::min<std::size_t>(pol.max_attempts(), limit);
    const unsigned base_attempt = ctx.attempt();
    std::size_t started = 0;
    std::size_t running = 0;  // attempts (and the canceller) not yet reported on `ended`
    std::optional<std::size_t> final_k;
    std::optional<std::size_t> stop_k;  // the first attempt told to come back later: no more start
    std::size_t last_k = 0;
    bool cancelling = false;
    bool parent_cancelled = false;
    timestamp next_start = timestamp::max();

    auto start = [&] {
      const std::size_t k = started++;
      hedge_slot& s = slots[k];
      s.ctx.emplace(ctx);
      for (std::size_t n = 0; n < k; ++n) context_access::begin_attempt(*s.ctx);
      context_access::set_now(*s.ctx, read_clock());
      ++running;
      next_start = started < max_attempts ? wake_time(*s.ctx, pol.delay()) : timestamp::max();
      ::asio::co_spawn(spawn_ex, run_layers<I + 1>(*s.ctx, s.out),
                       ::asio::bind_cancellation_slot(s.cancel.slot(), [&ended, &s, k](std::exception_ptr e) {
                         s.error = e;
                         s.ended = true;
                         report(ended, k);
                       }));
    };
    // Cancels every attempt still running, once, from the spawn executor.
    auto cancel_all = [&] {
      if (cancelling) return;
      cancelling = true;
      ++running;
      ::asio::post(spawn_ex, [&ended, &slots, started] {
        for (std::size_t k = 0; k < started; ++k) {
          if (!slots[k].ended) slots[k].cancel.emit(::asio::cancellation_type::terminal);
        }
        report(ended, std::size_t{Pol::attempt_limit});  // cancel_done
      });
    };
    auto on_ended = [&](std::size_t k) {
      --running;
      if (k == cancel_done) return;
      last_k = k;
      const verdict& v = slots[k].out.v;
      if (final_k || cancelling) return;
      if (Pol::is_final(v)) {
        final_k = k;
        cancel_all();
      } else if (Pol::stops_hedging(v)) {
        if (!stop_k) stop_k = k;
      } else if (!stop_k && started < max_attempts && Pol::start_next_now(v)) {
        start();
      }
    };

    start();
    while (running > 0) {
      const bool hedge_timer = real_clock && !cancelling && !stop_k && started < max_attempts;
      if (hedge_timer) {
        timer_type timer(ex);
        timer.expires_at(deadline_time(next_start));
        auto [order, receive_error, k, timer_error] =
            co_await ::asio::experimental::make_parallel_group(ended.async_receive(asio_deferred),
                                                               timer.async_wait(asio_deferred))
                .async_wait(::asio::experimental::wait_for_one(), use_awaitable);
        (void)order;
        if (!receive_error) on_ended(k);
        if (!timer_error && !cancelling && !stop_k && started < max_attempts) start();
      } else if (cancelling) {
        // Draining: nothing may cut this wait short (attempts use our frame).
        auto [receive_error, k] = co_await ended.async_receive(
            ::asio::bind_cancellation_slot(::asio::cancellation_slot(), ::asio::experimental::as_tuple(use_awaitable)));
        if (!receive_error) on_ended(k);
      } else {
        auto [receive_error, k] = co_await ended.async_receive(::asio::experimental::as_tuple(use_awaitable));
        if (!receive_error) on_ended(k);
      }
      if (!cancelling && is_cancelled(co_await ::asio::this_coro::cancellation_state)) {
        parent_cancelled = true;
        cancel_all();
      }
    }

    co_await ::asio::this_coro::throw_if_cancelled(caller_throws);
    while (ctx.attempt() < base_attempt + started) context_access::begin_attempt(ctx);
    context_access::set_now(ctx, read_clock());
    for (std::size_t k = 0; k < started; ++k) {
      if (slots[k].error) std::rethrow_exception(slots[k].error);
    }
    if (parent_cancelled) {
      stop_cancelled(out);
      co_return;
    }
    out = std::move(slots[final_k.value_or(stop_k.value_or(last_k))].out);
  }

  // The operation itself, its value or exception captured into `out`.
  task<void> attempt(const context& ctx, call_outcome<R>& out) {
    try {
      if constexpr (std::is_void_v<R>) {
        co_await call_operation(f_, ctx);
        out.value.emplace();
      } else {
        out.value.emplace(co_await call_operation(f_, ctx));
      }
    } catch (...) {
      out.exception = std::current_exception();
    }
  }

  task<void> run_operation(context& ctx, call_outcome<R>& out) {
    if (!begin_attempt(ctx, out)) co_return;
    bool deadline_hit = false;
    if (real_clock && ctx.has_deadline()) {
      // Race the operation against the deadline; whichever ends first
      // cancels the other, and both have finished when the group completes.
      auto ex = co_await ::asio::this_coro::executor;
      std::conditional_t<std::is_same_v<clock_type, system_clock>,
                         ::asio::basic_waitable_timer<std::chrono::system_clock>,
                         ::asio::basic_waitable_timer<std::chrono::steady_clock>>
          timer(ex);
      timer.expires_at(deadline_time(ctx.deadline()));
      auto [order, spawn_error, timer_error] =
          co_await ::asio::experimental::make_parallel_group(
              ::asio::co_spawn(ex, attempt(ctx, out), asio_deferred), timer.async_wait(asio_deferred))
              .async_wait(::asio::experimental::wait_for_one(), use_awaitable);
      (void)spawn_error;  // attempt() captures every exception into `out`
      deadline_hit = order[0] == 1 && !timer_error;
    } else {
      co_await attempt(ctx, out);
    }
    if (is_cancelled(co_await ::asio::this_coro::cancellation_state)) {
      stop_cancelled(out);
      co_return;
    }
    judge_attempt(p_.classifier(), out);
    if (deadline_hit) {
      // The budget ran out with the operation in flight: the upstream was
      // too slow. Its own exception (operation_aborted) stays as the cause.
      out.stop(outcome::timeout, errc::deadline_exceeded, std::nullopt, true);
    }
    if (!out.v.ok() || pipeline_access::wants_completion_time(p_)) end_attempt(ctx, read_clock(), out);
  }

  static auto deadline_time(timestamp t) {
    if constexpr (std::is_same_v<clock_type, system_clock>) {
      return from_timestamp<system_clock>(t);
    } else {
      return from_timestamp<steady_clock>(t);
    }
  }

  const P& p_;
  F& f_;
};

/// A layer's part of one call in the flat driver (async_flat_call): its
/// admission while it is open, the deadline to restore on the way out, and
/// what only some policies need (a retry's loop state, a queue's waiter,
/// whether a fault was injected).
struct flat_none {};

template <class Pol>
struct flat_loop_state {
  using type = flat_none;
};
template <looping_policy Pol>
struct flat_loop_state<Pol> {
  using type = typename Pol::loop_state;
};

/// A queueing layer's waiter, made when the call joins the queue. The
/// call's state is moved once, into its coroutine's frame, before any
/// layer runs: moving takes an empty slot, and gives an empty one.
template <class Executor>
struct flat_waiter_slot {
  flat_waiter_slot() noexcept = default;
  flat_waiter_slot(flat_waiter_slot&&) noexcept {}
  flat_waiter_slot& operator=(flat_waiter_slot&&) = delete;
  ~flat_waiter_slot() = default;

  template <class... Args>
  asio_waiter<Executor>& emplace(Args&&... args) {
    return waiter.emplace(std::forward<Args>(args)...);
  }
  void reset() noexcept { waiter.reset(); }
  asio_waiter<Executor>& operator*() noexcept { return *waiter; }

  std::optional<asio_waiter<Executor>> waiter;
};

template <class Pol, class Executor>
struct flat_layer_state {
  // Declared before `adm` so that it is destroyed after it: when a frame
  // suspended in a bulkhead's queue is destroyed (its io_context shut down),
  // the queued admission leaves the queue (under the bulkhead's lock) while
  // the waiter that a releasing thread could still wake is alive.
  [[no_unique_address]] std::conditional_t<queueing_policy<Pol>, flat_waiter_slot<Executor>, flat_none> waiter{};
  std::optional<admission<typename Pol::permit_type>> adm;
  timestamp outer_deadline{};
  [[no_unique_address]] typename flat_loop_state<Pol>::type loop{};
  [[no_unique_address]] std::conditional_t<injects_faults<Pol>(), bool, flat_none> injected{};
};

template <class Tuple>
struct has_queueing_layer;
template <class... Ls>
struct has_queueing_layer<std::tuple<Ls...>> : std::bool_constant<(queueing_policy<policy_of<Ls>> || ...)> {};

template <class Layers, class Executor>
struct flat_states;
template <class... Ls, class Executor>
struct flat_states<std::tuple<Ls...>, Executor> {
  using type = std::tuple<flat_layer_state<policy_of<Ls>, Executor>...>;
};

/// What the flat driver's coroutine does next: run the operation, sleep,
/// wait in a queue, or return; `layer` and `at` say where the layers'
/// walk goes on afterwards.
// (Internal names for the walk, not public enumerations: no to_string.)
struct flat_phase {
  enum type : unsigned char { admit, admit_slept, inner_done, loop_slept, inject_slept, queue_done };
};
struct flat_kind {
  enum type : unsigned char { go, operation, sleep, queue, done };
};

struct flat_action {
  timestamp until{};
  std::uint32_t layer = 0;
  flat_kind::type kind = flat_kind::done;
  flat_phase::type at = flat_phase::admit;
};

/// One call of pipeline P (without a hedge) around operation F, in ONE
/// coroutine frame: the layers' admissions, settlements, retries' decisions
/// and fallbacks are plain calls that walk the layers (as the sync driver
/// does) until the walk needs the operation or a real wait; only then does
/// the coroutine suspend (flat_driver below), and the walk goes on from
/// where it stopped.
template <class P, class F>
class async_flat_call {
 public:
  using awaitable_type = async_operation_t<F>;
  using R = typename awaitable_traits<awaitable_type>::value_type;
  using executor_type = typename awaitable_traits<awaitable_type>::executor_type;
  using clock_type = typename P::clock_type;
  static constexpr bool real_clock = is_real_clock_v<clock_type>;
  static constexpr bool queues =
      has_queueing_layer<std::remove_cvref_t<decltype(pipeline_access::layers(std::declval<const P&>()))>>::value;

  using timer_type = std::conditional_t<std::is_same_v<clock_type, system_clock>,
                                        ::asio::basic_waitable_timer<std::chrono::system_clock>,
                                        ::asio::basic_waitable_timer<std::chrono::steady_clock>>;

  // Whether the call's first clock reading can be seen at all: by a layer,
  // or by an operation that takes the context. An empty pipeline around an
  // operation without one reads the clock only when the call has a timeout
  // (and, as the sync driver does, after a failed attempt).
  static constexpr bool reads_start_time =
      std::tuple_size_v<std::remove_cvref_t<decltype(pipeline_access::layers(std::declval<const P&>()))>> != 0 ||
      takes_context<F>();

  // Built where async_execute is called, without reading the clock (the
  // awaitable may run much later): begin() reads it when the coroutine
  // starts. Moved into the coroutine's frame as its only parameter, so the
  // call's state is there once (not also the options it came from).
  async_flat_call(const P& p, F&& f, const call_options& options)
      : p_(p), f_(std::move(f)), ctx(timestamp{}, options), timeout_(options.timeout) {
    context_access::set_deadline(ctx, timestamp::max());  // begin() sets the timeout's
  }

  /// The call's start: its clock reading and the deadline its timeout sets
  /// (as context's constructor does).
  void begin() {
    if (!reads_start_time && timeout_ == std::chrono::nanoseconds::max()) return;
    const timestamp now = read_clock();
    context_access::set_now(ctx, now);
    if (timeout_ != std::chrono::nanoseconds::max()) {
      const auto t = std::max<std::int64_t>(timeout_.count(), 0);
      context_access::set_deadline(
          ctx, timestamp{std::chrono::nanoseconds{saturating_add(now.time_since_epoch().count(), t)}});
    }
  }

  [[nodiscard]] timestamp read_clock() const { return to_timestamp(pipeline_access::clock(p_).now()); }
  [[nodiscard]] const P& pipeline() const noexcept { return p_; }
  [[nodiscard]] F& operation() noexcept { return f_; }

  /// The walk from the outermost layer.
  [[nodiscard]] flat_action start() { return settle_go(enter<0>()); }

  /// Goes on after the coroutine did what `a` asked; `ok` is false when a
  /// wait was cancelled by the caller.
  [[nodiscard]] flat_action resume(const flat_action& a, bool ok) {
    if (a.kind == flat_kind::operation) return settle_go(leave<layer_count>());
    return settle_go(dispatch(a.layer, a.at, ok, std::make_index_sequence<layer_count>{}));
  }

  /// Calls fn(state) with the state of queueing layer `layer`.
  template <class Fn>
  void with_queue(std::size_t layer, Fn&& fn) {
    with_queue_at(layer, fn, std::make_index_sequence<layer_count>{});
  }

  static auto deadline_time(timestamp t) {
    if constexpr (std::is_same_v<clock_type, system_clock>) {
      return from_timestamp<system_clock>(t);
    } else {
      return from_timestamp<steady_clock>(t);
    }
  }

 private:
  const P& p_;
  F f_;

 public:
  // A queue's waiter needs the executor (set by the coroutine at its start).
  [[no_unique_address]] std::conditional_t<queues, std::optional<executor_type>, flat_none> executor_{};
  context ctx;
  call_outcome<R> out;
  std::chrono::nanoseconds timeout_;
  timestamp queue_give_up_{};

 private:
  using layers_type = std::remove_cvref_t<decltype(pipeline_access::layers(std::declval<const P&>()))>;
  static constexpr std::size_t layer_count = std::tuple_size_v<layers_type>;

  template <std::size_t I>
  auto& policy() const noexcept {
    return unwrap(std::get<I>(pipeline_access::layers(p_)));
  }
  template <std::size_t I>
  using policy_t = policy_of<std::tuple_element_t<I, layers_type>>;

  static flat_action go(std::size_t layer, flat_phase::type at) noexcept {
    return {{}, static_cast<std::uint32_t>(layer), flat_kind::go, at};
  }
  static flat_action wait(flat_kind::type kind, std::size_t layer, flat_phase::type at, timestamp until) noexcept {
    return {until, static_cast<std::uint32_t>(layer), kind, at};
  }

  // Runs `go` steps (a retry going round again) until the walk needs the
  // coroutine.
  flat_action settle_go(flat_action a) {
    while (a.kind == flat_kind::go) a = dispatch(a.layer, a.at, true, std::make_index_sequence<layer_count>{});
    return a;
  }

  template <std::size_t... Is>
  flat_action dispatch([[maybe_unused]] std::size_t layer, [[maybe_unused]] flat_phase::type at, [[maybe_unused]] bool ok,
                       std::index_sequence<Is...>) {
    flat_action a{};
    (void)((layer == Is ? (a = phase<Is>(at, ok), true) : false) || ...);
    return a;
  }

  template <class Fn, std::size_t... Is>
  void with_queue_at([[maybe_unused]] std::size_t layer, [[maybe_unused]] Fn& fn, std::index_sequence<Is...>) {
    (void)((layer == Is ? (call_with_queue<Is>(fn), true) : false) || ...);
  }
  template <std::size_t I, class Fn>
  void call_with_queue(Fn& fn) {
    if constexpr (queueing_policy<policy_t<I>>) fn(std::get<I>(states_));
  }

  template <std::size_t I>
  flat_action phase(flat_phase::type at, bool ok) {
    switch (at) {
      case flat_phase::admit:
        return admit<I>();
      case flat_phase::admit_slept:
        return admit_slept<I>(ok);
      case flat_phase::inner_done:
        return inner_done<I>();
      case flat_phase::loop_slept:
        return loop_slept<I>(ok);
      case flat_phase::inject_slept:
        if constexpr (injects_faults<policy_t<I>>()) return inject_slept<I>(ok);
        break;
      case flat_phase::queue_done:
        if constexpr (queueing_policy<policy_t<I>>) return queue_done<I>(ok);
        break;
    }
    return {};
  }

  template <class Out>
  static void stop_cancelled(Out& o) noexcept {
    o.stop(outcome::cancelled, errc::cancelled, std::nullopt, false);
  }

  // Layer I entered from outside: a fresh loop state for a retry layer.
  template <std::size_t I>
  flat_action enter() {
    if constexpr (I == layer_count) {
      return {{}, static_cast<std::uint32_t>(layer_count), flat_kind::operation, flat_phase::admit};
    } else {
      if constexpr (looping_policy<policy_t<I>>) std::get<I>(states_).loop = {};
      return admit<I>();
    }
  }

  // Layer I is finished: on to the layer outside it.
  template <std::size_t I>
  flat_action leave() {
    if constexpr (I == 0) {
      return {};
    } else {
      return inner_done<I - 1>();
    }
  }

  // One admission of layer I (the sync driver's run_layer).
  template <std::size_t I>
  flat_action admit() {
    auto& pol = policy<I>();
    using Pol = policy_t<I>;
    auto& st = std::get<I>(states_);
    st.outer_deadline = ctx.deadline();
    auto& adm = st.adm.emplace(pol.admit(ctx));
    if constexpr (queueing_policy<Pol>) {
      if (ARMOR_UNLIKELY(adm.kind == admission_kind::queue)) return enqueue<I>();
    }
    if constexpr (injects_faults<Pol>()) {
      st.injected = adm.permit.injects();
      if (ARMOR_UNLIKELY(st.injected)) return inject<I>();
    }
    timestamp wake{};
    if (ARMOR_LIKELY(admitted(ctx, adm, out, wake))) {
      if (wake > ctx.now()) return wait(flat_kind::sleep, I, flat_phase::admit_slept, wake);
      return enter<I + 1>();
    }
    st.adm.reset();  // gives back any reservation
    return finish<I>();
  }

  template <std::size_t I>
  flat_action admit_slept(bool ok) {
    if (!ok) {
      stop_cancelled(out);
      std::get<I>(states_).adm.reset();
      return finish<I>();
    }
    return enter<I + 1>();
  }

  // The layers inside I ended: settle, restore, recover, and for a retry
  // layer decide whether to go round again.
  template <std::size_t I>
  flat_action inner_done() {
    auto& st = std::get<I>(states_);
    policy<I>().settle(ctx, std::move(st.adm->permit), out.v);
    st.adm.reset();
    return finish<I>();
  }

  template <std::size_t I>
  flat_action finish() {
    auto& pol = policy<I>();
    using Pol = policy_t<I>;
    auto& st = std::get<I>(states_);
    if constexpr (queueing_policy<Pol>) st.waiter.reset();
    context_access::set_deadline(ctx, st.outer_deadline);
    if constexpr (recovers<Pol>()) {
      bool skip = false;
      if constexpr (injects_faults<Pol>()) skip = st.injected;
      if (!skip) recover(pol, std::as_const(ctx), out);
    }
    if constexpr (looping_policy<Pol>) {
      if (out.v.kind == outcome::cancelled) return leave<I>();
      timestamp wake{};
      if (!loop_again(ctx, pol.next(std::as_const(ctx), out.v, st.loop), wake)) return leave<I>();
      if (wake > ctx.now()) return wait(flat_kind::sleep, I, flat_phase::loop_slept, wake);
      return go(I, flat_phase::admit);
    } else {
      return leave<I>();
    }
  }

  template <std::size_t I>
  flat_action loop_slept(bool ok) {
    if (!ok) {
      stop_cancelled(out);
      return leave<I>();
    }
    return go(I, flat_phase::admit);
  }

  // A fault injector's permit carries a fault (the sync driver's
  // run_injected): wait out the injected delay, only to the deadline when
  // it would outlast it (a timeout).
  template <std::size_t I>
  flat_action inject() {
    auto& permit = std::get<I>(states_).adm->permit;
    if (permit.latency() > std::chrono::nanoseconds::zero()) {
      const timestamp wake = wake_time(ctx, permit.latency());
      inject_outlasts_ = injected_delay_outlasts(ctx, wake);
      const timestamp until = inject_outlasts_ ? ctx.deadline() : wake;
      if (until > ctx.now()) return wait(flat_kind::sleep, I, flat_phase::inject_slept, until);
      return inject_slept<I>(true);
    }
    inject_outlasts_ = false;
    return inject_slept<I>(true);
  }

  template <std::size_t I>
  flat_action inject_slept(bool ok) {
    auto& pol = policy<I>();
    auto& st = std::get<I>(states_);
    if (!ok) {
      stop_cancelled(out);
      st.adm.reset();
      return finish<I>();
    }
    auto& permit = st.adm->permit;
    if (inject_outlasts_) {
      injected_timeout(ctx, out);
      return inner_done<I>();
    }
    if (permit.fails()) {
      if (inject_failure(pol, permit, p_.classifier(), ctx, out) &&
          (!out.v.ok() || pipeline_access::wants_completion_time(p_))) {
        end_attempt(ctx, read_clock(), out);
      }
      return inner_done<I>();
    }
    return enter<I + 1>();
  }

  // A queueing layer found no free slot: join its queue (the coroutine
  // waits on the waiter's channel) or take the answer enqueue() gave.
  template <std::size_t I>
  flat_action enqueue() {
    auto& pol = policy<I>();
    auto& st = std::get<I>(states_);
    st.adm.reset();
    st.waiter.emplace(*executor_);
    auto& adm = st.adm.emplace(pol.enqueue(ctx, *st.waiter));
    if (adm.kind == admission_kind::queued) {
      queue_give_up_ = queue_give_up(ctx, adm);
      return wait(flat_kind::queue, I, flat_phase::queue_done, queue_give_up_);
    }
    if (!queue_admitted(adm, out)) {
      st.adm.reset();
      return finish<I>();
    }
    return enter<I + 1>();
  }

  template <std::size_t I>
  flat_action queue_done(bool ok) {
    auto& st = std::get<I>(states_);
    if (!ok) {
      stop_cancelled(out);
      st.adm.reset();  // leaves the queue, or passes on a slot handed over meanwhile
      return finish<I>();
    }
    if (!queue_served(ctx, *st.adm, queue_give_up_, out)) {
      st.adm.reset();
      return finish<I>();
    }
    return enter<I + 1>();
  }

  typename flat_states<layers_type, executor_type>::type states_{};
  bool inject_outlasts_ = false;
};

/// The flat driver's deadline for one attempt (in the frame of
/// async_entry::attempt_with_deadline): the signal bound to the attempt's
/// cancellation slot, and a timer made and armed only if the attempt is
/// still running once it has started, whose handler emits the signal.
template <class Timer>
struct flat_deadline_guard {
  ::asio::cancellation_signal signal;
  std::atomic<bool> armed{false};        // a wait is pending; should it succeed, its handler touches this
  std::atomic<bool> arm_pending{true};   // the arming task may still refer to this
  std::atomic<bool> op_running{true};    // the attempt is in flight (cleared by the attempt itself)
  std::atomic<bool> fired{false};        // the deadline passed during the attempt
  typename Timer::time_point expiry{};
  std::optional<Timer> timer;
};

template <class Timer>
struct flat_deadline_handler {
  flat_deadline_guard<Timer>* g;
  void operator()(const std::error_code& ec) const {
    if (ec) return;  // cancelled by the call, which no longer counts on this handler
    if (g->op_running.load(std::memory_order_acquire)) {
      g->fired.store(true, std::memory_order_relaxed);
      g->signal.emit(::asio::cancellation_type::terminal);
    }
    g->armed.store(false, std::memory_order_release);
  }
};

/// Arms the deadline's timer for an attempt still running.
template <class Timer, class Executor>
struct flat_arm_deadline {
  flat_deadline_guard<Timer>* g;
  Executor ex;
  void operator()() const noexcept {
    if (g->op_running.load(std::memory_order_acquire)) {
      try {
        Timer& timer = g->timer.emplace(ex);
        timer.expires_at(g->expiry);
        g->armed.store(true, std::memory_order_relaxed);
        timer.async_wait(flat_deadline_handler<Timer>{g});
      } catch (...) {
        // No timer (out of memory): rather than let the attempt run past
        // its deadline unwatched, end it now, as the deadline would.
        g->armed.store(false, std::memory_order_relaxed);
        g->fired.store(true, std::memory_order_relaxed);
        g->signal.emit(::asio::cancellation_type::terminal);
      }
    }
    g->arm_pending.store(false, std::memory_order_release);
  }
};

/// Passes the caller's cancellation on to the attempt in flight.
struct flat_forward_cancellation {
  ::asio::cancellation_signal* signal;
  void operator()(::asio::cancellation_type_t type) const { signal->emit(type); }
};

template <class F>
struct async_entry {
  template <class P>
  using layers_of = std::remove_cvref_t<decltype(pipeline_access::layers(std::declval<const P&>()))>;
  template <class P>
  static constexpr bool nested = has_hedge_layer<layers_of<P>>::value;

  template <class P>
  static auto try_execute(const P& p, F f, const call_options& options)
      -> ::asio::awaitable<result<typename async_call<P, F>::R>, typename async_call<P, F>::executor_type> {
    if constexpr (nested<P>) {
      return try_execute_nested(p, std::move(f), options);
    } else {
      return run_flat<false, P>(async_flat_call<P, F>(p, std::move(f), options));
    }
  }

  template <class P>
  static auto execute(const P& p, F f, const call_options& options)
      -> ::asio::awaitable<typename async_call<P, F>::R, typename async_call<P, F>::executor_type> {
    if constexpr (nested<P>) {
      return execute_nested(p, std::move(f), options);
    } else {
      return run_flat<true, P>(async_flat_call<P, F>(p, std::move(f), options));
    }
  }

 private:
  // A pipeline with a hedge: one coroutine per layer (async_call).
  template <class P>
  static auto try_execute_nested(const P& p, F f, call_options options)
      -> ::asio::awaitable<result<typename async_call<P, F>::R>, typename async_call<P, F>::executor_type> {
    async_call<P, F> call(p, f);
    co_return co_await call.run(options);
  }

  template <class P>
  static auto execute_nested(const P& p, F f, call_options options)
      -> ::asio::awaitable<typename async_call<P, F>::R, typename async_call<P, F>::executor_type> {
    async_call<P, F> call(p, f);
    auto r = co_await call.run(options);
    if constexpr (std::is_void_v<typename async_call<P, F>::R>) {
      r.value();
      co_return;
    } else {
      co_return std::move(r).value();
    }
  }

  template <class P>
  using flat_result_t = typename async_flat_call<P, F>::R;

  static bool is_cancelled(const ::asio::cancellation_state& state) noexcept {
    return state.cancelled() != ::asio::cancellation_type::none;
  }

  // The operation, its value or exception captured into `out`: what the
  // deadline's path co_spawns. It says itself that it has ended
  // (`running`), before co_spawn hands its completion on.
  template <class R, class Executor>
  static ::asio::awaitable<void, Executor> attempt(F& f, const context& ctx, call_outcome<R>& out,
                                                   std::atomic<bool>& running) {
    try {
      if constexpr (std::is_void_v<R>) {
        co_await call_operation(f, ctx);
        out.value.emplace();
      } else {
        out.value.emplace(co_await call_operation(f, ctx));
      }
    } catch (...) {
      out.exception = std::current_exception();
    }
    running.store(false, std::memory_order_release);
  }

  // (GCC 12 takes Asio's frame operator new/delete pair for a mismatch
  // here at some instantiations: a false positive of -Wmismatched-new-delete
  // on coroutine frames.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
  // One attempt under a deadline, in a coroutine of its own (its timer and
  // signal stay out of the call's frame, which Asio then recycles). The
  // operation runs with its own cancellation slot (Asio 1.22 gives an
  // awaitable one only as its own thread: co_spawn), cancelled by the
  // deadline's timer or by our caller. The timer is made and armed by a
  // task posted only when the operation is still running once co_spawn
  // returns: an operation that completes at once costs no timer and no
  // task. Answers whether the deadline cut the attempt short.
  template <class R, class Executor, class Timer>
  static ::asio::awaitable<bool, Executor> attempt_with_deadline(F& f, const context& ctx, call_outcome<R>& out,
                                                                 typename Timer::time_point expiry) {
    constexpr auto use_awaitable = ::asio::use_awaitable_t<Executor>{};
    flat_deadline_guard<Timer> guard;
    guard.expiry = expiry;
    const Executor ex = co_await ::asio::this_coro::executor;
    const ::asio::cancellation_state caller_state = co_await ::asio::this_coro::cancellation_state;
    ::asio::cancellation_slot caller_slot = caller_state.slot();
    if (caller_slot.is_connected()) caller_slot.assign(flat_forward_cancellation{&guard.signal});
    try {
      co_await ::asio::async_initiate<decltype(use_awaitable), void(std::exception_ptr)>(
          [&](auto handler) {
            // Once the handler is given away this closure may be gone (the
            // attempt can end on another thread at once): what the arming
            // needs is copied first. The frame stays while arm_pending.
            flat_deadline_guard<Timer>* g = &guard;
            const Executor arm_ex = ex;
            try {
              ::asio::co_spawn(arm_ex, attempt<R, Executor>(f, ctx, out, g->op_running),
                               ::asio::bind_cancellation_slot(g->signal.slot(), std::move(handler)));
            } catch (...) {
              g->op_running.store(false, std::memory_order_relaxed);
              g->arm_pending.store(false, std::memory_order_relaxed);
              throw;
            }
            if (g->op_running.load(std::memory_order_acquire)) {
              try {
                ::asio::post(arm_ex, flat_arm_deadline<Timer, Executor>{g, arm_ex});
              } catch (...) {
                g->fired.store(true, std::memory_order_relaxed);  // as flat_arm_deadline does without a timer
                g->signal.emit(::asio::cancellation_type::terminal);
                g->arm_pending.store(false, std::memory_order_release);
              }
            } else {
              g->arm_pending.store(false, std::memory_order_release);
            }
          },
          use_awaitable);
    } catch (...) {
      out.exception = std::current_exception();  // attempt() keeps the operation's own
    }
    if (caller_slot.is_connected()) caller_slot.clear();
    if (guard.arm_pending.load(std::memory_order_acquire) || guard.armed.load(std::memory_order_acquire)) {
      // The arming task, or the timer's handler, still refers to this
      // frame: take the wait back, and let what is on its way land.
      const bool caller_throws = co_await ::asio::this_coro::throw_if_cancelled();
      co_await ::asio::this_coro::throw_if_cancelled(false);
      while (guard.arm_pending.load(std::memory_order_acquire)) co_await ::asio::post(ex, use_awaitable);
      if (guard.armed.load(std::memory_order_acquire) && guard.timer->cancel() == 0) {
        while (guard.armed.load(std::memory_order_acquire)) co_await ::asio::post(ex, use_awaitable);
      }
      co_await ::asio::this_coro::throw_if_cancelled(caller_throws);
    }
    co_return guard.fired.load(std::memory_order_relaxed);
  }

  // A real wait of the walk (a sleep, or a place in a queue), in a
  // coroutine of its own so that its timer is not in the call's frame.
  // False when the caller cancelled it.
  template <class Call>
  static ::asio::awaitable<bool, typename Call::executor_type> wait(Call& c, flat_action a) {
    using executor_type = typename Call::executor_type;
    using clock_type = typename Call::clock_type;
    constexpr auto use_awaitable = ::asio::use_awaitable_t<executor_type>{};
    const executor_type ex = co_await ::asio::this_coro::executor;
    bool ok = true;
    bool sleep = a.kind == flat_kind::sleep;
    if constexpr (Call::queues) {
      if (a.kind == flat_kind::queue) {
        asio_waiter<executor_type>* waiter = nullptr;
        c.with_queue(a.layer, [&](auto& st) { waiter = &*st.waiter; });
        if constexpr (Call::real_clock) {
          typename Call::timer_type timer(ex);
          timer.expires_at(Call::deadline_time(a.until));
          auto [order, receive_error, unused, timer_error] =
              co_await ::asio::experimental::make_parallel_group(waiter->channel().async_receive(asio_deferred),
                                                                 timer.async_wait(asio_deferred))
                  .async_wait(::asio::experimental::wait_for_one(), use_awaitable);
          (void)order;
          (void)receive_error;
          (void)unused;
          (void)timer_error;
          if (is_cancelled(co_await ::asio::this_coro::cancellation_state)) ok = false;
        } else {
          sleep = !waiter->woken();
        }
      }
    }
    if (sleep) {
      if constexpr (Call::real_clock) {
        typename Call::timer_type timer(ex);
        timer.expires_at(Call::deadline_time(a.until));
        try {
          co_await timer.async_wait(use_awaitable);
        } catch (const std::system_error&) {
          ok = false;  // operation_aborted: the caller cancelled
        }
      } else {
        // A virtual clock: move it, then let the executor run others.
        pipeline_access::clock(c.pipeline()).sleep_until(from_timestamp<clock_type>(a.until));
        try {
          co_await ::asio::post(ex, use_awaitable);
        } catch (const std::system_error&) {
          ok = false;  // operation_aborted: the caller cancelled
        }
      }
      if (ok && is_cancelled(co_await ::asio::this_coro::cancellation_state)) ok = false;
    }
    co_return ok;
  }

  // Every pipeline without a hedge: the call in this one coroutine frame
  // (see async_flat_call), its state the only parameter. It suspends only
  // to await the operation and for real waits; a deadline's attempt and a
  // wait are coroutines of their own, so this frame stays small enough for
  // Asio to recycle it.
  template <bool Throwing, class P>
  static auto run_flat(async_flat_call<P, F> c)
      -> ::asio::awaitable<std::conditional_t<Throwing, flat_result_t<P>, result<flat_result_t<P>>>,
                           typename async_flat_call<P, F>::executor_type> {
    using call_type = async_flat_call<P, F>;
    using R = typename call_type::R;
    using executor_type = typename call_type::executor_type;
    constexpr bool real_clock = call_type::real_clock;

    if constexpr (call_type::queues) c.executor_.emplace(co_await ::asio::this_coro::executor);
    c.begin();
    flat_action a = c.start();
    while (a.kind != flat_kind::done) {
      bool ok = true;
      if (a.kind == flat_kind::operation) {
        if (begin_attempt(c.ctx, c.out)) {
          bool deadline_hit = false;
          bool under_deadline = false;
          if constexpr (real_clock) under_deadline = c.ctx.has_deadline();
          try {
            if (under_deadline) {
              if constexpr (real_clock) {
                deadline_hit = co_await attempt_with_deadline<R, executor_type, typename call_type::timer_type>(
                    c.operation(), std::as_const(c.ctx), c.out, call_type::deadline_time(c.ctx.deadline()));
              }
            } else if constexpr (std::is_void_v<R>) {
              co_await call_operation(c.operation(), std::as_const(c.ctx));
              c.out.value.emplace();
            } else {
              c.out.value.emplace(co_await call_operation(c.operation(), std::as_const(c.ctx)));
            }
          } catch (...) {
            c.out.exception = std::current_exception();
          }
          if (is_cancelled(co_await ::asio::this_coro::cancellation_state)) {
            c.out.stop(outcome::cancelled, errc::cancelled, std::nullopt, false);
          } else {
            judge_attempt(c.pipeline().classifier(), c.out);
            if (deadline_hit) {
              // The budget ran out with the operation in flight: the upstream
              // was too slow. Its own exception (operation_aborted) stays.
              c.out.stop(outcome::timeout, errc::deadline_exceeded, std::nullopt, true);
            }
            if (!c.out.v.ok() || pipeline_access::wants_completion_time(c.pipeline())) {
              end_attempt(c.ctx, c.read_clock(), c.out);
            }
          }
        }
      } else {
        // (Checked first: a nested co_await throws once the caller has
        // cancelled, and a cancelled wait is a `false`, not an exception.)
        if (is_cancelled(co_await ::asio::this_coro::cancellation_state)) {
          ok = false;
        } else {
          ok = co_await wait(c, a);
        }
        context_access::set_now(c.ctx, c.read_clock());
      }
      a = c.resume(a, ok);
    }
    if constexpr (Throwing) {
      // The common case returns straight from the outcome (as the sync
      // driver's execute does); every other ending throws what
      // finish().value() throws.
      const bool returns = c.out.value.has_value() && !c.out.stopped_by_armor;
      if constexpr (std::is_void_v<R>) {
        if (!returns) std::move(c.out).finish(c.ctx.attempt()).value();
        co_return;
      } else {
        if (ARMOR_LIKELY(returns)) co_return std::move(*c.out.value);
        co_return std::move(c.out).finish(c.ctx.attempt()).value();
      }
    } else {
      co_return std::move(c.out).finish(c.ctx.attempt());
    }
  }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
};

// ---------------------------------------------------------------------------
// armor::coalescer's Asio part (armor/coalesce.hpp declares it): the shared
// operation runs as its own coroutine; every caller is a waiter that may
// leave alone; the last to leave cancels the operation.

/// An Asio caller's place in a flight: a one-message channel, filled by
/// the flight's end from whichever thread ends it (try_send is thread-safe
/// and posts the receiver's completion, never runs it inline).
template <class Executor>
class asio_coalesce_waiter final : public coalesce_waiter {
 public:
  using channel_type = ::asio::experimental::concurrent_channel<Executor, void(std::error_code, int)>;

  explicit asio_coalesce_waiter(const Executor& ex) : coalesce_waiter(&on_wake), channel_(ex, 1) {}

  [[nodiscard]] channel_type& channel() noexcept { return channel_; }

 private:
  static void on_wake(coalesce_waiter& w) noexcept {
    (void)static_cast<asio_coalesce_waiter&>(w).channel_.try_send(std::error_code{}, 0);
  }

  channel_type channel_;
};

/// A flight whose operation is a coroutine: the signal that cancels it, and
/// the strand it runs on (the signal is emitted there, never concurrently
/// with the operation's own steps).
template <class T, class SpawnExecutor>
struct asio_coalesce_flight final : coalesce_flight<T> {
  explicit asio_coalesce_flight(SpawnExecutor ex) : spawn_ex(std::move(ex)) { this->cancel = &cancel_operation; }

  static void cancel_operation(const std::shared_ptr<coalesce_flight<T>>& f) noexcept {
    auto self = std::static_pointer_cast<asio_coalesce_flight>(f);
    try {
      ::asio::post(self->spawn_ex, [self] { self->signal.emit(::asio::cancellation_type::terminal); });
    } catch (...) {
      // Could not post the cancellation (out of memory): the operation
      // runs to its end, and nobody waits for it.
    }
  }

  SpawnExecutor spawn_ex;
  ::asio::cancellation_signal signal;
};

template <class Coalescer, class F>
struct async_coalesce {
  using key_type = typename Coalescer::key_type;
  using T = typename Coalescer::value_type;
  using clock_type = typename Coalescer::clock_type;
  using awaitable_type = std::remove_cvref_t<std::invoke_result_t<F&>>;
  using executor_type = typename awaitable_traits<awaitable_type>::executor_type;
  using R = typename awaitable_traits<awaitable_type>::value_type;
  template <class V>
  using task = ::asio::awaitable<V, executor_type>;
  using flight_ptr = std::shared_ptr<coalesce_flight<T>>;
  static constexpr auto use_awaitable = ::asio::use_awaitable_t<executor_type>{};
  static constexpr bool real_clock = coalesce_real_clock_v<clock_type>;
  using timer_type = std::conditional_t<std::is_same_v<clock_type, system_clock>,
                                        ::asio::basic_waitable_timer<std::chrono::system_clock>,
                                        ::asio::basic_waitable_timer<std::chrono::steady_clock>>;

  static_assert(std::is_same_v<R, T> || std::is_same_v<R, result<T>>,
                "armor::coalescer<Key, T>::async_execute: the operation must return asio::awaitable<T> or "
                "asio::awaitable<armor::result<T>>");

  static auto spawn_executor(const executor_type& ex) {
    if constexpr (std::is_constructible_v<executor_type, ::asio::strand<executor_type>>) {
      return ::asio::make_strand(ex);
    } else {
      return ex;  // a concrete executor type: the operation runs on it directly
    }
  }
  using spawn_executor_type = decltype(spawn_executor(std::declval<const executor_type&>()));
  using flight_type = asio_coalesce_flight<T, spawn_executor_type>;

  // The shared operation: its result goes to every caller still waiting.
  static task<void> run_operation(typename Coalescer::shard& s, flight_ptr f, F op) {
    result<T> r = failure{errc::cancelled, std::nullopt, nullptr};
    try {
      if constexpr (std::is_same_v<R, result<T>>) {
        r = co_await op();
      } else if constexpr (std::is_void_v<T>) {
        co_await op();
        r = result<T>(std::in_place);
      } else {
        r = result<T>(std::in_place, co_await op());
      }
    } catch (const error& e) {
      r = failure{e.code(), e.retry_after(), std::current_exception()};
    } catch (...) {
      r = failure{errc::operation_failed, std::nullopt, std::current_exception()};
    }
    Coalescer::publish(s, f, r, false);
  }

  static task<result<T>> try_execute(Coalescer& c, key_type key, F op, coalescer_call_options options) {
    // This frame must not unwind while its waiter is linked into the
    // flight: wait without Asio's throw-on-cancel, and put the caller's
    // setting back before returning.
    const bool caller_throws = co_await ::asio::this_coro::throw_if_cancelled();
    co_await ::asio::this_coro::throw_if_cancelled(false);
    const executor_type ex = co_await ::asio::this_coro::executor;
    // A caller cancelled before it got here would not see the emission
    // again: it leaves at once, without starting or joining a flight.
    const auto on_arrival = co_await ::asio::this_coro::cancellation_state;
    if (on_arrival.cancelled() != ::asio::cancellation_type::none) {
      co_await ::asio::this_coro::throw_if_cancelled(caller_throws);
      co_return failure{errc::cancelled, std::nullopt, nullptr};
    }
    const timestamp deadline = c.deadline_after(options.timeout);
    auto& s = c.shard_for(key);
    asio_coalesce_waiter<executor_type> waiter(ex);
    std::unique_lock lock(s.mutex);
    auto [f, leader] = c.join_or_start(s, key, [&] { return std::make_shared<flight_type>(spawn_executor(ex)); });
    f->link(waiter);
    lock.unlock();
    if (leader) {
      auto& fl = static_cast<flight_type&>(*f);
      ::asio::co_spawn(fl.spawn_ex, run_operation(s, f, std::move(op)),
                       ::asio::bind_cancellation_slot(fl.signal.slot(), ::asio::detached));
    }

    if (deadline == timestamp::max()) {
      auto [e, unused] = co_await waiter.channel().async_receive(::asio::experimental::as_tuple(use_awaitable));
      (void)e;
      (void)unused;
    } else if constexpr (real_clock) {
      timer_type timer(ex);
      timer.expires_at(from_timestamp<clock_type>(deadline));
      auto [order, receive_error, unused, timer_error] =
          co_await ::asio::experimental::make_parallel_group(waiter.channel().async_receive(asio_deferred),
                                                             timer.async_wait(asio_deferred))
              .async_wait(::asio::experimental::wait_for_one(), use_awaitable);
      (void)order;
      (void)receive_error;
      (void)unused;
      (void)timer_error;
    } else {
      // A virtual clock cannot wake us: give up at once, moving it to the
      // deadline, as the pipeline's driver does; first let others run.
      co_await ::asio::post(ex, ::asio::experimental::as_tuple(use_awaitable));
      lock.lock();
      const bool done = f->done;
      lock.unlock();
      if (!done) c.clock().sleep_until(from_timestamp<clock_type>(deadline));
    }

    const auto& state = co_await ::asio::this_coro::cancellation_state;
    const bool cancelled = state.cancelled() != ::asio::cancellation_type::none;
    lock.lock();
    if (f->done) {
      lock.unlock();
      co_await ::asio::this_coro::throw_if_cancelled(caller_throws);
      co_return *f->outcome;
    }
    f->unlink(waiter);
    const bool cancel = Coalescer::leave(s, f);
    lock.unlock();
    if (cancel) f->cancel(f);
    co_await ::asio::this_coro::throw_if_cancelled(caller_throws);
    co_return failure{cancelled ? errc::cancelled : errc::deadline_exceeded, std::nullopt, nullptr};
  }

  static task<T> execute(Coalescer& c, key_type key, F op, coalescer_call_options options) {
    auto r = co_await try_execute(c, std::move(key), std::move(op), options);
    if constexpr (std::is_void_v<T>) {
      r.value();
      co_return;
    } else {
      co_return std::move(r).value();
    }
  }
};


// ---------------------------------------------------------------------------
// armor::cache's Asio part (armor/cache.hpp declares it): a fresh or stale
// answer returns without suspending; a miss is a flight of the cache's
// coalescer under its Asio driver (each caller leaves alone); a refresh is
// co_spawned on the caller's executor and nobody waits for it.

template <class Cache, class F>
struct async_cache {
  using key_type = typename Cache::key_type;
  using T = typename Cache::value_type;
  using value_ptr = std::shared_ptr<const T>;
  using answer = cache_answer<T>;
  using shard = typename Cache::shard;
  using probe = typename Cache::probe;
  using awaitable_type = std::remove_cvref_t<std::invoke_result_t<F&>>;
  using executor_type = typename awaitable_traits<awaitable_type>::executor_type;
  using R = typename awaitable_traits<awaitable_type>::value_type;
  template <class V>
  using task = ::asio::awaitable<V, executor_type>;

  static_assert(!std::is_void_v<R>,
                "armor::cache<Key, T>::async_execute: the operation must return asio::awaitable of T, "
                "std::shared_ptr<const T>, armor::cache_item<T>, or armor::result of one of them");

  // What a call sees before it could suspend.
  struct first_look {
    probe p;
    cache_state state;
    std::uint64_t h;
  };

  static first_look look(Cache& c, const key_type& key) {
    const std::uint64_t h = c.hash_of(key);
    shard& s = c.shard_of(h);
    const std::int64_t now = c.now_ns();
    first_look l{c.find(s, key, h, now), cache_state::miss, h};
    l.state = Cache::classify(l.p, now);
    if (l.state == cache_state::fresh) Cache::bump(s.hits);
    if (l.state == cache_state::stale) Cache::bump(s.stale_hits);
    return l;
  }

  // Calls the operation (unless an entry stored since the caller looked is
  // fresh) and stores its value when it is a success.
  static task<result<value_ptr>> fill(Cache& c, shard& s, const key_type& key, std::uint64_t h, F& op,
                                      bool& stored) {
    stored = false;
    if (value_ptr v = c.fresh_entry(s, key, h)) co_return v;
    R returned = co_await op();
    co_return c.keep(s, key, h, std::move(returned), stored);
  }

  // A miss's operation, run by the coalescer's Asio driver as its own
  // coroutine (it lives in that coroutine's frame while it runs).
  struct flight_op {
    Cache* c;
    key_type key;
    std::uint64_t h;
    F op;
    bool stored = false;
    task<result<value_ptr>> operator()() { return fill(*c, c->shard_of(h), key, h, op, stored); }
  };

  // A background refresh. `st` holds the flight and the reservation: if
  // this coroutine is destroyed before the end, the flight ends with
  // errc::cancelled and the claim is given back.
  static task<void> refresh(std::shared_ptr<typename Cache::refresh_state> st, F op) {
    auto& rs = *st;
    Cache& c = *rs.self;
    shard& s = c.shard_of(rs.h);
    bool stored = false;
    result<value_ptr> r = failure{errc::cancelled, std::nullopt, nullptr};
    try {
      r = co_await fill(c, s, rs.key, rs.h, op, stored);
    } catch (const error& e) {
      r = failure{e.code(), e.retry_after(), std::current_exception()};
    } catch (...) {
      r = failure{errc::operation_failed, std::nullopt, std::current_exception()};
    }
    if (!r.ok()) Cache::bump(s.refresh_failures);
    std::optional<typename Cache::flight_handle> mine = std::exchange(rs.handle, std::nullopt);
    (void)mine->run([&r]() -> const result<value_ptr>& { return r; });  // to callers that joined it
    if (!stored) {
      try {
        c.unclaim(s, rs.key, rs.h, rs.generation);
      } catch (...) {  // KeyEqual or the mutex threw: the claim stays until the entry is replaced
      }
    }
  }

  // A claimed refresh, or a miss.
  static task<result<answer>> slow(Cache& c, const key_type& key, first_look l, F op,
                                   coalescer_call_options options) {
    shard& s = c.shard_of(l.h);
    if (l.state == cache_state::stale) {
      const executor_type ex = co_await ::asio::this_coro::executor;
      std::optional<typename Cache::flight_handle> handle = c.begin_refresh(s, key, l.h, l.p.generation, true);
      if (handle) {
        ::asio::co_spawn(ex, refresh(c.make_refresh(key, l.h, l.p.generation, std::move(*handle)), std::move(op)),
                         ::asio::detached);
      }
      co_return answer{std::move(l.p.value), cache_origin::stale, {}};
    }
    Cache::bump(s.misses);
    // (Named, not a braced temporary in the co_await expression: GCC 12
    // destroys such a temporary's members wrongly.)
    flight_op flight{&c, key, l.h, std::move(op)};
    auto call = c.flights_.async_try_execute(key, std::move(flight), options);
    result<value_ptr> r = co_await std::move(call);
    if (r.ok()) co_return answer{std::move(*r), cache_origin::live, {}};
    // stale-if-error, unless this caller was cancelled: it asked to stop.
    if (l.p.value && r.code() != errc::cancelled && c.now_ns() < l.p.times.error_until) {
      Cache::bump(s.stale_on_error);
      co_return answer{std::move(l.p.value), cache_origin::stale, Cache::failure_code(r)};
    }
    if (r.has_value()) co_return result<answer>(judged_failure, answer{std::move(*r), cache_origin::live, {}});
    co_return r.error();
  }

  static task<result<answer>> try_execute(Cache& c, const key_type& key, F op, coalescer_call_options options) {
    first_look l = look(c, key);
    if (l.state == cache_state::fresh) co_return answer{std::move(l.p.value), cache_origin::fresh, {}};
    if (l.state == cache_state::stale && !l.p.claimed)
      co_return answer{std::move(l.p.value), cache_origin::stale, {}};
    co_return co_await slow(c, key, std::move(l), std::move(op), options);
  }

  static task<answer> execute(Cache& c, const key_type& key, F op, coalescer_call_options options) {
    first_look l = look(c, key);
    if (l.state == cache_state::fresh) co_return answer{std::move(l.p.value), cache_origin::fresh, {}};
    if (l.state == cache_state::stale && !l.p.claimed)
      co_return answer{std::move(l.p.value), cache_origin::stale, {}};
    result<answer> r = co_await slow(c, key, std::move(l), std::move(op), options);
    co_return std::move(r).value();
  }
};

}  // namespace armor::detail

namespace armor {

/// Waits, without blocking the thread, until no call is in flight in
/// `drain` or `timeout` passes; answers whether none is (the Asio twin of
/// drain::wait_for). Start the drain first (drain.start()). The last call to
/// end wakes the waiter through a channel (no polling); cancelling the
/// awaiting coroutine ends the wait early, answering whether the drain has
/// emptied by then. The drain must outlive the wait.
///
///     drain.start();                                             // on SIGTERM
///     const bool drained = co_await armor::async_drain(drain, 15s);
template <class Clock, class Listener>
::asio::awaitable<bool> async_drain(drain<Clock, Listener>& d, std::chrono::nanoseconds timeout) {
  auto ex = co_await ::asio::this_coro::executor;
  detail::asio_waiter<::asio::any_io_executor> waiter(ex);
  if (timeout <= std::chrono::nanoseconds::zero() || !d.add_waiter(waiter)) co_return d.in_flight() == 0;
  ::asio::steady_timer timer(ex);
  timer.expires_after(std::chrono::duration_cast<::asio::steady_timer::duration>(
      std::min(timeout, std::chrono::nanoseconds{std::chrono::hours{24 * 365}})));
  // The waiter is unregistered on every way out, a throwing co_await included.
  struct unregister {
    drain<Clock, Listener>& d;
    queue_waiter& w;
    ~unregister() { d.remove_waiter(w); }
  } guard{d, waiter};
  auto [order, receive_error, unused, timer_error] =
      co_await ::asio::experimental::make_parallel_group(waiter.channel().async_receive(detail::asio_deferred),
                                                         timer.async_wait(detail::asio_deferred))
          .async_wait(::asio::experimental::wait_for_one(), ::asio::use_awaitable);
  (void)order;
  (void)receive_error;
  (void)unused;
  (void)timer_error;
  co_return d.in_flight() == 0;
}

}  // namespace armor

// ---------------------------------------------------------------- health checks

namespace armor {
namespace detail {

// One probe: `check(id)` (an asio::awaitable of probe_result or bool) against
// a timer; the first to finish decides and the other is cancelled (and
// awaited). An exception from the check counts as failed.
template <class Check>
::asio::awaitable<probe_result> async_health_probe(Check& check, std::string_view id, std::chrono::nanoseconds timeout) {
  auto ex = co_await ::asio::this_coro::executor;
  ::asio::steady_timer timer(ex);
  timer.expires_after(std::chrono::duration_cast<::asio::steady_timer::duration>(
      std::min(timeout, std::chrono::nanoseconds{std::chrono::hours{24 * 365}})));
  auto [order, failure, value, timer_error] =
      co_await ::asio::experimental::make_parallel_group(::asio::co_spawn(ex, check(id), detail::asio_deferred),
                                                         timer.async_wait(detail::asio_deferred))
          .async_wait(::asio::experimental::wait_for_one(), ::asio::use_awaitable);
  (void)timer_error;
  if (order[0] == 1) co_return probe_result::timed_out;
  if (failure) co_return probe_result::failed;
  co_return as_probe_result(value);
}

}  // namespace detail

/// The Asio driver of an armor::health_checker (armor/health_check.hpp): a
/// loop that runs the probes due, one after another, each as
/// `co_await check(id)` (returning asio::awaitable<probe_result> or
/// asio::awaitable<bool>) bounded by options().timeout, reports them, and
/// sleeps on a steady timer until the next is due (at most an interval, so
/// hosts added to the host set are seen). Returns when the calling
/// coroutine is cancelled; a probe cut short then is given back unreported.
/// The checker must outlive the loop.
///
///     asio::co_spawn(ex, armor::async_health_checks(checker, ping),
///                    asio::bind_cancellation_slot(stop.slot(), asio::detached));
template <class HostSet, class Rng, class Check>
::asio::awaitable<void> async_health_checks(health_checker<HostSet, Rng>& checker, Check check) {
  auto ex = co_await ::asio::this_coro::executor;
  ::asio::steady_timer sleep(ex);
  const std::chrono::nanoseconds interval = checker.options().interval;
  for (;;) {
    const std::vector<health_probe> probes = checker.due(checker.now());
    for (std::size_t i = 0; i < probes.size(); ++i) {
      probe_result r = probe_result::failed;
      bool stopped = false;
      try {
        r = co_await detail::async_health_probe(check, probes[i].id, checker.options().timeout);
        const ::asio::cancellation_state state = co_await ::asio::this_coro::cancellation_state;
        stopped = state.cancelled() != ::asio::cancellation_type::none;
      } catch (const std::system_error&) {
        stopped = true;  // cancelled: asio throws operation_aborted at the next wait
      }
      if (stopped) {
        for (std::size_t k = i; k < probes.size(); ++k) checker.abandon(probes[k]);
        co_return;
      }
      checker.report(probes[i], r, checker.now());
    }
    const timestamp now = checker.now();
    const timestamp next = checker.next_due();
    const std::chrono::nanoseconds wait =
        next <= now ? std::chrono::nanoseconds{0} : std::min<std::chrono::nanoseconds>(next - now, interval);
    sleep.expires_after(std::chrono::duration_cast<::asio::steady_timer::duration>(wait));
    try {
      co_await sleep.async_wait(::asio::use_awaitable);
    } catch (const std::system_error&) {
      co_return;  // cancelled
    }
    const ::asio::cancellation_state state = co_await ::asio::this_coro::cancellation_state;
    if (state.cancelled() != ::asio::cancellation_type::none) co_return;
  }
}

}  // namespace armor
