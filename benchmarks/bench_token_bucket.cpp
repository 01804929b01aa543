// The token bucket against its physical floor and a mutex-based bucket, in
// one run, on 1 and 2 threads sharing one bucket:
//
//   floor        the least any limiter must do: one CAS on one shared atomic
//                for a grant (one load for a denial), with and without a
//                steady_clock read;
//   armor        token_bucket::try_acquire, granted and denied, with the time
//                given (as a pipeline gives it) and with its own clock read;
//                and granted on a bucket whose rate was changed (wide state);
//   mutex        the usual hand-written bucket: a std::mutex around a double
//                token count and a last-update time (golang.org/x/time/rate's
//                shape);
//   keyed        armor::keyed<token_bucket<>> holding 1 000 000 keys (client
//                IPs), looked up in random order, plus a 1000-key hot set;
//                reports bytes per key (heap growth while building, glibc)
//                and, as beyond_policy, those beyond sizeof the bucket kept
//                per key (keyed's own cost: entry header, key, index, shard);
//   naive map    the same lookups in a std::unordered_map under one
//                std::shared_mutex (the first thing one writes).
//
// Ratios are recorded in docs/token_bucket.md. Run with
// --benchmark_min_time=0.2 on shared machines; for keyed against the naive
// map add --benchmark_enable_random_interleaving=true, so that both meet
// the same load.
#include "multithreaded.hpp"

#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/token_bucket.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

using namespace std::chrono_literals;

namespace {

std::int64_t steady_ns() { return std::chrono::steady_clock::now().time_since_epoch().count(); }

// --- The floor -------------------------------------------------------------

struct alignas(armor::detail::cache_line) padded_atomic {
  std::atomic<std::int64_t> v{0};
};
padded_atomic floor_word;

void bm_floor_cas_time_given(benchmark::State& state) {
  std::int64_t t = 0;
  for (auto _ : state) {
    std::int64_t cur = floor_word.v.load(std::memory_order_acquire);
    while (!floor_word.v.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel, std::memory_order_relaxed)) {
    }
    benchmark::DoNotOptimize(t += 1000);
  }
}
BENCHMARK(bm_floor_cas_time_given)->Threads(1)->Threads(2);

void bm_floor_cas_clock_read(benchmark::State& state) {
  for (auto _ : state) {
    std::int64_t now = steady_ns();
    std::int64_t cur = floor_word.v.load(std::memory_order_acquire);
    while (!floor_word.v.compare_exchange_weak(cur, std::max(cur, now) + 1, std::memory_order_acq_rel,
                                               std::memory_order_relaxed)) {
    }
  }
}
BENCHMARK(bm_floor_cas_clock_read)->Threads(1)->Threads(2);

void bm_floor_load_time_given(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(floor_word.v.load(std::memory_order_acquire));
}
BENCHMARK(bm_floor_load_time_given)->Threads(1)->Threads(2);

void bm_floor_load_clock_read(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(steady_ns());
    benchmark::DoNotOptimize(floor_word.v.load(std::memory_order_acquire));
  }
}
BENCHMARK(bm_floor_load_clock_read)->Threads(1)->Threads(2);

void bm_clock_read(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(steady_ns());
}
BENCHMARK(bm_clock_read)->Threads(1)->Threads(2);

// --- armor::token_bucket ---------------------------------------------------

