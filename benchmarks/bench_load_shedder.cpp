// What a load shedder and a drain add to a call, against an empty pipeline
// in the same run (baselines.hpp's bm_empty_pipeline, over steady_clock;
// and the same pair over a manual clock, which leaves the clock read out
// and shows the layers' own cost):
//
//   shedder          pipeline{shedder} at the normal level: one relaxed load
//                    and a test (the target: at most 1.1x the empty pipeline);
//   shedder+drain    pipeline{drain, shedder}: plus one fetch_add and one
//                    fetch_sub on the drain's word;
//   critical_while_shedding  the shedder at its highest level admitting a
//                    critical call (the word is read, the priority tested);
//   refused          a normal call refused while shedding (errc::overloaded).
//
// 1 and 2 threads share one shedder (and one drain). Read with the bench
// preset and --benchmark_min_time=0.2 on a shared machine, as ratios.
#include <armor/drain.hpp>
#include <armor/load_shedder.hpp>
#include <armor/pipeline.hpp>

#include "baselines.hpp"

#include <benchmark/benchmark.h>

#include <functional>

namespace {

armor::load_shedder<>& calm_shedder() {
  static armor::load_shedder<> s{{.resources = {{.name = "memory"}, {.name = "cpu"}}}};
  return s;
}

armor::load_shedder<>& busy_shedder() {
  static armor::load_shedder<> s = [] {
    armor::load_shedder<> b{{.resources = {{.name = "memory"}}}};
    b.update(0, 0.99);
    return b;
  }();
  return s;
}

armor::drain<>& open_drain() {
  static armor::drain<> d;
  return d;
}

void bm_shedder_pipeline(benchmark::State& state) {
  static const auto p = armor::pipeline{std::ref(calm_shedder())};
  armor_bench::run_execute(state, p);
}
BENCHMARK(bm_shedder_pipeline)->Threads(1)->Threads(2);

void bm_shedder_drain_pipeline(benchmark::State& state) {
  static const auto p = armor::pipeline{std::ref(open_drain()), std::ref(calm_shedder())};
  armor_bench::run_execute(state, p);
}
BENCHMARK(bm_shedder_drain_pipeline)->Threads(1)->Threads(2);

void bm_empty_pipeline_manual_clock(benchmark::State& state) {
  static const auto p = armor::pipeline{armor::manual_clock{}};
  armor_bench::run_execute(state, p);
}
BENCHMARK(bm_empty_pipeline_manual_clock);

void bm_shedder_pipeline_manual_clock(benchmark::State& state) {
  static const auto p = armor::pipeline{armor::manual_clock{}, std::ref(calm_shedder())};
  armor_bench::run_execute(state, p);
}
BENCHMARK(bm_shedder_pipeline_manual_clock);

void bm_shedder_critical_while_shedding(benchmark::State& state) {
  static const auto p = armor::pipeline{std::ref(busy_shedder())};
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&] { return armor_bench::work(x); }, {.priority = armor::priority::critical});
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_shedder_critical_while_shedding);

void bm_shedder_refused(benchmark::State& state) {
  static const auto p = armor::pipeline{std::ref(busy_shedder())};
  long refused = 0;
  for (auto _ : state) {
    auto r = p.try_execute([] { return armor_bench::work(1); });
    if (!r) ++refused;
    benchmark::DoNotOptimize(r);
  }
  if (refused == 0) state.SkipWithError("the shedder admitted a normal call while shedding");
}
BENCHMARK(bm_shedder_refused);

void bm_shedder_try_acquire(benchmark::State& state) {
  armor::load_shedder<>& s = calm_shedder();
  for (auto _ : state) {
    auto d = s.try_acquire(armor::priority::normal);
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(bm_shedder_try_acquire)->Threads(1)->Threads(2);

void bm_shedder_update(benchmark::State& state) {
  armor::load_shedder<> s{{.resources = {{.name = "memory"}}}};
  double v = 0.1;
  for (auto _ : state) {
    s.update(0, v);
    v = v > 0.9 ? 0.1 : v + 0.05;
  }
}
BENCHMARK(bm_shedder_update);

}  // namespace
