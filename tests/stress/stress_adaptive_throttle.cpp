// Threads sharing one adaptive throttle: the window's counts are exactly
// what the callers did (every request counted once, every accept once,
// every request taken back once), the refused counter and the listener
// agree with the refusals the callers saw, and a window the clock has left
// behind is empty. Covered: the pipeline and direct use, every verdict kind,
// permits dropped unsettled, buckets changing under the callers, and the
// ring coming round. Run under ThreadSanitizer.
#include <armor/adaptive_throttle.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int threads = 4;

struct refusal_count {
  std::atomic<std::uint64_t>* n;
  void operator()(const armor::adaptive_throttle_event&) const noexcept { n->fetch_add(1, std::memory_order_relaxed); }
};

struct tally {
  std::uint64_t requests = 0;  // counted and not taken back (refusals included)
  std::uint64_t accepts = 0;
  std::uint64_t refused = 0;
};

}  // namespace

TEST_CASE("adaptive throttle: the window counts exactly what many threads did", "[adaptive_throttle][stress]") {
  constexpr int iterations = 20000;
  armor::manual_clock clock;
  std::atomic<std::uint64_t> heard{0};
  armor::adaptive_throttle throttle{armor::adaptive_throttle_options{.window = 2min, .buckets = 20}, clock,
                                    armor::seeded_rng{42}, refusal_count{&heard}};
  const auto p = armor::pipeline{clock, armor::classify{[](int kind) {
                                   if (kind == 1) return armor::verdict::failure();
                                   if (kind == 2) return armor::verdict::throttled();
                                   return armor::verdict::success();
                                 }},
                                 std::ref(throttle)};
  std::vector<tally> seen(threads);
  std::atomic<int> wrong_code{0};  // Catch2's assertions are not thread-safe: checked after the join
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937 rng(static_cast<unsigned>(id) + 7);
      tally& t = seen[static_cast<std::size_t>(id)];
      for (int i = 0; i < iterations; ++i) {
        // 64 calls of thread 0 move the clock 50 ms: about 16 s in all,
        // three buckets of 6 s, and all of it inside the 2-minute window.
        if (id == 0 && i % 64 == 0) clock.advance(50ms);
        const unsigned dice = rng() % 8;
        if (dice < 4) {
          // Through the pipeline: 0, 3 success; 1 failure; 2 throttled (429).
          const int kind = static_cast<int>(dice);
          auto r = p.try_execute([&] { return kind; });
          if (!r) {
            if (r.code() != armor::errc::client_throttled) wrong_code.fetch_add(1, std::memory_order_relaxed);
            ++t.refused;
            ++t.requests;
            continue;
          }
          ++t.requests;
          if (kind == 0 || kind == 3) ++t.accepts;
          continue;
        }
        auto d = throttle.try_acquire();
        if (!d) {
          ++t.refused;
          ++t.requests;
          continue;
        }
        if (dice == 4) {
          // Never reached the upstream: taken back.
          throttle.record(std::move(d).permit(), {armor::outcome::rejected, true, {}, armor::errc::circuit_open});
        } else if (dice == 5) {
          {
            auto dropped = std::move(d).permit();  // dropped unsettled: taken back
            std::this_thread::yield();
          }
        } else if (dice == 6) {
          throttle.record(std::move(d).permit(), armor::verdict::failure());
          ++t.requests;
        } else {
          throttle.record(std::move(d).permit(), armor::verdict::success());
          ++t.requests;
          ++t.accepts;
        }
      }
    });
  }
  for (auto& th : pool) th.join();

  CHECK(wrong_code.load() == 0);
  tally all;
  for (const auto& t : seen) {
    all.requests += t.requests;
    all.accepts += t.accepts;
    all.refused += t.refused;
  }
  const auto s = throttle.stats();
  CHECK(s.requests == all.requests);
  CHECK(s.accepts == all.accepts);
  CHECK(s.refused == all.refused);
  CHECK(heard.load() == all.refused);
  CHECK(all.refused > 0);  // half the upstream's answers are refusals: the throttle acted
  CHECK(s.rejection_probability >= 0.0);
  CHECK(s.rejection_probability <= 0.9);

  clock.advance(2min);
  CHECK(throttle.stats().requests == 0);
  CHECK(throttle.idle(armor::to_timestamp(clock.now())));
}

TEST_CASE("adaptive throttle: buckets restarted under the callers as the ring comes round",
          "[adaptive_throttle][stress]") {
  constexpr int iterations = 20000;
  armor::manual_clock clock;
  // A short window of 4 buckets of 5 ms: the ring comes round every 20 ms.
  armor::adaptive_throttle throttle{armor::adaptive_throttle_options{.window = 20ms, .buckets = 4}, clock,
                                    armor::seeded_rng{9}};
  std::atomic<std::uint64_t> refused{0};
  std::atomic<int> more_accepts_than_requests{0};
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      for (int i = 0; i < iterations; ++i) {
        if (i % 16 == 0) clock.advance(std::chrono::microseconds{100 + 50 * id});
        auto d = throttle.try_acquire();
        if (!d) {
          refused.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        // Every answer is an accept: the throttle must never refuse.
        throttle.record(std::move(d).permit(), armor::verdict::success());
        const auto s = throttle.stats();
        if (s.accepts > s.requests) more_accepts_than_requests.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(refused.load() == 0);
  CHECK(more_accepts_than_requests.load() == 0);
  const auto s = throttle.stats();
  CHECK(s.accepts == s.requests);
  clock.advance(20ms);
  CHECK(throttle.stats().requests == 0);
}
