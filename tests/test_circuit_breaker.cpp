// armor::circuit_breaker: each rule of docs/circuit_breaker.md, on a manual clock.
#include <armor/circuit_breaker.hpp>
#include <armor/deadline.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"
#include "test_policies.hpp"

#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

using armor::breaker_reason;
using armor::breaker_state;
using breaker = armor::circuit_breaker<armor::manual_clock>;

struct event_log {
  std::vector<armor::circuit_breaker_event> events;
  void operator()(const armor::circuit_breaker_event& e) noexcept { events.push_back(e); }
};
using logged_breaker = armor::circuit_breaker<armor::manual_clock, std::reference_wrapper<event_log>>;

armor::verdict ok() { return armor::verdict::success(); }
armor::verdict bad() { return armor::verdict::failure(); }
armor::verdict of_kind(armor::outcome k) { return armor::verdict{k, false, std::nullopt, armor::errc::operation_failed}; }

// One call through the breaker, standalone: admitted (and settled with `v`) or not.
template <class B>
bool call(B& b, const armor::verdict& v) {
  auto d = b.try_acquire();
  if (!d) return false;
  b.record(std::move(d).permit(), v);
  return true;
}

template <class B>
void calls(B& b, int n, const armor::verdict& v) {
  for (int i = 0; i < n; ++i) REQUIRE(call(b, v));
}

// The message of the error a bad configuration throws (empty if none).
std::string refusal(const armor::circuit_breaker_options& o) {
  try {
    breaker b{o, armor::manual_clock{}};
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    return e.what();
  }
  return {};
}

bool mentions(const std::string& text, const std::string& word) { return text.find(word) != std::string::npos; }

struct io_failure : std::runtime_error {
  io_failure() : std::runtime_error("io") {}
};

}  // namespace

static_assert(armor::policy<armor::circuit_breaker<>>);
static_assert(armor::policy<breaker>);
static_assert(armor::policy<logged_breaker>);
static_assert(std::is_same_v<breaker::permit_type, armor::circuit_breaker_permit>);
static_assert(std::is_same_v<breaker::clock_type, armor::manual_clock>);
static_assert(armor::detail::needs_completion_time<breaker>());
static_assert(std::is_nothrow_move_constructible_v<armor::circuit_breaker_permit>);
static_assert(!std::is_copy_constructible_v<armor::circuit_breaker_permit>);
static_assert(std::is_move_constructible_v<breaker>);
static_assert(!std::is_copy_constructible_v<breaker>);
static_assert(sizeof(armor::circuit_breaker_permit) <= 24);

// ---------------------------------------------------------------- options

TEST_CASE("a default breaker is closed; five consecutive failures open it for 30 s") {
  armor::manual_clock clock;
  breaker b{{}, clock};
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.options().failure_threshold == 5);
  CHECK(b.options().open_for == 30s);
  calls(b, 4, bad());
  CHECK(b.state() == breaker_state::closed);
  calls(b, 1, bad());
  CHECK(b.state() == breaker_state::open);
  auto a = b.try_acquire();
  CHECK(!a);
  CHECK(a.retry_after() == 30s);
}

TEST_CASE("class template argument deduction picks steady_clock and no listener by default") {
  armor::circuit_breaker b{{.failure_threshold = 3}};
  static_assert(std::is_same_v<decltype(b), armor::circuit_breaker<armor::steady_clock, armor::no_listener>>);
  armor::manual_clock clock;
  armor::circuit_breaker m{{}, clock};
  static_assert(std::is_same_v<decltype(m), breaker>);
  CHECK(m.clock() == clock);
}

TEST_CASE("bad breaker options are refused at construction with a message naming the option") {
  using o = armor::circuit_breaker_options;
  CHECK(mentions(refusal(o{.failure_threshold = 70000}), "failure_threshold"));
  CHECK(mentions(refusal(o{.failure_rate = 0.0}), "failure_rate"));
  CHECK(mentions(refusal(o{.failure_rate = 1.5}), "failure_rate"));
  CHECK(mentions(refusal(o{.failure_rate = -0.1}), "failure_rate"));
  CHECK(mentions(refusal(o{.failure_rate = std::nan("")}), "failure_rate"));
  CHECK(mentions(refusal(o{.slow_call_threshold = 0s}), "slow_call_threshold"));
  CHECK(mentions(refusal(o{.slow_call_threshold = -1s}), "slow_call_threshold"));
  CHECK(mentions(refusal(o{.slow_call_rate = 0.0}), "slow_call_rate"));
  CHECK(mentions(refusal(o{.slow_call_rate = 1.01}), "slow_call_rate"));
  CHECK(mentions(refusal(o{.failure_threshold = 0}), "failure_threshold is 0"));
  CHECK(mentions(refusal(o{.window_size = 0, .minimum_calls = 1}), "window_size"));
  CHECK(mentions(refusal(o{.window_size = 5000}), "window_size"));
  CHECK(mentions(refusal(o{.window_duration = 0s}), "window_duration"));
  CHECK(mentions(refusal(o{.window_duration = -5s}), "window_duration"));
  CHECK(mentions(refusal(o{.window_duration = 5ns, .window_buckets = 10}), "window_duration"));
  CHECK(mentions(refusal(o{.window_buckets = 0}), "window_buckets"));
  CHECK(mentions(refusal(o{.window_buckets = 5000}), "window_buckets"));
  CHECK(mentions(refusal(o{.minimum_calls = 0}), "minimum_calls"));
  CHECK(mentions(refusal(o{.window_size = 20, .minimum_calls = 21}), "minimum_calls"));
  CHECK(mentions(refusal(o{.open_for = 0s}), "open_for"));
  CHECK(mentions(refusal(o{.open_for = -1s}), "open_for"));
  CHECK(mentions(refusal(o{.open_for_multiplier = 0.5}), "open_for_multiplier"));
  CHECK(mentions(refusal(o{.open_for_multiplier = std::numeric_limits<double>::infinity()}), "open_for_multiplier"));
  CHECK(mentions(refusal(o{.open_for = 10s, .max_open_for = 5s}), "max_open_for"));
  CHECK(mentions(refusal(o{.count_throttled = true, .health = &armor::default_health}), "count_throttled"));
  CHECK(mentions(refusal(o{.half_open_max_calls = 0}), "half_open_max_calls"));
  CHECK(mentions(refusal(o{.half_open_max_calls = 65536}), "half_open_max_calls"));
  CHECK(mentions(refusal(o{.success_threshold = 0}), "success_threshold"));
  CHECK(mentions(refusal(o{.half_open_timeout = 0s}), "half_open_timeout"));
  CHECK(mentions(refusal(o{.half_open_timeout = -1ms}), "half_open_timeout"));
  // Good ones pass, including a time window whose minimum_calls exceeds window_size.
  CHECK(refusal(o{}).empty());
  CHECK(refusal(o{.failure_threshold = 0, .failure_rate = 1.0}).empty());
  CHECK(refusal(o{.failure_threshold = 0, .slow_call_threshold = 1s}).empty());
  CHECK(refusal(o{.failure_rate = 0.5, .window = armor::breaker_window::time, .window_size = 10, .minimum_calls = 50})
            .empty());
}

// ---------------------------------------------------------------- consecutive failures

TEST_CASE("failure_threshold consecutive failures open the breaker") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 3}, clock};
  calls(b, 2, bad());
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.stats().consecutive_failures == 2);
  calls(b, 1, bad());
  CHECK(b.state() == breaker_state::open);
  CHECK(b.stats().times_opened == 1);
}

TEST_CASE("a success ends a run of failures") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 3}, clock};
  for (int round = 0; round < 10; ++round) {
    calls(b, 2, bad());
    calls(b, 1, ok());
  }
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.stats().consecutive_failures == 0);
  CHECK(b.stats().failures == 20);
}

TEST_CASE("failure_threshold 0 turns the consecutive rule off") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 0, .failure_rate = 1.0, .window_size = 1000, .minimum_calls = 1000}, clock};
  calls(b, 500, bad());
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.stats().consecutive_failures == 500);
}

// ---------------------------------------------------------------- what counts

