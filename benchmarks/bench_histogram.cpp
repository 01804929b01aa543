// The cost of latency histograms, in one run: the baselines (the raw clock
// read, baselines.hpp), histogram::record alone, and pipelines with and without a
// latency_recorder layer. `breaker_slow_calls*` is the pair the goal is
// about: a breaker with a slow-call rule already makes the driver read the
// clock after each attempt, so the recorder adds only its own work there.
// `deadline*` shows the case where the recorder's completion time is an
// extra clock read.
#include <armor/circuit_breaker.hpp>
#include <armor/deadline.hpp>
#include <armor/histogram.hpp>
#include <armor/pipeline.hpp>

#include <benchmark/benchmark.h>

#include "baselines.hpp"

#include <chrono>
#include <functional>

using namespace std::chrono_literals;

namespace {

using armor_bench::work;

void bm_histogram_record(benchmark::State& state) {
  static armor::histogram h;
  std::int64_t ns = 0;
  for (auto _ : state) {
    ns = (ns + 7'919'111) % 3'000'000'000;  // spread over the buckets
    h.record(std::chrono::nanoseconds{ns});
  }
  benchmark::DoNotOptimize(h.snapshot().count);
}
BENCHMARK(bm_histogram_record)->Threads(1)->Threads(2);

void bm_breaker_slow_calls(benchmark::State& state) {
  armor::circuit_breaker<> breaker{{.slow_call_threshold = 1s}};
  const auto p = armor::pipeline{std::ref(breaker)};
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&] { return work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_breaker_slow_calls);

void bm_breaker_slow_calls_with_recorder(benchmark::State& state) {
  armor::circuit_breaker<> breaker{{.slow_call_threshold = 1s}};
  armor::latency_recorder rec{};
  const auto p = armor::pipeline{std::ref(rec), std::ref(breaker)};
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&] { return work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_breaker_slow_calls_with_recorder);

void bm_deadline(benchmark::State& state) {
  const auto p = armor::pipeline{armor::deadline{2s}};
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&] { return work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_deadline);

void bm_deadline_with_recorder(benchmark::State& state) {
  armor::latency_recorder rec{};
  const auto p = armor::pipeline{std::ref(rec), armor::deadline{2s}};
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&] { return work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_deadline_with_recorder);

}  // namespace
