// armor/fmt.hpp: what each formatter prints, on a manual clock, with exact
// expected text. Stats and events print their fields() in order, as
// `name=value` pairs; decisions print "granted" or "<code> (retry after X)".
#include <armor/adaptive_limit.hpp>
#include <armor/adaptive_throttle.hpp>
#include <armor/backoff.hpp>
#include <armor/bulkhead.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/fmt.hpp>
#include <armor/http/status.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::string duration(std::chrono::nanoseconds d) {
  fmt::memory_buffer out;
  armor::detail::fmt_duration(fmt::appender(out), d);
  return fmt::to_string(out);
}

/// A listener that keeps what fmt prints for each event it hears
/// (single-threaded tests: push_back throws only on memory exhaustion).
template <class Event>
struct printed_events {
  std::vector<std::string> lines;
  void operator()(const Event& e) noexcept { lines.push_back(fmt::format("{}", e)); }
};

/// fmt::format with a spec only known at run time, for the types that refuse one.
template <class T>
std::string with_spec(std::string_view spec, const T& v) {
  return fmt::format(fmt::runtime(spec), v);
}

}  // namespace

TEST_CASE("fmt: enumerations print their names and take a string's spec") {
  CHECK(fmt::format("{}", armor::breaker_state::half_open) == "half_open");
  CHECK(fmt::format("{}", armor::breaker_reason::failure_rate) == "failure_rate");
  CHECK(fmt::format("{}", armor::backoff_stop::budget) == "budget");
  CHECK(fmt::format("{}", armor::backoff_stop::refused) == "refused");
  CHECK(fmt::format("{}", armor::errc::wait_exceeds_deadline) == "wait_exceeds_deadline");
  CHECK(fmt::format("{}", armor::errc::client_throttled) == "client_throttled");
  CHECK(fmt::format("{}", armor::errc::overloaded) == "overloaded");
  CHECK(fmt::format("{}", armor::errc::draining) == "draining");
  CHECK(fmt::format("{}", armor::backoff_event_kind::give_up) == "give_up");
  CHECK(fmt::format("{}", armor::quota_tracker_status::exhausted) == "exhausted");
  CHECK(fmt::format("{}", armor::token_bucket_status::too_large) == "too_large");
  CHECK(fmt::format("{}", armor::bulkhead_event_kind::abandoned) == "abandoned");
  CHECK(fmt::format("{}", armor::outcome::timeout) == "timeout");
  CHECK(fmt::format("{}", armor::errc::quota_exhausted) == "quota_exhausted");
  CHECK(fmt::format("{}", armor::errc::concurrency_limited) == "concurrency_limited");
  CHECK(fmt::format("{}", armor::priority::sheddable) == "sheddable");
  CHECK(fmt::format("{}", armor::jitter_mode::proportional) == "proportional");
  CHECK(fmt::format("{}", armor::backoff_schedule::decorrelated) == "decorrelated");
  CHECK(fmt::format("{}", armor::quota_window_kind::rolling) == "rolling");
  CHECK(fmt::format("{}", armor::breaker_window::time) == "time");
  CHECK(fmt::format("{}", armor::metric_type::counter) == "counter");
  CHECK(fmt::format("[{:>9}]", armor::breaker_state::open) == "[     open]");
  CHECK(fmt::format("[{:-<8}]", armor::outcome::failure) == "[failure-]");
  CHECK(fmt::format("[{:^11}]", armor::token_bucket_status::denied) == "[  denied   ]");
  CHECK(fmt::format("[{:.3}]", armor::errc::circuit_open) == "[cir]");
  // A value with no enumerator prints what to_string says of it.
  CHECK(fmt::format("{}", static_cast<armor::breaker_state>(200)) == "unknown");
}

