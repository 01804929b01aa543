// A cache hit against an empty pipeline, in one run (the baselines), and
// against the mutex-guarded map a user would write otherwise:
//
//   cache_lookup          lookup() of a fresh entry: hash, tag scan, pin,
//                         shared_ptr copy, unpin (no mutex, no allocation:
//                         tests/alloc/alloc_cache.cpp checks the latter);
//   cache_execute_hit     execute() answered by a fresh entry (adds the
//                         clock read and the hit counter);
//   mutex_map_lookup      std::mutex + std::unordered_map<key, shared_ptr>,
//                         and a clock read (its TTL check) as the cache does;
//   cache_execute_miss    a miss every call (keys rotate through 4x the
//                         entry limit): the coalescer's flight, the value's
//                         make_shared, the store and an eviction;
//   ..._hot / threads     many threads reading one hot key (the pin word and
//                         the reference count are shared cache lines).
//
// Read ratios against bm_empty_pipeline and bm_direct_call; run with the
// bench preset and --benchmark_min_time=0.2 on a shared machine.
#include <armor/cache.hpp>

#include "baselines.hpp"

#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace {

using text_cache = armor::cache<std::string, int>;

const std::string& hot_key() {
  static const std::string k = "GET /search?q=armor&page=1";  // too long for the small-string buffer
  return k;
}

text_cache& shared_cache() {
  static text_cache c({.max_age = std::chrono::hours{1}, .max_entries = 4096});
  return c;
}

void bm_cache_lookup(benchmark::State& state) {
  auto& c = shared_cache();
  c.insert(hot_key(), 42);
  for (auto _ : state) {
    auto l = c.lookup(hot_key());
    benchmark::DoNotOptimize(l.value.get());
  }
}
BENCHMARK(bm_cache_lookup)->Threads(1)->Threads(2)->Threads(4)->UseRealTime();

void bm_cache_execute_hit(benchmark::State& state) {
  auto& c = shared_cache();
  c.insert(hot_key(), 42);
  int x = 0;
  for (auto _ : state) {
    auto a = c.execute(hot_key(), [&] { return armor_bench::work(x); });
    benchmark::DoNotOptimize(a.value.get());
  }
}
BENCHMARK(bm_cache_execute_hit)->Threads(1)->Threads(2)->Threads(4)->UseRealTime();

struct mutex_map {
  std::mutex m;
  std::unordered_map<std::string, std::shared_ptr<const int>> map;
};

mutex_map& shared_map() {
  static mutex_map mm;
  return mm;
}

void bm_mutex_map_lookup(benchmark::State& state) {
  auto& mm = shared_map();
  {
    const std::lock_guard lock(mm.m);
    mm.map[hot_key()] = std::make_shared<const int>(42);
  }
  for (auto _ : state) {
    std::shared_ptr<const int> v;
    benchmark::DoNotOptimize(armor::steady_clock::now());  // a TTL map reads the clock too
    {
      const std::lock_guard lock(mm.m);
      auto it = mm.map.find(hot_key());
      if (it != mm.map.end()) v = it->second;
    }
    benchmark::DoNotOptimize(v.get());
  }
}
BENCHMARK(bm_mutex_map_lookup)->Threads(1)->Threads(2)->Threads(4)->UseRealTime();

void bm_cache_execute_miss(benchmark::State& state) {
  armor::cache<int, int> c({.max_entries = 1024, .shards = 4});
  int k = 0;
  for (auto _ : state) {
    k = (k + 1) % 4096;
    auto a = c.execute(k, [&] { return armor_bench::work(k); });
    benchmark::DoNotOptimize(a.value.get());
  }
}
BENCHMARK(bm_cache_execute_miss);

}  // namespace
