// The cost of armor::backoff, with its baselines in the same run:
//
//   - delay computation per schedule and jitter mode (and the random draw
//     alone), so the arithmetic can be compared with what it feeds: a sleep;
//   - execute() on the success path through a backoff layer against a direct
//     call, against an empty pipeline (the driver alone), and on a manual
//     clock (the driver without the cost of reading steady_clock);
//   - the same from two threads sharing one policy: by default the success
//     path only reads shared memory; the opt-in per-call counter
//     (count_calls) is one shared write per call, measured here too.
#include <armor/backoff.hpp>
#include <armor/pipeline.hpp>

#include <benchmark/benchmark.h>

#include "baselines.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>

using namespace std::chrono_literals;

namespace {

using armor_bench::run_execute;
using armor_bench::work;

// ------------------------------------------ baselines of this file (the common ones: baselines.hpp)

void bm_relaxed_fetch_add(benchmark::State& state) {
  static std::atomic<std::uint64_t> counter{0};
  for (auto _ : state) benchmark::DoNotOptimize(counter.fetch_add(1, std::memory_order_relaxed));
}
BENCHMARK(bm_relaxed_fetch_add)->Threads(1)->Threads(2);

void bm_thread_rng(benchmark::State& state) {
  armor::thread_rng rng;
  for (auto _ : state) benchmark::DoNotOptimize(rng());
}
BENCHMARK(bm_thread_rng);

void bm_seeded_rng(benchmark::State& state) {
  armor::seeded_rng rng{1};
  for (auto _ : state) benchmark::DoNotOptimize(rng());
}
BENCHMARK(bm_seeded_rng);

// ---------------------------------------------------------------- delay computation

// One draw plus one delay, attempts cycling 1..8 (the range met in practice).
void run_delay(benchmark::State& state, const armor::backoff_options& options) {
  const armor::backoff b{options};
  armor::thread_rng rng;
  unsigned attempt = 0;
  std::chrono::nanoseconds previous{};
  for (auto _ : state) {
    attempt = (attempt & 7U) + 1;
    previous = b.delay(attempt, rng(), previous);
    benchmark::DoNotOptimize(previous);
  }
}

void bm_delay_exponential_none(benchmark::State& s) { run_delay(s, {.jitter = armor::jitter_mode::none}); }
void bm_delay_exponential_full(benchmark::State& s) { run_delay(s, {.jitter = armor::jitter_mode::full}); }
void bm_delay_exponential_equal(benchmark::State& s) { run_delay(s, {.jitter = armor::jitter_mode::equal}); }
void bm_delay_exponential_proportional(benchmark::State& s) {
  run_delay(s, {.jitter = armor::jitter_mode::proportional});
}
void bm_delay_exponential_fractional(benchmark::State& s) {
  run_delay(s, {.multiplier = 1.5, .jitter = armor::jitter_mode::full});
}
void bm_delay_constant_full(benchmark::State& s) { run_delay(s, {.schedule = armor::backoff_schedule::constant}); }
void bm_delay_linear_full(benchmark::State& s) { run_delay(s, {.schedule = armor::backoff_schedule::linear}); }
void bm_delay_decorrelated(benchmark::State& s) { run_delay(s, {.schedule = armor::backoff_schedule::decorrelated}); }
BENCHMARK(bm_delay_exponential_none);
BENCHMARK(bm_delay_exponential_full);
BENCHMARK(bm_delay_exponential_equal);
BENCHMARK(bm_delay_exponential_proportional);
BENCHMARK(bm_delay_exponential_fractional);
BENCHMARK(bm_delay_constant_full);
BENCHMARK(bm_delay_linear_full);
BENCHMARK(bm_delay_decorrelated);

void bm_delay_attempt_10000(benchmark::State& state) {
  const armor::backoff b{{.multiplier = 1.01, .max_delay = 1h}};
  armor::thread_rng rng;
  for (auto _ : state) benchmark::DoNotOptimize(b.delay(10000, rng()));
}
BENCHMARK(bm_delay_attempt_10000);

// ---------------------------------------------------------------- success path

void bm_backoff(benchmark::State& state) {
  run_execute(state, armor::pipeline{armor::backoff{{.max_attempts = 4, .initial = 100ms, .max_delay = 5s}}});
}
BENCHMARK(bm_backoff);

void bm_backoff_count_calls(benchmark::State& state) {
  run_execute(state, armor::pipeline{armor::backoff{{.count_calls = true}}});
}
BENCHMARK(bm_backoff_count_calls);

void bm_backoff_with_budget(benchmark::State& state) {
  run_execute(state, armor::pipeline{armor::backoff{{.budget = armor::retry_budget{}}}});
}
BENCHMARK(bm_backoff_with_budget);

void bm_backoff_try_execute(benchmark::State& state) {
  const auto p = armor::pipeline{armor::backoff{}};
  int x = 0;
  for (auto _ : state) {
    auto r = p.try_execute([&] { return work(x); });
    x = *r;
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_backoff_try_execute);

// The driver without steady_clock's cost.
void bm_empty_pipeline_manual_clock(benchmark::State& state) {
  run_execute(state, armor::pipeline{armor::manual_clock{}});
}
BENCHMARK(bm_empty_pipeline_manual_clock);

void bm_backoff_manual_clock(benchmark::State& state) {
  run_execute(state, armor::pipeline{armor::manual_clock{}, armor::backoff{}});
}
BENCHMARK(bm_backoff_manual_clock);

void bm_backoff_count_calls_manual_clock(benchmark::State& state) {
  run_execute(state, armor::pipeline{armor::manual_clock{}, armor::backoff{{.count_calls = true}}});
}
BENCHMARK(bm_backoff_count_calls_manual_clock);

// Two threads sharing one policy. By default the success path only reads
// the policy (a full retry budget is read, not written); count_calls makes
// every call write one shared cache line.
void bm_shared_empty_pipeline(benchmark::State& state) {
  static const auto p = armor::pipeline{armor::manual_clock{}};
  run_execute(state, p);
}
BENCHMARK(bm_shared_empty_pipeline)->Threads(2);

void bm_shared_backoff(benchmark::State& state) {
  static const auto p = armor::pipeline{armor::manual_clock{}, armor::backoff{}};
  run_execute(state, p);
}
BENCHMARK(bm_shared_backoff)->Threads(2);

void bm_shared_backoff_with_budget(benchmark::State& state) {
  static const auto p = armor::pipeline{armor::manual_clock{}, armor::backoff{{.budget = armor::retry_budget{}}}};
  run_execute(state, p);
}
BENCHMARK(bm_shared_backoff_with_budget)->Threads(2);

void bm_shared_backoff_count_calls(benchmark::State& state) {
  static const auto p = armor::pipeline{armor::manual_clock{}, armor::backoff{{.count_calls = true}}};
  run_execute(state, p);
}
BENCHMARK(bm_shared_backoff_count_calls)->Threads(2);

}  // namespace
