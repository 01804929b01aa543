// Spend forecasts of armor::quota_tracker (quota_usage::projected, the
// forecast alert), a breaker isolated until a time (isolate_until), and the
// two together: "quota exhausted -> isolate the breaker until the quota
// resets" (armor::isolate_on_exhaustion). Every test runs on a manual_clock
// used as the wall clock (its epoch is 1970-01-01T00:00 UTC).
#include <armor/circuit_breaker.hpp>
#include <armor/deadline.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using namespace std::chrono;
using armor::breaker_reason;
using armor::breaker_state;
using armor::quota_alert_kind;
using armor::quota_window;

namespace {

struct quota_log {
  std::vector<armor::quota_tracker_event> events;
  void operator()(const armor::quota_tracker_event& e) noexcept { events.push_back(e); }
};
using logged_tracker =
    armor::quota_tracker<armor::manual_clock, armor::memory_quota_storage, std::reference_wrapper<quota_log>>;

struct breaker_log {
  std::vector<armor::circuit_breaker_event> events;
  void operator()(const armor::circuit_breaker_event& e) noexcept { events.push_back(e); }
};
using logged_breaker = armor::circuit_breaker<armor::manual_clock, std::reference_wrapper<breaker_log>>;

armor::manual_clock clock_at(sys_time<nanoseconds> t) {
  return armor::manual_clock{armor::manual_clock::time_point{t.time_since_epoch()}};
}

const sys_days monday = sys_days{2026y / December / 7};

void require_refused(const armor::quota_tracker_options& o, const std::string& option) {
  try {
    armor::quota_tracker<armor::manual_clock> t{o, armor::manual_clock{}};
    FAIL("expected armor::error for " << option);
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    CHECK(std::string(e.what()).find(option) != std::string::npos);
  }
}

int call_llm() { return 42; }

}  // namespace

// ---------------------------------------------------------------- the projection

TEST_CASE("usage().projected is the use at the period's end at the period's average rate", "[quota_forecast]") {
  const auto clock = clock_at(monday + 8h);
  armor::quota_tracker<armor::manual_clock> budget{{.windows = {quota_window::per_day(100)}}, clock};
  CHECK(budget.usage(0).projected == 0);
  REQUIRE(budget.try_consume(40));
  // $40 in the 8 hours since midnight: $5 an hour, $80 more in the 16 left.
  CHECK(budget.usage(0).projected == 120);
  clock.advance(4h);
  CHECK(budget.usage(0).projected == 80);  // 40 x 24 / 12
  clock.advance(12h - 1ns);
  CHECK(budget.usage(0).projected == 40);  // the last nanosecond: (nearly) what was used
  clock.advance(1ns);                      // the next day
  CHECK(budget.usage(0).projected == 0);
}

TEST_CASE("projected: a month window projects over its own length; rolling and lifetime windows have none",
          "[quota_forecast]") {
  // December 10th, 00:00: 9 of the month's 31 days have passed.
  const auto clock = clock_at(sys_days{2026y / December / 10});
  armor::quota_tracker<armor::manual_clock> t{
      {.windows = {quota_window::per_month(1000), quota_window::rolling(1000, 1h, 60),
                   quota_window::lifetime(1000)}},
      clock};
  REQUIRE(t.try_consume(90));
  CHECK(t.usage(0).projected == 90 * 31 / 9);
  CHECK_FALSE(t.usage(1).projected.has_value());
  CHECK_FALSE(t.usage(2).projected.has_value());
}

// ---------------------------------------------------------------- the forecast alert

