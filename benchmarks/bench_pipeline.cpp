// The cost of the driver: a direct call, then the same call through an empty
// pipeline and through deadline layers, all in one run. The raw clock read is
// the baseline: the driver reads the clock once per attempt, so a pipeline
// over steady_clock cannot cost less than one read.
//
// Then a realistic five-policy pipeline (deadline, backoff, circuit breaker,
// token bucket, bulkhead), built up one layer at a time in the same run
// (bm_layers/N: the first N of the five), so that each layer's share is the
// difference between two rows; and the same five with the policies shared
// through std::ref on two threads. Nothing is ever refused: the bucket's
// rate is one token per nanosecond, the bulkhead has 64 slots.
#include <armor/backoff.hpp>
#include <armor/bulkhead.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/deadline.hpp>
#include <armor/pipeline.hpp>
#include <armor/token_bucket.hpp>

#include <benchmark/benchmark.h>

#include "baselines.hpp"

#include <chrono>
#include <functional>

using namespace std::chrono_literals;

namespace {

using armor_bench::work;

void bm_deadline(benchmark::State& state) {
  const auto p = armor::pipeline{armor::deadline{2s}};
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&](const armor::context& ctx) {
      benchmark::DoNotOptimize(ctx.remaining());
      return work(x);
    });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_deadline);

void bm_nested_deadlines_try_execute(benchmark::State& state) {
  const auto p = armor::pipeline{armor::deadline{2s}, armor::deadline{500ms}};
  int x = 0;
  for (auto _ : state) {
    auto r = p.try_execute([&] { return work(x); });
    x = *r;
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_nested_deadlines_try_execute);

// The same pipeline on a manual clock: the driver without the clock's cost.
void bm_deadline_manual_clock(benchmark::State& state) {
  const auto p = armor::pipeline{armor::manual_clock{}, armor::deadline{2s}};
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&] { return work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_deadline_manual_clock);

// --- Five policies, one layer at a time -----------------------------------

armor::token_bucket_options never_empty_bucket() { return {.rate = {1'000'000'000, 1s}, .burst = 1'000'000}; }

// The first `n` of deadline, backoff, breaker, bucket, bulkhead, each held
// by the pipeline.
void bm_layers(benchmark::State& state) {
  const auto n = state.range(0);
  switch (n) {
    case 1: armor_bench::run_execute(state, armor::pipeline{armor::deadline{2s}}); break;
    case 2: armor_bench::run_execute(state, armor::pipeline{armor::deadline{2s}, armor::backoff{{.max_attempts = 3}}}); break;
    case 3:
      armor_bench::run_execute(state, armor::pipeline{armor::deadline{2s}, armor::backoff{{.max_attempts = 3}},
                                                      armor::circuit_breaker{}});
      break;
    case 4:
      armor_bench::run_execute(state, armor::pipeline{armor::deadline{2s}, armor::backoff{{.max_attempts = 3}},
                                                      armor::circuit_breaker{}, armor::token_bucket{never_empty_bucket()}});
      break;
    default:
      armor_bench::run_execute(state, armor::pipeline{armor::deadline{2s}, armor::backoff{{.max_attempts = 3}},
                                                      armor::circuit_breaker{}, armor::token_bucket{never_empty_bucket()},
                                                      armor::bulkhead{{.max_concurrent = 64}}});
      break;
  }
}
BENCHMARK(bm_layers)->DenseRange(1, 5);

// The bulkhead alone, for its share without the layers around it.
void bm_bulkhead_alone(benchmark::State& state) {
  armor_bench::run_execute(state, armor::pipeline{armor::bulkhead{{.max_concurrent = 64}}});
}
BENCHMARK(bm_bulkhead_alone);

// The five policies shared (std::ref), as a service holds them, on one and
// two threads.
void bm_five_policies_shared(benchmark::State& state) {
  static armor::circuit_breaker breaker{};
  static armor::token_bucket bucket{never_empty_bucket()};
  static armor::bulkhead slots{{.max_concurrent = 64}};
  static const auto p = armor::pipeline{armor::deadline{2s}, armor::backoff{{.max_attempts = 3}}, std::ref(breaker),
                                        std::ref(bucket), std::ref(slots)};
  armor_bench::run_execute(state, p);
}
BENCHMARK(bm_five_policies_shared)->Threads(1)->Threads(2);

}  // namespace
