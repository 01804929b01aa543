// quota_tracker (memory backend) allocates nothing per call: consumptions,
// refusals, reservations committed or dropped, alerts, usage reports, and
// calls through a pipeline.
#include <armor/backoff.hpp>
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

struct counting_listener {
  std::atomic<int> alerts{0};
  void operator()(const armor::quota_tracker_event&) noexcept { alerts.fetch_add(1, std::memory_order_relaxed); }
};

}  // namespace

TEST_CASE("quota_tracker allocates nothing per call") {
  armor::manual_clock clock{(sys_days{2024y / June / 15} + 12h).time_since_epoch()};
  counting_listener heard;
  armor::quota_tracker t{{.windows = {quota_window::per_minute(100), quota_window::per_hour(1000),
                                      quota_window::per_month(100'000), quota_window::rolling(5000, 1h, 60)}},
                         clock, armor::memory_quota_storage{}, std::ref(heard)};
  (void)t.try_consume();  // warm-up: nothing lazy should be left
  armor_test::allocation_scope scope;
  long granted = 0;
  for (int minute = 0; minute < 5; ++minute) {
    for (int i = 0; i < 120; ++i) granted += t.try_consume() ? 1 : 0;  // 100 granted, 20 refused
    auto r = t.reserve(10).permit();
    (void)r.commit(3);
    { auto dropped = t.reserve(5); }
    { auto moved_out = t.reserve(5).permit(); }
    (void)t.usage(3);
    (void)t.charge(1);
    clock.advance(1min);
  }
  CHECK(scope.allocations() == 0);
  CHECK(granted == 99 + 4 * 100);  // the warm-up took one of the first minute
  CHECK(heard.alerts.load() > 0);
}

TEST_CASE("packed counters allocate nothing per call, nor when they move to a word per window") {
  armor::manual_clock clock{(sys_days{2024y / June / 15} + 12h).time_since_epoch()};
  counting_listener heard;
  const armor::quota_tracker_options options{
      .windows = {quota_window::per_minute(100), quota_window::per_hour(1000), quota_window::per_month(100'000)}};
  armor::quota_tracker t{options, clock, armor::memory_quota_storage{}, std::ref(heard)};
  REQUIRE(t.storage().packed());
  armor::quota_tracker_options bigger = options;
  bigger.windows[2].limit = armor::quota_max_limit;  // beyond the packed word: the counts move out
  (void)t.try_consume();  // warm-up: nothing lazy should be left
  armor_test::allocation_scope scope;
  long granted = 0;
  for (int minute = 0; minute < 6; ++minute) {
    if (minute == 3) t.reconfigure(bigger);
    for (int i = 0; i < 120; ++i) granted += t.try_consume() ? 1 : 0;  // 100 granted, 20 refused
    auto r = t.reserve(10).permit();
    (void)r.commit(3);
    { auto dropped = t.reserve(5); }
    (void)t.usage(1);
    (void)t.charge(1);
    clock.advance(1min);
  }
  CHECK(scope.allocations() == 0);
  CHECK_FALSE(t.storage().packed());
  CHECK(granted == 99 + 5 * 100);
  CHECK(heard.alerts.load() > 0);
}

TEST_CASE("quota alerts reached by a commit, or re-armed by a cancel, allocate nothing") {
  armor::manual_clock clock{(sys_days{2024y / June / 15} + 12h).time_since_epoch()};
  counting_listener settled_heard;
  counting_listener reserved_heard;
  armor::quota_tracker settled{{.windows = {quota_window::per_minute(100), quota_window::rolling(5000, 1h, 60)}},
                               clock, armor::memory_quota_storage{}, std::ref(settled_heard)};
  armor::quota_tracker reserved{{.windows = {quota_window::per_minute(100), quota_window::rolling(5000, 1h, 60)},
                                 .alert_basis = armor::quota_alert_basis::reserved},
                                clock, armor::memory_quota_storage{}, std::ref(reserved_heard)};
  (void)settled.try_consume();
  (void)reserved.try_consume();
  armor_test::allocation_scope scope;
  for (int minute = 0; minute < 5; ++minute) {
    auto a = settled.reserve(85).permit();
    a.commit();  // 80 % of the minute, at commit: a re-read of both windows
    auto b = settled.reserve(10).permit();
    (void)b.commit(15);  // an overrun: 90 % and 100 %
    auto c = reserved.reserve(95).permit();  // 80 % and 90 % at once
    c.cancel();  // re-armed: a re-read
    clock.advance(1min);
  }
  CHECK(scope.allocations() == 0);
  CHECK(settled_heard.alerts.load() == 15);
  CHECK(reserved_heard.alerts.load() == 10);
}

TEST_CASE("a pipeline holding a quota_tracker allocates nothing per call") {
  armor::manual_clock clock{(sys_days{2024y / June / 15} + 12h).time_since_epoch()};
  armor::quota_tracker t{{.windows = {quota_window::per_day(1500), quota_window::rolling(2000, 1min, 6)}}, clock};
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 2}}, std::ref(t)};
  (void)p.execute([] { return 1; });
  armor_test::allocation_scope scope;
  long sum = 0;
  for (int i = 0; i < 1000; ++i) {
    sum += p.execute([](const armor::context& ctx) {
      ctx.report_cost(1);
      return 1;
    }, {.cost = 2});
  }
  int refused = 0;
  for (int i = 0; i < 600; ++i) refused += p.try_execute([] { return 1; }).has_value() ? 0 : 1;
  CHECK(scope.allocations() == 0);
  CHECK(sum == 1000);
  CHECK(refused == 101);
}

TEST_CASE("a pipeline with a request quota and a dollar quota, each with its own cost, allocates nothing per call") {
  armor::manual_clock clock{(sys_days{2024y / June / 15} + 12h).time_since_epoch()};
  armor::quota_tracker requests{{.windows = {quota_window::per_day(200)}, .cost = armor::cost_source::per_call()},
                                clock};
  armor::quota_tracker dollars{{.windows = {quota_window::per_day(5'000'000)}, .cost = armor::cost_source::slot(0)},
                               clock};
  auto p = armor::pipeline{clock, std::ref(requests), std::ref(dollars)};
  (void)p.execute([] { return 1; }, {.costs = {40'000}});
  armor_test::allocation_scope scope;
  long sum = 0;
  for (int i = 0; i < 150; ++i) {
    sum += p.execute([](const armor::context& ctx) {
      ctx.report_cost(armor::cost_source::slot(0), 30'000);
      return 1;
    }, {.costs = {40'000}});
  }
  int refused = 0;
  for (int i = 0; i < 100; ++i) refused += p.try_execute([] { return 1; }).has_value() ? 0 : 1;
  CHECK(scope.allocations() == 0);
  CHECK(sum == 150);
  CHECK(requests.usage(0).used == 200);
  CHECK(refused == 51);
}