TEST_CASE("seed: $100 a day, $40 by 08:00 forecasts $120 at midnight: the forecast alert fires once, "
          "the 80 % alert when $80 are spent",
          "[quota_forecast]") {
  const auto clock = clock_at(monday + 1h);
  quota_log log;
  logged_tracker budget{{.windows = {quota_window::per_day(100)}, .alerts = {0.8}, .forecast_alert = 1.0},
                        clock, armor::memory_quota_storage{}, std::ref(log)};
  // 01:00, $5: 120 projected, but within the first 10 % of the day (2.4 h)
  // a projection is not trusted yet.
  REQUIRE(budget.try_consume(5));
  CHECK(budget.usage(0).projected == 120);
  CHECK(log.events.empty());
  // 08:00, $35 more: $40, projected $120 at midnight.
  clock.advance(7h);
  REQUIRE(budget.try_consume(35));
  REQUIRE(log.events.size() == 1);
  const armor::quota_tracker_event& f = log.events[0];
  CHECK(f.kind == quota_alert_kind::forecast);
  CHECK(f.window == 0);
  CHECK(f.threshold == 1.0);
  CHECK(f.used == 40);
  CHECK(f.limit == 100);
  CHECK(f.projected == 120);
  CHECK(f.resets_in == 16h);
  CHECK(f.resets_at == monday + 24h);
  // Once per period: more spending, a higher projection, no second forecast.
  clock.advance(1h);
  REQUIRE(budget.try_consume(10));  // $50 by 09:00: $133 projected
  CHECK(budget.usage(0).projected == 133);
  CHECK(log.events.size() == 1);
  // $80 actually used: the 80 % alert (kind used), with no projection.
  clock.advance(3h);
  REQUIRE(budget.try_consume(30));
  REQUIRE(log.events.size() == 2);
  CHECK(log.events[1].kind == quota_alert_kind::used);
  CHECK(log.events[1].threshold == 0.8);
  CHECK(log.events[1].used == 80);
  CHECK_FALSE(log.events[1].projected.has_value());
  CHECK(budget.stats().alerts == 1);
  CHECK(budget.stats().forecast_alerts == 1);
  // The next day starts afresh: $20 by 06:00 projects $80 (no alert), $30 by
  // 06:00 projects $120 (the alert, again once).
  clock.advance(monday + 30h - (monday + 12h));  // 06:00 the next day
  REQUIRE(budget.try_consume(20));
  CHECK(log.events.size() == 2);
  REQUIRE(budget.try_consume(10));
  REQUIRE(log.events.size() == 3);
  CHECK(log.events[2].kind == quota_alert_kind::forecast);
  CHECK(log.events[2].projected == 120);
  CHECK(log.events[2].resets_in == 18h);
  CHECK(budget.stats().forecast_alerts == 2);
}

TEST_CASE("a projection below the forecast alert fires nothing", "[quota_forecast]") {
  const auto clock = clock_at(monday + 8h);
  quota_log log;
  logged_tracker budget{{.windows = {quota_window::per_day(100)}, .forecast_alert = 1.0}, clock,
                        armor::memory_quota_storage{}, std::ref(log)};
  REQUIRE(budget.try_consume(33));  // 99 projected
  CHECK(budget.usage(0).projected == 99);
  CHECK(log.events.empty());
  REQUIRE(budget.try_consume(1));  // 102 projected
  REQUIRE(log.events.size() == 1);
  CHECK(log.events[0].projected == 102);
}

TEST_CASE("the forecast alert's units are exact: 70 % of 10 is 7, not 8", "[quota_forecast]") {
  const auto clock = clock_at(monday + 16h);  // a projection is 1.5 times the use
  quota_log log;
  logged_tracker t{{.windows = {quota_window::per_day(10)}, .alerts = {}, .forecast_alert = 0.7}, clock,
                   armor::memory_quota_storage{}, std::ref(log)};
  REQUIRE(t.try_consume(4));  // 6 projected
  CHECK(log.events.empty());
  REQUIRE(t.try_consume(1));  // 7.5, floored: 7
  REQUIRE(log.events.size() == 1);
  CHECK(log.events[0].projected == 7);
}

TEST_CASE("forecast_after: a burst early in the period is not extrapolated until that fraction has passed",
          "[quota_forecast]") {
  const auto clock = clock_at(monday + 30min);
  SECTION("the default, 0.1: the burst waits for 02:24") {
    quota_log log;
    logged_tracker t{{.windows = {quota_window::per_day(100)}, .alerts = {}, .forecast_alert = 1.0}, clock,
                     armor::memory_quota_storage{}, std::ref(log)};
    REQUIRE(t.try_consume(10));  // 480 projected at 00:30
    CHECK(log.events.empty());
    clock.advance(1h + 54min - 1ns);  // 02:24 less 1 ns
    REQUIRE(t.try_consume(0));
    CHECK(log.events.empty());
    clock.advance(1ns);  // 02:24: 10 x 24h / 2.4h = 100
    REQUIRE(t.try_consume(0));
    REQUIRE(log.events.size() == 1);
    CHECK(log.events[0].projected == 100);
  }
  SECTION("0: the first consumption projects") {
    quota_log log;
    logged_tracker t{
        {.windows = {quota_window::per_day(100)}, .alerts = {}, .forecast_alert = 1.0, .forecast_after = 0.0},
        clock, armor::memory_quota_storage{}, std::ref(log)};
    REQUIRE(t.try_consume(10));
    REQUIRE(log.events.size() == 1);
    CHECK(log.events[0].projected == 480);
  }
}

