// The adaptive throttle's admit + settle against a mutex-based equivalent,
// in one run, on 1 and 2 threads sharing one throttle:
//
//   armor    try_acquire(now) + record(verdict): read the window's 20
//            bucket words, one CAS to count the request, one more for the
//            accept (lock-free, relaxed);
//   mutex    the same rule over running totals under a std::mutex: roll the
//            buckets the time has left behind, decide, count; lock again to
//            add the accept (O(1) per call, no scan);
//
// each with the time given (as a pipeline's driver hands it over: a
// per-thread time that moves 20 us a call, so the window slides through its
// buckets), with a steady_clock read per call, and through a pipeline; and
// on the refusing path (an upstream that fails everything: the probability
// sits at its 0.9 cap, a random draw per call). bm_clock_read is the raw
// clock read. Run with --benchmark_min_time=0.2 on shared machines and read
// the numbers as ratios.
#include <armor/adaptive_throttle.hpp>
#include <armor/pipeline.hpp>

#include "baselines.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>

namespace {

using namespace std::chrono_literals;

constexpr std::int64_t step_ns = 20'000;  // per call: 300 000 calls per 6 s bucket and thread

armor::timestamp start_time() { return armor::to_timestamp(armor::steady_clock::now()); }

// The time a benchmark hands over moves 20 us a call, faster than real time,
// so each benchmark keeps its own: a run starts where the previous one (on
// any thread) ended. Starting again from the real time would put a run's
// calls whole windows behind the buckets the previous run wrote, and measure
// the late writer's path instead of the normal one.
class simulated_time {
 public:
  std::int64_t begin() {
    return std::max(end_.load(std::memory_order_relaxed), start_time().time_since_epoch().count());
  }
  void end(std::int64_t t) {
    std::int64_t cur = end_.load(std::memory_order_relaxed);
    while (cur < t && !end_.compare_exchange_weak(cur, t, std::memory_order_relaxed)) {
    }
  }

 private:
  std::atomic<std::int64_t> end_{0};
};

// --- armor -----------------------------------------------------------------

armor::adaptive_throttle<>& healthy_throttle() {
  static armor::adaptive_throttle<> t{};
  return t;
}

// An upstream that has failed everything: the probability is at its cap
// from the first measured call.
armor::adaptive_throttle<>& failing_throttle() {
  static armor::adaptive_throttle<> t = [] {
    armor::adaptive_throttle<> f{};
    const armor::timestamp now = start_time();
    for (int i = 0; i < 100; ++i) {
      if (auto d = f.try_acquire(now)) f.record(std::move(d).permit(), armor::verdict::failure());
    }
    return f;
  }();
  return t;
}

void bm_throttle_armor_given(benchmark::State& state) {
  static simulated_time sim;
  armor::adaptive_throttle<>& t = healthy_throttle();
  armor::timestamp now{std::chrono::nanoseconds{sim.begin()}};
  long refused = 0;
  for (auto _ : state) {
    now += std::chrono::nanoseconds{step_ns};
    auto d = t.try_acquire(now);
    if (!d) ++refused;
    t.record(std::move(d).permit(), armor::verdict::success());
  }
  sim.end(now.time_since_epoch().count());
  if (refused != 0) state.SkipWithError("the throttle refused a call to a healthy upstream");
}
BENCHMARK(bm_throttle_armor_given)->Threads(1)->Threads(2);

void bm_throttle_armor_clock(benchmark::State& state) {
  armor::adaptive_throttle<>& t = healthy_throttle();
  for (auto _ : state) {
    auto d = t.try_acquire();
    t.record(std::move(d).permit(), armor::verdict::success());
  }
}
BENCHMARK(bm_throttle_armor_clock)->Threads(1)->Threads(2);

void bm_throttle_pipeline(benchmark::State& state) {
  static const auto p = armor::pipeline{std::ref(healthy_throttle())};
  armor_bench::run_execute(state, p);
}
BENCHMARK(bm_throttle_pipeline)->Threads(1)->Threads(2);

void bm_throttle_armor_refusing(benchmark::State& state) {
  static simulated_time sim;
  armor::adaptive_throttle<>& t = failing_throttle();
  armor::timestamp now{std::chrono::nanoseconds{sim.begin()}};
  long refused = 0;
  for (auto _ : state) {
    now += std::chrono::nanoseconds{step_ns};
    auto d = t.try_acquire(now);
    if (!d) ++refused;
    t.record(std::move(d).permit(), armor::verdict::failure());
  }
  sim.end(now.time_since_epoch().count());
  if (refused == 0 && state.iterations() > 100) state.SkipWithError("the throttle never refused");
}
BENCHMARK(bm_throttle_armor_refusing)->Threads(1)->Threads(2);

// --- the mutex-based equivalent --------------------------------------------

class mutex_throttle {
 public:
  static constexpr std::int64_t buckets = 20;
  static constexpr std::int64_t width = 6'000'000'000;  // 2 min / 20