TEST_CASE("only failure and timeout verdicts count as failures") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 2}, clock};
  SECTION("timeouts are failures: the upstream was too slow") {
    calls(b, 2, of_kind(armor::outcome::timeout));
    CHECK(b.state() == breaker_state::open);
  }
  SECTION("rejected (armor refused the attempt) counts as neither") {
    calls(b, 1, bad());
    calls(b, 10, of_kind(armor::outcome::rejected));
    CHECK(b.state() == breaker_state::closed);
    CHECK(b.stats().consecutive_failures == 1);  // not a failure, and not a success either
    CHECK(b.stats().ignored == 10);
    calls(b, 1, bad());
    CHECK(b.state() == breaker_state::open);
  }
  SECTION("cancelled (the caller gave up) counts as neither") {
    calls(b, 1, bad());
    calls(b, 10, of_kind(armor::outcome::cancelled));
    CHECK(b.stats().consecutive_failures == 1);
    CHECK(b.state() == breaker_state::closed);
  }
  SECTION("a non-retryable failure is still a failure") {
    calls(b, 2, armor::verdict::permanent_failure());
    CHECK(b.state() == breaker_state::open);
  }
  SECTION("throttled (a 429: the upstream limits this client) counts as neither") {
    calls(b, 1, bad());
    calls(b, 10, armor::verdict::throttled(armor::errc::operation_failed, 5s));
    CHECK(b.state() == breaker_state::closed);
    CHECK(b.stats().consecutive_failures == 1);  // not a failure, and not a success either
    CHECK(b.stats().throttled == 10);
    CHECK(b.stats().ignored == 0);
    CHECK(b.stats().calls() == 11);
    calls(b, 1, bad());
    CHECK(b.state() == breaker_state::open);
  }
}

TEST_CASE("throttled outcomes stay out of the failure rate, and the window") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 0, .failure_rate = 0.5, .window_size = 10, .minimum_calls = 4}, clock};
  calls(b, 2, ok());
  calls(b, 50, armor::verdict::throttled());
  calls(b, 1, bad());
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.stats().window_calls == 3);
  CHECK(b.stats().window_failures == 1);
  calls(b, 1, bad());  // 2 failures of 4 calls: 50 %
  CHECK(b.state() == breaker_state::open);
}

TEST_CASE("count_throttled counts a throttled outcome as a failure, with its retry_after") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 2, .open_for = 10s, .count_throttled = true}, clock};
  calls(b, 1, armor::verdict::throttled());
  CHECK(b.stats().consecutive_failures == 1);
  calls(b, 1, armor::verdict::throttled(armor::errc::operation_failed, 40s));
  CHECK(b.state() == breaker_state::open);
  CHECK(b.stats().failures == 2);
  CHECK(b.stats().throttled == 0);
  auto refused = b.try_acquire();
  REQUIRE_FALSE(refused);
  CHECK(refused.retry_after() == 40s);  // the server's wait, beyond open_for
}

namespace {

// A health rule of one's own: an upstream whose "not found" means it lost
// its data (unhealthy), and whose throttling is counted too.
armor::health strict_health(const armor::verdict& v) noexcept {
  if (v.kind == armor::outcome::throttled) return armor::health::unhealthy;
  if (v.code == std::errc::no_such_file_or_directory) return armor::health::unhealthy;
  return armor::default_health(v);
}

}  // namespace

TEST_CASE("a breaker's own health rule decides what counts") {
  armor::manual_clock clock;
  SECTION("a function") {
    breaker b{{.failure_threshold = 3, .health = &strict_health}, clock};
    calls(b, 1, armor::verdict::throttled());
    calls(b, 1, armor::verdict{armor::outcome::success, false, std::nullopt,
                               std::make_error_code(std::errc::no_such_file_or_directory)});
    CHECK(b.stats().consecutive_failures == 2);
    calls(b, 1, of_kind(armor::outcome::rejected));  // the default's answer: neither
    CHECK(b.stats().consecutive_failures == 2);
    calls(b, 1, bad());
    CHECK(b.state() == breaker_state::open);
  }
  SECTION("a captureless lambda; a probe the rule calls neutral gives its slot back") {
    breaker b{{.failure_threshold = 1,
               .open_for = 1s,
               .health = [](const armor::verdict& v) noexcept {
                 return v.kind == armor::outcome::failure ? armor::health::neutral : armor::default_health(v);
               }},
              clock};
    calls(b, 5, bad());  // failures are neutral by this rule
    CHECK(b.state() == breaker_state::closed);
    CHECK(b.stats().ignored == 5);
    calls(b, 1, of_kind(armor::outcome::timeout));
    CHECK(b.state() == breaker_state::open);
    clock.advance(1s);
    auto probe = b.try_acquire();
    REQUIRE(probe.permit().probe());
    b.record(std::move(probe).permit(), bad());
    CHECK(b.state() == breaker_state::half_open);
    CHECK(b.stats().probes_in_flight == 0);
  }
  SECTION("a rule makes the driver time every call (it may call a success a failure)") {
    const breaker plain{{}, clock};
    const breaker ruled{{.health = &strict_health}, clock};
    CHECK_FALSE(plain.wants_completion_time());
    CHECK(ruled.wants_completion_time());
  }
}

TEST_CASE("a throttled answer that arrives past the deadline stays throttled, not a timeout") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1}, clock};
  const auto p = armor::pipeline{clock, armor::classify{[](const int&) { return armor::verdict::throttled(); }},
                                 armor::deadline{100ms}, std::ref(b)};
  const auto r = p.try_execute([&] {
    clock.advance(150ms);
    return 429;
  });
  REQUIRE(r);  // the value itself: armor never swallows one
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.stats().throttled == 1);
  CHECK(b.stats().failures == 0);
}

TEST_CASE("armor's default health rule, kind by kind") {
  using armor::health;
  using armor::outcome;
  const auto of = [](outcome k) { return armor::default_health(of_kind(k)); };
  CHECK(of(outcome::success) == health::healthy);
  CHECK(of(outcome::failure) == health::unhealthy);
  CHECK(of(outcome::timeout) == health::unhealthy);
  CHECK(of(outcome::throttled) == health::neutral);
  CHECK(of(outcome::rejected) == health::neutral);
  CHECK(of(outcome::cancelled) == health::neutral);
  CHECK(armor::to_string(health::healthy) == "healthy");
  CHECK(armor::to_string(health::unhealthy) == "unhealthy");
  CHECK(armor::to_string(health::neutral) == "neutral");
  CHECK(armor::to_string(static_cast<health>(9)) == "unknown");
}

TEST_CASE("a 404 a classifier calls a success does not hurt the upstream's health") {
  struct response {
    int status;
  };
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 2}, clock};
  auto p = armor::pipeline{clock, armor::classify{[](const response& r) {
                             return r.status >= 500 ? armor::verdict::failure() : armor::verdict::success();
                           }},
                           std::ref(b)};
  for (int i = 0; i < 10; ++i) CHECK(p.execute([] { return response{404}; }).status == 404);
  CHECK(b.state() == breaker_state::closed);
  (void)p.execute([] { return response{503}; });
  (void)p.execute([] { return response{502}; });
  CHECK(b.state() == breaker_state::open);
  auto r = p.try_execute([] { return response{200}; });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == armor::errc::circuit_open);
}

TEST_CASE("a rejection by an inner layer counts as neither success nor failure") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1}, clock};
  auto p = armor::pipeline{clock, std::ref(b), armor_test::rejecting_policy{armor::errc::rate_limited, 1s}};
  for (int i = 0; i < 5; ++i) {
    auto r = p.try_execute([] { return 1; });
    CHECK(r.error().code == armor::errc::rate_limited);
  }
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.stats().ignored == 5);
  CHECK(b.stats().failures == 0);
}

// ---------------------------------------------------------------- open

TEST_CASE("an open breaker rejects at once with circuit_open and the time until half-open") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1, .open_for = 10s}, clock};
  calls(b, 1, bad());
  REQUIRE(b.state() == breaker_state::open);
  for (auto elapsed : {0s, 1s, 4s, 9s}) {
    clock.set(armor::manual_clock::time_point{elapsed});
    auto a = b.try_acquire();
    CHECK(!a);
    CHECK(a.code() == armor::errc::circuit_open);
    CHECK(a.retry_after() == 10s - elapsed);
    CHECK_FALSE(a.permit());
    // In a pipeline, the same refusal is retryable, after the same time.
    armor::context ctx(armor::to_timestamp(clock.now()));
    auto in_pipeline = b.admit(ctx);
    CHECK(in_pipeline.kind == armor::admission_kind::rejected);
    CHECK(in_pipeline.code == armor::errc::circuit_open);
    CHECK(in_pipeline.retryable);
    CHECK(in_pipeline.retry_after == 10s - elapsed);
  }
  clock.set(armor::manual_clock::time_point{10s});
  CHECK(b.try_acquire());
}

