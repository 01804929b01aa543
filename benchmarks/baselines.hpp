// Baselines every benchmark prints in its own run, so that its numbers are
// read as ratios against the same machine at the same moment: the raw clock
// read, a direct call with and without one, and an empty pipeline.
//
// Each benchmark is its own executable built from one file, so defining and
// registering the baselines here registers them exactly once per run.
#pragma once

#include "multithreaded.hpp"

#include <armor/clock.hpp>
#include <armor/pipeline.hpp>

#include <benchmark/benchmark.h>

namespace armor_bench {

/// The operation every benchmark wraps: cheap, but not something the
/// optimiser can delete.
inline int work(int x) {
  benchmark::DoNotOptimize(x);
  return x + 1;
}

/// Calls `work` through `p.execute` for every iteration.
template <class Pipeline>
void run_execute(benchmark::State& state, const Pipeline& p) {
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&] { return work(x); });
    benchmark::DoNotOptimize(x);
  }
}

inline void bm_clock_read(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(armor::steady_clock::now());
}
BENCHMARK(bm_clock_read);

inline void bm_direct_call(benchmark::State& state) {
  int x = 0;
  for (auto _ : state) {
    x = work(x);
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_direct_call);

// The floor of a pipeline over steady_clock: the driver reads it once per attempt.
inline void bm_direct_call_with_clock_read(benchmark::State& state) {
  int x = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(armor::steady_clock::now());
    x = work(x);
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_direct_call_with_clock_read);

inline void bm_empty_pipeline(benchmark::State& state) { run_execute(state, armor::pipeline{}); }
BENCHMARK(bm_empty_pipeline);

}  // namespace armor_bench