  /// The bucket the request was counted in, or -1 when refused.
  std::int64_t admit(std::int64_t t) {
    const std::lock_guard lock(m_);
    const std::int64_t n = t / width;
    roll(n);
    const double p = probability();
    bucket& b = ring_[static_cast<std::size_t>(n % buckets)];
    ++b.requests;
    ++requests_;
    if (p > 0 && armor::detail::unit_interval(armor::thread_rng{}()) < p) return -1;
    return n;
  }

  void settle(std::int64_t n, bool accepted) {
    if (n < 0 || !accepted) return;
    const std::lock_guard lock(m_);
    bucket& b = ring_[static_cast<std::size_t>(n % buckets)];
    if (b.number != n) return;
    ++b.accepts;
    ++accepts_;
  }

 private:
  struct bucket {
    std::int64_t number = -1;
    std::int64_t requests = 0;
    std::int64_t accepts = 0;
  };

  // Starts afresh every bucket between the newest seen and n (at most all).
  void roll(std::int64_t n) {
    if (n <= newest_) return;
    for (std::int64_t m = std::max(newest_ + 1, n - buckets + 1); m <= n; ++m) {
      bucket& b = ring_[static_cast<std::size_t>(m % buckets)];
      requests_ -= b.requests;
      accepts_ -= b.accepts;
      b = {m, 0, 0};
    }
    newest_ = n;
  }

  [[nodiscard]] double probability() const {
    if (requests_ < 10) return 0;
    const double r = static_cast<double>(requests_);
    const double p = (r - 2.0 * static_cast<double>(accepts_)) / (r + 1.0);
    return p > 0 ? std::min(p, 0.9) : 0.0;
  }

  std::mutex m_;
  std::array<bucket, buckets> ring_{};
  std::int64_t newest_ = -1;
  std::int64_t requests_ = 0;
  std::int64_t accepts_ = 0;
};

void bm_throttle_mutex_given(benchmark::State& state) {
  static mutex_throttle t;
  static simulated_time sim;
  std::int64_t now = sim.begin();
  for (auto _ : state) {
    now += step_ns;
    t.settle(t.admit(now), true);
  }
  sim.end(now);
}
BENCHMARK(bm_throttle_mutex_given)->Threads(1)->Threads(2);

void bm_throttle_mutex_clock(benchmark::State& state) {
  static mutex_throttle t;
  for (auto _ : state) {
    const std::int64_t now = start_time().time_since_epoch().count();
    t.settle(t.admit(now), true);
  }
}
BENCHMARK(bm_throttle_mutex_clock)->Threads(1)->Threads(2);

void bm_throttle_mutex_refusing(benchmark::State& state) {
  static mutex_throttle t;
  static simulated_time sim;
  std::int64_t now = sim.begin();
  static const bool filled = [&] {
    for (int i = 0; i < 100; ++i) t.settle(t.admit(now), false);
    return true;
  }();
  benchmark::DoNotOptimize(filled);
  long refused = 0;
  for (auto _ : state) {
    now += step_ns;
    const std::int64_t n = t.admit(now);
    if (n < 0) ++refused;
    t.settle(n, false);
  }
  sim.end(now);
  if (refused == 0 && state.iterations() > 100) state.SkipWithError("the throttle never refused");
}
BENCHMARK(bm_throttle_mutex_refusing)->Threads(1)->Threads(2);

}  // namespace