TEST_CASE("forecasts count settled use: a reservation counts once committed, seen by the next consumption",
          "[quota_forecast]") {
  const auto clock = clock_at(monday + 12h);
  quota_log log;
  logged_tracker t{{.windows = {quota_window::per_day(100)}, .forecast_alert = 0.9}, clock,
                   armor::memory_quota_storage{}, std::ref(log)};
  auto d = t.reserve(45);  // 90 projected if it were spent
  REQUIRE(d);
  CHECK(log.events.empty());
  d.permit().commit(44);
  REQUIRE(t.try_consume(1));  // 45 settled at noon: 90 projected, 90 % of 100
  REQUIRE(log.events.size() == 1);
  CHECK(log.events[0].kind == quota_alert_kind::forecast);
  CHECK(log.events[0].threshold == 0.9);
  CHECK(log.events[0].used == 45);
  CHECK(log.events[0].projected == 90);
}

TEST_CASE("a forecast crossed by a commit that fills the window fires at the next refusal", "[quota_forecast]") {
  const auto clock = clock_at(monday + 13h);  // past forecast_after
  quota_log log;
  logged_tracker t{
      {.windows = {quota_window::per_day(100)}, .alerts = {1.0}, .forecast_alert = 1.0, .forecast_after = 0.5},
      clock, armor::memory_quota_storage{}, std::ref(log)};
  auto r = t.reserve(50);  // pending: not settled use yet
  REQUIRE(r);
  auto p = std::move(r).permit();
  REQUIRE(t.try_consume(50));  // 100 counted, 50 of them pending: 50 settled projects 92 < 100
  CHECK(t.stats().forecast_alerts == 0);
  p.commit(50);                  // 100 of 100 settled at 13:00 (184 projected); nothing granted checks it
  CHECK_FALSE(t.try_consume(1));  // refused: the refusal hears the forecast
  CHECK(t.stats().forecast_alerts == 1);
  clock.advance(1h);
  CHECK_FALSE(t.try_consume(1));
  CHECK(t.stats().forecast_alerts == 1);  // once per period
  std::size_t forecasts = 0;
  for (const auto& e : log.events) forecasts += e.kind == quota_alert_kind::forecast ? 1 : 0;
  CHECK(forecasts == 1);
}

TEST_CASE("forecast alerts: each fixed window on its own, rolling and lifetime windows never", "[quota_forecast]") {
  const auto clock = clock_at(monday + 12h);  // Monday noon
  quota_log log;
  logged_tracker t{{.windows = {quota_window::per_day(1000), quota_window::per_week(7000),
                                quota_window::rolling(100, 1h, 60), quota_window::lifetime(100)},
                    .alerts = {},
                    .forecast_alert = 1.0,
                    .forecast_after = 0.0},
                   clock, armor::memory_quota_storage{}, std::ref(log)};
  REQUIRE(t.try_consume(99));  // the day: 198 projected; the week (12 h of 168): 1386
  CHECK(log.events.empty());
  REQUIRE(t.try_consume(1));  // 100 by noon: the rolling and lifetime windows are full, not forecast
  CHECK(log.events.empty());
  clock.advance(12h);  // Tuesday 00:00
  auto refused = t.try_consume(1);
  CHECK(refused.code() == armor::errc::quota_exhausted);
  CHECK(log.events.empty());
  CHECK(t.stats().forecast_alerts == 0);
  // A tracker whose day runs out first: 600 of 1000 by noon.
  quota_log log2;
  logged_tracker d{{.windows = {quota_window::per_day(1000), quota_window::per_week(7000)},
                    .alerts = {},
                    .forecast_alert = 1.0,
                    .forecast_after = 0.0},
                   clock_at(monday + 12h), armor::memory_quota_storage{}, std::ref(log2)};
  REQUIRE(d.try_consume(600));
  REQUIRE(log2.events.size() == 2);  // the day: 1200; the week: 600 x 14 = 8400
  CHECK(log2.events[0].window == 0);
  CHECK(log2.events[0].projected == 1200);
  CHECK(log2.events[1].window == 1);
  CHECK(log2.events[1].projected == 8400);
  CHECK(log2.events[1].resets_in == days{6} + 12h);
}

