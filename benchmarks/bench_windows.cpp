// The window limiters against the token bucket and a mutex-based fixed
// window, in one run, on 1 and 2 threads sharing one limiter:
//
//   bucket       token_bucket::try_acquire (the reference: the windows aim
//                at no more than 1.2x its cost);
//   fixed        fixed_window::try_acquire;
//   approx       sliding_window, the two-counter approximation;
//   exact        sliding_window, exact over 10 segments (reads 10 words);
//   mutex        the usual hand-written fixed window: a std::mutex around
//                {window index, count}.
//
// Each granted and denied (drained), with the time given (as a pipeline
// gives it) and with its own clock read, and through a pipeline (denied:
// try_execute). Ratios are recorded in docs/performance.md.
// Run with --benchmark_min_time=0.2 on shared machines.
#include "multithreaded.hpp"

#include <armor/fixed_window.hpp>
#include <armor/pipeline.hpp>
#include <armor/sliding_window.hpp>
#include <armor/token_bucket.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>

using namespace std::chrono_literals;

namespace {

std::int64_t steady_ns() { return std::chrono::steady_clock::now().time_since_epoch().count(); }

// Simulated time for the "time given" runs: 1 us per call, never behind
// where an earlier run left the limiters.
std::atomic<std::int64_t> simulated_end{0};
std::int64_t simulated_start() { return std::max(steady_ns(), simulated_end.load()); }
void simulated_stop(std::int64_t t) {
  std::int64_t cur = simulated_end.load();
  while (cur < t && !simulated_end.compare_exchange_weak(cur, t)) {
  }
}

// Grants every call: 2^28 per second is more than any thread here asks.
constexpr std::int64_t huge = std::int64_t{1} << 28;

/// A fixed window as one writes it by hand: a mutex around {index, count}.
class mutex_fixed_window {
 public:
  mutex_fixed_window(std::int64_t limit, std::int64_t window) : limit_(limit), window_(window) {}
  bool try_acquire(std::int64_t n, std::int64_t t) {
    const std::int64_t index = t / window_;
    std::lock_guard<std::mutex> lock(m_);
    if (index != index_) {
      index_ = index;
      count_ = 0;
    }
    if (count_ + n > limit_) return false;
    count_ += n;
    return true;
  }
  bool try_acquire(std::int64_t n) { return try_acquire(n, steady_ns()); }

