// armor/fmt.hpp: what each formatter prints, on a manual clock, with exact
// expected text.
#include <armor/fmt.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <fmt/format.h>

#include <chrono>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

using namespace std::chrono_literals;

namespace {

std::string duration(std::chrono::nanoseconds d) {
  fmt::memory_buffer out;
  armor::detail::fmt_duration(fmt::appender(out), d);
  return fmt::to_string(out);
}

}  // namespace

TEST_CASE("fmt: enumerations print their names and take a string's spec") {
  CHECK(fmt::format("{}", armor::breaker_state::half_open) == "half_open");
  CHECK(fmt::format("{}", armor::breaker_reason::failure_rate) == "failure_rate");
  CHECK(fmt::format("{}", armor::backoff_stop::budget) == "budget");
  CHECK(fmt::format("{}", armor::quota_status::exhausted) == "exhausted");
  CHECK(fmt::format("{}", armor::bucket_status::too_large) == "too_large");
  CHECK(fmt::format("{}", armor::outcome::timeout) == "timeout");
  CHECK(fmt::format("{}", armor::errc::quota_exhausted) == "quota_exhausted");
  CHECK(fmt::format("{}", armor::jitter_mode::proportional) == "proportional");
  CHECK(fmt::format("{}", armor::backoff_schedule::decorrelated) == "decorrelated");
  CHECK(fmt::format("{}", armor::quota_window_kind::rolling) == "rolling");
  CHECK(fmt::format("{}", armor::breaker_window::time) == "time");
  CHECK(fmt::format("[{:>9}]", armor::breaker_state::open) == "[     open]");
  CHECK(fmt::format("[{:-<8}]", armor::outcome::failure) == "[failure-]");
}

TEST_CASE("fmt: a struct's formatter refuses a spec") {
  const std::string spec = "{:>5}";
  CHECK_THROWS_AS(fmt::format(fmt::runtime(spec), armor::backoff_stats{}), fmt::format_error);
}

TEST_CASE("fmt: durations print compactly in the largest fitting unit") {
  CHECK(duration(0ns) == "0s");
  CHECK(duration(40ns) == "40ns");
  CHECK(duration(1500ns) == "1.5us");
  CHECK(duration(250ms) == "250ms");
  CHECK(duration(1234567ns) == "1.234ms");
  CHECK(duration(2500ms) == "2.5s");
  CHECK(duration(30s) == "30s");
  CHECK(duration(90s) == "1m30s");
  CHECK(duration(1h) == "1h");
  CHECK(duration(1h + 30min) == "1h30m");
  CHECK(duration(11h + 58min + 500ms) == "11h58m0.5s");
  CHECK(duration(-2s) == "-2s");
  CHECK(duration(std::chrono::nanoseconds::max()) == "never");
}

TEST_CASE("fmt: circuit breaker stats and transitions") {
  armor::manual_clock clock;
  std::vector<std::string> heard;
  auto listener = [&](const armor::circuit_breaker_event& e) { heard.push_back(fmt::format("{}", e)); };
  armor::circuit_breaker breaker{{.failure_threshold = 2, .open_for = 30s, .count_calls = true}, clock,
                                 std::ref(listener)};
  CHECK(fmt::format("{}", breaker.stats()) ==
        "state=closed opened=0 successes=0 failures=0 slow_calls=0 ignored=0 rejections=0 consecutive_failures=0 "
        "probes_in_flight=0 window_calls=0 window_failures=0 window_slow_calls=0 failure_rate=0% slow_call_rate=0%");
  for (int i = 0; i < 2; ++i) {
    auto a = breaker.try_acquire();
    breaker.record(std::move(a.permit), armor::verdict::failure());
  }
  (void)breaker.try_acquire();  // refused
  CHECK(fmt::format("{}", breaker.stats()) ==
        "state=open opened=1 successes=0 failures=2 slow_calls=0 ignored=0 rejections=1 consecutive_failures=0 "
        "probes_in_flight=0 window_calls=0 window_failures=0 window_slow_calls=0 failure_rate=0% slow_call_rate=0%");
  clock.advance(30s);
  auto probe = breaker.try_acquire();
  breaker.record(std::move(probe.permit), armor::verdict::success());
  REQUIRE(heard.size() == 3);
  CHECK(heard[0] == "closed -> open (failure_threshold) for 30s");
  CHECK(heard[1] == "open -> half_open (open_elapsed)");
  CHECK(heard[2] == "half_open -> closed (probes_succeeded)");
}