TEST_CASE("charge() counts toward the forecast as any consumption", "[quota_forecast]") {
  const auto clock = clock_at(monday + 6h);
  quota_log log;
  logged_tracker t{{.windows = {quota_window::per_day(100)}, .alerts = {}, .forecast_alert = 1.0}, clock,
                   armor::memory_quota_storage{}, std::ref(log)};
  CHECK(t.charge(25) == armor::quota_tracker_status::granted);
  REQUIRE(log.events.size() == 1);
  CHECK(log.events[0].projected == 100);
}

TEST_CASE("forecast options are checked, named, and fixed at construction", "[quota_forecast]") {
  const std::vector<quota_window> w{quota_window::per_day(10)};
  require_refused({.windows = w, .forecast_alert = 0.0}, "forecast_alert");
  require_refused({.windows = w, .forecast_alert = 1.5}, "forecast_alert");
  require_refused({.windows = w, .forecast_alert = std::nan("")}, "forecast_alert");
  require_refused({.windows = w, .forecast_after = -0.1}, "forecast_after");
  require_refused({.windows = w, .forecast_after = 1.0}, "forecast_after");
  require_refused({.windows = w, .forecast_after = std::nan("")}, "forecast_after");
  armor::quota_tracker<armor::manual_clock> t{{.windows = w, .forecast_alert = 1.0}, armor::manual_clock{}};
  CHECK(t.options().forecast_alert == 1.0);
  CHECK(t.options().forecast_after == 0.1);
  CHECK_THROWS_AS(t.reconfigure({.windows = w, .forecast_alert = 0.9}), armor::error);
  CHECK_THROWS_AS(t.reconfigure({.windows = w, .forecast_alert = 1.0, .forecast_after = 0.2}), armor::error);
  t.reconfigure({.windows = {quota_window::per_day(20)}, .forecast_alert = 1.0});  // the limit may change
  CHECK(t.options().windows[0].limit == 20);
}

TEST_CASE("a forecast follows a reconfigured limit", "[quota_forecast]") {
  const auto clock = clock_at(monday + 12h);
  quota_log log;
  logged_tracker t{{.windows = {quota_window::per_day(100)}, .alerts = {}, .forecast_alert = 1.0}, clock,
                   armor::memory_quota_storage{}, std::ref(log)};
  REQUIRE(t.try_consume(40));  // 80 projected
  CHECK(log.events.empty());
  t.reconfigure({.windows = {quota_window::per_day(60)}, .alerts = {}, .forecast_alert = 1.0});
  REQUIRE(t.try_consume(0));  // 80 of 60
  REQUIRE(log.events.size() == 1);
  CHECK(log.events[0].limit == 60);
  CHECK(log.events[0].projected == 80);
}

// ---------------------------------------------------------------- isolate_until

TEST_CASE("isolate_until() holds the breaker open until the time, then the first call is a probe",
          "[quota_forecast][circuit_breaker]") {
  armor::manual_clock clock;
  breaker_log log;
  logged_breaker b{{.open_for = 1s}, clock, std::ref(log)};
  const armor::timestamp t0 = armor::to_timestamp(clock.now());
  b.isolate_until(t0 + 4h);
  CHECK(b.state() == breaker_state::isolated);
  REQUIRE(log.events.size() == 1);
  CHECK(log.events[0].to == breaker_state::isolated);
  CHECK(log.events[0].reason == breaker_reason::isolated);
  CHECK(log.events[0].open_for == 4h);
  clock.advance(1h);
  auto d = b.try_acquire();
  CHECK(d.code() == armor::errc::circuit_open);
  CHECK(d.retry_after() == 3h);
  armor::context ctx(armor::to_timestamp(clock.now()));
  auto a = b.admit(ctx);
  CHECK(a.kind == armor::admission_kind::rejected);
  CHECK_FALSE(a.retryable);
  CHECK(a.retry_after == 3h);
  // A shorter isolation does not shorten it; a later one extends it (no event).
  b.isolate_until(t0 + 2h);
  CHECK(b.try_acquire().retry_after() == 3h);
  b.isolate_for(3h + 30min);
  CHECK(b.try_acquire().retry_after() == 3h + 30min);
  CHECK(log.events.size() == 1);
  clock.advance(3h + 30min - 1ns);
  CHECK(b.try_acquire().retry_after() == 1ns);
  clock.advance(1ns);
  auto probe = b.try_acquire();
  REQUIRE(probe);
  CHECK(b.state() == breaker_state::half_open);
  CHECK_FALSE(b.try_acquire());  // one probe at a time (half_open_max_calls = 1)
  b.record(std::move(probe).permit(), armor::verdict::success());
  CHECK(b.state() == breaker_state::closed);
  REQUIRE(log.events.size() == 3);
  CHECK(log.events[1].from == breaker_state::isolated);
  CHECK(log.events[1].to == breaker_state::half_open);
  CHECK(log.events[1].reason == breaker_reason::open_elapsed);
  CHECK(log.events[2].to == breaker_state::closed);
}

