// The Asio driver's cost: co_await of an awaitable operation bare, and the
// same through pipelines, in one run. The operation completes without
// suspending, so what is measured is the coroutine machinery and armor's
// layers, not I/O.
#include <armor/asio.hpp>
#include <armor/backoff.hpp>
#include <armor/deadline.hpp>

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

// Runs `iteration` state.iterations() times inside one coroutine.
template <class Iteration>
void run_in_coroutine(benchmark::State& state, Iteration iteration) {
  asio::io_context io;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        for (auto _ : state) co_await iteration();
      },
      asio::detached);
  io.run();
}

void bm_bare_co_await(benchmark::State& state) {
  int x = 0;
  run_in_coroutine(state, [&]() -> awaitable<void> {
    x = co_await operation(x);
    benchmark::DoNotOptimize(x);
  });
}
BENCHMARK(bm_bare_co_await);

void bm_async_empty_pipeline(benchmark::State& state) {
  const auto p = armor::pipeline{};
  int x = 0;
  run_in_coroutine(state, [&]() -> awaitable<void> {
    x = co_await p.async_execute([&] { return operation(x); });
    benchmark::DoNotOptimize(x);
  });
}
BENCHMARK(bm_async_empty_pipeline);

// Four layers, no deadline: the operation is awaited directly.
void bm_async_four_policies(benchmark::State& state) {
  counting_policy counter;
  const auto p = armor::pipeline{armor::backoff{{.max_attempts = 3}}, std::ref(counter), armor::backoff{},
                                 std::ref(counter)};
  int x = 0;
  run_in_coroutine(state, [&]() -> awaitable<void> {
    x = co_await p.async_execute([&] { return operation(x); });
    benchmark::DoNotOptimize(x);
  });
}
BENCHMARK(bm_async_four_policies);

// Four layers with a deadline: each attempt races a timer in a parallel group.
void bm_async_four_policies_with_deadline(benchmark::State& state) {
  counting_policy counter;
  const auto p = armor::pipeline{armor::deadline{2s}, armor::backoff{{.max_attempts = 3}}, std::ref(counter),
                                 armor::deadline{1s}};
  int x = 0;
  run_in_coroutine(state, [&]() -> awaitable<void> {
    x = co_await p.async_execute([&] { return operation(x); });
    benchmark::DoNotOptimize(x);
  });
}
BENCHMARK(bm_async_four_policies_with_deadline);

}  // namespace
