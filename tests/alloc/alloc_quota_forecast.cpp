// Spend forecasts and "quota exhausted -> isolate the breaker" allocate
// nothing per call: consumptions that check and fire forecast alerts,
// usage() with its projection, isolate_until(), and a pipeline whose quota
// refusal isolates its breaker, which then probes and closes.
#include <armor/circuit_breaker.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <atomic>
#include <chrono>
#include <functional>

using namespace std::chrono_literals;
using namespace std::chrono;
using armor::quota_window;

namespace {

struct forecast_listener {
  std::atomic<int> forecasts{0};
  void operator()(const armor::quota_tracker_event& e) noexcept {
    if (e.kind == armor::quota_alert_kind::forecast) forecasts.fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace

TEST_CASE("quota forecasts allocate nothing per call") {
  armor::manual_clock clock{(sys_days{2024y / June / 15} + 6h).time_since_epoch()};
  forecast_listener heard;
  armor::quota_tracker t{{.windows = {quota_window::per_day(1000), quota_window::per_month(100'000),
                                      quota_window::rolling(5000, 1h, 60)},
                          .forecast_alert = 1.0},
                         clock, armor::memory_quota_storage{}, std::ref(heard)};
  (void)t.try_consume();  // warm-up
  armor_test::allocation_scope scope;
  for (int day = 0; day < 3; ++day) {
    for (int i = 0; i < 300; ++i) (void)t.try_consume();  // 300 by 06:00: 1200 projected
    auto r = t.reserve(10).permit();
    (void)r.commit(3);
    (void)t.usage(0);
    (void)t.usage(1);
    clock.advance(24h);
  }
  CHECK(scope.allocations() == 0);
  CHECK(heard.forecasts.load() == 3);
}

TEST_CASE("isolate_on_exhaustion and isolate_until allocate nothing") {
  armor::manual_clock clock{(sys_days{2024y / June / 15} + 20h).time_since_epoch()};
  armor::circuit_breaker<armor::manual_clock> breaker{{}, clock};
  armor::quota_tracker<armor::manual_clock> quota{{.windows = {quota_window::per_day(3)}}, clock};
  auto p = armor::pipeline{clock, std::ref(breaker), armor::isolate_on_exhaustion{breaker}, std::ref(quota)};
  (void)p.try_execute([] { return 1; });  // warm-up
  armor_test::allocation_scope scope;
  int ok = 0;
  for (int day = 0; day < 3; ++day) {
    for (int i = 0; i < 6; ++i) ok += p.try_execute([] { return 1; }).has_value() ? 1 : 0;  // 3 (2 the first day)
    clock.advance(24h);
  }
  breaker.isolate_until(armor::to_timestamp(clock.now()) + 1h);
  breaker.isolate_for(2h);
  breaker.reset();
  CHECK(scope.allocations() == 0);
  CHECK(ok == 2 + 3 + 3);
}