TEST_CASE("through a pipeline an open breaker fails the call without running the operation") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1, .open_for = 20s}, clock};
  auto p = armor::pipeline{clock, std::ref(b)};
  CHECK_THROWS_AS(p.execute([]() -> int { throw io_failure(); }), io_failure);
  clock.advance(5s);
  int runs = 0;
  auto r = p.try_execute([&] { return ++runs; });
  CHECK(runs == 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == armor::errc::circuit_open);
  CHECK(r.error().retry_after == 15s);
  try {
    (void)p.execute([&] { return ++runs; });
    FAIL("execute should have thrown");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::circuit_open);
    CHECK(e.retry_after() == 15s);
  }
}

TEST_CASE("open_for grows on consecutive trips by open_for_multiplier, up to max_open_for") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1, .open_for = 10s, .open_for_multiplier = 2.0, .max_open_for = 60s}, clock};
  CHECK(b.open_time(1) == 10s);
  CHECK(b.open_time(2) == 20s);
  CHECK(b.open_time(3) == 40s);
  CHECK(b.open_time(4) == 60s);
  CHECK(b.open_time(200) == 60s);

  calls(b, 1, bad());  // trip 1
  for (auto expected : {20s, 40s, 60s, 60s}) {
    CHECK(b.try_acquire().retry_after() == b.open_time(1));
    clock.advance(b.try_acquire().retry_after());
    calls(b, 1, bad());  // the probe fails: another consecutive trip
    CHECK(b.state() == breaker_state::open);
    CHECK(b.try_acquire().retry_after() == expected);
    clock.advance(expected - b.open_time(1));
  }
  SECTION("closing starts the count again") {
    clock.advance(60s);
    calls(b, 1, ok());
    REQUIRE(b.state() == breaker_state::closed);
    calls(b, 1, bad());
    CHECK(b.try_acquire().retry_after() == 10s);
  }
}

TEST_CASE("a failure's retry_after (a 503 with Retry-After) extends the open time, up to max_open_for") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1, .open_for = 10s, .max_open_for = 2min}, clock};
  SECTION("longer than open_for: open at least that long") {
    calls(b, 1, armor::verdict::retry_later(45s));
    CHECK(b.try_acquire().retry_after() == 45s);
  }
  SECTION("shorter than open_for: open_for still holds") {
    calls(b, 1, armor::verdict::retry_later(2s));
    CHECK(b.try_acquire().retry_after() == 10s);
  }
  SECTION("longer than max_open_for: capped") {
    calls(b, 1, armor::verdict::retry_later(1h));
    CHECK(b.try_acquire().retry_after() == 2min);
  }
  SECTION("a failed probe's retry_after counts too") {
    calls(b, 1, bad());
    clock.advance(10s);
    calls(b, 1, armor::verdict::retry_later(90s));
    CHECK(b.try_acquire().retry_after() == 90s);
  }
}

// ---------------------------------------------------------------- half-open

TEST_CASE("after open_for the next call becomes the first probe") {
  armor::manual_clock clock;
  event_log log;
  logged_breaker b{{.failure_threshold = 1, .open_for = 10s}, clock, std::ref(log)};
  calls(b, 1, bad());
  clock.advance(10s);
  CHECK(b.state() == breaker_state::open);  // the change happens when a call arrives
  auto a = b.try_acquire();
  REQUIRE(a);
  CHECK(a.permit().probe());
  CHECK(b.state() == breaker_state::half_open);
  REQUIRE(log.events.size() == 2);
  CHECK(log.events[1].from == breaker_state::open);
  CHECK(log.events[1].to == breaker_state::half_open);
  CHECK(log.events[1].reason == breaker_reason::open_elapsed);
  CHECK(log.events[1].at == armor::timestamp{10s});
}

TEST_CASE("half-open admits at most half_open_max_calls probes at a time") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1, .open_for = 1s, .half_open_max_calls = 3, .success_threshold = 10}, clock};
  calls(b, 1, bad());
  clock.advance(1s);
  std::vector<armor::circuit_breaker_permit> probes;
  for (int i = 0; i < 3; ++i) {
    auto a = b.try_acquire();
    REQUIRE(a);
    CHECK(a.permit().probe());
    probes.push_back(std::move(a).permit());
  }
  CHECK(b.stats().probes_in_flight == 3);
  for (int i = 0; i < 5; ++i) {
    auto a = b.try_acquire();
    CHECK(!a);
    CHECK(a.code() == armor::errc::circuit_open);
    CHECK(a.retry_after() == std::chrono::nanoseconds::max());  // no way to know when a slot frees
    armor::context ctx(armor::to_timestamp(clock.now()));
    auto in_pipeline = b.admit(ctx);
    CHECK(in_pipeline.kind == armor::admission_kind::rejected);
    CHECK(in_pipeline.retryable);
    CHECK_FALSE(in_pipeline.retry_after.has_value());
  }
  b.record(std::move(probes[0]), ok());  // one slot back
  CHECK(b.stats().probes_in_flight == 2);
  auto again = b.try_acquire();
  CHECK(again);
  CHECK(!b.try_acquire());
}

TEST_CASE("try_acquire answers armor::decision: bool, code, retry_after and the permit") {
  static_assert(std::is_same_v<decltype(std::declval<breaker&>().try_acquire()),
                               armor::decision<armor::circuit_breaker_permit>>);
  static_assert(armor::decision_like<armor::decision<armor::circuit_breaker_permit>>);
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1, .open_for = 10s}, clock};
  SECTION("granted: true, no code, zero retry_after, a permit") {
    auto d = b.try_acquire();
    CHECK(static_cast<bool>(d));
    CHECK_FALSE(d.code());
    CHECK(d.retry_after() == 0ns);
    CHECK(static_cast<bool>(d.permit()));
    CHECK_FALSE(d.permit().probe());
    CHECK(d.permit().admitted_at() == armor::timestamp{});
    armor::circuit_breaker_permit p = std::move(d).permit();
    CHECK(static_cast<bool>(p));
    CHECK_FALSE(d.permit());  // moved out
    b.record(std::move(p), ok());
    CHECK_FALSE(p);  // record takes it over
  }
  SECTION("refused while open: circuit_open, the time until half-open, no permit") {
    calls(b, 1, bad());
    clock.advance(3s);
    auto d = b.try_acquire();
    CHECK_FALSE(static_cast<bool>(d));
    CHECK(d.code() == armor::errc::circuit_open);
    CHECK(d.code() == std::error_code{armor::errc::circuit_open});
    CHECK(d.retry_after() == 7s);
    CHECK_FALSE(d.permit());
  }
  SECTION("refused while half-open and full, or isolated: no wait is known, nanoseconds::max()") {
    calls(b, 1, bad());
    clock.advance(10s);
    auto probe = b.try_acquire();
    REQUIRE(probe);
    CHECK(b.try_acquire().retry_after() == std::chrono::nanoseconds::max());
    b.isolate();
    CHECK(b.try_acquire().retry_after() == std::chrono::nanoseconds::max());
    CHECK(b.try_acquire().code() == armor::errc::circuit_open);
  }
}

TEST_CASE("cancel() gives a probe permit back without an outcome, as dropping it does") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1, .open_for = 1s}, clock};
  SECTION("a probe") {
    calls(b, 1, bad());
    clock.advance(1s);
    auto d = b.try_acquire();
    REQUIRE(d.permit().probe());
    CHECK(b.stats().probes_in_flight == 1);
    d.permit().cancel();
    CHECK_FALSE(d.permit());
    CHECK(b.stats().probes_in_flight == 0);
    d.permit().cancel();  // twice: nothing more
    CHECK(b.state() == breaker_state::half_open);
    CHECK(b.stats().calls() == 1);  // only the first failure was recorded
    b.record(std::move(d).permit(), bad());  // an empty permit: ignored
    CHECK(b.state() == breaker_state::half_open);
  }
  SECTION("a call admitted while closed: nothing to give back, nothing counted") {
    auto d = b.try_acquire();
    d.permit().cancel();
    CHECK_FALSE(d.permit());
    CHECK(b.stats().calls() == 0);
    CHECK(b.state() == breaker_state::closed);
  }
}

