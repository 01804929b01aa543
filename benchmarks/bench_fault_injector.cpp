// The cost of armor::fault_injector in a pipeline that does not fire it,
// against the empty pipeline, in one run (steady_clock, one read per call):
//
//   disabled          the switch off: one relaxed load, no draw;
//   enabled_no_fire   on, with an error rate of 1e-9: one draw from
//                     thread_rng per call, which (practically) never fires;
//   enabled_two_draws on, with error and latency rates of 1e-9: two draws.
//
// Figures are recorded in docs/fault_injection.md. Run with
// --benchmark_min_time=0.2 on shared machines.
#include <armor/fault_injector.hpp>
#include <armor/pipeline.hpp>

#include <benchmark/benchmark.h>

#include "baselines.hpp"

#include <chrono>
#include <functional>

using namespace std::chrono_literals;

namespace {

void bm_fault_injector_disabled(benchmark::State& state) {
  armor::fault_injector<> chaos{{.enabled = false, .error_rate = 0.5}};
  armor_bench::run_execute(state, armor::pipeline{std::ref(chaos)});
}
BENCHMARK(bm_fault_injector_disabled);

void bm_fault_injector_enabled_no_fire(benchmark::State& state) {
  armor::fault_injector<> chaos{{.error_rate = 1e-9}};
  armor_bench::run_execute(state, armor::pipeline{std::ref(chaos)});
  if (chaos.stats().errors > 1) state.SkipWithError("the injector fired");
}
BENCHMARK(bm_fault_injector_enabled_no_fire);

void bm_fault_injector_enabled_two_draws(benchmark::State& state) {
  armor::fault_injector<> chaos{{.error_rate = 1e-9, .latency_rate = 1e-9, .latency = 1us}};
  armor_bench::run_execute(state, armor::pipeline{std::ref(chaos)});
  if (chaos.stats().errors + chaos.stats().latencies > 1) state.SkipWithError("the injector fired");
}
BENCHMARK(bm_fault_injector_enabled_two_draws);

}  // namespace