// Buckets are function-local statics, shared by the threads of every run of
// a benchmark (their initialisation is thread-safe).
//
// Grants every call: a token per nanosecond, and a burst of four months
// (threads given simulated time drift apart; the bucket must not care).
const armor::token_bucket_options always{.rate = {1, 1ns}, .burst = 10'000'000'000'000'000};
// Denies every call once drained: one token an hour.
const armor::token_bucket_options never{.rate = {1, 1h}, .burst = 1};

// Simulated time for the "time given" runs: 1 us per call, far more than the
// refill a call needs, and never behind where an earlier run left the bucket.
std::atomic<std::int64_t> simulated_end{0};

std::int64_t simulated_start() { return std::max(steady_ns(), simulated_end.load()); }
void simulated_stop(std::int64_t t) {
  std::int64_t cur = simulated_end.load();
  while (cur < t && !simulated_end.compare_exchange_weak(cur, t)) {
  }
}

void bm_armor_granted_time_given(benchmark::State& state) {
  static armor::token_bucket bucket{always};
  std::int64_t t = simulated_start();
  long denied = 0;
  for (auto _ : state) {
    const auto d = bucket.try_acquire(1, armor::timestamp{std::chrono::nanoseconds{t += 1000}});
    denied += d ? 0 : 1;
  }
  simulated_stop(t);
  if (denied != 0) state.SkipWithError("a grant was denied");
}
BENCHMARK(bm_armor_granted_time_given)->Threads(1)->Threads(2);

// The same grant on a bucket whose rate was changed once: it has left the
// 8-byte word for the generation-checked 16-byte pair for good.
void bm_armor_granted_time_given_changed(benchmark::State& state) {
  static armor::token_bucket bucket = [] {
    armor::token_bucket b{always};
    b.set_rate(always.rate, always.burst - 1);
    return b;
  }();
  std::int64_t t = simulated_start();
  long denied = 0;
  for (auto _ : state) {
    const auto d = bucket.try_acquire(1, armor::timestamp{std::chrono::nanoseconds{t += 1000}});
    denied += d ? 0 : 1;
  }
  simulated_stop(t);
  if (denied != 0) state.SkipWithError("a grant was denied");
}
BENCHMARK(bm_armor_granted_time_given_changed)->Threads(1)->Threads(2);

void bm_armor_granted_clock_read(benchmark::State& state) {
  static armor::token_bucket bucket{always};
  long denied = 0;
  for (auto _ : state) denied += bucket.try_acquire(1) ? 0 : 1;
  if (denied != 0) state.SkipWithError("a grant was denied");
}
BENCHMARK(bm_armor_granted_clock_read)->Threads(1)->Threads(2);

armor::token_bucket<>& drained_bucket() {
  static armor::token_bucket bucket{never};
  static const bool drained = bucket.try_acquire(1).allowed();
  (void)drained;
  return bucket;
}

void bm_armor_denied_time_given(benchmark::State& state) {
  auto& bucket = drained_bucket();
  const armor::timestamp t{std::chrono::nanoseconds{steady_ns()}};
  long granted = 0;
  for (auto _ : state) granted += bucket.try_acquire(1, t) ? 1 : 0;
  if (granted != 0) state.SkipWithError("a denial was granted");
}
BENCHMARK(bm_armor_denied_time_given)->Threads(1)->Threads(2);

void bm_armor_denied_clock_read(benchmark::State& state) {
  auto& bucket = drained_bucket();
  long granted = 0;
  for (auto _ : state) granted += bucket.try_acquire(1) ? 1 : 0;
  if (granted != 0) state.SkipWithError("a denial was granted");
}
BENCHMARK(bm_armor_denied_clock_read)->Threads(1)->Threads(2);

// The same bucket as a pipeline layer, end to end (clock read, admit,
// operation, settle), granted.
void bm_armor_pipeline_granted(benchmark::State& state) {
  static armor::token_bucket bucket{always};
  const auto p = armor::pipeline{std::ref(bucket)};
  int x = 0;
  for (auto _ : state) {
    x = p.execute([&] { return x + 1; });
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(bm_armor_pipeline_granted)->Threads(1)->Threads(2);

// --- The baseline: a mutex around floating-point state ---------------------

class alignas(armor::detail::cache_line) mutex_bucket {
 public:
  mutex_bucket(double per_ns, double burst, std::int64_t now) : rate_(per_ns), burst_(burst), tokens_(burst), last_(now) {}

  bool try_acquire(double n, std::int64_t now) {
    const std::lock_guard<std::mutex> lock(mutex_);
    const std::int64_t from = now < last_ ? now : last_;
    double tokens = tokens_ + static_cast<double>(now - from) * rate_;
    if (tokens > burst_) tokens = burst_;
    if (tokens < n) return false;
    tokens_ = tokens - n;
    last_ = now;
    return true;
  }

 private:
  std::mutex mutex_;
  double rate_;
  double burst_;
  double tokens_;
  std::int64_t last_;
};

mutex_bucket& always_mutex_bucket() {
  static mutex_bucket bucket(1.0, 1e9, steady_ns());
  return bucket;
}
mutex_bucket& drained_mutex_bucket() {
  static mutex_bucket bucket(1.0 / 3.6e12, 1, steady_ns());
  static const bool drained = bucket.try_acquire(1, steady_ns());
  (void)drained;
  return bucket;
}

void bm_mutex_granted_time_given(benchmark::State& state) {
  auto& bucket = always_mutex_bucket();
  std::int64_t t = simulated_start();
  long denied = 0;
  for (auto _ : state) denied += bucket.try_acquire(1, t += 1000) ? 0 : 1;
  simulated_stop(t);
  if (denied != 0) state.SkipWithError("a grant was denied");
}
BENCHMARK(bm_mutex_granted_time_given)->Threads(1)->Threads(2);

void bm_mutex_granted_clock_read(benchmark::State& state) {
  auto& bucket = always_mutex_bucket();
  long denied = 0;
  for (auto _ : state) denied += bucket.try_acquire(1, steady_ns()) ? 0 : 1;
  if (denied != 0) state.SkipWithError("a grant was denied");
}
BENCHMARK(bm_mutex_granted_clock_read)->Threads(1)->Threads(2);

void bm_mutex_denied_time_given(benchmark::State& state) {
  auto& bucket = drained_mutex_bucket();
  const std::int64_t t = steady_ns();
  long granted = 0;
  for (auto _ : state) granted += bucket.try_acquire(1, t) ? 1 : 0;
  if (granted != 0) state.SkipWithError("a denial was granted");
}
BENCHMARK(bm_mutex_denied_time_given)->Threads(1)->Threads(2);

void bm_mutex_denied_clock_read(benchmark::State& state) {
  auto& bucket = drained_mutex_bucket();
  long granted = 0;
  for (auto _ : state) granted += bucket.try_acquire(1, steady_ns()) ? 1 : 0;
  if (granted != 0) state.SkipWithError("a denial was granted");
}
BENCHMARK(bm_mutex_denied_clock_read)->Threads(1)->Threads(2);

// --- armor::keyed with a million keys ---------------------------------------

using per_ip_map = armor::keyed<armor::token_bucket<>>;

struct keyed_fixture {
  std::vector<std::string> keys;
  std::vector<std::uint32_t> order;  // a random permutation of key indices
  std::unique_ptr<per_ip_map> map;
  double bytes_per_key = 0;
};

// Bytes in use in the heap: small chunks (uordblks) and those glibc maps on
// their own (hblkhd: the shards of a large keyed map, the naive map's bucket
// array), which uordblks alone leaves out.
std::size_t heap_in_use() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const auto info = mallinfo2();
  return info.uordblks + info.hblkhd;
#else
  return 0;
#endif
}

// Built once per size, by whichever thread gets there first.
keyed_fixture& fixture(std::size_t count) {
  static std::mutex m;
  static std::map<std::size_t, keyed_fixture> fixtures;
  const std::lock_guard<std::mutex> lock(m);
  auto [it, fresh] = fixtures.try_emplace(count);
  keyed_fixture& f = it->second;
  if (!fresh) return f;
  f.keys.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    f.keys.push_back("10." + std::to_string((i >> 16) & 255) + "." + std::to_string((i >> 8) & 255) + "." +
                     std::to_string(i & 255));
  }
  f.order.resize(count);
  std::iota(f.order.begin(), f.order.end(), 0U);
  std::shuffle(f.order.begin(), f.order.end(), std::mt19937_64(42));
  const std::size_t before = heap_in_use();
  f.map = std::make_unique<per_ip_map>(armor::token_bucket_options{.rate = {100, 1s}, .burst = 1'000'000},
                                       armor::keyed_options{.max_keys = count});
  const armor::timestamp now{std::chrono::nanoseconds{steady_ns()}};
  for (const auto& k : f.keys) (void)f.map->get(k, now);
  f.bytes_per_key = static_cast<double>(heap_in_use() - before) / static_cast<double>(count);
  return f;
}

void keyed_lookup(benchmark::State& state, std::size_t count) {
  keyed_fixture& f = fixture(count);
  const std::size_t mask = count - 1;  // count is a power of two
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * (count / 2);
  const armor::timestamp now{std::chrono::nanoseconds{steady_ns()}};
  long denied = 0;
  for (auto _ : state) {
    const auto& key = f.keys[f.order[i++ & mask]];
    denied += f.map->get(key, now)->try_acquire(1, now) ? 0 : 1;
  }
  state.counters["bytes_per_key"] = benchmark::Counter(f.bytes_per_key, benchmark::Counter::kAvgThreads);
  state.counters["beyond_policy"] = benchmark::Counter(
      f.bytes_per_key - static_cast<double>(sizeof(per_ip_map::instance_type)), benchmark::Counter::kAvgThreads);
  state.counters["keys"] = benchmark::Counter(static_cast<double>(f.map->size()), benchmark::Counter::kAvgThreads);
  if (denied != 0) state.SkipWithError("a grant was denied");
}

void bm_keyed_lookup_1M(benchmark::State& state) { keyed_lookup(state, std::size_t{1} << 20); }
BENCHMARK(bm_keyed_lookup_1M)->Threads(1)->Threads(2);

void bm_keyed_lookup_hot_1k(benchmark::State& state) { keyed_lookup(state, std::size_t{1} << 10); }
BENCHMARK(bm_keyed_lookup_hot_1k)->Threads(1)->Threads(2);

// The baseline for keyed: what one writes first, a std::unordered_map (with
// heterogeneous lookup) under one std::shared_mutex, holding the same
// unpadded buckets. No eviction, no pinning: less work than keyed does.
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using naive_map = std::unordered_map<std::string, std::unique_ptr<armor::token_bucket<armor::steady_clock, false>>,
                                     string_hash, std::equal_to<>>;

struct naive_fixture {
  std::shared_mutex mutex;
  naive_map map;
  double bytes_per_key = 0;
};

naive_fixture& naive(std::size_t count) {
  static std::mutex m;
  static std::map<std::size_t, naive_fixture> fixtures;
  const std::lock_guard<std::mutex> lock(m);
  auto [it, fresh] = fixtures.try_emplace(count);
  naive_fixture& f = it->second;
  if (!fresh) return f;
  const keyed_fixture& keys = fixture(count);
  const std::size_t before = heap_in_use();
  const armor::token_bucket_options o{.rate = {100, 1s}, .burst = 1'000'000};
  for (const auto& k : keys.keys) f.map.emplace(k, std::make_unique<armor::token_bucket<armor::steady_clock, false>>(o));
  f.bytes_per_key = static_cast<double>(heap_in_use() - before) / static_cast<double>(count);
  return f;
}

void naive_lookup(benchmark::State& state, std::size_t count) {
  const keyed_fixture& k = fixture(count);
  naive_fixture& f = naive(count);
  const std::size_t mask = count - 1;
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * (count / 2);
  const armor::timestamp now{std::chrono::nanoseconds{steady_ns()}};
  long denied = 0;
  for (auto _ : state) {
    const std::string_view key = k.keys[k.order[i++ & mask]];
    const std::shared_lock<std::shared_mutex> lock(f.mutex);
    denied += f.map.find(key)->second->try_acquire(1, now) ? 0 : 1;
  }
  state.counters["bytes_per_key"] = benchmark::Counter(f.bytes_per_key, benchmark::Counter::kAvgThreads);
  state.counters["beyond_policy"] =
      benchmark::Counter(f.bytes_per_key - static_cast<double>(sizeof(armor::token_bucket<armor::steady_clock, false>)),
                         benchmark::Counter::kAvgThreads);
  if (denied != 0) state.SkipWithError("a grant was denied");
}

void bm_naive_map_lookup_1M(benchmark::State& state) { naive_lookup(state, std::size_t{1} << 20); }
BENCHMARK(bm_naive_map_lookup_1M)->Threads(1)->Threads(2);

void bm_naive_map_lookup_hot_1k(benchmark::State& state) { naive_lookup(state, std::size_t{1} << 10); }
BENCHMARK(bm_naive_map_lookup_hot_1k)->Threads(1)->Threads(2);

}  // namespace