TEST_CASE("success_threshold successful probes close the breaker with an empty window") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 2,
             .failure_rate = 0.5,
             .window_size = 10,
             .minimum_calls = 4,
             .open_for = 1s,
             .half_open_max_calls = 2,
             .success_threshold = 3},
            clock};
  calls(b, 1, ok());
  calls(b, 2, bad());
  REQUIRE(b.state() == breaker_state::open);
  clock.advance(1s);
  calls(b, 2, ok());
  CHECK(b.state() == breaker_state::half_open);
  calls(b, 1, ok());
  CHECK(b.state() == breaker_state::closed);
  const auto s = b.stats();
  CHECK(s.window_calls == 0);
  CHECK(s.consecutive_failures == 0);
  // The failures before the trip are gone: one more is not enough.
  calls(b, 3, ok());
  calls(b, 1, bad());
  CHECK(b.state() == breaker_state::closed);
}

TEST_CASE("any failed probe reopens the breaker") {
  armor::manual_clock clock;
  event_log log;
  logged_breaker b{
      {.failure_threshold = 1, .open_for = 1s, .half_open_max_calls = 3, .success_threshold = 3}, clock, std::ref(log)};
  calls(b, 1, bad());
  clock.advance(1s);
  auto p1 = b.try_acquire();
  auto p2 = b.try_acquire();
  b.record(std::move(p1).permit(), ok());
  b.record(std::move(p2).permit(), bad());
  CHECK(b.state() == breaker_state::open);
  REQUIRE_FALSE(log.events.empty());
  CHECK(log.events.back().from == breaker_state::half_open);
  CHECK(log.events.back().to == breaker_state::open);
  CHECK(log.events.back().reason == breaker_reason::probe_failed);
  CHECK(log.events.back().open_for == 1s);
}

TEST_CASE("a probe that ends rejected, cancelled or throttled gives its slot back without counting") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1, .open_for = 1s}, clock};
  calls(b, 1, bad());
  clock.advance(1s);
  for (auto kind : {armor::outcome::rejected, armor::outcome::cancelled, armor::outcome::throttled}) {
    auto a = b.try_acquire();
    REQUIRE(a.permit().probe());
    CHECK(!b.try_acquire());
    b.record(std::move(a).permit(), of_kind(kind));
    CHECK(b.state() == breaker_state::half_open);
    CHECK(b.stats().probes_in_flight == 0);
  }
  calls(b, 1, ok());
  CHECK(b.state() == breaker_state::closed);
}

TEST_CASE("a probe whose permit is dropped without an outcome gives its slot back") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1, .open_for = 1s}, clock};
  calls(b, 1, bad());
  clock.advance(1s);
  SECTION("the permit is destroyed") {
    for (int i = 0; i < 100; ++i) {
      auto a = b.try_acquire();
      REQUIRE(a.permit().probe());
    }
    CHECK(b.state() == breaker_state::half_open);
    CHECK(b.stats().probes_in_flight == 0);
  }
  SECTION("the permit is overwritten by move assignment") {
    auto a = b.try_acquire();
    REQUIRE(a.permit().probe());
    a.permit() = armor::circuit_breaker_permit{};
    CHECK(b.stats().probes_in_flight == 0);
    CHECK(b.try_acquire().permit().probe());
  }
  SECTION("an exception escapes the pipeline (here, from the classifier)") {
    auto p = armor::pipeline{clock, armor::classify{[](const int&) -> armor::verdict { throw std::logic_error("x"); }},
                             std::ref(b)};
    for (int i = 0; i < 5; ++i) CHECK_THROWS_AS(p.execute([] { return 1; }), std::logic_error);
    CHECK(b.state() == breaker_state::half_open);
    CHECK(b.stats().probes_in_flight == 0);
  }
  calls(b, 1, ok());
  CHECK(b.state() == breaker_state::closed);
}

TEST_CASE("a slow probe reopens the breaker") {
  armor::manual_clock clock;
  event_log log;
  logged_breaker b{{.failure_threshold = 1, .slow_call_threshold = 2s, .open_for = 1s}, clock, std::ref(log)};
  calls(b, 1, bad());
  clock.advance(1s);
  auto a = b.try_acquire();
  clock.advance(3s);
  b.record(std::move(a).permit(), ok());
  CHECK(b.state() == breaker_state::open);
  CHECK(log.events.back().reason == breaker_reason::probe_slow);
  clock.advance(1s);
  a = b.try_acquire();
  clock.advance(2s);  // exactly the threshold: not slow
  b.record(std::move(a).permit(), ok());
  CHECK(b.state() == breaker_state::closed);
}

TEST_CASE("half_open_timeout: slots held too long reopen the breaker on the next call") {
  armor::manual_clock clock;
  event_log log;
  logged_breaker b{{.failure_threshold = 1, .open_for = 10s, .half_open_timeout = 1min}, clock, std::ref(log)};
  calls(b, 1, bad());
  clock.advance(10s);
  auto hung = b.try_acquire();
  REQUIRE(hung.permit().probe());
  clock.advance(59s);
  CHECK(b.try_acquire().retry_after() == std::chrono::nanoseconds::max());  // full, not yet timed out
  CHECK(b.state() == breaker_state::half_open);
  clock.advance(1s);
  auto a = b.try_acquire();
  CHECK(!a);
  CHECK(a.retry_after() == 10s);
  CHECK(b.state() == breaker_state::open);
  CHECK(log.events.back().reason == breaker_reason::half_open_timeout);
  // The hung probe's late outcome belongs to a gone generation.
  b.record(std::move(hung).permit(), ok());
  CHECK(b.state() == breaker_state::open);
  clock.advance(10s);
  calls(b, 1, ok());
  CHECK(b.state() == breaker_state::closed);
}

TEST_CASE("without half_open_timeout a held probe slot stays held") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1, .open_for = 1s}, clock};
  calls(b, 1, bad());
  clock.advance(1s);
  auto held = b.try_acquire();
  clock.advance(24h);
  CHECK(!b.try_acquire());
  b.record(std::move(held).permit(), ok());
  CHECK(b.state() == breaker_state::closed);
}

// ---------------------------------------------------------------- generations

TEST_CASE("the outcome of a call admitted in an earlier generation is ignored") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1, .open_for = 1s, .half_open_max_calls = 2, .success_threshold = 2}, clock};
  auto early = b.try_acquire();  // admitted while closed
  REQUIRE(early);
  CHECK_FALSE(early.permit().probe());
  calls(b, 1, bad());
  REQUIRE(b.state() == breaker_state::open);

  SECTION("a call started while closed that fails while open changes nothing") {
    const auto before = b.try_acquire().retry_after();
    b.record(std::move(early).permit(), bad());
    CHECK(b.try_acquire().retry_after() == before);
    CHECK(b.stats().times_opened == 1);
  }
  SECTION("a call started while closed that fails while half-open does not reopen") {
    clock.advance(1s);
    auto probe = b.try_acquire();
    REQUIRE(probe.permit().probe());
    b.record(std::move(early).permit(), bad());
    CHECK(b.state() == breaker_state::half_open);
    b.record(std::move(probe).permit(), ok());
    calls(b, 1, ok());
    CHECK(b.state() == breaker_state::closed);
  }
  SECTION("a call started while closed that succeeds while half-open does not count as a probe") {
    clock.advance(1s);
    auto probe = b.try_acquire();
    b.record(std::move(early).permit(), ok());
    CHECK(b.state() == breaker_state::half_open);
    CHECK(b.stats().probes_in_flight == 1);
    b.record(std::move(probe).permit(), ok());
    CHECK(b.state() == breaker_state::half_open);  // success_threshold is 2
  }
  SECTION("a probe of an earlier half-open period neither closes nor reopens") {
    clock.advance(1s);
    auto old_probe = b.try_acquire();
    calls(b, 1, bad());  // reopened by another probe
    clock.advance(1s);
    auto probe = b.try_acquire();
    REQUIRE(probe.permit().probe());
    CHECK(probe.permit().generation() != old_probe.permit().generation());
    b.record(std::move(old_probe).permit(), bad());
    CHECK(b.state() == breaker_state::half_open);
    CHECK(b.stats().probes_in_flight == 1);
  }
  SECTION("a call started before reset() does not count after it") {
    b.reset();
    b.record(std::move(early).permit(), bad());
    CHECK(b.state() == breaker_state::closed);
    CHECK(b.stats().consecutive_failures == 0);
  }
  SECTION("a success started before reset() is ignored too, and counted as ignored") {
    b.reset();
    const auto before = b.stats().ignored;
    b.record(std::move(early).permit(), ok());
    CHECK(b.stats().ignored == before + 1);
  }
  CHECK(b.stats().ignored >= 1);
}

