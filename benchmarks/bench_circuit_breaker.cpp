// The cost of armor::circuit_breaker, with its baselines in the same run:
//
//   - the raw steady_clock read and an uncontended / contended mutex;
//   - `mutex_breaker` below: the same breaker (consecutive failures, open
//     time, half-open probe limit, generations, counters) written the
//     obvious way, every call under one std::mutex;
//   - closed state, admit + settle of a success: with the time given (as the
//     pipeline gives it) and with a steady_clock read per call;
//   - open state, a rejection: with the time given and with a clock read;
//   - each on 1 and 2 threads sharing one breaker;
//   - armor variants: a count window (failure-rate rule), count_calls, and
//     whole pipelines (the driver around the breaker).
//
// Run: armor_bench_circuit_breaker --benchmark_min_time=0.2
#include <armor/circuit_breaker.hpp>
#include <armor/pipeline.hpp>

#include <benchmark/benchmark.h>

#include "baselines.hpp"

#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>

using namespace std::chrono_literals;

namespace {

using armor_bench::run_execute;
using armor_bench::work;

// A service is multi-threaded. A process that has never started a thread
// gets glibc's single-threaded shortcuts (a std::mutex without atomic
// instructions: 8 ns instead of 27 ns for the baseline below), which would
// make the one-thread rows depend on whether a two-thread row ran first. So
// one thread is started and joined before any benchmark runs.
const bool process_is_multi_threaded = [] {
  std::thread([] {}).join();
  return true;
}();

// ---------------------------------------------------------------- the baseline

/// A mutex-based breaker with the same rules as armor's default one: opens
/// after `threshold` consecutive failures, stays open `open_ns`, admits
/// `max_probes` probes at a time while half-open, closes after one
/// successful probe, ignores outcomes of earlier generations, counts
/// successes, failures and rejections.
class mutex_breaker {
 public:
  enum class phase { closed, open, half_open };
  struct permit {
    std::uint64_t gen = 0;
    bool admitted = false;
    bool probe = false;
  };

