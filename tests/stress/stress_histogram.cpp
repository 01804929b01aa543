// Threads record latencies (by hand and through pipelines with
// latency_recorder layers) while another thread scrapes snapshots and the
// Prometheus-shaped numbers: every snapshot's count only grows, never
// exceeds what was recorded, and once every writer has finished the totals
// are exact. Run under ThreadSanitizer.
#include <armor/histogram.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
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