TEST_CASE("every transition starts a new generation") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1, .open_for = 1s}, clock};
  const auto g0 = b.try_acquire().permit().generation();
  CHECK(b.try_acquire().permit().generation() == g0);  // calls in one closed period share it
  calls(b, 1, bad());
  clock.advance(1s);
  auto probe = b.try_acquire();
  const auto g2 = probe.permit().generation();
  CHECK(g2 == g0 + 2);  // closed -> open -> half-open
  b.record(std::move(probe).permit(), ok());
  CHECK(b.try_acquire().permit().generation() == g0 + 3);
  b.reset();  // closed -> closed still clears
  CHECK(b.try_acquire().permit().generation() == g0 + 4);
}

// ---------------------------------------------------------------- rate rules

TEST_CASE("the failure rate over a count window opens once minimum_calls were seen") {
  armor::manual_clock clock;
  event_log log;
  logged_breaker b{{.failure_threshold = 0, .failure_rate = 0.5, .window_size = 10, .minimum_calls = 4}, clock,
                   std::ref(log)};
  calls(b, 1, bad());
  calls(b, 1, ok());
  calls(b, 1, bad());  // 2 of 3: above the rate, below minimum_calls
  CHECK(b.state() == breaker_state::closed);
  CHECK(b.stats().failure_rate > 0.6);
  calls(b, 1, bad());  // 3 of 4
  CHECK(b.state() == breaker_state::open);
  REQUIRE(log.events.size() == 1);
  CHECK(log.events[0].reason == breaker_reason::failure_rate);
}

TEST_CASE("a rate exactly at failure_rate opens the breaker") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 0, .failure_rate = 0.3, .window_size = 10, .minimum_calls = 10}, clock};
  calls(b, 7, ok());
  calls(b, 2, bad());
  CHECK(b.state() == breaker_state::closed);
  calls(b, 1, bad());  // 3 of 10 = 0.3
  CHECK(b.state() == breaker_state::open);
}

TEST_CASE("a success never opens the breaker, even the one that reaches minimum_calls") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 0, .failure_rate = 0.5, .window_size = 10, .minimum_calls = 4}, clock};
  calls(b, 3, bad());
  calls(b, 1, ok());  // 3 of 4 failed, but this call succeeded
  CHECK(b.state() == breaker_state::closed);
  calls(b, 1, bad());  // 4 of 5: the failure opens it
  CHECK(b.state() == breaker_state::open);
}

TEST_CASE("the count window holds only the last window_size calls") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 0, .failure_rate = 0.5, .window_size = 4, .minimum_calls = 4}, clock};
  calls(b, 1, bad());
  calls(b, 3, ok());
  for (int i = 0; i < 20; ++i) {
    calls(b, 1, bad());  // replaces the failure of four calls ago: still 1 of 4
    calls(b, 3, ok());
  }
  CHECK(b.state() == breaker_state::closed);
  auto s = b.stats();
  CHECK(s.window_calls == 4);
  CHECK(s.window_failures == 1);
  CHECK(s.failure_rate == 0.25);
  calls(b, 1, bad());  // 1 of 4 (it replaced a failure)
  CHECK(b.state() == breaker_state::closed);
  calls(b, 1, bad());  // 2 of 4
  CHECK(b.state() == breaker_state::open);
}

TEST_CASE("the time window counts only the calls of the last window_duration") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 0,
             .failure_rate = 0.5,
             .window = armor::breaker_window::time,
             .window_duration = 10s,
             .window_buckets = 10,
             .minimum_calls = 4},
            clock};
  calls(b, 3, bad());  // t = 0
  CHECK(b.stats().window_calls == 3);
  clock.advance(9s);
  CHECK(b.stats().window_failures == 3);  // still inside
  clock.advance(1s);
  CHECK(b.stats().window_calls == 0);  // t = 10 s: the first bucket has slid out
  calls(b, 3, ok());
  calls(b, 1, bad());  // 1 of 4
  CHECK(b.state() == breaker_state::closed);
  clock.advance(2s);
  calls(b, 2, bad());  // 3 of 6
  CHECK(b.state() == breaker_state::open);
}

TEST_CASE("the time window slides a bucket at a time") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 0,
             .failure_rate = 1.0,
             .window = armor::breaker_window::time,
             .window_duration = 4s,
             .window_buckets = 4,
             .minimum_calls = 100},
            clock};
  for (int second = 0; second < 4; ++second) {
    calls(b, second + 1, ok());  // 1, 2, 3, 4 calls in buckets 0..3
    clock.advance(1s);
  }
  clock.set(armor::manual_clock::time_point{3999ms});
  CHECK(b.stats().window_calls == 10);
  clock.set(armor::manual_clock::time_point{4s});
  CHECK(b.stats().window_calls == 9);
  clock.set(armor::manual_clock::time_point{5500ms});
  CHECK(b.stats().window_calls == 7);
  clock.set(armor::manual_clock::time_point{6999ms});
  CHECK(b.stats().window_calls == 4);
  clock.set(armor::manual_clock::time_point{7s});
  CHECK(b.stats().window_calls == 0);
  clock.set(armor::manual_clock::time_point{100s});
  CHECK(b.stats().window_calls == 0);
  calls(b, 1, ok());  // an old bucket is reused
  CHECK(b.stats().window_calls == 1);
}

TEST_CASE("slow calls are measured with the injected clock and open the breaker above slow_call_rate") {
  armor::manual_clock clock;
  event_log log;
  logged_breaker b{{.failure_threshold = 0,
                    .slow_call_threshold = 500ms,
                    .slow_call_rate = 0.5,
                    .window_size = 10,
                    .minimum_calls = 4},
                   clock, std::ref(log)};
  auto p = armor::pipeline{clock, std::ref(b)};
  auto call_taking = [&](std::chrono::nanoseconds d) {
    return p.execute([&] {
      clock.advance(d);
      return 1;
    });
  };
  call_taking(100ms);
  call_taking(501ms);
  call_taking(500ms);  // exactly the threshold: not slow
  CHECK(b.stats().slow_calls == 1);
  CHECK(b.state() == breaker_state::closed);
  call_taking(2s);  // 2 of 4 slow: opens, though every call succeeded
  CHECK(b.state() == breaker_state::open);
  REQUIRE(log.events.size() == 1);
  CHECK(log.events[0].reason == breaker_reason::slow_call_rate);
  CHECK(b.stats().failures == 0);
}

TEST_CASE("a slow failure counts both as a failure and as a slow call") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 10, .slow_call_threshold = 1s, .window_size = 10, .minimum_calls = 10}, clock};
  auto a = b.try_acquire();
  clock.advance(2s);
  b.record(std::move(a).permit(), bad());
  const auto s = b.stats();
  CHECK(s.failures == 1);
  CHECK(s.slow_calls == 1);
  CHECK(s.window_failures == 1);
  CHECK(s.window_slow_calls == 1);
}

TEST_CASE("rules combine: whichever fires first opens the breaker") {
  armor::manual_clock clock;
  const armor::circuit_breaker_options o{
      .failure_threshold = 3, .failure_rate = 0.5, .window_size = 20, .minimum_calls = 6};
  SECTION("consecutive failures before the window is judged") {
    event_log log;
    logged_breaker b{o, clock, std::ref(log)};
    calls(b, 3, bad());
    CHECK(b.state() == breaker_state::open);
    CHECK(log.events.at(0).reason == breaker_reason::failure_threshold);
  }
  SECTION("the rate with no run of three") {
    event_log log;
    logged_breaker b{o, clock, std::ref(log)};
    for (int i = 0; i < 2; ++i) {
      calls(b, 2, bad());
      calls(b, 1, ok());
    }
    CHECK(b.state() == breaker_state::closed);  // 4 of 6, but the sixth call was a success
    calls(b, 1, bad());                         // 5 of 7, a run of one
    CHECK(b.state() == breaker_state::open);
    CHECK(log.events.at(0).reason == breaker_reason::failure_rate);
  }
}

// ---------------------------------------------------------------- manual control