  explicit mutex_breaker(int threshold = 5, std::int64_t open_ns = 30'000'000'000, int max_probes = 1)
      : threshold_(threshold), open_ns_(open_ns), max_probes_(max_probes) {}

  permit try_acquire(std::int64_t now) {
    std::lock_guard<std::mutex> lock(m_);
    switch (phase_) {
      case phase::closed:
        return {gen_, true, false};
      case phase::open:
        if (now < until_) {
          ++rejections_;
          return {};
        }
        phase_ = phase::half_open;
        ++gen_;
        probes_ = 1;
        return {gen_, true, true};
      case phase::half_open:
        if (probes_ < max_probes_) {
          ++probes_;
          return {gen_, true, true};
        }
        ++rejections_;
        return {};
    }
    return {};
  }

  void record(const permit& p, bool failed, std::int64_t now) {
    std::lock_guard<std::mutex> lock(m_);
    if (!p.admitted || p.gen != gen_) return;
    if (failed) {
      ++failures_;
      if (phase_ == phase::half_open || ++consecutive_ >= threshold_) trip(now);
    } else {
      ++successes_;
      consecutive_ = 0;
      if (phase_ == phase::half_open) {
        phase_ = phase::closed;
        ++gen_;
      }
    }
  }

 private:
  void trip(std::int64_t now) {
    phase_ = phase::open;
    ++gen_;
    until_ = now + open_ns_;
    consecutive_ = 0;
  }

  std::mutex m_;
  phase phase_ = phase::closed;
  std::uint64_t gen_ = 0;
  int consecutive_ = 0;
  int probes_ = 0;
  std::int64_t until_ = 0;
  std::uint64_t successes_ = 0;
  std::uint64_t failures_ = 0;
  std::uint64_t rejections_ = 0;
  const int threshold_;
  const std::int64_t open_ns_;
  const int max_probes_;
};

std::int64_t steady_ns() { return armor::to_timestamp(armor::steady_clock::now()).time_since_epoch().count(); }

const armor::verdict success = armor::verdict::success();

// Trips a breaker now (steady_clock), so that it stays open for its open_for
// both for readings of steady_clock and for the earlier times given below.
// The breakers are shared by the threads of a benchmark (function-local
// statics are built once).
template <class B>
B& opened(B& b) {
  const armor::timestamp now = armor::to_timestamp(armor::steady_clock::now());
  for (int i = 0; i < 10; ++i) {
    auto a = b.try_acquire(now);
    if (a) b.record(std::move(a).permit(), armor::verdict::failure(), now);
  }
  return b;
}

armor::circuit_breaker<>& closed_armor() {
  static armor::circuit_breaker<> b{{.failure_threshold = 5}};
  return b;
}
armor::circuit_breaker<>& closed_armor_count_calls() {
  static armor::circuit_breaker<> b{{.failure_threshold = 5, .count_calls = true}};
  return b;
}
armor::circuit_breaker<>& closed_armor_window() {
  static armor::circuit_breaker<> b{{.failure_threshold = 5, .failure_rate = 0.5, .window_size = 100}};
  return b;
}
armor::circuit_breaker<>& closed_armor_time_window() {
  static armor::circuit_breaker<> b{
      {.failure_threshold = 5, .failure_rate = 0.5, .window = armor::breaker_window::time, .window_duration = 60s}};
  return b;
}
armor::circuit_breaker<>& open_armor() {
  static armor::circuit_breaker<> b{{.failure_threshold = 5, .open_for = 1h, .max_open_for = 1h}};
  static armor::circuit_breaker<>& o = opened(b);
  return o;
}
armor::circuit_breaker<>& open_armor_count_calls() {
  static armor::circuit_breaker<> b{{.failure_threshold = 5, .open_for = 1h, .max_open_for = 1h, .count_calls = true}};
  static armor::circuit_breaker<>& o = opened(b);
  return o;
}
mutex_breaker& closed_mutex() {
  static mutex_breaker b;
  return b;
}
mutex_breaker& open_mutex() {
  static mutex_breaker b{5, 3'600'000'000'000};  // open for an hour
  static const bool done = [] {
    const std::int64_t now = steady_ns();
    for (int i = 0; i < 10; ++i) {
      auto p = b.try_acquire(now);
      if (p.admitted) b.record(p, true, now);
    }
    return true;
  }();
  (void)done;
  return b;
}

// ---------------------------------------------------------------- baselines

void bm_steady_clock_now(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(armor::steady_clock::now());
}
BENCHMARK(bm_steady_clock_now);

void bm_mutex_lock_unlock(benchmark::State& state) {
  static std::mutex m;
  for (auto _ : state) {
    m.lock();
    benchmark::ClobberMemory();
    m.unlock();
  }
}
BENCHMARK(bm_mutex_lock_unlock)->Threads(1)->Threads(2);

// ---------------------------------------------------------------- closed: admit + settle a success

// The time given moves on by 1 us a call, as real time would (a time
// window's bucket then sees a realistic number of calls).
template <class B>
void closed_given(benchmark::State& state, B& b) {
  armor::timestamp now{1s};
  for (auto _ : state) {
    auto a = b.try_acquire(now);
    bool granted = static_cast<bool>(a);
    benchmark::DoNotOptimize(granted);
    b.record(std::move(a).permit(), success, now);
    now += 1us;
  }
}

template <class B>
void closed_clock(benchmark::State& state, B& b) {
  for (auto _ : state) {
    const armor::timestamp now = armor::to_timestamp(armor::steady_clock::now());
    auto a = b.try_acquire(now);
    bool granted = static_cast<bool>(a);
    benchmark::DoNotOptimize(granted);
    b.record(std::move(a).permit(), success, now);
  }
}

void bm_closed_given_armor(benchmark::State& s) { closed_given(s, closed_armor()); }
void bm_closed_given_armor_count_calls(benchmark::State& s) { closed_given(s, closed_armor_count_calls()); }
void bm_closed_given_armor_count_window(benchmark::State& s) { closed_given(s, closed_armor_window()); }
void bm_closed_given_armor_time_window(benchmark::State& s) { closed_given(s, closed_armor_time_window()); }
void bm_closed_given_mutex(benchmark::State& state) {
  auto& b = closed_mutex();
  std::int64_t now = 1'000'000'000;
  for (auto _ : state) {
    auto p = b.try_acquire(now);
    benchmark::DoNotOptimize(p);
    b.record(p, false, now);
    now += 1000;
  }
}
BENCHMARK(bm_closed_given_armor)->Threads(1)->Threads(2);
BENCHMARK(bm_closed_given_mutex)->Threads(1)->Threads(2);
BENCHMARK(bm_closed_given_armor_count_calls)->Threads(1)->Threads(2);
BENCHMARK(bm_closed_given_armor_count_window)->Threads(1)->Threads(2);
BENCHMARK(bm_closed_given_armor_time_window)->Threads(1)->Threads(2);

void bm_closed_clock_armor(benchmark::State& s) { closed_clock(s, closed_armor()); }
void bm_closed_clock_mutex(benchmark::State& state) {
  auto& b = closed_mutex();
  for (auto _ : state) {
    const std::int64_t now = steady_ns();
    auto p = b.try_acquire(now);
    benchmark::DoNotOptimize(p);
    b.record(p, false, now);
  }
}
BENCHMARK(bm_closed_clock_armor)->Threads(1)->Threads(2);
BENCHMARK(bm_closed_clock_mutex)->Threads(1)->Threads(2);

// ---------------------------------------------------------------- open: a rejection

void bm_rejected_given_armor(benchmark::State& state) {
  auto& b = open_armor();
  const armor::timestamp now{1s};
  for (auto _ : state) {
    auto a = b.try_acquire(now);
    auto retry_after = a.retry_after();
    benchmark::DoNotOptimize(retry_after);
  }
  if (b.state() != armor::breaker_state::open) state.SkipWithError("the breaker is not open");
}
void bm_rejected_given_armor_count_calls(benchmark::State& state) {
  auto& b = open_armor_count_calls();
  const armor::timestamp now{1s};
  for (auto _ : state) {
    auto a = b.try_acquire(now);
    auto retry_after = a.retry_after();
    benchmark::DoNotOptimize(retry_after);
  }
}
void bm_rejected_given_mutex(benchmark::State& state) {
  auto& b = open_mutex();
  for (auto _ : state) benchmark::DoNotOptimize(b.try_acquire(1'000'000'000));
}
BENCHMARK(bm_rejected_given_armor)->Threads(1)->Threads(2);
BENCHMARK(bm_rejected_given_mutex)->Threads(1)->Threads(2);
BENCHMARK(bm_rejected_given_armor_count_calls)->Threads(1)->Threads(2);

void bm_rejected_clock_armor(benchmark::State& state) {
  auto& b = open_armor();
  for (auto _ : state) {
    auto a = b.try_acquire(armor::to_timestamp(armor::steady_clock::now()));
    auto retry_after = a.retry_after();
    benchmark::DoNotOptimize(retry_after);
  }
  if (b.state() != armor::breaker_state::open) state.SkipWithError("the breaker is not open");
}
void bm_rejected_clock_mutex(benchmark::State& state) {
  auto& b = open_mutex();
  for (auto _ : state) benchmark::DoNotOptimize(b.try_acquire(steady_ns()));
}
BENCHMARK(bm_rejected_clock_armor)->Threads(1)->Threads(2);
BENCHMARK(bm_rejected_clock_mutex)->Threads(1)->Threads(2);

// ---------------------------------------------------------------- whole pipelines

void bm_pipeline_empty_manual_clock(benchmark::State& s) { run_execute(s, armor::pipeline{armor::manual_clock{}}); }
void bm_pipeline_breaker_manual_clock(benchmark::State& s) {
  armor::manual_clock clock;
  run_execute(s, armor::pipeline{clock, armor::circuit_breaker{{}, clock}});
}
void bm_pipeline_empty(benchmark::State& s) { run_execute(s, armor::pipeline{}); }
void bm_pipeline_breaker(benchmark::State& s) { run_execute(s, armor::pipeline{armor::circuit_breaker{}}); }
BENCHMARK(bm_pipeline_empty_manual_clock);
BENCHMARK(bm_pipeline_breaker_manual_clock);
BENCHMARK(bm_pipeline_empty);
BENCHMARK(bm_pipeline_breaker);

void bm_pipeline_rejected(benchmark::State& state) {
  static armor::circuit_breaker<> b{{.failure_threshold = 1, .open_for = 1h, .max_open_for = 1h}};
  static const auto p = armor::pipeline{std::ref(opened(b))};
  for (auto _ : state) {
    auto r = p.try_execute([] { return 1; });
    benchmark::DoNotOptimize(r);
  }
  if (b.state() != armor::breaker_state::open) state.SkipWithError("the breaker is not open");
}
BENCHMARK(bm_pipeline_rejected)->Threads(1)->Threads(2);

void bm_pipeline_rejected_manual_clock(benchmark::State& state) {
  static armor::manual_clock clock;
  static armor::circuit_breaker b{{.failure_threshold = 1, .open_for = 1h, .max_open_for = 1h}, clock};
  static const auto p = armor::pipeline{clock, std::ref(opened(b))};
  for (auto _ : state) {
    auto r = p.try_execute([] { return 1; });
    benchmark::DoNotOptimize(r);
  }
  if (b.state() != armor::breaker_state::open) state.SkipWithError("the breaker is not open");
}
BENCHMARK(bm_pipeline_rejected_manual_clock)->Threads(1)->Threads(2);

}  // namespace
