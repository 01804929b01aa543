// Threads sharing one fault injector: never more than max_active calls
// carry a fault at once, every fault drawn is either injected or capped
// (counted once), the listener hears every injection, the switch flipping
// under the callers stops and starts injection, and nothing is left active
// at the end. Covered: the pipeline (injected errors retried by backoff)
// and direct use, permits settled and dropped. Run under ThreadSanitizer.
#include <armor/backoff.hpp>
#include <armor/fault_injector.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int threads = 4;
constexpr std::uint32_t cap = 3;

struct count_events {
  std::atomic<std::uint64_t>* n;
  void operator()(const armor::fault_injector_event&) const noexcept { n->fetch_add(1, std::memory_order_relaxed); }
};

}  // namespace

TEST_CASE("fault injector: at most max_active faults at once across threads, every fault counted once",
          "[fault_injector][stress]") {
  constexpr int iterations = 20000;
  armor::manual_clock clock;
  std::atomic<std::uint64_t> heard{0};
  armor::fault_injector<void, armor::seeded_rng, count_events> chaos{
      {.error_rate = 0.3, .latency_rate = 0.2, .latency = 1ms, .max_active = cap}, armor::seeded_rng{11},
      count_events{&heard}};
  const auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 2, .initial = 1ms}}, std::ref(chaos)};

  std::atomic<std::uint32_t> inside{0};    // direct holders of a fault permit now
  std::atomic<std::uint32_t> most{0};      // the most seen at once
  std::atomic<std::uint64_t> injected{0};  // permits that carried a fault (direct use)
  std::atomic<bool> stop{false};
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      for (int i = 0; i < iterations; ++i) {
        if ((i + id) % 2 == 0) {
          (void)p.try_execute([] { return 1; });
          continue;
        }
        armor::context ctx(armor::to_timestamp(clock.now()));
        auto a = chaos.admit(ctx);
        if (a.permit.injects()) {
          injected.fetch_add(1, std::memory_order_relaxed);
          const std::uint32_t now = inside.fetch_add(1, std::memory_order_relaxed) + 1;
          std::uint32_t seen = most.load(std::memory_order_relaxed);
          while (now > seen && !most.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
          }
          inside.fetch_sub(1, std::memory_order_relaxed);
        }
        if (i % 3 == 0) {
          chaos.settle(ctx, std::move(a.permit), armor::verdict::success());
        }  // otherwise dropped unsettled
      }
    });
  }
  // The switch flips under the callers.
  std::thread flipper([&] {
    bool on = true;
    while (!stop.load(std::memory_order_relaxed)) {
      on = !on;
      chaos.set_enabled(on);
      std::this_thread::yield();
    }
    chaos.set_enabled(true);
  });
  for (auto& t : pool) t.join();
  stop.store(true, std::memory_order_relaxed);
  flipper.join();

  const auto s = chaos.stats();
  CHECK(most.load() <= cap);
  CHECK(s.active == 0);
  CHECK(heard.load() == s.exceptions + s.errors + s.results + s.latencies);
  CHECK(injected.load() <= s.errors + s.latencies);
  CHECK(s.errors + s.latencies > 0);
}
