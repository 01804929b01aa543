// The bulkhead's admit + release against the usual ways to cap concurrency,
// in one run, on 1 and 2 threads sharing one limit:
//
//   armor        bulkhead::try_acquire + permit.release() (the policy's fast
//                path: one load + one CAS in, one fetch_sub out), the same
//                letting the permit drop (RAII: the release is then one
//                out-of-line call), and the same through a pipeline
//                (admit, the operation, settle);
//   mutex        a std::mutex around an in-flight counter (check, increment;
//                lock again to decrement);
//   semaphore    std::counting_semaphore try_acquire + release.
//
// The limit is never reached here (every thread enters and leaves at once):
// this measures the cost a call pays when slots are free, which is what
// every call pays in normal operation. Run with --benchmark_min_time=0.2 on
// shared machines and read the numbers as ratios.
#include <armor/bulkhead.hpp>
#include <armor/pipeline.hpp>

#include "baselines.hpp"

#include <benchmark/benchmark.h>

#include <functional>
#include <mutex>
#include <semaphore>

namespace {

constexpr std::uint32_t limit = 64;

armor::bulkhead<>& shared_bulkhead() {
  static armor::bulkhead b{{.max_concurrent = limit}};
  return b;
}

void bm_bulkhead_try_acquire_release(benchmark::State& state) {
  armor::bulkhead<>& b = shared_bulkhead();
  long refused = 0;
  for (auto _ : state) {
    auto d = b.try_acquire();
    if (d) {
      benchmark::ClobberMemory();
      d.permit().release();  // as the semaphore's loop: release, then the (empty) permit dies
    } else {
      ++refused;
    }
  }
  if (refused != 0) state.SkipWithError("the bulkhead refused a call");
}
BENCHMARK(bm_bulkhead_try_acquire_release)->Threads(1)->Threads(2);

void bm_bulkhead_try_acquire_drop(benchmark::State& state) {
  armor::bulkhead<>& b = shared_bulkhead();
  long refused = 0;
  for (auto _ : state) {
    auto d = b.try_acquire();
    if (!d) ++refused;
    benchmark::DoNotOptimize(d);
  }
  if (refused != 0) state.SkipWithError("the bulkhead refused a call");
}
BENCHMARK(bm_bulkhead_try_acquire_drop)->Threads(1)->Threads(2);

void bm_bulkhead_pipeline(benchmark::State& state) {
  static const auto p = armor::pipeline{std::ref(shared_bulkhead())};
  armor_bench::run_execute(state, p);
}
BENCHMARK(bm_bulkhead_pipeline)->Threads(1)->Threads(2);

// --- Baselines -------------------------------------------------------------

struct mutex_limit {
  std::mutex m;
  std::uint32_t inside = 0;
  bool try_enter() {
    const std::lock_guard lock(m);
    if (inside >= limit) return false;
    ++inside;
    return true;
  }
  void leave() {
    const std::lock_guard lock(m);
    --inside;
  }
};

void bm_mutex_counter(benchmark::State& state) {
  static mutex_limit l;
  long refused = 0;
  for (auto _ : state) {
    if (l.try_enter()) {
      benchmark::ClobberMemory();
      l.leave();
    } else {
      ++refused;
    }
  }
  if (refused != 0) state.SkipWithError("the mutex limit refused a call");
}
BENCHMARK(bm_mutex_counter)->Threads(1)->Threads(2);

void bm_counting_semaphore(benchmark::State& state) {
  static std::counting_semaphore<limit> sem(limit);
  long refused = 0;
  for (auto _ : state) {
    if (sem.try_acquire()) {
      benchmark::ClobberMemory();
      sem.release();
    } else {
      ++refused;
    }
  }
  if (refused != 0) state.SkipWithError("the semaphore refused a call");
}
BENCHMARK(bm_counting_semaphore)->Threads(1)->Threads(2);

}  // namespace
