// Request coalescing under contention against running every call, in one
// run, on 1, 2, 4 and 8 threads calling for the same key:
//
//   every_call      each call runs the upstream itself (about 5 us of work);
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

namespace {

// The upstream: about 5 us of work, wall time (a thread preempted while
// "waiting for the upstream" is still waiting, as over a socket).
int upstream(int x, long& runs) {
  ++runs;
  const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(5);
  while (std::chrono::steady_clock::now() < end) benchmark::DoNotOptimize(x);
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