TEST_CASE("fmt: circuit breaker window rates print as percentages") {
  armor::manual_clock clock;
  armor::circuit_breaker breaker{{.failure_threshold = 0, .failure_rate = 0.9, .window_size = 3, .minimum_calls = 3},
                                 clock};
  for (const bool ok : {true, false, true}) {
    auto a = breaker.try_acquire();
    breaker.record(std::move(a.permit), ok ? armor::verdict::success() : armor::verdict::failure());
  }
  const std::string text = fmt::format("{}", breaker.stats());
  CHECK(text.find("window_calls=3 window_failures=1 window_slow_calls=0 failure_rate=33.3% slow_call_rate=0%") !=
        std::string::npos);
}

TEST_CASE("fmt: backoff stats") {
  armor::backoff_stats s;
  s.calls = 10;
  s.retries = 4;
  s.successes_after_retry = 2;
  s.exhausted = 1;
  s.budget_refusals = 3;
  s.deadline_stops = 5;
  s.non_retryable = 6;
  CHECK(fmt::format("{}", s) ==
        "calls=10 retries=4 successes_after_retry=2 exhausted=1 budget_refusals=3 deadline_stops=5 non_retryable=6");
}

TEST_CASE("fmt: token bucket decisions and rates") {
  armor::manual_clock clock;
  armor::token_bucket bucket{{.rate = {10, 1s}, .burst = 10}, clock};
  CHECK(fmt::format("{}", bucket.try_acquire(4)) == "granted 4 of 10 (6 left)");
  CHECK(fmt::format("{}", bucket.try_acquire(6)) == "granted 6 of 10 (0 left)");
  CHECK(fmt::format("{}", bucket.try_acquire(3)) == "denied 3 of 10 (0 left, retry after 300ms)");
  CHECK(fmt::format("{}", bucket.try_acquire(11)) == "too_large: 11 > burst 10");
  CHECK(fmt::format("{}", bucket.try_acquire(-1)) == "invalid: -1 tokens");
  const auto r = bucket.reserve(2, 1s);
  CHECK(fmt::format("{}", r.decision).starts_with("granted 2 of 10 (0 left, due in 200ms)"));

  CHECK(fmt::format("{}", armor::rate{100, 1s}) == "100/s");
  CHECK(fmt::format("{}", armor::rate{60, 1min}) == "60/min");
  CHECK(fmt::format("{}", armor::rate{5000, 1h}) == "5000/h");
  CHECK(fmt::format("{}", armor::rate{50, 24h}) == "50/d");
  CHECK(fmt::format("{}", armor::rate{1, 20ms}) == "50/s");
  CHECK(fmt::format("{}", armor::rate{3, 10s}) == "18/min");
  CHECK(fmt::format("{}", armor::rate{3, 7s}) == "3/7s");
  CHECK(fmt::format("{}", armor::rate{7, 1ms}) == "7000/s");
  // What the formatter writes, rate::parse reads back.
  for (const armor::rate r2 : {armor::rate{100, 1s}, armor::rate{60, 1min}, armor::rate{3, 10s}, armor::rate{7, 1ms},
                               armor::rate{3, 7s}, armor::rate{1, 1500ms}}) {
    CHECK(armor::rate::parse(fmt::format("{}", r2)) == r2);
  }
}

TEST_CASE("fmt: token bucket stats, with and without counters") {
  armor::manual_clock clock;
  armor::token_bucket counted{{.rate = {50, 1s}, .burst = 10, .count_calls = true}, clock};
  (void)counted.try_acquire(7);
  (void)counted.try_acquire(5);
  (void)counted.try_acquire(11);
  CHECK(fmt::format("{}", counted.stats()) ==
        "rate=50/s burst=10 available=3 until_full=140ms granted=1 rejected=1 too_large=1");
  armor::token_bucket plain{{.rate = {50, 1s}, .burst = 10}, clock};
  CHECK(fmt::format("{}", plain.stats()) == "rate=50/s burst=10 available=10 until_full=0s");
}

