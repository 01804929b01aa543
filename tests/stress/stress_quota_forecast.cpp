// Forecasts and "quota exhausted -> isolate the breaker" under threads, on a
// manual clock that only the main thread moves (between rounds). Checked
// afterwards, exactly:
//
//   - a forecast alert fires exactly once per window and period, however
//     many threads cross it together, with reservations racing commits;
//   - concurrent isolate_until() calls with different ends make one
//     transition, and the breaker keeps the latest end;
//   - threads calling a pipeline (breaker, isolate_on_exhaustion, a daily
//     quota of 100) until the breaker is isolated spend exactly 100 a day,
//     isolate it exactly once a day, and after midnight it probes, closes and
//     spends the next day's 100.
//
// No thread waits for anything another thread might never do: loops end on
// a state their own calls reach. Run under ThreadSanitizer.
#include <armor/circuit_breaker.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using namespace std::chrono;
using armor::quota_window;

namespace {

constexpr int threads = 4;

template <class F>
void together(F body) {
  std::atomic<int> ready{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < threads) std::this_thread::yield();
      body(t);
    });
  }
  for (auto& th : pool) th.join();
}

struct forecast_count {
  std::atomic<int> forecasts{0};
  std::atomic<bool> low{false};  // a forecast event below its alert
  void operator()(const armor::quota_tracker_event& e) noexcept {
    if (e.kind != armor::quota_alert_kind::forecast) return;
    forecasts.fetch_add(1, std::memory_order_relaxed);
    if (!e.projected || *e.projected < 1000) low.store(true, std::memory_order_relaxed);
  }
};

struct transitions {
  std::atomic<int> to_isolated{0};
  std::atomic<int> to_half_open{0};
  std::atomic<int> to_closed{0};
  void operator()(const armor::circuit_breaker_event& e) noexcept {
    if (e.to == armor::breaker_state::isolated) to_isolated.fetch_add(1, std::memory_order_relaxed);
    if (e.to == armor::breaker_state::half_open) to_half_open.fetch_add(1, std::memory_order_relaxed);
    if (e.to == armor::breaker_state::closed) to_closed.fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace

TEST_CASE("stress: a forecast alert fires once per window and period") {
  armor::manual_clock clock{(sys_days{2026y / June / 15} + 6h).time_since_epoch()};
  forecast_count heard;
  armor::quota_tracker t{{.windows = {quota_window::per_day(1000), quota_window::per_hour(1000)},
                          .alerts = {},
                          .forecast_alert = 1.0,
                          .forecast_after = 0.0},
                         clock, armor::memory_quota_storage{}, std::ref(heard)};
  constexpr int days = 3;
  for (int day = 0; day < days; ++day) {
    // 06:00: the day projects 4 x its use, the hour (06:00 to 07:00, 0 elapsed) at once.
    together([&](int i) {
      for (int k = 0; k < 100; ++k) {
        if (i % 2 == 0) {
          (void)t.try_consume(1);
        } else {
          auto p = t.reserve(2).permit();
          (void)p.commit(1);
        }
      }
    });
    CHECK(t.usage(0).used == 400);
    clock.advance(24h);
  }
  // Each day: the day window once, the 06:00 hour once.
  CHECK(heard.forecasts.load() == 2 * days);
  CHECK(t.stats().forecast_alerts == 2 * days);
  CHECK_FALSE(heard.low.load());
}

TEST_CASE("stress: concurrent isolate_until() calls make one transition and keep the latest end") {
  armor::manual_clock clock;
  transitions seen;
  armor::circuit_breaker<armor::manual_clock, std::reference_wrapper<transitions>> b{{}, clock, std::ref(seen)};
  constexpr int rounds = 50;
  for (int round = 0; round < rounds; ++round) {
    const armor::timestamp now = armor::to_timestamp(clock.now());
    together([&](int i) {
      for (int k = 0; k < 20; ++k) {
        b.isolate_until(now + std::chrono::seconds{1 + i * 20 + k});
        (void)b.try_acquire();
      }
    });
    CHECK(b.state() == armor::breaker_state::isolated);
    CHECK(b.try_acquire().retry_after() == std::chrono::seconds{threads * 20});
    b.reset();
  }
  CHECK(seen.to_isolated.load() == rounds);
}

TEST_CASE("stress: threads spend a daily quota, isolate its breaker once a day, and it probes after midnight") {
  armor::manual_clock clock{(sys_days{2026y / June / 15} + 20h).time_since_epoch()};
  transitions seen;
  armor::circuit_breaker<armor::manual_clock, std::reference_wrapper<transitions>> breaker{
      {.failure_threshold = 5, .open_for = 30s}, clock, std::ref(seen)};
  armor::quota_tracker<armor::manual_clock> quota{{.windows = {quota_window::per_day(100)}}, clock};
  auto p = armor::pipeline{clock, std::ref(breaker), armor::isolate_on_exhaustion{breaker}, std::ref(quota)};
  constexpr int days = 3;
  for (int day = 0; day < days; ++day) {
    std::atomic<int> ran{0};
    together([&](int) {
      // Ends: the quota's 100th unit is spent by someone, and the next call
      // the quota sees is refused and isolates the breaker. At least one
      // call each: an isolation that has ended still reads isolated until a
      // call arrives (and becomes the probe).
      do {
        (void)p.try_execute([&] { return ran.fetch_add(1, std::memory_order_relaxed); });
      } while (breaker.state() != armor::breaker_state::isolated);
    });
    CHECK(ran.load() == 100);
    CHECK(quota.usage(0).used == 100);
    CHECK(seen.to_isolated.load() == day + 1);
    const auto r = breaker.try_acquire();
    CHECK(r.code() == armor::errc::circuit_open);
    CHECK(r.retry_after() == 4h);  // 20:00 to midnight
    clock.advance(24h);            // 20:00 the next day: the isolation ended at midnight
  }
  CHECK(seen.to_half_open.load() == days - 1);
  CHECK(seen.to_closed.load() == days - 1);
}