TEST_CASE("isolate() is not shortened by isolate_until(); reset() ends either", "[quota_forecast][circuit_breaker]") {
  armor::manual_clock clock;
  armor::circuit_breaker<armor::manual_clock> b{{}, clock};
  b.isolate();
  b.isolate_for(1h);
  clock.advance(2h);
  CHECK(b.try_acquire().retry_after() == nanoseconds::max());
  CHECK(b.state() == breaker_state::isolated);
  b.reset();
  b.isolate_for(1h);
  b.isolate();  // until reset(), now
  clock.advance(2h);
  CHECK_FALSE(b.try_acquire());
  b.reset();
  CHECK(b.try_acquire());
}

TEST_CASE("isolate_until(): the time left saturates for an extreme `now`", "[quota_forecast][circuit_breaker]") {
  armor::manual_clock clock;
  breaker_log log;
  logged_breaker b{{}, clock, std::ref(log)};
  const auto t0 = armor::to_timestamp(clock.now());
  const armor::timestamp earliest{nanoseconds::min()};
  b.isolate_until(t0 + 1h, earliest);
  REQUIRE(log.events.size() == 1);
  CHECK(log.events[0].open_for == nanoseconds::max());
  auto d = b.try_acquire(earliest);
  CHECK_FALSE(d);
  CHECK(d.retry_after() == nanoseconds::max());
  CHECK(b.try_acquire(t0 + 1h - 1us).retry_after() == 1us);
  // An extension (a later end) and a shorter one change nothing but the end.
  b.isolate_until(t0 + 2h, t0);
  b.isolate_until(t0 + 1min, t0);
  CHECK(log.events.size() == 1);
  CHECK(b.try_acquire(t0 + 1h).retry_after() == 1h);
  CHECK(b.try_acquire(t0 + 2h));  // the probe
  CHECK(b.state() == breaker_state::half_open);
}

// ---------------------------------------------------------------- quota exhausted -> isolate the breaker

TEST_CASE("isolate_on_exhaustion: a quota refusal isolates the breaker until the quota resets, then it probes "
          "and closes",
          "[quota_forecast][circuit_breaker]") {
  // The service's breaker, and its quota: 3 requests a day (midnight UTC).
  const auto clock = clock_at(monday + 20h);
  breaker_log log;
  logged_breaker breaker{{.failure_threshold = 5, .open_for = 30s}, clock, std::ref(log)};
  armor::quota_tracker<armor::manual_clock> quota{{.windows = {quota_window::per_day(3)}}, clock};
  auto p = armor::pipeline{clock, std::ref(breaker), armor::isolate_on_exhaustion{breaker}, std::ref(quota)};
  int calls = 0;
  for (int i = 0; i < 3; ++i) REQUIRE(p.try_execute([&] { return ++calls; }).has_value());
  // 20:00, the 4th: the quota refuses, until midnight.
  auto r = p.try_execute([&] { return ++calls; });
  CHECK(r.code() == armor::errc::quota_exhausted);
  CHECK(r.retry_after() == 4h);
  CHECK(breaker.state() == breaker_state::isolated);
  REQUIRE(log.events.size() == 1);
  CHECK(log.events[0].open_for == 4h);
  // 21:00: the breaker refuses without asking the quota.
  clock.advance(1h);
  auto held = p.try_execute([&] { return ++calls; });
  CHECK(held.code() == armor::errc::circuit_open);
  CHECK(held.retry_after() == 3h);
  CHECK(quota.stats().exhausted == 1);
  CHECK(calls == 3);
  // Midnight: the first call is the breaker's probe; the quota has reset.
  clock.advance(3h);
  CHECK(p.try_execute([&] { return ++calls; }).value() == 4);
  CHECK(breaker.state() == breaker_state::closed);
  REQUIRE(log.events.size() == 3);
  CHECK(log.events[1].to == breaker_state::half_open);
  CHECK(log.events[2].to == breaker_state::closed);
  CHECK(quota.usage(0).used == 1);
  // Other refusals and failures leave the breaker to its own rules.
  auto big = p.try_execute([&] { return ++calls; }, {.cost = 4});
  CHECK(big.code() == armor::errc::request_too_large);
  CHECK(breaker.state() == breaker_state::closed);
}

