// The cost of armor::host_set: a pick and the record of its outcome, over 8
// hosts, for each balancer, against a circuit breaker's admit + settle (the
// per-host layer a host set replaces or sits beside) and the raw clock read,
// in the same run; on 1 and 2 threads sharing one host set. Then the same
// as pipeline layers: a sync pipeline around the host set (peak EWMA, which
// reads the clock again after each attempt) against one around the breaker.
//
// Run: armor_bench_host_set --benchmark_min_time=0.2
#include <armor/circuit_breaker.hpp>
#include <armor/host_set.hpp>
#include <armor/pipeline.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace {

// glibc's single-threaded shortcuts would make the 1-thread rows depend on
// whether a 2-thread row ran first (see bench_circuit_breaker.cpp).
const bool process_is_multi_threaded = [] {
  std::thread([] {}).join();
  return true;
}();

armor::timestamp now_ts() { return armor::to_timestamp(armor::steady_clock::now()); }

std::vector<armor::host_spec> eight_hosts() {
  std::vector<armor::host_spec> v;
  for (int i = 0; i < 8; ++i) v.push_back({"10.0.0." + std::to_string(i + 1) + ":443", 1});
  return v;
}

template <armor::host_balancer B>
armor::host_set<>& hosts() {
  static armor::host_set<> h = [] {
    armor::host_set<> s{{.balancer = B}};
    s.update(eight_hosts());
    return s;
  }();
  return h;
}

void bm_steady_clock_now(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(armor::steady_clock::now());
}
BENCHMARK(bm_steady_clock_now);

// A closed breaker: admit, then settle a success (time read once per call).
void bm_breaker_admit_settle(benchmark::State& state) {
  static armor::circuit_breaker<> b{{.failure_threshold = 5}};
  for (auto _ : state) {
    const armor::timestamp t = now_ts();
    auto d = b.try_acquire(t);
    b.record(std::move(d).permit(), armor::verdict::success(), t);
  }
}
BENCHMARK(bm_breaker_admit_settle)->Threads(1)->Threads(2);

// Pick among 8 hosts and record a success (time read once per call).
template <armor::host_balancer B>
void bm_host_set_pick_record(benchmark::State& state) {
  armor::host_set<>& h = hosts<B>();
  for (auto _ : state) {
    const armor::timestamp t = now_ts();
    auto d = h.pick(t);
    h.record(std::move(d).permit(), armor::host_outcome::success, t);
  }
}
BENCHMARK_TEMPLATE(bm_host_set_pick_record, armor::host_balancer::peak_ewma)->Threads(1)->Threads(2);
BENCHMARK_TEMPLATE(bm_host_set_pick_record, armor::host_balancer::round_robin)->Threads(1)->Threads(2);
BENCHMARK_TEMPLATE(bm_host_set_pick_record, armor::host_balancer::least_pending)->Threads(1)->Threads(2);

// As pipeline layers: execute() of an operation that returns at once.
void bm_pipeline_breaker(benchmark::State& state) {
  static armor::circuit_breaker<> b{{.failure_threshold = 5}};
  const auto p = armor::pipeline{std::ref(b)};
  for (auto _ : state) benchmark::DoNotOptimize(p.execute([] { return 1; }));
}
BENCHMARK(bm_pipeline_breaker)->Threads(1)->Threads(2);

void bm_pipeline_host_set(benchmark::State& state) {
  const auto p = armor::pipeline{std::ref(hosts<armor::host_balancer::peak_ewma>())};
  for (auto _ : state) {
    benchmark::DoNotOptimize(p.execute([](const armor::context& ctx) { return ctx.host().size(); }));
  }
}
BENCHMARK(bm_pipeline_host_set)->Threads(1)->Threads(2);

}  // namespace
