// Threads sharing one shadowed policy: every call runs; each call is
// counted once, as admitted or as would-refuse; the listener hears each
// would-refuse once; and the shadowed bulkhead never holds more than its
// limit while more calls than that are really inside (so a refused call
// holds no slot), and is empty at the end. Run under ThreadSanitizer.
#include <armor/bulkhead.hpp>
#include <armor/pipeline.hpp>
#include <armor/shadow.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int threads = 4;

struct tally {
  std::atomic<std::uint64_t>* heard;
  void operator()(const armor::shadow_event&) const noexcept { heard->fetch_add(1, std::memory_order_relaxed); }
};

}  // namespace

TEST_CASE("stress: a shadowed token bucket counts every call once, and its listener hears every would-refuse",
          "[shadow]") {
  constexpr int iterations = 50000;
  std::atomic<std::uint64_t> heard{0};
  armor::token_bucket<> bucket{{.rate = {100'000, 1s}, .burst = 50}};
  armor::shadow<std::reference_wrapper<armor::token_bucket<>>, tally> trial{std::ref(bucket), {.count_calls = true},
                                                                            tally{&heard}};
  const auto p = armor::pipeline{std::ref(trial)};
  std::atomic<long> ran{0};
  std::atomic<int> failed{0};  // Catch2's CHECK is for the main thread only
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&] {
      for (int i = 0; i < iterations; ++i) {
        auto r = p.try_execute([&] { ran.fetch_add(1, std::memory_order_relaxed); });
        if (!r.ok()) failed.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& t : pool) t.join();
  CHECK(failed.load() == 0);
  const armor::shadow_stats s = trial.stats();
  CHECK(ran.load() == threads * iterations);
  CHECK(s.admitted + s.would_refuse() == static_cast<std::uint64_t>(threads * iterations));
  CHECK(s.rate_limited == s.would_refuse());
  CHECK(heard.load() == s.would_refuse());
}

TEST_CASE("stress: a shadowed bulkhead holds at most its limit while every call runs", "[shadow]") {
  constexpr int iterations = 20000;
  constexpr std::uint32_t limit = 2;
  armor::bulkhead<> slots{{.max_concurrent = limit}};
  armor::shadow trial{std::ref(slots)};
  const auto p = armor::pipeline{std::ref(trial)};
  std::atomic<int> inside{0};
  std::atomic<int> most_inside{0};
  std::atomic<std::uint32_t> most_held{0};
  std::atomic<int> failed{0};  // Catch2's CHECK is for the main thread only
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&] {
      for (int i = 0; i < iterations; ++i) {
        auto r = p.try_execute([&] {
          const int now = inside.fetch_add(1, std::memory_order_acq_rel) + 1;
          int m = most_inside.load(std::memory_order_relaxed);
          while (now > m && !most_inside.compare_exchange_weak(m, now, std::memory_order_relaxed)) {
          }
          const std::uint32_t held = slots.in_use();
          std::uint32_t h = most_held.load(std::memory_order_relaxed);
          while (held > h && !most_held.compare_exchange_weak(h, held, std::memory_order_relaxed)) {
          }
          inside.fetch_sub(1, std::memory_order_acq_rel);
        });
        if (!r.ok()) failed.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& t : pool) t.join();
  CHECK(failed.load() == 0);
  CHECK(most_held.load() <= limit);
  CHECK(slots.in_use() == 0);
  // With four threads the calls do overlap past the limit now and then;
  // those ran without a slot and were counted.
  if (most_inside.load() > static_cast<int>(limit)) CHECK(trial.stats().bulkhead_full > 0);
}
