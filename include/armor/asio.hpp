// armor/asio.hpp: the Asio driver. The same pipeline, around awaitables.
//
//     #include <armor/asio.hpp>
//
//     asio::awaitable<std::string> fetch(const armor::context& ctx);  // your operation
//
//     const auto p = armor::pipeline{armor::deadline{2s}, armor::backoff{{.max_attempts = 3}}};
//     std::string body = co_await p.async_execute([&](const armor::context& ctx) { return fetch(ctx); });
//
// Every policy decision is the sync driver's (armor/pipeline.hpp); only
// waiting and cancelling differ:
//
// - waits (rate-limit waits, retry delays) are timers on the coroutine's
//   executor: no thread is ever blocked, and thousands of calls can wait at
//   once on one thread;
// - the deadline cancels the operation in flight through Asio's
//   per-operation cancellation: the operation sees operation_aborted, and it
//   has finished (its sockets and timers released) before the call returns.
//   The attempt's verdict is `timeout` and the call fails with
//   deadline_exceeded;
// - cancelling the calling coroutine (its cancellation slot, e.g. from
//   awaitable operators or a parallel group) aborts waits and the operation
//   the same way, and the call ends with errc::cancelled: a verdict of kind
//   `cancelled`, which a breaker does not count and a retry layer never retries.
//
// Only this header includes Asio (standalone, `ASIO_STANDALONE`); link the
// CMake target armor::asio. Works with Asio 1.22 and later.
//
// Clocks: over armor::steady_clock or armor::system_clock the driver waits on
// the matching Asio timer. Over a clock it cannot wait on (manual_clock in
// tests) it moves that clock with sleep_until and yields to the executor; the
// deadline is then still enforced before attempts and waits, but an attempt
// in flight is not cancelled (virtual time never fires a real timer).
//
// Completion tokens: the entry points return asio::awaitable. Callbacks and
// futures come from co_spawn, as for any awaitable:
// `asio::co_spawn(ex, p.async_execute(f), asio::use_future)`.
#pragma once

#include <armor/pipeline.hpp>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/parallel_group.hpp>
#include <asio/post.hpp>
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

#include <array>
#include <chrono>
#include <cstddef>
#include <exception>
#include <system_error>
#include <type_traits>
#include <utility>

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
  static constexpr std::size_t layer_count = std::tuple_size_v<std::remove_cvref_t<decltype(pipeline_access::layers(std::declval<const P&>()))>>;
  static constexpr bool real_clock =
      std::is_same_v<clock_type, steady_clock> || std::is_same_v<clock_type, system_clock>;
  static constexpr auto use_awaitable = ::asio::use_awaitable_t<executor_type>{};

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
      using timer_type = std::conditional_t<std::is_same_v<clock_type, steady_clock>,
                                            ::asio::basic_waitable_timer<std::chrono::steady_clock>,
                                            ::asio::basic_waitable_timer<std::chrono::system_clock>>;
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
    timestamp wake{};
    if (admitted(ctx, adm, out, wake)) {
      if (wake > ctx.now() && !co_await sleep_until(ctx, wake)) {
        stop_cancelled(out);  // the permit is dropped below: its reservation goes back
      } else {
        co_await run_layers<I + 1>(ctx, out);
        pol.settle(ctx, std::move(adm.permit), out.v);
      }
    }
    context_access::set_deadline(ctx, outer_deadline);
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

template <class F>
struct async_entry {
  template <class P>
  static auto try_execute(const P& p, F f, call_options options)
      -> ::asio::awaitable<result<typename async_call<P, F>::R>, typename async_call<P, F>::executor_type> {
    async_call<P, F> call(p, f);
    co_return co_await call.run(options);
  }

  template <class P>
  static auto execute(const P& p, F f, call_options options)
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
};

}  // namespace armor::detail
