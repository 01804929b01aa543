// armor::shadow<token_bucket> against the bare token_bucket, in one run:
//
//   protocol   admit + settle with the time given (what a pipeline layer
//              costs without the driver), granted and refused;
//   pipeline   a whole call through a one-layer pipeline (steady_clock read
//              included), granted and refused: the bare bucket's refusal
//              ends the call, the shadow's runs the operation anyway;
//   threads    the granted protocol path on 1 and 2 threads sharing one
//              bucket (and one shadow's counters, with count_calls).
//
// Ratios are recorded in docs/shadow.md. Run with --benchmark_min_time=0.2
// on shared machines.
#include <armor/pipeline.hpp>
#include <armor/shadow.hpp>
#include <armor/token_bucket.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <functional>

using namespace std::chrono_literals;

namespace {

using bucket = armor::token_bucket<>;

// A bucket that always grants: a refill far faster than any call.
armor::token_bucket_options plenty() { return {.rate = {1'000'000'000, 1s}, .burst = 1'000'000}; }
// A bucket that never grants again once its one token is spent.
armor::token_bucket_options spent() { return {.rate = {1, 24h}, .burst = 1}; }

template <class P>
void admit_settle(benchmark::State& state, P& policy) {
  std::int64_t t = 1'000'000'000;
  long admitted = 0;
  for (auto _ : state) {
    armor::context ctx(armor::timestamp{std::chrono::nanoseconds{t += 1000}});
    auto a = policy.admit(ctx);
    if (a.kind == armor::admission_kind::admitted) ++admitted;
    policy.settle(ctx, std::move(a.permit), armor::verdict::success());
  }
  benchmark::DoNotOptimize(admitted);
}

void bm_bucket_protocol_granted(benchmark::State& state) {
  bucket b{plenty()};
  admit_settle(state, b);
}
BENCHMARK(bm_bucket_protocol_granted);

void bm_shadow_protocol_granted(benchmark::State& state) {
  armor::shadow s{bucket{plenty()}};
  admit_settle(state, s);
}
BENCHMARK(bm_shadow_protocol_granted);

void bm_shadow_counting_protocol_granted(benchmark::State& state) {
  armor::shadow s{bucket{plenty()}, {.count_calls = true}};
  admit_settle(state, s);
}
BENCHMARK(bm_shadow_counting_protocol_granted);

void bm_bucket_protocol_refused(benchmark::State& state) {
  bucket b{spent()};
  (void)b.try_acquire();
  admit_settle(state, b);
}
BENCHMARK(bm_bucket_protocol_refused);

void bm_shadow_protocol_refused(benchmark::State& state) {
  armor::shadow s{bucket{spent()}};
  (void)s.policy().try_acquire();
  admit_settle(state, s);
}
BENCHMARK(bm_shadow_protocol_refused);

template <class L>
void through_pipeline(benchmark::State& state, L layer) {
  const auto p = armor::pipeline{std::move(layer)};
  long ran = 0;
  for (auto _ : state) {
    auto r = p.try_execute([&ran] { return ++ran; });
    benchmark::DoNotOptimize(r);
  }
  benchmark::DoNotOptimize(ran);
}

void bm_bucket_pipeline_granted(benchmark::State& state) {
  bucket b{plenty()};
  through_pipeline(state, std::ref(b));
}
BENCHMARK(bm_bucket_pipeline_granted);

void bm_shadow_pipeline_granted(benchmark::State& state) {
  armor::shadow s{bucket{plenty()}};
  through_pipeline(state, std::ref(s));
}
BENCHMARK(bm_shadow_pipeline_granted);

void bm_bucket_pipeline_refused(benchmark::State& state) {
  bucket b{spent()};
  (void)b.try_acquire();
  through_pipeline(state, std::ref(b));
}
BENCHMARK(bm_bucket_pipeline_refused);

void bm_shadow_pipeline_refused(benchmark::State& state) {
  armor::shadow s{bucket{spent()}};
  (void)s.policy().try_acquire();
  through_pipeline(state, std::ref(s));
}
BENCHMARK(bm_shadow_pipeline_refused);

// Shared by the threads of one benchmark run.
bucket shared_bucket{plenty()};
armor::shadow<std::reference_wrapper<bucket>> shared_shadow{std::ref(shared_bucket), {.count_calls = true}};

void bm_bucket_protocol_granted_threads(benchmark::State& state) { admit_settle(state, shared_bucket); }
BENCHMARK(bm_bucket_protocol_granted_threads)->Threads(1)->Threads(2);

void bm_shadow_counting_protocol_granted_threads(benchmark::State& state) { admit_settle(state, shared_shadow); }
BENCHMARK(bm_shadow_counting_protocol_granted_threads)->Threads(1)->Threads(2);

}  // namespace
