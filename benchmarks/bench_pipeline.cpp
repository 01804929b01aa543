// The cost of the driver: a direct call, then the same call through an empty
// pipeline and through deadline layers, all in one run. The raw clock read is
// the baseline: the driver reads the clock once per attempt, so a pipeline
// over steady_clock cannot cost less than one read.
#include <armor/deadline.hpp>
#include <armor/pipeline.hpp>

#include <benchmark/benchmark.h>

#include "baselines.hpp"

#include <chrono>

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

}  // namespace
