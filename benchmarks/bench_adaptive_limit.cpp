// The adaptive limit's success path (admit + settle: one 16-byte CAS in;
// one 16-byte CAS out that also adds the latency sample (count and sum),
// a load of the window's minimum and of its start) against, in the same
// run, on 1 and 2 threads sharing one limit:
//
//   semaphore    std::counting_semaphore try_acquire + release (the goal:
//                the adaptive limit at most 2x this);
//   bulkhead     armor::bulkhead admit + settle (a fixed limit, no sample).
//
// The limit is never reached and no window closes (the context's time does
// not move): this is what every call pays in normal operation; closing a
// window happens once per window. Run with --benchmark_min_time=0.2 on
// shared machines and read the numbers as ratios.
#include <armor/adaptive_limit.hpp>
#include <armor/bulkhead.hpp>
#include <armor/pipeline.hpp>

#include <benchmark/benchmark.h>

#include <functional>
#include <semaphore>

namespace {

constexpr std::uint32_t limit = 64;

armor::adaptive_limit<>& shared_limit() {
  static armor::adaptive_limit<> l{{.initial_limit = limit, .max_limit = limit, .normal_share = 1, .sheddable_share = 1}};
  return l;
}

armor::bulkhead<>& shared_bulkhead() {
  static armor::bulkhead b{{.max_concurrent = limit}};
  return b;
}

void bm_adaptive_limit_admit_settle(benchmark::State& state) {
  armor::adaptive_limit<>& l = shared_limit();
  armor::context ctx{armor::to_timestamp(std::chrono::steady_clock::now())};
  const armor::verdict ok = armor::verdict::success();
  long refused = 0;
  for (auto _ : state) {
    auto a = l.admit(ctx);
    if (a.kind != armor::admission_kind::admitted) ++refused;
    benchmark::ClobberMemory();
    l.settle(ctx, std::move(a.permit), ok);
  }
  if (refused != 0) state.SkipWithError("the adaptive limit refused a call");
}
BENCHMARK(bm_adaptive_limit_admit_settle)->Threads(1)->Threads(2);

void bm_bulkhead_admit_settle(benchmark::State& state) {
  armor::bulkhead<>& b = shared_bulkhead();
  armor::context ctx{armor::timestamp{}};
  const armor::verdict ok = armor::verdict::success();
  long refused = 0;
  for (auto _ : state) {
    auto a = b.admit(ctx);
    if (a.kind != armor::admission_kind::admitted) ++refused;
    benchmark::ClobberMemory();
    b.settle(ctx, std::move(a.permit), ok);
  }
  if (refused != 0) state.SkipWithError("the bulkhead refused a call");
}
BENCHMARK(bm_bulkhead_admit_settle)->Threads(1)->Threads(2);

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
