// What observability costs on the hot path, each pair measured in the same
// run so that it reads as a ratio:
//
//   - a policy with a listener against the same policy without one, on the
//     path calls take almost always (a closed breaker's success, a
//     backoff's first-attempt success, a granted quota unit), where a
//     listener has nothing to hear: the two should be equal within noise;
//   - the same with another thread reading stats() all along (a scraper
//     that never stops): the readers only load, so the callers' cost should
//     not move beyond noise either;
//   - the opt-in per-call counters (count_calls) for comparison: one relaxed
//     increment of a shared line per call, the one thing that does cost.
//
// Read the `bm_*_listener` rows against the `bm_*_plain` rows and the
// `*_scraped` rows against both.
#include <armor/backoff.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>

#include <benchmark/benchmark.h>

#include "baselines.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>

using namespace std::chrono_literals;

namespace {

struct transitions {
  std::atomic<std::uint64_t> count{0};
  void operator()(const armor::circuit_breaker_event&) noexcept { count.fetch_add(1, std::memory_order_relaxed); }
};

struct retry_events {
  std::atomic<std::uint64_t> count{0};
  void operator()(const armor::backoff_event&) noexcept { count.fetch_add(1, std::memory_order_relaxed); }
};

struct quota_events {
  std::atomic<std::uint64_t> count{0};
  void operator()(const armor::quota_tracker_event&) noexcept { count.fetch_add(1, std::memory_order_relaxed); }
};

/// Reads `read()` in a loop on another thread while it lives.
class scraper {
 public:
  template <class Read>
  explicit scraper(Read read)
      : thread_([this, read] {
          while (!stop_.load(std::memory_order_relaxed)) benchmark::DoNotOptimize(read());
        }) {}
  scraper(const scraper&) = delete;
  scraper& operator=(const scraper&) = delete;
  ~scraper() {
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// ---------------------------------------------------------------- circuit breaker: admit + settle a success

template <class Breaker>
void run_breaker(benchmark::State& state, Breaker& b) {
  const armor::timestamp now = armor::to_timestamp(armor::steady_clock::now());
  const armor::verdict ok = armor::verdict::success();
  for (auto _ : state) {
    auto a = b.try_acquire(now);
    b.record(std::move(a).permit(), ok, now);
  }
}

const armor::circuit_breaker_options breaker_options{.failure_threshold = 5, .open_for = 30s};

void bm_breaker_plain(benchmark::State& state) {
  armor::circuit_breaker b{breaker_options};
  run_breaker(state, b);
}
BENCHMARK(bm_breaker_plain);

void bm_breaker_listener(benchmark::State& state) {
  transitions heard;
  armor::circuit_breaker b{breaker_options, armor::steady_clock{}, std::ref(heard)};
  run_breaker(state, b);
}
BENCHMARK(bm_breaker_listener);

void bm_breaker_listener_scraped(benchmark::State& state) {
  transitions heard;
  armor::circuit_breaker b{breaker_options, armor::steady_clock{}, std::ref(heard)};
  const scraper s([&] { return b.stats().failures; });
  run_breaker(state, b);
}
BENCHMARK(bm_breaker_listener_scraped);

void bm_breaker_count_calls(benchmark::State& state) {
  armor::circuit_breaker_options o = breaker_options;
  o.count_calls = true;
  armor::circuit_breaker b{o};
  run_breaker(state, b);
}
BENCHMARK(bm_breaker_count_calls);

// ---------------------------------------------------------------- backoff: execute() of a first-attempt success

const armor::backoff_options backoff_options{.max_attempts = 3, .budget = armor::retry_budget{}};

void bm_backoff_plain(benchmark::State& state) {
  armor_bench::run_execute(state, armor::pipeline{armor::backoff{backoff_options}});
}
BENCHMARK(bm_backoff_plain);

void bm_backoff_listener(benchmark::State& state) {
  retry_events heard;
  armor_bench::run_execute(state,
                           armor::pipeline{armor::backoff{backoff_options, armor::thread_rng{}, std::ref(heard)}});
}
BENCHMARK(bm_backoff_listener);

void bm_backoff_listener_scraped(benchmark::State& state) {
  retry_events heard;
  armor::backoff b{backoff_options, armor::thread_rng{}, std::ref(heard)};
  const scraper s([&] { return b.stats().retries; });
  armor_bench::run_execute(state, armor::pipeline{std::ref(b)});
}
BENCHMARK(bm_backoff_listener_scraped);

void bm_backoff_count_calls(benchmark::State& state) {
  armor::backoff_options o = backoff_options;
  o.count_calls = true;
  armor_bench::run_execute(state, armor::pipeline{armor::backoff{o}});
}
BENCHMARK(bm_backoff_count_calls);

// ---------------------------------------------------------------- quota tracker: a granted unit, given back

// A limit no run reaches: reserve one unit and cancel it, so the count
// stays put and every iteration takes the granted path.
template <class Tracker>
void run_quota(benchmark::State& state, Tracker& q) {
  for (auto _ : state) {
    auto d = q.reserve(1);
    benchmark::DoNotOptimize(d.permit().amount());
    d.permit().cancel();
  }
}

armor::quota_tracker_options quota_options() {
  return {.windows = {armor::quota_window::per_day(armor::quota_max_limit)}};
}

void bm_quota_plain(benchmark::State& state) {
  armor::quota_tracker q{quota_options()};
  run_quota(state, q);
}
BENCHMARK(bm_quota_plain);

void bm_quota_listener(benchmark::State& state) {
  quota_events heard;
  armor::quota_tracker q{quota_options(), armor::system_clock{}, armor::memory_quota_storage{}, std::ref(heard)};
  run_quota(state, q);
}
BENCHMARK(bm_quota_listener);

void bm_quota_listener_scraped(benchmark::State& state) {
  quota_events heard;
  armor::quota_tracker q{quota_options(), armor::system_clock{}, armor::memory_quota_storage{}, std::ref(heard)};
  const scraper s([&] { return q.stats().exhausted; });
  run_quota(state, q);
}
BENCHMARK(bm_quota_listener_scraped);

}  // namespace
