// keyed<quota_tracker> with expiry under contention (issue 21): threads
// using, expiring, sweeping and erasing keys of a small map while the clock
// moves must stay race-free (run under ThreadSanitizer), keep the map
// bounded, and keep keyed_stats consistent. No thread waits for another.
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("keyed quotas expiring, swept and reclaimed across shards under contention stay bounded") {
  constexpr int threads = 4;
  constexpr int iterations = 5000;
  armor::manual_clock clock{24h};
  // 64 keys in 4 shards (so reclaiming looks in other shards), expiring 5 ms after their last use.
  armor::keyed<armor::quota_tracker<armor::manual_clock>> per_key{
      {.windows = {armor::quota_window::fixed(5, 10ms)}, .alerts = {}},
      {.max_keys = 64, .shards = 4, .expire_after = 5ms},
      clock};
  auto p = armor::pipeline{clock, std::ref(per_key)};
  std::atomic<std::size_t> biggest{0};
  std::atomic<long> ok{0};
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 7);
      for (int i = 0; i < iterations; ++i) {
        std::string key = "k";  // appended, not "k" + ...: GCC 12 -O3 warns (-Wrestrict, a false positive)
        key += std::to_string(rng() % 200);
        switch (rng() % 16) {
          case 0: per_key.erase(key); break;
          case 1: (void)per_key.evict_idle(); break;
          case 2: clock.advance(1ms); break;
          case 3: {
            auto h = per_key.get(key);
            (void)h->try_consume(1);
            break;
          }
          case 4: (void)per_key.stats(); break;
          default:
            if (p.try_execute([] { return 1; }, {.key = key}).has_value()) ok.fetch_add(1, std::memory_order_relaxed);
        }
        const std::size_t n = per_key.size();
        std::size_t seen = biggest.load(std::memory_order_relaxed);
        while (n > seen && !biggest.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  const armor::keyed_stats s = per_key.stats();
  // Inserts racing in other shards, and entries in use, may hold the map
  // over max_keys by a few per thread.
  CHECK(biggest.load() <= 64 + 2 * threads);
  CHECK(s.keys <= 64 + 2 * threads);
  CHECK(s.keys + s.removed() == s.created);
  CHECK(s.expired > 0);
  CHECK(ok.load() > 0);
  clock.advance(1s);
  CHECK(per_key.evict_idle() == s.keys);
  CHECK(per_key.stats().keys == 0);
}