TEST_CASE("isolate() holds the breaker open until reset()") {
  armor::manual_clock clock;
  event_log log;
  logged_breaker b{{.open_for = 1s}, clock, std::ref(log)};
  b.isolate();
  CHECK(b.state() == breaker_state::isolated);
  clock.advance(1h);
  auto a = b.try_acquire();
  CHECK(!a);
  CHECK(a.code() == armor::errc::circuit_open);
  CHECK(a.retry_after() == std::chrono::nanoseconds::max());
  armor::context ctx(armor::to_timestamp(clock.now()));
  auto in_pipeline = b.admit(ctx);
  CHECK(in_pipeline.kind == armor::admission_kind::rejected);
  CHECK_FALSE(in_pipeline.retryable);
  CHECK_FALSE(in_pipeline.retry_after.has_value());
  b.isolate();  // no change, no event
  b.reset();
  CHECK(b.state() == breaker_state::closed);
  CHECK(call(b, ok()));
  REQUIRE(log.events.size() == 2);
  CHECK(log.events[0].to == breaker_state::isolated);
  CHECK(log.events[0].reason == breaker_reason::isolated);
  CHECK(log.events[1].from == breaker_state::isolated);
  CHECK(log.events[1].reason == breaker_reason::reset);
}

TEST_CASE("reset() closes the breaker and clears its counters") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 3,
             .failure_rate = 0.5,
             .window_size = 10,
             .minimum_calls = 4,
             .open_for = 10s,
             .open_for_multiplier = 3.0},
            clock};
  SECTION("from closed: the run of failures and the window") {
    calls(b, 1, ok());
    calls(b, 2, bad());
    b.reset();
    CHECK(b.stats().consecutive_failures == 0);
    CHECK(b.stats().window_calls == 0);
    calls(b, 2, bad());
    CHECK(b.state() == breaker_state::closed);
  }
  SECTION("from open, after consecutive trips: the open time starts again") {
    calls(b, 3, bad());
    clock.advance(10s);
    calls(b, 1, bad());
    CHECK(b.try_acquire().retry_after() == 30s);
    b.reset();
    CHECK(b.state() == breaker_state::closed);
    calls(b, 3, bad());
    CHECK(b.try_acquire().retry_after() == 10s);
  }
  SECTION("the lifetime counters stay") {
    calls(b, 3, bad());
    b.reset();
    CHECK(b.stats().failures == 3);
    CHECK(b.stats().times_opened == 1);
  }
}

TEST_CASE("a disabled breaker lets everything through and only records") {
  armor::manual_clock clock;
  event_log log;
  logged_breaker b{{.failure_threshold = 2, .failure_rate = 0.5, .window_size = 10, .minimum_calls = 2}, clock,
                   std::ref(log)};
  b.disable();
  CHECK(b.state() == breaker_state::disabled);
  calls(b, 50, bad());
  CHECK(b.state() == breaker_state::disabled);
  const auto s = b.stats();
  CHECK(s.failures == 50);
  CHECK(s.consecutive_failures == 50);
  CHECK(s.window_calls == 10);
  CHECK(s.failure_rate == 1.0);
  CHECK(s.times_opened == 0);
  b.reset();
  CHECK(b.stats().window_calls == 0);
  calls(b, 2, bad());
  CHECK(b.state() == breaker_state::open);
  REQUIRE(log.events.size() == 3);
  CHECK(log.events[0].to == breaker_state::disabled);
  CHECK(log.events[1].to == breaker_state::closed);
  CHECK(log.events[2].to == breaker_state::open);
}

// ---------------------------------------------------------------- observability

TEST_CASE("the listener hears every transition exactly once, with from, to and reason") {
  armor::manual_clock clock;
  event_log log;
  logged_breaker b{{.failure_threshold = 2, .open_for = 5s}, clock, std::ref(log)};
  calls(b, 2, bad());
  clock.advance(5s);
  calls(b, 1, bad());
  clock.advance(5s);
  calls(b, 1, ok());
  calls(b, 20, ok());
  struct expected {
    breaker_state from, to;
    breaker_reason reason;
    std::chrono::nanoseconds at, open_for;
  };
  const std::vector<expected> want{
      {breaker_state::closed, breaker_state::open, breaker_reason::failure_threshold, 0s, 5s},
      {breaker_state::open, breaker_state::half_open, breaker_reason::open_elapsed, 5s, 0s},
      {breaker_state::half_open, breaker_state::open, breaker_reason::probe_failed, 5s, 5s},
      {breaker_state::open, breaker_state::half_open, breaker_reason::open_elapsed, 10s, 0s},
      {breaker_state::half_open, breaker_state::closed, breaker_reason::probes_succeeded, 10s, 0s},
  };
  REQUIRE(log.events.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("event " << i);
    CHECK(log.events[i].from == want[i].from);
    CHECK(log.events[i].to == want[i].to);
    CHECK(log.events[i].reason == want[i].reason);
    CHECK(log.events[i].at == armor::timestamp{want[i].at});
    CHECK(log.events[i].open_for == want[i].open_for);
  }
}

TEST_CASE("the listener may be a lambda, held by value") {
  armor::manual_clock clock;
  int opened = 0;
  armor::circuit_breaker b{{.failure_threshold = 1}, clock, [&](const armor::circuit_breaker_event& e) noexcept {
                             if (e.to == breaker_state::open) ++opened;
                           }};
  calls(b, 1, bad());
  CHECK(opened == 1);
}

// A listener that may throw is refused at compile time, with a static_assert
// (tests/compile_fail/circuit_breaker_throwing_listener.cpp checks its
// message): a throw in the middle of a transition would leave the caller
// holding half a decision.
namespace {
struct throwing_listener {
  void operator()(const armor::circuit_breaker_event&) {}
};
}  // namespace

static_assert(armor::listener_for<armor::no_listener, armor::circuit_breaker_event>);
static_assert(armor::listener_for<event_log, armor::circuit_breaker_event>);
static_assert(armor::listener_for<std::reference_wrapper<event_log>, armor::circuit_breaker_event>);
static_assert(!armor::listener_for<throwing_listener, armor::circuit_breaker_event>);
static_assert(!armor::listener_for<std::reference_wrapper<throwing_listener>, armor::circuit_breaker_event>);

TEST_CASE("with a listener every call is still noexcept, and the listener is called through it") {
  armor::manual_clock clock;
  event_log log;
  logged_breaker b{{.failure_threshold = 1, .open_for = 1s}, clock, std::ref(log)};
  armor::context ctx(armor::timestamp{});
  const armor::timestamp t{};
  const armor::verdict v = ok();
  armor::circuit_breaker_permit none;
  static_assert(noexcept(b.admit(ctx)));
  static_assert(noexcept(b.try_acquire()));
  static_assert(noexcept(b.try_acquire(t)));
  static_assert(noexcept(b.record(std::move(none), v)));
  static_assert(noexcept(b.record(std::move(none), v, t)));
  static_assert(noexcept(b.settle(ctx, std::move(none), v)));
  static_assert(noexcept(b.isolate()));
  static_assert(noexcept(b.reset()));
  static_assert(noexcept(b.disable()));
  calls(b, 1, bad());
  clock.advance(1s);
  auto probe = b.try_acquire();
  REQUIRE(probe);
  CHECK(b.state() == breaker_state::half_open);
  REQUIRE(log.events.size() == 2);
  CHECK(log.events[1].to == breaker_state::half_open);
  CHECK(log.events[1].key.empty());  // a breaker on its own has no key unless given one
}

TEST_CASE("a breaker given a key tells its listener which breaker changed") {
  armor::manual_clock clock;
  event_log log;
  const std::string name = "inference-api";
  logged_breaker b{{.failure_threshold = 1}, clock, std::ref(log), name};
  calls(b, 1, bad());
  REQUIRE(log.events.size() == 1);
  CHECK(log.events[0].key == "inference-api");
}

