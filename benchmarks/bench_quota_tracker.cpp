// The cost of armor::quota_tracker, with its baselines in the same run:
//
//   - the wall-clock read the tracker takes per call, and a plain CAS;
//   - try_consume with the memory backend for one fixed window, three
//     (minute, hour, day), a month and a rolling window of 60 buckets, on
//     one thread and two sharing the tracker;
//   - a mutex-based tracker with the same window arithmetic, the obvious way
//     to write one, for the same cases;
//   - three windows past their first alert threshold (85 % used);
//   - reserve + commit, and a call through a pipeline;
//   - with ARMOR_BENCH_SQLITE (the build defines it when armor::sqlite is
//     enabled), the sqlite backend in durable and batched modes.
//
// Limits are set so high that nothing is refused during a run.
#include <armor/deadline.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/storage/any.hpp>
#ifdef ARMOR_BENCH_SQLITE
#include <armor/storage/sqlite.hpp>
#endif

#include <benchmark/benchmark.h>

#include "baselines.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using armor::quota_window;

namespace {

using armor_bench::work;

constexpr std::int64_t huge = armor::quota_max_limit;
// The largest limit with which three windows share one packed word in the
// memory backend (2^30 - 1, about a billion; memory.hpp, "Packed counters").
constexpr std::int64_t packable = (std::int64_t{1} << 30) - 1;

std::vector<quota_window> one_day() { return {quota_window::per_day(huge)}; }
std::vector<quota_window> three() {
  return {quota_window::per_minute(packable), quota_window::per_hour(packable), quota_window::per_day(packable)};
}
std::vector<quota_window> one_month() { return {quota_window::per_month(huge)}; }
std::vector<quota_window> one_rolling() { return {quota_window::rolling(huge, 1h, 60)}; }

// ---------------------------------------------------------------- baselines

void bm_system_clock_read(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(armor::system_clock::now());
}
BENCHMARK(bm_system_clock_read);

void bm_relaxed_cas(benchmark::State& state) {
  static std::atomic<std::uint64_t> word{0};
  for (auto _ : state) {
    std::uint64_t cur = word.load(std::memory_order_relaxed);
    while (!word.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed)) {
    }
  }
}
BENCHMARK(bm_relaxed_cas)->Threads(1)->Threads(2);

/// The obvious tracker: a mutex around (period, used) per window, with the
/// same calendar arithmetic (fixed windows only), reading system_clock.
class mutex_tracker {
 public:
  explicit mutex_tracker(const std::vector<quota_window>& windows) {
    for (const quota_window& w : windows) {
      windows_[n_] = {w.limit, w.length.count(), std::numeric_limits<std::int64_t>::min(), 0};
      ++n_;
    }
  }
  bool try_consume(std::int64_t cost) {
    const std::int64_t t = armor::system_clock::now().time_since_epoch().count();
    const std::lock_guard<std::mutex> lock(m_);
    std::array<std::int64_t, armor::quota_max_windows> period{};
    for (std::size_t i = 0; i < n_; ++i) {
      window& w = windows_[i];
      period[i] = armor::detail::floor_div(t, w.length);
      const std::int64_t used = period[i] == w.period ? w.used : 0;
      if (used + cost > w.limit) return false;
    }
    for (std::size_t i = 0; i < n_; ++i) {
      window& w = windows_[i];
      if (period[i] != w.period) {
        w.period = period[i];
        w.used = 0;
      }
      w.used += cost;
    }
    return true;
  }

 private:
  struct window {
    std::int64_t limit, length, period, used;
  };
  std::mutex m_;
  std::array<window, armor::quota_max_windows> windows_{};
  std::size_t n_ = 0;
};

// ---------------------------------------------------------------- memory backend

template <std::vector<quota_window> (*Windows)()>
void bm_memory(benchmark::State& state) {
  static armor::quota_tracker t{{.windows = Windows()}};
  for (auto _ : state) benchmark::DoNotOptimize(t.try_consume(1));
}
BENCHMARK(bm_memory<one_day>)->Name("bm_memory/one_day")->Threads(1)->Threads(2)->Threads(4);
BENCHMARK(bm_memory<three>)->Name("bm_memory/minute_hour_day")->Threads(1)->Threads(2)->Threads(4);
BENCHMARK(bm_memory<one_month>)->Name("bm_memory/month")->Threads(1)->Threads(2);
BENCHMARK(bm_memory<one_rolling>)->Name("bm_memory/rolling_60_buckets")->Threads(1)->Threads(2);

template <std::vector<quota_window> (*Windows)()>
void bm_mutex(benchmark::State& state) {
  static mutex_tracker t{Windows()};
  for (auto _ : state) benchmark::DoNotOptimize(t.try_consume(1));
}
BENCHMARK(bm_mutex<one_day>)->Name("bm_mutex/one_day")->Threads(1)->Threads(2)->Threads(4);
BENCHMARK(bm_mutex<three>)->Name("bm_mutex/minute_hour_day")->Threads(1)->Threads(2)->Threads(4);