TEST_CASE("isolate_on_exhaustion leaves an operator's disable() alone", "[quota_forecast][circuit_breaker]") {
  const auto clock = clock_at(monday + 20h);
  armor::circuit_breaker<armor::manual_clock> breaker{{}, clock};
  armor::quota_tracker<armor::manual_clock> quota{{.windows = {quota_window::per_day(1)}}, clock};
  auto p = armor::pipeline{clock, std::ref(breaker), armor::isolate_on_exhaustion{breaker}, std::ref(quota)};
  breaker.disable();
  REQUIRE(p.try_execute([] { return 1; }).has_value());
  CHECK(p.try_execute([] { return 2; }).code() == armor::errc::quota_exhausted);
  CHECK(breaker.state() == breaker_state::disabled);
  breaker.reset();  // the operator's reset: refusals isolate again
  CHECK(p.try_execute([] { return 3; }).code() == armor::errc::quota_exhausted);
  CHECK(breaker.state() == breaker_state::isolated);
}

TEST_CASE("isolate_on_exhaustion: a lifetime budget, once spent, isolates until reset()",
          "[quota_forecast][circuit_breaker]") {
  const auto clock = clock_at(monday);
  armor::circuit_breaker<armor::manual_clock> breaker{{}, clock};
  armor::quota_tracker<armor::manual_clock> session{{.windows = {quota_window::lifetime(2)}}, clock};
  auto p = armor::pipeline{clock, std::ref(breaker), armor::isolate_on_exhaustion{breaker}, std::ref(session)};
  REQUIRE(p.try_execute([] { return 1; }, {.cost = 2}).has_value());
  CHECK(p.try_execute([] { return 1; }).code() == armor::errc::quota_exhausted);
  clock.advance(days{365});
  auto r = p.try_execute([] { return 1; });
  CHECK(r.code() == armor::errc::circuit_open);
  CHECK_FALSE(r.retry_after().has_value());
  CHECK(breaker.state() == breaker_state::isolated);
}

TEST_CASE("docs/quota_tracker.md, \"Quota exhausted: isolate the breaker\": the example, on the real clocks",
          "[quota_forecast][circuit_breaker]") {
  const auto today = floor<days>(system_clock::now());
  // The example, as the doc shows it:
  // The LLM API's breaker, and the team's daily budget for it: $40 a day, in micro-dollars.
  armor::circuit_breaker llm_breaker{{.failure_threshold = 5, .open_for = 30s}};
  armor::quota_tracker budget{{.windows = {armor::quota_window::per_day(40'000'000)}}};
  auto llm = armor::pipeline{
      armor::deadline{30s},
      std::ref(llm_breaker),
      armor::isolate_on_exhaustion{llm_breaker},  // budget spent: isolated until midnight UTC
      std::ref(budget),
  };
  auto r = llm.try_execute([&] { return call_llm(); }, {.cost = 40'000});
  // Spent: r.code() == quota_exhausted, and from the next call on circuit_open
  // (llm_breaker.state() == isolated) with retry_after = the time to midnight.
  // (end of the example)
  REQUIRE(r.has_value());
  CHECK(budget.charge(40'000'000 - 40'000) == armor::quota_tracker_status::granted);  // the day's budget, spent
  const nanoseconds to_midnight_before = today + days{1} - system_clock::now();
  auto spent = llm.try_execute([&] { return call_llm(); }, {.cost = 40'000});
  const nanoseconds to_midnight_after = today + days{1} - system_clock::now();
  auto held = llm.try_execute([&] { return call_llm(); }, {.cost = 40'000});
  if (floor<days>(system_clock::now()) != today) return;  // midnight UTC came during the test: nothing to say
  CHECK(spent.code() == armor::errc::quota_exhausted);
  REQUIRE(spent.retry_after().has_value());
  // The time to midnight UTC, as the tracker read it between these two readings.
  CHECK(*spent.retry_after() <= to_midnight_before);
  CHECK(*spent.retry_after() >= to_midnight_after);
  CHECK(held.code() == armor::errc::circuit_open);
  CHECK(llm_breaker.state() == breaker_state::isolated);
  REQUIRE(held.retry_after().has_value());
  CHECK(*held.retry_after() > 0ns);
  CHECK(*held.retry_after() <= *spent.retry_after() + 1us);  // the breaker keeps microseconds, rounded up
  CHECK(budget.stats().exhausted == 1);  // the held call never reached the budget
}
