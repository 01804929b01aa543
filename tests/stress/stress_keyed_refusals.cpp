// keyed refusals per key (keyed_options::rejected_keys) under contention:
// threads refusing many keys, through a pipeline and with
// record_rejection(), while the map evicts keys and a scraper reads the
// counts as armor/prometheus.hpp does. Race-free under ThreadSanitizer;
// every scrape sees each key once, at most rejected_keys keys, and counts
// that never go down; at the end the per-key counts and "other" add up to
// the total. No thread waits for another.
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("keyed refusals counted per key by many threads while a scraper reads them") {
  constexpr int threads = 4;
  constexpr int iterations = 4000;
  constexpr std::size_t tracked = 16;
  armor::manual_clock clock;
  // One call per key per hour: after its first call every key is refused.
  // 32 keys at most, 64 in use: keys are evicted all along.
  armor::keyed<armor::token_bucket<armor::manual_clock>> per_key{
      {.rate = {1, 1h}, .burst = 1}, {.max_keys = 32, .shards = 4, .rejected_keys = tracked}, clock};
  auto p = armor::pipeline{clock, std::ref(per_key)};
  std::atomic<bool> stop{false};
  std::atomic<int> bad_scrapes{0};
  std::atomic<long> scrapes{0};

  std::thread scraper([&] {
    std::map<std::string, std::uint64_t> last;
    std::uint64_t last_other = 0;
    do {  // at least once, even if this thread first runs after the others are done
      std::map<std::string, std::uint64_t> now;
      bool ok = true;
      per_key.for_each_rejected([&](std::string_view key, std::uint64_t n) {
        ok = ok && now.emplace(std::string(key), n).second;  // each key once
      });
      const std::uint64_t other = per_key.rejected_other();
      (void)per_key.stats();
      ok = ok && now.size() <= tracked && other >= last_other;
      for (const auto& [key, n] : last) {
        const auto it = now.find(key);
        ok = ok && it != now.end() && it->second >= n;  // a key keeps its series, its count only grows
      }
      if (!ok) bad_scrapes.fetch_add(1, std::memory_order_relaxed);
      last = std::move(now);
      last_other = other;
      scrapes.fetch_add(1, std::memory_order_relaxed);
    } while (!stop.load(std::memory_order_relaxed));
  });

  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 11);
      for (int i = 0; i < iterations; ++i) {
        std::string key = "ip";  // appended, not "ip" + ...: GCC 12 -O3 warns (-Wrestrict, a false positive)
        key += std::to_string(rng() % 64);
        if (rng() % 4 == 0) {
          if (!per_key.get(key)->try_acquire()) per_key.record_rejection(key);
        } else {
          (void)p.try_execute([] { return 1; }, {.key = key});
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  stop.store(true, std::memory_order_relaxed);
  scraper.join();

  CHECK(bad_scrapes.load() == 0);
  CHECK(scrapes.load() >= 1);
  std::uint64_t sum = per_key.rejected_other();
  std::size_t keys = 0;
  per_key.for_each_rejected([&](std::string_view, std::uint64_t n) {
    sum += n;
    ++keys;
  });
  CHECK(keys == tracked);
  const std::uint64_t total = per_key.stats().rejected;
  CHECK(sum == total);
  CHECK(total > 0);
  CHECK(total <= static_cast<std::uint64_t>(threads) * iterations);
}