TEST_CASE("fmt: every type but an enumeration refuses a format spec") {
  armor::manual_clock clock;
  armor::token_bucket bucket{{.rate = {10, 1s}, .burst = 1}, clock};
  const auto granted = bucket.try_acquire();
  const auto denied = bucket.try_acquire();
  CHECK_THROWS_AS(with_spec("{:>5}", armor::backoff_stats{}), fmt::format_error);
  CHECK_THROWS_AS(with_spec("{:>5}", armor::circuit_breaker_stats{}), fmt::format_error);
  CHECK_THROWS_AS(with_spec("{:x}", armor::quota_usage{}), fmt::format_error);
  CHECK_THROWS_AS(with_spec("{:>5}", armor::circuit_breaker_event{}), fmt::format_error);
  CHECK_THROWS_AS(with_spec("{:>5}", armor::backoff_event{}), fmt::format_error);
  CHECK_THROWS_AS(with_spec("{:>5}", granted), fmt::format_error);
  CHECK_THROWS_AS(with_spec("{:>5}", denied), fmt::format_error);
  CHECK_THROWS_AS(with_spec("{:>5}", armor::decision<>::granted()), fmt::format_error);
  CHECK_THROWS_AS(with_spec("{:>5}", armor::rate{1, 1s}), fmt::format_error);
  CHECK_THROWS_AS(with_spec("{:>5}", armor::verdict::success()), fmt::format_error);
  CHECK_THROWS_AS(with_spec("{:>5}", armor::failure{armor::errc::circuit_open, std::nullopt, nullptr}),
                  fmt::format_error);
  CHECK_THROWS_AS(with_spec("{:>5}", armor::result<int>{1}), fmt::format_error);
  CHECK_THROWS_AS(with_spec("{:>5}", armor::error{armor::errc::rate_limited}), fmt::format_error);
  // `{}` is accepted.
  CHECK(with_spec("{}", armor::rate{1, 1s}) == "1/s");
}