 private:
  std::mutex m_;
  std::int64_t limit_;
  std::int64_t window_;
  std::int64_t index_ = -1;
  std::int64_t count_ = 0;
};

armor::token_bucket<>& bucket_always() {
  static armor::token_bucket b{{.rate = {1, 1ns}, .burst = 10'000'000'000'000'000}};
  return b;
}
armor::fixed_window<>& fixed_always() {
  static armor::fixed_window w{{.limit = huge, .window = 1s}};
  return w;
}
armor::sliding_window<>& approx_always() {
  static armor::sliding_window w{
      {.limit = huge, .window = 1s, .algorithm = armor::sliding_window_algorithm::approximate}};
  return w;
}
armor::sliding_window<>& exact_always() {
  static armor::sliding_window w{{.limit = huge, .window = 1s, .segments = 10}};
  return w;
}
mutex_fixed_window& mutex_always() {
  static mutex_fixed_window w{huge, 1'000'000'000};
  return w;
}

template <class L>
L& drained(L& l) {
  (void)l.try_acquire(1);
  return l;
}
armor::token_bucket<>& bucket_never() {
  static armor::token_bucket b{{.rate = {1, 1h}, .burst = 1}};
  return drained(b);
}
armor::fixed_window<>& fixed_never() {
  static armor::fixed_window w{{.limit = 1, .window = 24h}};
  return drained(w);
}
armor::sliding_window<>& approx_never() {
  static armor::sliding_window w{
      {.limit = 1, .window = 24h, .algorithm = armor::sliding_window_algorithm::approximate}};
  return drained(w);
}
armor::sliding_window<>& exact_never() {
  static armor::sliding_window w{{.limit = 1, .window = 24h, .segments = 10}};
  return drained(w);
}
mutex_fixed_window& mutex_never() {
  static mutex_fixed_window w{1, 86'400'000'000'000};
  (void)w.try_acquire(1);
  return w;
}

template <class Get>
void granted_time_given(benchmark::State& state, Get get) {
  auto& l = get();
  std::int64_t t = simulated_start();
  long denied = 0;
  for (auto _ : state) denied += l.try_acquire(1, armor::timestamp{std::chrono::nanoseconds{t += 1000}}) ? 0 : 1;
  simulated_stop(t);
  if (denied != 0) state.SkipWithError("a grant was denied");
}
template <class Get>
void granted_clock_read(benchmark::State& state, Get get) {
  auto& l = get();
  long denied = 0;
  for (auto _ : state) denied += l.try_acquire(1) ? 0 : 1;
  if (denied != 0) state.SkipWithError("a grant was denied");
}
template <class Get>
void denied_time_given(benchmark::State& state, Get get) {
  auto& l = get();
  const armor::timestamp t{std::chrono::nanoseconds{steady_ns()}};
  long granted = 0;
  for (auto _ : state) granted += l.try_acquire(1, t) ? 1 : 0;
  if (granted != 0) state.SkipWithError("a denial was granted");
}

void bm_mutex_granted_time_given(benchmark::State& state) {
  auto& l = mutex_always();
  std::int64_t t = simulated_start();
  long denied = 0;
  for (auto _ : state) denied += l.try_acquire(1, t += 1000) ? 0 : 1;
  simulated_stop(t);
  if (denied != 0) state.SkipWithError("a grant was denied");
}
void bm_mutex_denied_time_given(benchmark::State& state) {
  auto& l = mutex_never();
  const std::int64_t t = steady_ns();
  long granted = 0;
  for (auto _ : state) granted += l.try_acquire(1, t) ? 1 : 0;
  if (granted != 0) state.SkipWithError("a denial was granted");
}

template <class Get>
void denied_clock_read(benchmark::State& state, Get get) {
  auto& l = get();
  long granted = 0;
  for (auto _ : state) granted += l.try_acquire(1) ? 1 : 0;
  if (granted != 0) state.SkipWithError("a denial was granted");
}

template <class Get>
void pipeline_granted(benchmark::State& state, Get get) {
  const auto p = armor::pipeline{std::ref(get())};
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&] { return x + 1; });
    benchmark::DoNotOptimize(x);
  }
}
// A refusal through the pipeline (try_execute: no exception), the error
// and retry_after it reports included.
template <class Get>
void pipeline_denied(benchmark::State& state, Get get) {
  const auto p = armor::pipeline{std::ref(get())};
  long granted = 0;
  for (auto _ : state) {
    auto r = p.try_execute([] { return 1; });
    benchmark::DoNotOptimize(r);
    granted += r.has_value() ? 1 : 0;
  }
  if (granted != 0) state.SkipWithError("a denial was granted");
}

}  // namespace

BENCHMARK_CAPTURE(granted_time_given, bucket, bucket_always)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(granted_time_given, fixed, fixed_always)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(granted_time_given, approx, approx_always)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(granted_time_given, exact10, exact_always)->Threads(1)->Threads(2);
BENCHMARK(bm_mutex_granted_time_given)->Threads(1)->Threads(2);

BENCHMARK_CAPTURE(granted_clock_read, bucket, bucket_always)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(granted_clock_read, fixed, fixed_always)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(granted_clock_read, approx, approx_always)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(granted_clock_read, exact10, exact_always)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(granted_clock_read, mutex, mutex_always)->Threads(1)->Threads(2);

BENCHMARK_CAPTURE(denied_time_given, bucket, bucket_never)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(denied_time_given, fixed, fixed_never)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(denied_time_given, approx, approx_never)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(denied_time_given, exact10, exact_never)->Threads(1)->Threads(2);
BENCHMARK(bm_mutex_denied_time_given)->Threads(1)->Threads(2);

BENCHMARK_CAPTURE(denied_clock_read, bucket, bucket_never)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(denied_clock_read, fixed, fixed_never)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(denied_clock_read, approx, approx_never)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(denied_clock_read, mutex, mutex_never)->Threads(1)->Threads(2);

BENCHMARK_CAPTURE(pipeline_granted, bucket, bucket_always)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(pipeline_granted, fixed, fixed_always)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(pipeline_granted, approx, approx_always)->Threads(1)->Threads(2);

BENCHMARK_CAPTURE(pipeline_denied, bucket, bucket_never)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(pipeline_denied, fixed, fixed_never)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(pipeline_denied, approx, approx_never)->Threads(1)->Threads(2);