TEST_CASE("stats() counts outcomes, rejections with count_calls, and the window") {
  armor::manual_clock clock;
  SECTION("by default successes and rejections are not counted") {
    breaker b{{.failure_threshold = 2}, clock};
    calls(b, 3, ok());
    calls(b, 2, bad());
    for (int i = 0; i < 5; ++i) CHECK_FALSE(call(b, ok()));
    const auto s = b.stats();
    CHECK(s.state == breaker_state::open);
    CHECK(s.successes == 0);
    CHECK(s.rejections == 0);
    CHECK(s.failures == 2);
    CHECK(s.times_opened == 1);
    CHECK(s.window_calls == 0);  // no rate rule, no window
  }
  SECTION("with count_calls") {
    breaker b{{.failure_threshold = 2, .failure_rate = 0.9, .count_calls = true}, clock};
    calls(b, 3, ok());
    calls(b, 1, of_kind(armor::outcome::cancelled));
    calls(b, 2, bad());
    for (int i = 0; i < 5; ++i) CHECK_FALSE(call(b, ok()));
    const auto s = b.stats();
    CHECK(s.successes == 3);
    CHECK(s.failures == 2);
    CHECK(s.ignored == 1);
    CHECK(s.calls() == 6);
    CHECK(s.rejections == 5);
  }
  SECTION("the window's rates") {
    breaker b{{.failure_threshold = 0, .failure_rate = 0.9, .slow_call_threshold = 1s, .window_size = 8,
               .minimum_calls = 8},
              clock};
    calls(b, 6, ok());
    calls(b, 2, bad());
    auto a = b.try_acquire();
    clock.advance(3s);
    b.record(std::move(a).permit(), ok());  // slides one success out
    const auto s = b.stats();
    CHECK(s.window_calls == 8);
    CHECK(s.window_failures == 2);
    CHECK(s.window_slow_calls == 1);
    CHECK(s.failure_rate == 0.25);
    CHECK(s.slow_call_rate == 0.125);
  }
}

TEST_CASE("idle() is true only when closed with no failures in the window") {
  armor::manual_clock clock;
  SECTION("consecutive rule only") {
    breaker b{{.failure_threshold = 2, .open_for = 1s}, clock};
    CHECK(b.idle(armor::timestamp{}));
    calls(b, 5, ok());
    CHECK(b.idle(armor::timestamp{}));
    calls(b, 1, bad());
    CHECK_FALSE(b.idle(armor::timestamp{}));
    calls(b, 1, ok());
    CHECK(b.idle(armor::timestamp{}));
    calls(b, 2, bad());
    CHECK_FALSE(b.idle(armor::timestamp{}));  // open
    b.isolate();
    CHECK_FALSE(b.idle(armor::timestamp{}));
    b.disable();
    CHECK_FALSE(b.idle(armor::timestamp{}));
  }
  SECTION("a time window's failures expire") {
    breaker b{{.failure_rate = 0.5, .window = armor::breaker_window::time, .window_duration = 10s, .window_buckets = 5},
              clock};
    calls(b, 1, bad());
    calls(b, 1, ok());
    CHECK_FALSE(b.idle(armor::timestamp{5s}));
    CHECK(b.idle(armor::timestamp{10s}));
  }
  SECTION("a count window's failures slide out") {
    breaker b{{.failure_rate = 0.5, .window_size = 3, .minimum_calls = 3}, clock};
    calls(b, 1, bad());
    calls(b, 2, ok());
    CHECK_FALSE(b.idle(armor::timestamp{}));
    calls(b, 1, ok());
    CHECK(b.idle(armor::timestamp{}));
  }
}

TEST_CASE("breaker states and reasons have names") {
  CHECK(armor::to_string(breaker_state::half_open) == "half_open");
  CHECK(armor::to_string(breaker_state::isolated) == "isolated");
  CHECK(armor::to_string(breaker_reason::failure_rate) == "failure_rate");
  CHECK(armor::to_string(breaker_reason::half_open_timeout) == "half_open_timeout");
}

TEST_CASE("every breaker enumerator's to_string is its identifier") {
  using s = breaker_state;
  for (auto [e, name] : std::vector<std::pair<s, std::string_view>>{{s::closed, "closed"},
                                                                     {s::open, "open"},
                                                                     {s::half_open, "half_open"},
                                                                     {s::isolated, "isolated"},
                                                                     {s::disabled, "disabled"}}) {
    CHECK(armor::to_string(e) == name);
  }
  using r = breaker_reason;
  for (auto [e, name] : std::vector<std::pair<r, std::string_view>>{{r::failure_threshold, "failure_threshold"},
                                                                     {r::failure_rate, "failure_rate"},
                                                                     {r::slow_call_rate, "slow_call_rate"},
                                                                     {r::open_elapsed, "open_elapsed"},
                                                                     {r::probes_succeeded, "probes_succeeded"},
                                                                     {r::probe_failed, "probe_failed"},
                                                                     {r::probe_slow, "probe_slow"},
                                                                     {r::half_open_timeout, "half_open_timeout"},
                                                                     {r::isolated, "isolated"},
                                                                     {r::reset, "reset"},
                                                                     {r::disabled, "disabled"}}) {
    CHECK(armor::to_string(e) == name);
  }
  CHECK(armor::to_string(armor::breaker_window::count) == "count");
  CHECK(armor::to_string(armor::breaker_window::time) == "time");
  static_assert(armor::to_string(armor::breaker_window::time) == "time");  // constexpr
  CHECK(armor::to_string(static_cast<breaker_state>(200)) == "unknown");
  CHECK(armor::to_string(static_cast<breaker_reason>(200)) == "unknown");
  CHECK(armor::to_string(static_cast<armor::breaker_window>(200)) == "unknown");
}

TEST_CASE("each state and reason the core reports maps to the public enumerator of the same value") {
  for (unsigned v = 0; v < 256; ++v) {
    const auto state = armor::detail::breaker_state_of(static_cast<armor::detail::breaker_phase>(v));
    CHECK(state.has_value() == (armor::to_string(static_cast<breaker_state>(v)) != "unknown"));
    if (state) CHECK(static_cast<unsigned>(*state) == v);
    const auto reason = armor::detail::breaker_reason_of(static_cast<armor::detail::breaker_cause>(v));
    CHECK(reason.has_value() == (armor::to_string(static_cast<breaker_reason>(v)) != "unknown"));
    if (reason) CHECK(static_cast<unsigned>(*reason) == v);
  }
}

TEST_CASE("stats describe their fields: the breaker's Prometheus families; successes and rejections when counting") {
  struct row {
    std::string name, metric, label;
    armor::metric_type type;
    bool counted;
  };
  std::vector<row> rows;
  armor::detail::for_each_field<armor::circuit_breaker_stats>([&](const auto& f) {
    rows.push_back({std::string(f.name), std::string(f.metric), std::string(f.label_value), f.type, f.counted});
  });
  const std::vector<std::string> names{"state",          "opened",           "successes",       "failures",
                                       "throttled",      "ignored",          "slow_calls",      "rejections",
                                       "consecutive_failures", "probes_in_flight", "window_calls", "window_failures",
                                       "window_slow_calls", "failure_rate",  "slow_call_rate"};
  REQUIRE(rows.size() == names.size());
  for (std::size_t i = 0; i < names.size(); ++i) CHECK(rows[i].name == names[i]);
  CHECK(rows[0].metric == "armor_circuit_breaker_state");
  CHECK(rows[0].type == armor::metric_type::gauge);
  CHECK(rows[1].metric == "armor_circuit_breaker_opened_total");
  for (std::size_t i : {2, 3, 4, 5}) {
    CHECK(rows[i].metric == "armor_circuit_breaker_calls_total");
    CHECK(rows[i].type == armor::metric_type::counter);
  }
  CHECK(rows[2].label == "success");
  CHECK(rows[3].label == "failure");
  CHECK(rows[4].label == "throttled");
  CHECK(rows[5].label == "ignored");
  CHECK(rows[7].metric == "armor_circuit_breaker_rejected_total");
  for (const auto& r : rows) CHECK(r.counted == (r.name == "successes" || r.name == "rejections"));
  CHECK(rows[11].type == armor::metric_type::none);  // window_failures: printed only
  CHECK(rows[12].type == armor::metric_type::none);

  armor::manual_clock clock;
  CHECK_FALSE(breaker({}, clock).stats().counting);
  CHECK(breaker({.count_calls = true}, clock).stats().counting);
}

// ---------------------------------------------------------------- permits, moves, pipelines

TEST_CASE("a permit of another breaker, or an empty one, is ignored") {
  armor::manual_clock clock;
  breaker a{{.failure_threshold = 1, .open_for = 1s}, clock};
  breaker b{{.failure_threshold = 1}, clock};
  auto from_a = a.try_acquire();
  b.record(std::move(from_a).permit(), bad());
  CHECK(b.state() == breaker_state::closed);
  CHECK(a.state() == breaker_state::closed);
  b.record(armor::circuit_breaker_permit{}, bad());
  CHECK(b.state() == breaker_state::closed);
  SECTION("a probe of another breaker is released in its own") {
    calls(a, 1, bad());
    clock.advance(1s);
    auto probe = a.try_acquire();
    REQUIRE(probe.permit().probe());
    b.record(std::move(probe).permit(), bad());
    CHECK(a.stats().probes_in_flight == 0);
    CHECK(a.state() == breaker_state::half_open);
  }
}