TEST_CASE("fmt: durations print compactly in the largest fitting unit") {
  CHECK(duration(0ns) == "0s");
  CHECK(duration(40ns) == "40ns");
  CHECK(duration(12us) == "12us");
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

TEST_CASE("fmt: a duration field prints in the same compact forms") {
  const auto event = [](std::chrono::nanoseconds after) {
    return fmt::format("{}", armor::token_bucket_event{.status = armor::token_bucket_status::denied, .tokens = 1,
                                                       .retry_after = after});
  };
  CHECK(event(1h + 30min) == "status=denied tokens=1 retry_after=1h30m");
  CHECK(event(2500ms) == "status=denied tokens=1 retry_after=2.5s");
  CHECK(event(250ms) == "status=denied tokens=1 retry_after=250ms");
  CHECK(event(12us) == "status=denied tokens=1 retry_after=12us");
  CHECK(event(40ns) == "status=denied tokens=1 retry_after=40ns");
  CHECK(event(0ns) == "status=denied tokens=1 retry_after=0s");
  CHECK(event(std::chrono::nanoseconds::max()) == "status=denied tokens=1 retry_after=never");
}

// ---------------------------------------------------------------- circuit breaker

TEST_CASE("fmt: circuit breaker stats, decisions and events") {
  armor::manual_clock clock;
  printed_events<armor::circuit_breaker_event> heard;
  armor::circuit_breaker breaker{{.failure_threshold = 2, .open_for = 30s, .count_calls = true}, clock,
                                 std::ref(heard)};
  CHECK(fmt::format("{}", breaker.stats()) ==
        "state=closed opened=0 successes=0 failures=0 throttled=0 ignored=0 slow_calls=0 rejections=0 "
        "consecutive_failures=0 "
        "probes_in_flight=0 window_calls=0 window_failures=0 window_slow_calls=0 failure_rate=0 slow_call_rate=0");
  for (int i = 0; i < 2; ++i) {
    auto d = breaker.try_acquire();
    CHECK(fmt::format("{}", d) == "granted");
    breaker.record(std::move(d).permit(), armor::verdict::failure());
  }
  CHECK(fmt::format("{}", breaker.try_acquire()) == "circuit_open (retry after 30s)");
  clock.advance(12s);
  CHECK(fmt::format("{}", breaker.try_acquire()) == "circuit_open (retry after 18s)");
  CHECK(fmt::format("{}", breaker.stats()) ==
        "state=open opened=1 successes=0 failures=2 throttled=0 ignored=0 slow_calls=0 rejections=2 "
        "consecutive_failures=0 "
        "probes_in_flight=0 window_calls=0 window_failures=0 window_slow_calls=0 failure_rate=0 slow_call_rate=0");
  clock.advance(18s);
  auto probe = breaker.try_acquire();
  CHECK(fmt::format("{}", probe) == "granted");
  CHECK(fmt::format("{}", breaker.stats()) ==
        "state=half_open opened=1 successes=0 failures=2 throttled=0 ignored=0 slow_calls=0 rejections=2 "
        "consecutive_failures=0 "
        "probes_in_flight=1 window_calls=0 window_failures=0 window_slow_calls=0 failure_rate=0 slow_call_rate=0");
  breaker.record(std::move(probe).permit(), armor::verdict::success());
  // The events: from, to, reason, open_for (zero unless it opened); no key outside keyed.
  REQUIRE(heard.lines.size() == 3);
  CHECK(heard.lines[0] == "from=closed to=open reason=failure_threshold open_for=30s");
  CHECK(heard.lines[1] == "from=open to=half_open reason=open_elapsed open_for=0s");
  CHECK(heard.lines[2] == "from=half_open to=closed reason=probes_succeeded open_for=0s");
}

TEST_CASE("fmt: circuit breaker stats without count_calls leave out successes and rejections") {
  armor::manual_clock clock;
  armor::circuit_breaker breaker{{.failure_threshold = 1, .open_for = 10s}, clock};
  {
    auto d = breaker.try_acquire();
    breaker.record(std::move(d).permit(), armor::verdict::success());
  }
  {
    auto d = breaker.try_acquire();
    breaker.record(std::move(d).permit(), armor::verdict::failure());
  }
  (void)breaker.try_acquire();  // refused, not counted
  CHECK(fmt::format("{}", breaker.stats()) ==
        "state=open opened=1 failures=1 throttled=0 ignored=0 slow_calls=0 consecutive_failures=0 probes_in_flight=0 "
        "window_calls=0 window_failures=0 window_slow_calls=0 failure_rate=0 slow_call_rate=0");
}

TEST_CASE("fmt: a circuit breaker's events carry its key") {
  armor::manual_clock clock;
  printed_events<armor::circuit_breaker_event> heard;
  armor::circuit_breaker breaker{{.failure_threshold = 1, .open_for = 1500ms}, clock, std::ref(heard), "checkout"};
  auto d = breaker.try_acquire();
  breaker.record(std::move(d).permit(), armor::verdict::failure());
  REQUIRE(heard.lines.size() == 1);
  CHECK(heard.lines[0] == "from=closed to=open reason=failure_threshold open_for=1.5s key=checkout");
}

TEST_CASE("fmt: circuit breaker window rates print as fractions") {
  armor::manual_clock clock;
  armor::circuit_breaker breaker{{.failure_threshold = 0, .failure_rate = 0.9, .window_size = 4, .minimum_calls = 4},
                                 clock};
  for (const bool ok : {true, false, true}) {
    auto d = breaker.try_acquire();
    breaker.record(std::move(d).permit(), ok ? armor::verdict::success() : armor::verdict::failure());
  }
  CHECK(fmt::format("{}", breaker.stats()) ==
        "state=closed opened=0 failures=1 throttled=0 ignored=0 slow_calls=0 consecutive_failures=0 probes_in_flight=0 "
        "window_calls=3 window_failures=1 window_slow_calls=0 failure_rate=0.3333333333333333 slow_call_rate=0");
  {
    auto d = breaker.try_acquire();
    breaker.record(std::move(d).permit(), armor::verdict::failure());
  }
  CHECK(fmt::format("{}", breaker.stats()) ==
        "state=closed opened=0 failures=2 throttled=0 ignored=0 slow_calls=0 consecutive_failures=1 probes_in_flight=0 "
        "window_calls=4 window_failures=2 window_slow_calls=0 failure_rate=0.5 slow_call_rate=0");
}

// ---------------------------------------------------------------- backoff

TEST_CASE("fmt: backoff stats, with and without counting and a budget") {
  armor::backoff_stats s;
  s.calls = 10;
  s.retries = 4;
  s.successes_after_retry = 2;
  s.exhausted = 1;
  s.budget_refusals = 3;
  s.deadline_stops = 5;
  s.non_retryable = 6;
  s.refusal_stops = 8;
  s.budget_tokens = 7.5;  // not printed: has_budget is false
  CHECK(fmt::format("{}", s) ==
        "retries=4 successes_after_retry=2 exhausted=1 budget_refusals=3 deadline_stops=5 non_retryable=6 "
        "refusal_stops=8");
  s.counting = true;
  CHECK(fmt::format("{}", s) ==
        "calls=10 retries=4 successes_after_retry=2 exhausted=1 budget_refusals=3 deadline_stops=5 non_retryable=6 "
        "refusal_stops=8");
  s.has_budget = true;
  CHECK(fmt::format("{}", s) ==
        "calls=10 retries=4 successes_after_retry=2 exhausted=1 budget_refusals=3 deadline_stops=5 non_retryable=6 "
        "refusal_stops=8 budget_tokens=7.5");

  const armor::backoff plain{};
  CHECK(fmt::format("{}", plain.stats()) ==
        "retries=0 successes_after_retry=0 exhausted=0 budget_refusals=0 deadline_stops=0 non_retryable=0 "
        "refusal_stops=0");
  const armor::backoff budgeted{{.budget = armor::retry_budget{.max_tokens = 10}, .count_calls = true}};
  CHECK(fmt::format("{}", budgeted.stats()) ==
        "calls=0 retries=0 successes_after_retry=0 exhausted=0 budget_refusals=0 deadline_stops=0 non_retryable=0 "
        "refusal_stops=0 budget_tokens=10");
}

TEST_CASE("fmt: backoff events print the failed attempt's verdict last") {
  CHECK(fmt::format("{}", armor::backoff_event{}) == "kind=retry attempt=0 delay=0s stop=exhausted last=success");
  CHECK(fmt::format("{}", armor::backoff_event{.kind = armor::backoff_event_kind::retry,
                                               .attempt = 1,
                                               .delay = 2s,
                                               .last = armor::verdict::retry_later(2s)}) ==
        "kind=retry attempt=1 delay=2s stop=exhausted last=failure (retryable, retry after 2s): operation_failed");
  CHECK(fmt::format("{}", armor::backoff_event{.kind = armor::backoff_event_kind::give_up,
                                               .attempt = 1,
                                               .stop = armor::backoff_stop::non_retryable,
                                               .last = armor::verdict::permanent_failure(armor::errc::rate_limited)}) ==
        "kind=give_up attempt=1 delay=0s stop=non_retryable last=failure: rate_limited");

  armor::manual_clock clock;
  printed_events<armor::backoff_event> heard;
  auto p = armor::pipeline{
      clock, armor::backoff{{.max_attempts = 3, .initial = 100ms, .jitter = armor::jitter_mode::none},
                            armor::thread_rng{}, std::ref(heard)}};
  const auto r = p.try_execute([]() -> int { throw std::runtime_error("boom"); });
  CHECK(fmt::format("{}", r) == "error: retries_exhausted: boom");
  REQUIRE(heard.lines.size() == 3);
  CHECK(heard.lines[0] == "kind=retry attempt=1 delay=100ms stop=exhausted last=failure (retryable): operation_failed");
  CHECK(heard.lines[1] == "kind=retry attempt=2 delay=200ms stop=exhausted last=failure (retryable): operation_failed");
  CHECK(heard.lines[2] == "kind=give_up attempt=3 delay=0s stop=exhausted last=failure (retryable): operation_failed");
}

// ---------------------------------------------------------------- token bucket

TEST_CASE("fmt: token bucket decisions, events and rates") {
  armor::manual_clock clock;
  printed_events<armor::token_bucket_event> heard;
  armor::token_bucket bucket{{.rate = {10, 1s}, .burst = 10}, clock, std::ref(heard)};
  CHECK(fmt::format("{}", bucket.try_acquire(4)) == "granted");
  CHECK(fmt::format("{}", bucket.try_acquire(6)) == "granted");
  CHECK(fmt::format("{}", bucket.try_acquire(3)) == "rate_limited (retry after 300ms)");
  CHECK(fmt::format("{}", bucket.try_acquire(11)) == "request_too_large");  // no wait helps: no retry_after
  CHECK(fmt::format("{}", bucket.try_acquire(-1)) == "invalid_argument");
  REQUIRE(heard.lines.size() == 2);
  CHECK(heard.lines[0] == "status=denied tokens=3 retry_after=300ms");
  CHECK(heard.lines[1] == "status=too_large tokens=11 retry_after=0s");
  clock.advance(100ms);
  const auto reserved = bucket.reserve(2, 1s);
  CHECK(fmt::format("{}", reserved) == "granted");
  CHECK(fmt::format("{}", bucket.reserve(1, 100ms)) == "rate_limited (retry after 200ms)");
  REQUIRE(heard.lines.size() == 3);
  CHECK(heard.lines[2] == "status=denied tokens=1 retry_after=200ms");

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

// ---------------------------------------------------------------- quota tracker

TEST_CASE("fmt: quota decisions, usage, events and stats") {
  armor::manual_clock clock;
  clock.set(armor::manual_clock::time_point{std::chrono::sys_days{std::chrono::year{2024} / 6 / 15}.time_since_epoch() + 12h});
  printed_events<armor::quota_tracker_event> heard;
  armor::quota_tracker quota{{.windows = {armor::quota_window::per_day(50)}}, clock, armor::memory_quota_storage{},
                             std::ref(heard)};
  // exhausted_in is a std::optional: printed only when it holds a value.
  CHECK(fmt::format("{}", quota.usage(0)) == "used=0 limit=50 resets_in=12h projected=0");
  CHECK(fmt::format("{}", quota.try_consume(40)) == "granted");
  // 40 units in the 12 hours since midnight: the last 10 would go in 3 hours.
  CHECK(fmt::format("{}", quota.usage(0)) == "used=40 limit=50 resets_in=12h exhausted_in=3h projected=80");
  clock.advance(1h);
  CHECK(fmt::format("{}", quota.usage(0)) == "used=40 limit=50 resets_in=11h exhausted_in=3h15m projected=73");
  CHECK(fmt::format("{}", quota.try_consume(11)) == "quota_exhausted (retry after 11h)");
  CHECK(fmt::format("{}", quota.try_consume(51)) == "request_too_large");
  CHECK(fmt::format("{}", quota.try_consume(-1)) == "invalid_argument");
  REQUIRE(heard.lines.size() == 1);
  CHECK(heard.lines[0] == "kind=used window=0 threshold=0.8 used=40 limit=50 resets_in=12h");
  CHECK(fmt::format("{}", quota.stats()) == "exhausted=1 too_large=1 invalid=1 unavailable=0 alerts=1 forecast_alerts=0");
}

// ---------------------------------------------------------------- bulkhead

TEST_CASE("fmt: bulkhead decisions, events and stats") {
  printed_events<armor::bulkhead_event> heard;
  armor::bulkhead slots{{.max_concurrent = 1}, std::ref(heard)};
  CHECK(fmt::format("{}", slots.stats()) == "in_use=0 queued=0 max_concurrent=1 max_queue=0 rejected=0 abandoned=0");
  auto held = slots.try_acquire();
  CHECK(fmt::format("{}", held) == "granted");
  // No wait is known to help a bulkhead: no retry_after.
  CHECK(fmt::format("{}", slots.try_acquire()) == "bulkhead_full");
  CHECK(fmt::format("{}", slots.stats()) == "in_use=1 queued=0 max_concurrent=1 max_queue=0 rejected=1 abandoned=0");
  REQUIRE(heard.lines.size() == 1);
  CHECK(heard.lines[0] == "kind=rejected in_use=1 queued=0");
  CHECK(fmt::format("{}", armor::bulkhead_event{.kind = armor::bulkhead_event_kind::queued, .in_use = 4,
                                                .queued = 2}) == "kind=queued in_use=4 queued=2");
}

// ---------------------------------------------------------------- adaptive_limit

TEST_CASE("fmt: adaptive limit decisions, events and stats") {
  printed_events<armor::adaptive_limit_event> heard;
  armor::manual_clock clock;
  armor::adaptive_limit<armor::aimd_limit, armor::manual_clock, std::reference_wrapper<printed_events<armor::adaptive_limit_event>>>
      lim{{.initial_limit = 1, .min_samples = 1}, clock, std::ref(heard), "db"};
  auto held = lim.try_acquire();
  CHECK(fmt::format("{}", held) == "granted");
  CHECK(fmt::format("{}", lim.try_acquire(armor::priority::sheddable)) == "concurrency_limited");
  REQUIRE(heard.lines.size() == 1);
  CHECK(heard.lines[0] == "kind=refused limit=1 previous_limit=0 in_flight=1 priority=sheddable key=db");
  // The call counters are printed only with count_calls.
  CHECK(fmt::format("{}", lim.stats()) ==
        "limit=1 in_flight=1 mean_latency=0s windows=0 samples=0 timeouts=0 throttled=0");
  lim.record(std::move(held).permit(), armor::verdict::success(), armor::to_timestamp(clock.now()) + 2s);
  REQUIRE(heard.lines.size() == 2);
  CHECK(heard.lines[1] == "kind=limit_changed limit=2 previous_limit=1 in_flight=0 priority=normal key=db");
}

TEST_CASE("fmt: adaptive throttle decisions, events and stats") {
  armor::manual_clock clock;
  printed_events<armor::adaptive_throttle_event> heard;
  armor::adaptive_throttle throttle{armor::adaptive_throttle_options{}, clock, armor::seeded_rng{1}, std::ref(heard)};
  CHECK(fmt::format("{}", throttle.stats()) == "requests=0 accepts=0 rejection_probability=0 refused=0");
  for (int i = 0; i < 10; ++i) throttle.record(throttle.try_acquire().permit(), armor::verdict::throttled());
  CHECK(fmt::format("{}", throttle.stats()) == "requests=10 accepts=0 rejection_probability=0.9 refused=0");
  clock.advance(30s);
  std::string refused;
  for (int i = 0; i < 100 && refused.empty(); ++i) {
    auto d = throttle.try_acquire();
    if (!d) refused = fmt::format("{}", d);
  }
  CHECK(refused == "client_throttled (retry after 1m30s)");  // bucket 0 leaves the window at 2 min
  REQUIRE(!heard.lines.empty());
  CHECK(heard.lines[0].rfind("kind=refused probability=0.9 requests=", 0) == 0);
  CHECK(heard.lines[0].find("retry_after=1m30s") != std::string::npos);
}

// ---------------------------------------------------------------- verdicts, failures, results, errors

TEST_CASE("fmt: verdicts, failures, results and errors") {
  CHECK(fmt::format("{}", armor::verdict::success()) == "success");
  CHECK(fmt::format("{}", armor::verdict::retry_later(2s)) == "failure (retryable, retry after 2s): operation_failed");
  CHECK(fmt::format("{}", armor::verdict::permanent_failure()) == "failure: operation_failed");
  CHECK(fmt::format("{}", armor::verdict::throttled(armor::errc::operation_failed, 2s)) ==
        "throttled (retryable, retry after 2s): operation_failed");
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

namespace user_code {
enum class colour { red, green };
// A user's own to_string, returning std::string: armor/fmt.hpp must not
// claim this enum (it is not armor's, and a string_view of the returned
// std::string would dangle).
inline std::string to_string(colour c) { return c == colour::red ? "red" : "green"; }
enum class level { low, high };
inline std::string_view to_string(level l) { return l == level::low ? "low" : "high"; }
struct my_stats {
  std::int64_t in_use = 0;
  static constexpr auto fields() noexcept {
    return std::tuple{armor::gauge("in_use", &my_stats::in_use, "my_in_use", "Calls inside.")};
  }
};
}  // namespace user_code

TEST_CASE("fmt: armor's generic formatters leave a user's own types alone") {
  static_assert(!fmt::is_formattable<user_code::colour>::value);
  static_assert(!fmt::is_formattable<user_code::level>::value);
  static_assert(!fmt::is_formattable<user_code::my_stats>::value);
  static_assert(fmt::is_formattable<armor::errc>::value);
  static_assert(fmt::is_formattable<armor::http::status_rule>::value);
  CHECK(fmt::format("{}", armor::http::status_rule::retryable_failure) == "retryable_failure");
}
