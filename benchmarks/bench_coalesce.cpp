// Request coalescing under contention against running every call, in one
// run, on 1, 2, 4 and 8 threads calling for the same key:
//
//   every_call      each call runs the upstream itself (it waits ~50 us);
//   coalesced       each call goes through armor::coalescer::execute: calls
//                   that arrive while a flight for the key is running share
//                   it instead of running the upstream again;
//   coalesced_16    the same over 16 keys (less sharing, less contention);
//   overhead        one thread, a trivial operation: what a call that leads
//                   its own flight pays (two lock/unlock pairs, the map
//                   node, the shared state) against bm_direct_call.
//
// Counters: `runs_per_call`, how many upstream runs a call cost on average
// (1 for every_call). Wall time per call is what a caller waits; read it
// with runs_per_call, which says what the upstream was spared. Run with
// --benchmark_min_time=0.2 on shared machines and read ratios.
#include <armor/coalesce.hpp>

#include "baselines.hpp"

#include <benchmark/benchmark.h>

#include <chrono>
#include <thread>

namespace {

// The upstream: a call that waits about 50 us for its answer, as over a
// socket (the thread blocks; the core is free for other callers, who then
// arrive while it is in flight). A spinning stand-in would keep the core
// busy, and on a loaded 2-core machine hardly anyone would arrive meanwhile.
int upstream(int x, long& runs) {
  ++runs;
  std::this_thread::sleep_for(std::chrono::microseconds(50));
  return x + 1;
}

void report(benchmark::State& state, long runs) {
  state.counters["runs_per_call"] = benchmark::Counter(
      static_cast<double>(runs) / static_cast<double>(state.iterations()), benchmark::Counter::kAvgThreads);
}

void bm_every_call(benchmark::State& state) {
  long runs = 0;
  int x = 0;
  for (auto _ : state) {
    x = upstream(x, runs);
    benchmark::DoNotOptimize(x);
  }
  report(state, runs);
}
BENCHMARK(bm_every_call)->Threads(1)->Threads(2)->Threads(4)->Threads(8)->UseRealTime();

armor::coalescer<int, int>& shared_coalescer() {
  static armor::coalescer<int, int> c;
  return c;
}

void bm_coalesced(benchmark::State& state) {
  auto& c = shared_coalescer();
  long runs = 0;  // runs led by this thread: the leader runs the operation on its own thread
  int x = 0;
  for (auto _ : state) {
    x = c.execute(0, [&] { return upstream(x, runs); });
    benchmark::DoNotOptimize(x);
  }
  report(state, runs);
}
BENCHMARK(bm_coalesced)->Threads(1)->Threads(2)->Threads(4)->Threads(8)->UseRealTime();

void bm_coalesced_16(benchmark::State& state) {
  auto& c = shared_coalescer();
  long runs = 0;
  int x = 0;
  int k = static_cast<int>(state.thread_index());
  for (auto _ : state) {
    k = (k + 1) & 15;
    x = c.execute(k, [&] { return upstream(x, runs); });
    benchmark::DoNotOptimize(x);
  }
  report(state, runs);
}
BENCHMARK(bm_coalesced_16)->Threads(1)->Threads(2)->Threads(4)->Threads(8)->UseRealTime();

void bm_overhead(benchmark::State& state) {
  auto& c = shared_coalescer();
  int x = 0;
  for (auto _ : state) {
    x = c.execute(1000, [&] { return armor_bench::work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_overhead);

}  // namespace