void bm_memory_manual_clock(benchmark::State& state) {
  static armor::quota_tracker t{{.windows = three()}, armor::manual_clock{1'700'000'000s}};
  for (auto _ : state) benchmark::DoNotOptimize(t.try_consume(1));
}
BENCHMARK(bm_memory_manual_clock)->Threads(1)->Threads(2);

// The same three windows with a forecast alert (docs/quota_tracker.md,
// "Forecasts"), against bm_memory_manual_clock, at 22:13:50 UTC (past the
// first tenth of its minute, hour and day), without thresholds of use
// (past 80 % they have costs of their own):
//   - below the gate (under forecast_alert x forecast_after of each limit):
//     one compare per window;
//   - projecting: 20 % used, past the gate, no window projecting its limit
//     (the minute 24 %, the hour 87 %, the day 22 %): the forecast word and
//     a projection per window, per call;
//   - fired: 95 % used, every window's forecast fired this period: the
//     forecast word per window, per call.
template <int Percent>
void bm_forecast(benchmark::State& state) {
  static armor::quota_tracker<armor::manual_clock> t{{.windows = three(), .alerts = {}, .forecast_alert = 1.0},
                                                     armor::manual_clock{1'700'000'030s}};
  static const bool ready = [] {
    (void)t.charge(packable / 100 * Percent);
    return t.stats().forecast_alerts == (Percent >= 95 ? 3U : 0U);
  }();
  if (!ready) std::abort();
  for (auto _ : state) benchmark::DoNotOptimize(t.try_consume(1));
}
BENCHMARK(bm_forecast<0>)->Name("bm_forecast/below_gate")->Threads(1)->Threads(2);
BENCHMARK(bm_forecast<20>)->Name("bm_forecast/projecting")->Threads(1)->Threads(2);
BENCHMARK(bm_forecast<95>)->Name("bm_forecast/fired")->Threads(1)->Threads(2);

// The same three windows, with the default thresholds (80, 90, 100 %), past
// the first one in every window (85 % used): each call compares its use
// with the thresholds' units, against bm_memory_manual_clock (below them).
void bm_past_alert(benchmark::State& state) {
  static armor::quota_tracker<armor::manual_clock> t{{.windows = three()}, armor::manual_clock{1'700'000'000s}};
  static const bool ready = [] {
    (void)t.charge(packable / 100 * 85);
    return t.stats().alerts == 3U;
  }();
  if (!ready) std::abort();
  for (auto _ : state) benchmark::DoNotOptimize(t.try_consume(1));
}
BENCHMARK(bm_past_alert)->Name("bm_memory_manual_clock/past_80_percent")->Threads(1)->Threads(2);

void bm_reserve_commit(benchmark::State& state) {
  static armor::quota_tracker t{{.windows = three()}};
  for (auto _ : state) {
    auto d = t.reserve(100);
    benchmark::DoNotOptimize(d.permit().commit(40));
  }
}
BENCHMARK(bm_reserve_commit);

void bm_pipeline_quota(benchmark::State& state) {
  const auto p = armor::pipeline{armor::quota_tracker{{.windows = three()}}};
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&] { return work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_pipeline_quota);

// ------------------------------------------- the memory backend behind any_quota_storage

// The same three windows on manual_clock as bm_memory_manual_clock, through
// the virtual call: the difference is the indirection alone.
void bm_any_memory_manual_clock(benchmark::State& state) {
  static armor::quota_tracker<armor::manual_clock, armor::any_quota_storage> t{
      {.windows = three()}, armor::manual_clock{1'700'000'000s}, armor::make_quota_storage("memory:")};
  for (auto _ : state) benchmark::DoNotOptimize(t.try_consume(1));
}
BENCHMARK(bm_any_memory_manual_clock)->Threads(1)->Threads(2);

// In a pipeline with a deadline: any_quota_storage takes deadlines (for
// Redis), so the tracker reads steady_clock for it even on memory.
void bm_pipeline_deadline_quota(benchmark::State& state) {
  const auto p = armor::pipeline{armor::deadline{std::chrono::seconds{2}}, armor::quota_tracker{{.windows = three()}}};
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&] { return work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_pipeline_deadline_quota);

void bm_pipeline_deadline_quota_any(benchmark::State& state) {
  const auto p = armor::pipeline{
      armor::deadline{std::chrono::seconds{2}},
      armor::quota_tracker<armor::system_clock, armor::any_quota_storage>{{.windows = three()}}};
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&] { return work(x); });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_pipeline_deadline_quota_any);

// ---------------------------------------------------------------- sqlite backend

#ifdef ARMOR_BENCH_SQLITE

std::string bench_db(const char* name) {
  const std::string path = std::string("/tmp/armor_bench_") + name + ".db";
  std::remove(path.c_str());
  std::remove((path + "-wal").c_str());
  std::remove((path + "-shm").c_str());
  return path;
}

void run_sqlite(benchmark::State& state, armor::sqlite_mode mode, const char* name) {
  armor::quota_tracker t{{.windows = three()}, armor::system_clock{},
                         armor::sqlite_quota_storage{{.path = bench_db(name), .tracker = "bench",
                                                      .mode = mode, .create_if_missing = true}}};
  for (auto _ : state) benchmark::DoNotOptimize(t.try_consume(1));
}

void bm_sqlite_durable(benchmark::State& state) { run_sqlite(state, armor::sqlite_mode::durable, "durable"); }
BENCHMARK(bm_sqlite_durable)->Unit(benchmark::kMicrosecond);

void bm_sqlite_batched(benchmark::State& state) { run_sqlite(state, armor::sqlite_mode::batched, "batched"); }
BENCHMARK(bm_sqlite_batched)->Unit(benchmark::kMicrosecond);

#endif

}  // namespace
