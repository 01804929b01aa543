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

#include <atomic>
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

void bm_bare_co_await(benchmark::State& state) {
  run_in_coroutine(state, [&](int x) { return operation(x); });
}
BENCHMARK(bm_bare_co_await);

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

// Four layers with a deadline: each attempt races a timer in a parallel group.
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

// The same without the deadline: what the policies cost without a timer.
void bm_async_real_policies_no_deadline(benchmark::State& state) {
  armor::circuit_breaker breaker{{.failure_threshold = 5, .open_for = 30s}};
  armor::token_bucket bucket{{.rate = {1'000'000'000, 1s}, .burst = 1'000'000}};
  const auto p = armor::pipeline{armor::backoff{{.max_attempts = 3}}, std::ref(breaker), std::ref(bucket)};
  run_in_coroutine(state, [&](int x) { return p.async_execute([x] { return operation(x); }); });
}
BENCHMARK(bm_async_real_policies_no_deadline);

}  // namespace
