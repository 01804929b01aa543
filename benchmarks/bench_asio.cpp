// The Asio driver's cost: co_await of an awaitable operation bare, and the
// same through pipelines, in one run. The operation completes without
// suspending, so what is measured is the coroutine machinery and armor's
// layers, not I/O.
#include <armor/asio.hpp>
#include <armor/backoff.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/deadline.hpp>
#include <armor/token_bucket.hpp>

#include <benchmark/benchmark.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <functional>

using namespace std::chrono_literals;
using asio::awaitable;

namespace {

awaitable<int> operation(int x) {
  benchmark::DoNotOptimize(x);
  co_return x + 1;
}

// A thread-safe policy standing in for a stateful one (one relaxed
// increment per admission), to make a four-layer pipeline.
struct counting_policy {
  using permit_type = armor::no_permit;
  std::atomic<long> admitted{0};
  armor::admission<> admit(armor::context&) noexcept {
    admitted.fetch_add(1, std::memory_order_relaxed);
    return armor::admission<>::admit();
  }
  void settle(armor::context&, armor::no_permit, const armor::verdict&) noexcept {}
};

// Runs `call` state.iterations() times inside one coroutine: `call(x)`
// returns the awaitable to measure (it is not a coroutine itself, so the
// loop adds no frame of its own; Asio recycles two frames per thread by
// default, and a third live at once would be a malloc in every row).
template <class Call>
void run_in_coroutine(benchmark::State& state, Call call) {
  asio::io_context io;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        int x = 0;
        for (auto _ : state) {
          x = co_await call(x);
          benchmark::DoNotOptimize(x);
        }
      },
      asio::detached);
  io.run();
}

// The same in an io_context that also has a timer pending, as a server's
// has (its sockets do the same): the scheduler then polls the reactor
// (epoll_wait) each time its queue comes round, so a call that posts a
// handler pays a system call too.
template <class Call>
void run_in_busy_coroutine(benchmark::State& state, Call call) {
  asio::io_context io;
  asio::steady_timer pending(io, std::chrono::hours(1));
  pending.async_wait([](std::error_code) {});
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        int x = 0;
        for (auto _ : state) {
          x = co_await call(x);
          benchmark::DoNotOptimize(x);
        }
        pending.cancel();
      },
      asio::detached);
  io.run();
}

void bm_bare_co_await(benchmark::State& state) {
  run_in_coroutine(state, [&](int x) { return operation(x); });
}
BENCHMARK(bm_bare_co_await);

// The floor of any driver written as a coroutine: one frame of its own
// around the operation's, doing nothing but await it.
awaitable<int> pass_through(int x) { co_return co_await operation(x); }

void bm_nested_co_await(benchmark::State& state) {
  run_in_coroutine(state, [&](int x) { return pass_through(x); });
}
BENCHMARK(bm_nested_co_await);

void bm_async_empty_pipeline(benchmark::State& state) {
  const auto p = armor::pipeline{};
  run_in_coroutine(state, [&](int x) { return p.async_execute([x] { return operation(x); }); });
}
BENCHMARK(bm_async_empty_pipeline);

// Four layers, no deadline: the operation is awaited directly.
void bm_async_four_policies(benchmark::State& state) {
  counting_policy counter;
  const auto p = armor::pipeline{armor::backoff{{.max_attempts = 3}}, std::ref(counter), armor::backoff{},
                                 std::ref(counter)};
  run_in_coroutine(state, [&](int x) { return p.async_execute([x] { return operation(x); }); });
}
BENCHMARK(bm_async_four_policies);

// Four layers with two deadlines: each attempt is co_spawned with a cancellation
// slot of its own (a timer is armed only if it is still running after it started).
void bm_async_four_policies_with_deadline(benchmark::State& state) {
  counting_policy counter;
  const auto p = armor::pipeline{armor::deadline{2s}, armor::backoff{{.max_attempts = 3}}, std::ref(counter),
                                 armor::deadline{1s}};
  run_in_coroutine(state, [&](int x) { return p.async_execute([x] { return operation(x); }); });
}
BENCHMARK(bm_async_four_policies_with_deadline);

// The real policies a client puts around an upstream call: a deadline that
// really cancels, retries, a circuit breaker and a token bucket (which
// always grants here), shared as a service shares them.
void bm_async_real_policies(benchmark::State& state) {
  armor::circuit_breaker breaker{{.failure_threshold = 5, .open_for = 30s}};
  armor::token_bucket bucket{{.rate = {1'000'000'000, 1s}, .burst = 1'000'000}};
  const auto p = armor::pipeline{armor::deadline{2s}, armor::backoff{{.max_attempts = 3}}, std::ref(breaker),
                                 std::ref(bucket)};
  run_in_coroutine(state, [&](int x) { return p.async_execute([x] { return operation(x); }); });
}
BENCHMARK(bm_async_real_policies);

// The same in an io_context with a reactor to poll (see run_in_busy_coroutine).
void bm_async_real_policies_busy_context(benchmark::State& state) {
  armor::circuit_breaker breaker{{.failure_threshold = 5, .open_for = 30s}};
  armor::token_bucket bucket{{.rate = {1'000'000'000, 1s}, .burst = 1'000'000}};
  const auto p = armor::pipeline{armor::deadline{2s}, armor::backoff{{.max_attempts = 3}}, std::ref(breaker),
                                 std::ref(bucket)};
  run_in_busy_coroutine(state, [&](int x) { return p.async_execute([x] { return operation(x); }); });
}
BENCHMARK(bm_async_real_policies_busy_context);

// The same without the deadline: what the policies cost without a timer.
void bm_async_real_policies_no_deadline(benchmark::State& state) {
  armor::circuit_breaker breaker{{.failure_threshold = 5, .open_for = 30s}};
  armor::token_bucket bucket{{.rate = {1'000'000'000, 1s}, .burst = 1'000'000}};
  const auto p = armor::pipeline{armor::backoff{{.max_attempts = 3}}, std::ref(breaker), std::ref(bucket)};
  run_in_coroutine(state, [&](int x) { return p.async_execute([x] { return operation(x); }); });
}
BENCHMARK(bm_async_real_policies_no_deadline);

}  // namespace