TEST_CASE("a breaker moves into a pipeline by value; permits issued before the move stay valid") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 2, .open_for = 1s}, clock};
  calls(b, 2, bad());
  clock.advance(1s);
  auto probe = b.try_acquire();
  REQUIRE(probe.permit().probe());
  auto p = armor::pipeline{clock, std::move(b)};
  auto& moved = p.layer<0>();
  CHECK(moved.state() == breaker_state::half_open);
  CHECK(moved.stats().probes_in_flight == 1);
  moved.record(std::move(probe).permit(), ok());
  CHECK(moved.state() == breaker_state::closed);
  CHECK(p.execute([] { return 7; }) == 7);
  CHECK(moved.stats().failures == 2);
}

TEST_CASE("one breaker shared by two pipelines through std::ref") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 2}, clock};
  auto p1 = armor::pipeline{clock, std::ref(b)};
  auto p2 = armor::pipeline{clock, armor::classify{[](const int& status) {
                              return status >= 500 ? armor::verdict::failure() : armor::verdict::success();
                            }},
                            std::ref(b)};
  (void)p1.try_execute([]() -> int { throw io_failure(); });
  (void)p2.execute([] { return 503; });
  CHECK(b.state() == breaker_state::open);
  CHECK(p1.try_execute([] { return 1; }).error().code == armor::errc::circuit_open);
}

TEST_CASE("a timeout judged by the driver counts as a failure") {
  armor::manual_clock clock;
  breaker b{{.failure_threshold = 1}, clock};
  auto p = armor::pipeline{clock, std::ref(b)};
  // The operation fails after the call's own budget ran out: a timeout.
  auto r = p.try_execute(
      [&]() -> int {
        clock.advance(2s);
        throw io_failure();
      },
      {.timeout = 1s});
  CHECK_FALSE(r.has_value());
  CHECK(b.state() == breaker_state::open);
}

TEST_CASE("armor::keyed keeps one breaker per upstream: one upstream's failures leave the others closed") {
  armor::manual_clock clock;
  armor::keyed<breaker> per_host{{.failure_threshold = 2, .open_for = 10s}, {.max_keys = 100}, clock};
  auto p = armor::pipeline{clock, std::ref(per_host)};
  auto call_host = [&](std::string_view host, bool fails) {
    return p.try_execute([&] { return fails ? std::make_error_code(std::errc::io_error) : std::error_code{}; },
                         {.key = host});
  };
  (void)call_host("s3.eu-west-1", true);
  (void)call_host("s3.eu-west-1", true);
  CHECK(call_host("s3.eu-west-1", false).error().code == armor::errc::circuit_open);
  CHECK(call_host("s3.us-east-1", false).has_value());
  CHECK(per_host.get("s3.eu-west-1")->state() == breaker_state::open);
  CHECK(per_host.get("s3.us-east-1")->state() == breaker_state::closed);
  // A healthy closed breaker is idle: it may be evicted; an open one is not.
  CHECK(per_host.get("s3.us-east-1")->idle(armor::to_timestamp(clock.now())));
  CHECK_FALSE(per_host.get("s3.eu-west-1")->idle(armor::to_timestamp(clock.now())));
  clock.advance(10s);
  CHECK(call_host("s3.eu-west-1", false).has_value());  // the probe succeeds
  CHECK(per_host.get("s3.eu-west-1")->state() == breaker_state::closed);
}

TEST_CASE("without a slow-call rule the driver reads the clock once per successful call") {
  int reads = 0;
  armor::manual_clock base;
  armor_test::counting_clock clock{base, &reads};
  armor::circuit_breaker<armor_test::counting_clock> plain{{.failure_threshold = 3}, clock};
  armor::circuit_breaker<armor_test::counting_clock> timed{{.failure_threshold = 3, .slow_call_threshold = 1s}, clock};
  auto p = armor::pipeline{clock, std::ref(plain)};
  auto q = armor::pipeline{clock, std::ref(timed)};
  reads = 0;  // each breaker read its clock once when it was built
  p.execute([] {});
  CHECK(reads == 1);
  reads = 0;
  q.execute([] {});
  CHECK(reads == 2);  // the slow-call rule needs the end of the call
}

TEST_CASE("a keyed breaker in a pipeline still measures slow calls") {
  armor::manual_clock clock;
  armor::keyed<breaker> per_host{{.failure_threshold = 0,
                                  .slow_call_threshold = 500ms,
                                  .slow_call_rate = 0.5,
                                  .window_size = 4,
                                  .minimum_calls = 2},
                                 {},
                                 clock};
  auto p = armor::pipeline{clock, std::ref(per_host)};
  for (int i = 0; i < 2; ++i) {
    p.execute(
        [&] {
          clock.advance(2s);
          return 1;
        },
        {.key = "slow.example"});
  }
  auto r = p.try_execute([] { return 1; }, {.key = "slow.example"});
  CHECK(r.code() == armor::errc::circuit_open);
  CHECK(p.try_execute([] { return 1; }, {.key = "fast.example"}).has_value());
}

TEST_CASE("a keyed breaker with a listener: each key's breaker calls a copy of it, with its key") {
  armor::manual_clock clock;
  SECTION("std::ref: every key's copy refers to one listener") {
    event_log log;
    using logged = armor::keyed<logged_breaker>;
    static_assert(std::is_same_v<logged::listener_type, std::reference_wrapper<event_log>>);
    static_assert(armor::keyable_policy<logged_breaker, armor::circuit_breaker_options, armor::manual_clock>);
    logged per_host{{.failure_threshold = 1, .open_for = 10s}, {.max_keys = 10}, clock, std::ref(log)};
    auto p = armor::pipeline{clock, std::ref(per_host)};
    auto fail = [&](std::string_view host) {
      return p.try_execute([] { return std::make_error_code(std::errc::io_error); }, {.key = host});
    };
    (void)fail("s3.eu-west-1");
    (void)fail("s3.us-east-1");
    REQUIRE(log.events.size() == 2);
    CHECK(log.events[0].key == "s3.eu-west-1");
    CHECK(log.events[0].to == breaker_state::open);
    CHECK(log.events[1].key == "s3.us-east-1");
    // Directly, through a handle, too.
    per_host.get("s3.eu-west-1")->isolate();
    REQUIRE(log.events.size() == 3);
    CHECK(log.events[2].key == "s3.eu-west-1");
    CHECK(log.events[2].reason == breaker_reason::isolated);
  }
  SECTION("by value: every key's breaker holds its own copy") {
    struct counter {
      std::vector<int>* seen;
      int mine = 0;
      void operator()(const armor::circuit_breaker_event&) noexcept { seen->push_back(++mine); }
    };
    std::vector<int> seen;
    armor::keyed<armor::circuit_breaker<armor::manual_clock, counter>> per_host{
        {.failure_threshold = 1, .open_for = 1s}, {}, clock, counter{&seen}};
    auto trip = [&](std::string_view host) {
      auto h = per_host.get(host);
      auto d = h->try_acquire();
      h->record(std::move(d).permit(), bad());
    };
    trip("a");                                 // a: closed -> open
    trip("b");                                 // b: closed -> open
    clock.advance(1s);
    trip("a");                                 // a: open -> half_open, half_open -> open
    CHECK(seen == std::vector<int>{1, 1, 2, 3});  // "a"'s copy heard three events, "b"'s one
  }
}

TEST_CASE("a keyed breaker whose listener is a stateless lambda needs no listener argument") {
  armor::manual_clock clock;
  static int opened = 0;
  auto on_open = [](const armor::circuit_breaker_event& e) noexcept {
    if (e.to == breaker_state::open) ++opened;
  };
  armor::keyed<armor::circuit_breaker<armor::manual_clock, decltype(on_open)>> per_host{{.failure_threshold = 1}, {},
                                                                                      clock};
  auto d = per_host.get("x")->try_acquire();
  per_host.get("x")->record(std::move(d).permit(), bad());
  CHECK(opened == 1);
}
