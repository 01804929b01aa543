// Threads record latencies (by hand and through pipelines with
// latency_recorder layers) while another thread scrapes snapshots and the
// Prometheus-shaped numbers: every snapshot's count only grows, never
// exceeds what was recorded, and once every writer has finished the totals
// are exact; the same for a histogram per key (keyed<latency_recorder>)
// while keys are evicted. Run under ThreadSanitizer.
#include <armor/histogram.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("histogram: concurrent recording and scraping lose nothing") {
  constexpr int writers = 4;
  constexpr int iterations = 20000;
  armor::histogram h{{.bounds = {1ms, 10ms, 100ms}, .shards = 2}};  // fewer shards than writers: shared shards
  armor::latency_recorder rec{};
  std::atomic<bool> done{false};
  std::atomic<long> scrapes{0};
  std::atomic<bool> ok{true};

  std::thread scraper([&] {
    std::uint64_t last = 0;
    std::uint64_t last_rec = 0;
    // Runs until the writers are joined; it waits for nothing they do.
    while (!done.load(std::memory_order_acquire)) {
      const auto s = h.snapshot();
      std::uint64_t in_buckets = 0;
      for (const auto c : s.counts) in_buckets += c;
      if (s.count < last || s.count > std::uint64_t{writers} * iterations || in_buckets != s.count) ok = false;
      last = s.count;
      const auto r = rec.stats();
      if (r.duration.count < last_rec) ok = false;
      last_rec = r.duration.count;
      scrapes.fetch_add(1, std::memory_order_relaxed);
    }
  });

  std::vector<std::thread> pool;
  for (int id = 0; id < writers; ++id) {
    pool.emplace_back([&, id] {
      auto p = armor::pipeline{std::ref(rec)};  // steady_clock: real readings
      for (int i = 0; i < iterations; ++i) {
        h.record(std::chrono::microseconds{(i * 7 + id) % 200'000});
        if (i % 4 == 0) (void)p.execute([] { return 1; });
      }
    });
  }
  for (auto& t : pool) t.join();
  done.store(true, std::memory_order_release);
  scraper.join();

  CHECK(ok.load());
  const auto s = h.snapshot();
  CHECK(s.count == std::uint64_t{writers} * iterations);
  std::int64_t expected_sum = 0;
  for (int id = 0; id < writers; ++id) {
    for (int i = 0; i < iterations; ++i) expected_sum += std::int64_t{(i * 7 + id) % 200'000} * 1000;
  }
  CHECK(s.sum.count() == expected_sum);
  CHECK(rec.stats().duration.count == std::uint64_t{writers} * (iterations / 4));
}

TEST_CASE("histogram per key: concurrent recording, eviction and scraping stay consistent") {
  constexpr int writers = 4;
  constexpr int iterations = 3000;
  // 8 keys in use, room for 4: keys (and their histograms) are evicted all along.
  armor::keyed<armor::latency_recorder> per_key{{.histogram = {.bounds = {1ms, 10ms}, .shards = 1}},
                                                {.max_keys = 4, .shards = 2}};
  auto p = armor::pipeline{std::ref(per_key)};
  std::atomic<bool> done{false};
  std::atomic<long> scrapes{0};
  std::atomic<bool> ok{true};
  std::thread scraper([&] {
    do {  // at least once, even if this thread first runs after the writers are done
      per_key.for_each([&](std::string_view, const armor::latency_recorder& r) {
        const auto s = r.stats();
        // Every call through a key records once: a key's count never exceeds the calls made.
        if (s.duration.count > static_cast<std::uint64_t>(writers) * iterations) ok.store(false);
      });
      scrapes.fetch_add(1, std::memory_order_relaxed);
    } while (!done.load(std::memory_order_relaxed));
  });
  std::vector<std::thread> pool;
  for (int id = 0; id < writers; ++id) {
    pool.emplace_back([&, id] {
      for (int i = 0; i < iterations; ++i) {
        std::string key = "up";  // appended, not "up" + ...: GCC 12 -O3 warns (-Wrestrict, a false positive)
        key += std::to_string((i + id) % 8);
        (void)p.try_execute([] { return 1; }, {.key = key});
      }
    });
  }
  for (auto& t : pool) t.join();
  done.store(true, std::memory_order_relaxed);
  scraper.join();
  CHECK(ok.load());
  CHECK(scrapes.load() >= 1);
  CHECK(per_key.size() <= 4 + writers);  // max_keys; inserts racing in other shards overshoot by one each
  const auto st = per_key.stats();
  CHECK(st.keys + st.removed() == st.created);
}