TEST_CASE("fmt: quota decisions, usage, alerts and stats") {
  armor::manual_clock clock;
  clock.set(armor::manual_clock::time_point{std::chrono::sys_days{std::chrono::year{2024} / 6 / 15}.time_since_epoch() + 12h});
  std::vector<std::string> alerts;
  struct listener {
    std::vector<std::string>* out;
    void on_quota_alert(const armor::quota_alert& a) const { out->push_back(fmt::format("{}", a)); }
  };
  armor::quota_tracker quota{{.windows = {armor::quota_window::per_day(50)}}, clock, armor::memory_quota_storage{},
                             listener{&alerts}};
  CHECK(fmt::format("{}", quota.try_consume(40)) == "granted");
  // 40 units in the 12 hours since midnight: the last 10 would go in 3 hours.
  CHECK(fmt::format("{}", quota.usage(0)) == "used=40/50 (80%) resets_in=12h exhausted_in=3h");
  clock.advance(1h);
  CHECK(fmt::format("{}", quota.usage(0)) == "used=40/50 (80%) resets_in=11h exhausted_in=3h15m");
  CHECK(fmt::format("{}", quota.try_consume(11)) == "exhausted: window 0 at 40/50, retry after 11h");
  CHECK(fmt::format("{}", quota.try_consume(51)) == "too_large: window 0 limit 50");
  CHECK(fmt::format("{}", quota.try_consume(-1)) == "invalid");
  REQUIRE(alerts.size() == 1);
  CHECK(alerts[0] == "window 0 reached 80%: 40/50, resets in 12h");
  CHECK(fmt::format("{}", quota.stats()) == "exhausted=1 too_large=1 invalid=1 unavailable=0 alerts=1");
}

TEST_CASE("fmt: verdicts, failures, results and errors") {
  CHECK(fmt::format("{}", armor::verdict::success()) == "success");
  CHECK(fmt::format("{}", armor::verdict::retry_later(2s)) == "failure (retryable, retry after 2s): operation_failed");
  CHECK(fmt::format("{}", armor::verdict::permanent_failure()) == "failure: operation_failed");
  CHECK(fmt::format("{}", armor::verdict::failure(std::make_error_code(std::errc::connection_refused))) ==
        fmt::format("failure (retryable): generic:{} ({})", static_cast<int>(std::errc::connection_refused),
                    std::make_error_code(std::errc::connection_refused).message()));

  const armor::failure open{armor::errc::circuit_open, 1500ms, nullptr};
  CHECK(fmt::format("{}", open) == "circuit_open (retry after 1.5s)");
  const armor::failure thrown{armor::errc::retries_exhausted, std::nullopt,
                              std::make_exception_ptr(std::runtime_error("upstream said no"))};
  CHECK(fmt::format("{}", thrown) == "retries_exhausted: upstream said no");
  const armor::failure odd{armor::errc::operation_failed, std::nullopt, std::make_exception_ptr(42)};
  CHECK(fmt::format("{}", odd) == "operation_failed: (an exception not derived from std::exception)");

  CHECK(fmt::format("{}", armor::result<int>{42}) == "42");
  CHECK(fmt::format("{}", armor::result<std::string>{std::string("body")}) == "body");
  CHECK(fmt::format("{}", armor::result<void>{std::in_place}) == "ok");
  CHECK(fmt::format("{}", armor::result<int>{open}) == "error: circuit_open (retry after 1.5s)");
  struct opaque {};
  CHECK(fmt::format("{}", armor::result<opaque>{opaque{}}) == "ok");

  const armor::error e{armor::errc::rate_limited, 100ms};
  CHECK(fmt::format("{}", e) == "rate_limited (retry after 100ms): rate limited");
}

TEST_CASE("fmt: a pipeline's result reads well") {
  armor::manual_clock clock;
  armor::circuit_breaker breaker{{.failure_threshold = 1, .open_for = 10s}, clock};
  const auto p = armor::pipeline{clock, std::ref(breaker)};
  CHECK(fmt::format("{}", p.try_execute([] { return 7; })) == "7");
  (void)p.try_execute([]() -> int { throw std::runtime_error("boom"); });
  CHECK(fmt::format("{}", p.try_execute([] { return 7; })) == "error: circuit_open (retry after 10s)");
}

TEST_CASE("keyed::for_each visits every key once with its instance") {
  armor::manual_clock clock;
  armor::keyed<armor::token_bucket<armor::manual_clock>> limits{{.rate = {1, 1s}, .burst = 5}, {.max_keys = 1000},
                                                                 clock};
  for (int i = 0; i < 300; ++i) {
    auto h = limits.get("client-" + std::to_string(i));
    (void)h->try_acquire(i % 5);
  }
  std::map<std::string, std::int64_t> seen;
  int visits = 0;
  limits.for_each([&](std::string_view key, const auto& bucket) {
    ++visits;
    seen[std::string(key)] = bucket.available(armor::to_timestamp(clock.now()));
  });
  CHECK(visits == 300);
  REQUIRE(seen.size() == 300);
  CHECK(seen["client-0"] == 5);
  CHECK(seen["client-3"] == 2);
  CHECK(seen["client-299"] == 1);
  CHECK(limits.erase("client-7"));
  visits = 0;
  limits.for_each([&](std::string_view key, const auto&) {
    ++visits;
    CHECK(key != "client-7");
  });
  CHECK(visits == 299);
}
