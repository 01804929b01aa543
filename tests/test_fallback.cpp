// armor::fallback: which failures it answers for, what its function sees,
// void operations, exceptions from the fallback, stacked fallbacks, and
// armor::hedge's options (the hedge runs only on the Asio driver).
#include <armor/backoff.hpp>
#include <armor/bulkhead.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/deadline.hpp>
#include <armor/fallback.hpp>
#include <armor/hedge.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"
#include "test_policies.hpp"

#include <functional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;
using armor_test::rejecting_policy;
using armor_test::verdict_recorder;

namespace {

struct upstream_down : std::runtime_error {
  upstream_down() : std::runtime_error("upstream down") {}
};
struct cache_miss : std::runtime_error {
  cache_miss() : std::runtime_error("cache miss") {}
};

}  // namespace

TEST_CASE("a success passes through and the fallback is not called") {
  int fallbacks = 0;
  auto p = armor::pipeline{armor::manual_clock{}, armor::fallback{[&] {
                             ++fallbacks;
                             return std::string("fallback");
                           }}};
  CHECK(p.execute([] { return std::string("live"); }) == "live");
  CHECK(*p.try_execute([] { return std::string("live"); }) == "live");
  CHECK(fallbacks == 0);
}

TEST_CASE("a fallback's value is ok()") {
  auto p = armor::pipeline{armor::manual_clock{}, armor::fallback{[] { return std::string("fallback"); }}};
  const auto r = p.try_execute([]() -> std::string { throw cache_miss(); });
  REQUIRE(r.has_value());
  CHECK(r.ok());
  CHECK(*r == "fallback");
}

TEST_CASE("an exception from the operation becomes the fallback's value, and the fallback sees why") {
  std::vector<armor::failure> seen;
  std::string seen_key;
  auto p = armor::pipeline{armor::manual_clock{},
                           armor::fallback{[&](const armor::failure& why, const armor::context& ctx) {
                             seen.push_back(why);
                             seen_key = std::string(ctx.key());
                             return 7;
                           }}};
  CHECK(p.execute([]() -> int { throw upstream_down(); }, {.key = "users"}) == 7);
  auto r = p.try_execute([]() -> int { throw upstream_down(); });
  REQUIRE(r.has_value());
  CHECK(*r == 7);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].code == armor::errc::operation_failed);
  REQUIRE(seen[0].cause);
  CHECK(seen[0].from_operation());
  CHECK_THROWS_AS(std::rethrow_exception(seen[0].cause), upstream_down);
  CHECK(seen_key.empty());  // the second call had no key
}

TEST_CASE("armor's refusals reach the fallback with their code and retry_after") {
  rejecting_policy open_breaker{armor::errc::circuit_open, 30s};
  std::optional<armor::failure> seen;
  int calls = 0;
  auto p = armor::pipeline{armor::manual_clock{}, armor::fallback{[&](const armor::failure& why) {
                             seen = why;
                             return std::string("cached");
                           }},
                           std::ref(open_breaker)};
  CHECK(p.execute([&] {
    ++calls;
    return std::string("live");
  }) == "cached");
  CHECK(calls == 0);
  REQUIRE(seen.has_value());
  CHECK(seen->code == armor::errc::circuit_open);
  REQUIRE(seen->retry_after.has_value());
  CHECK(*seen->retry_after == 30s);
  CHECK_FALSE(seen->from_operation());
}

TEST_CASE("codes narrow a fallback to the failures it names") {
  armor::manual_clock clock;
  rejecting_policy gate{armor::errc::rate_limited, 1s};
  auto only_breaker = armor::fallback{[] { return 0; },
                                      {.codes = {armor::errc::circuit_open, armor::errc::quota_exhausted}}};
  auto p = armor::pipeline{clock, only_breaker, std::ref(gate)};
  auto r = p.try_execute([] { return 1; });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::rate_limited);  // not handled: passed through

  gate.code = armor::errc::quota_exhausted;
  auto r2 = p.try_execute([] { return 1; });
  REQUIRE(r2.has_value());
  CHECK(*r2 == 0);

  // The operation's own failure carries operation_failed, which is not in the set either.
  auto q = armor::pipeline{clock, only_breaker};
  CHECK_THROWS_AS(q.execute([]() -> int { throw upstream_down(); }), upstream_down);
}

TEST_CASE("the verdict kinds a fallback handles are configurable") {
  armor::manual_clock clock;
  rejecting_policy gate{armor::errc::bulkhead_full, std::nullopt};

  SECTION("not the operation's failures") {
    auto p = armor::pipeline{clock, armor::fallback{[] { return 0; }, {.on_failure = false}}, std::ref(gate)};
    CHECK(p.execute([] { return 1; }) == 0);  // a rejection is still handled
    auto q = armor::pipeline{clock, armor::fallback{[] { return 0; }, {.on_failure = false}}};
    CHECK_THROWS_AS(q.execute([]() -> int { throw upstream_down(); }), upstream_down);
  }
  SECTION("not armor's refusals") {
    auto p = armor::pipeline{clock, armor::fallback{[] { return 0; }, {.on_rejected = false}}, std::ref(gate)};
    CHECK(p.try_execute([] { return 1; }).code() == armor::errc::bulkhead_full);
  }
  SECTION("not throttled answers (a 429), which are not failures") {
    const auto throttled = armor::classify{[](const int&) { return armor::verdict::throttled(); }};
    auto p = armor::pipeline{clock, throttled, armor::fallback{[] { return 0; }, {.on_throttled = false}}};
    CHECK(p.execute([] { return 1; }) == 1);  // the throttled value itself
    auto q = armor::pipeline{clock, throttled, armor::fallback{[] { return 0; }, {.on_failure = false}}};
    CHECK(q.execute([] { return 1; }) == 0);
  }
  SECTION("not timeouts: a spent budget before the attempt counts as a timeout") {
    auto p = armor::pipeline{clock, armor::fallback{[] { return 0; }, {.on_timeout = false}}};
    CHECK(p.try_execute([] { return 1; }, {.timeout = 0ns}).code() == armor::errc::deadline_exceeded);
    auto q = armor::pipeline{clock, armor::fallback{[] { return 0; }}};
    CHECK(q.execute([] { return 1; }, {.timeout = 0ns}) == 0);
  }
  SECTION("not timeouts: a wait that would not fit the budget counts as a timeout") {
    armor_test::permit_log permits;
    auto p = armor::pipeline{clock, armor::fallback{[] { return 0; }, {.on_timeout = false}},
                             armor_test::waiting_policy{2s, &permits}};
    CHECK(p.try_execute([] { return 1; }, {.timeout = 1s}).code() == armor::errc::wait_exceeds_deadline);
    auto q = armor::pipeline{clock, armor::fallback{[] { return 0; }, {.on_rejected = false}},
                             armor_test::waiting_policy{2s, &permits}};
    CHECK(q.execute([] { return 1; }, {.timeout = 1s}) == 0);
  }
}

TEST_CASE("a failure past the deadline is a timeout the fallback answers for") {
  armor::manual_clock clock;
  std::optional<armor::failure> seen;
  auto p = armor::pipeline{clock, armor::fallback{[&](const armor::failure& why) {
                             seen = why;
                             return -1;
                           }},
                           armor::deadline{100ms}};
  CHECK(p.execute([&]() -> int {
    clock.advance(150ms);
    throw upstream_down();
  }) == -1);
  REQUIRE(seen.has_value());
  CHECK(seen->code == armor::errc::operation_failed);
  CHECK(seen->cause);
}

TEST_CASE("a value the classifier judges a failure is replaced, with the verdict's code") {
  std::optional<armor::failure> seen;
  auto p = armor::pipeline{armor::manual_clock{}, armor::fallback{[&](const armor::failure& why) {
                             seen = why;
                             return std::error_code{};
                           }}};
  const std::error_code ec = p.execute([] { return std::make_error_code(std::errc::connection_refused); });
  CHECK_FALSE(ec);
  REQUIRE(seen.has_value());
  CHECK(seen->code == std::errc::connection_refused);
  CHECK_FALSE(seen->cause);
}

TEST_CASE("after retries the fallback sees retries_exhausted") {
  armor::manual_clock clock;
  std::optional<armor::failure> seen;
  int attempts = 0;
  auto p = armor::pipeline{clock,
                           armor::fallback{[&](const armor::failure& why) {
                             seen = why;
                             return 0;
                           }},
                           armor::backoff{{.max_attempts = 3, .initial = 1s, .jitter = armor::jitter_mode::none}}};
  CHECK(p.execute([&]() -> int {
    ++attempts;
    throw upstream_down();
  }) == 0);
  CHECK(attempts == 3);
  REQUIRE(seen.has_value());
  CHECK(seen->code == armor::errc::retries_exhausted);
}

TEST_CASE("a void operation's fallback runs as a side effect and the call succeeds") {
  std::vector<std::string> log;
  auto p = armor::pipeline{armor::manual_clock{}, armor::fallback{[&](const armor::failure& why) {
                             log.push_back("served from cache after: " + why.code.message());
                           }}};
  p.execute([] { throw upstream_down(); });
  auto r = p.try_execute([] { throw upstream_down(); });
  CHECK(r.has_value());
  REQUIRE(log.size() == 2);
  CHECK(log[0] == "served from cache after: operation failed");
}

TEST_CASE("an exception from the fallback ends the call as the operation's own would") {
  auto p = armor::pipeline{armor::manual_clock{}, armor::fallback{[]() -> int { throw cache_miss(); }}};
  CHECK_THROWS_AS(p.execute([]() -> int { throw upstream_down(); }), cache_miss);
  auto r = p.try_execute([]() -> int { throw upstream_down(); });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::operation_failed);
  CHECK(r.error().from_operation());
  CHECK_THROWS_AS(r.value(), cache_miss);
}

TEST_CASE("layers outside a fallback still see the failure; layers inside settle first") {
  verdict_recorder outside;
  verdict_recorder inside;
  auto p = armor::pipeline{armor::manual_clock{}, std::ref(outside), armor::fallback{[] { return 0; }},
                           std::ref(inside)};
  CHECK(p.execute([]() -> int { throw upstream_down(); }) == 0);
  REQUIRE(outside.verdicts.size() == 1);
  REQUIRE(inside.verdicts.size() == 1);
  CHECK(outside.verdicts[0].kind == armor::outcome::failure);
  CHECK(inside.verdicts[0].kind == armor::outcome::failure);
}

TEST_CASE("cancellations are not handled unless asked for") {
  armor::manual_clock clock;
  rejecting_policy cancelled{armor::errc::cancelled, std::nullopt, false};
  // A nested pipeline's cancellation, as the classifier reads it: verdict cancelled.
  auto inner = armor::pipeline{clock, std::ref(cancelled)};
  auto nested = [&] { return inner.execute([] { return 1; }); };
  auto p = armor::pipeline{clock, armor::fallback{[] { return 0; }}};
  CHECK(p.try_execute(nested).code() == armor::errc::operation_failed);
  auto q = armor::pipeline{clock, armor::fallback{[] { return 0; }, {.on_cancelled = true}}};
  CHECK(q.execute(nested) == 0);
}

TEST_CASE("fallbacks stack into a degradation ladder, innermost first") {
  armor::manual_clock clock;
  armor::circuit_breaker<armor::manual_clock> breaker{{.failure_threshold = 1, .open_for = 30s}, clock};
  bool cache_has_it = true;
  std::vector<std::string> tried;
  auto p = armor::pipeline{clock,
                           armor::fallback{[&](const armor::failure& why) {
                             tried.push_back("try-again");
                             return "try again in " + std::to_string(why.retry_after.value_or(0s).count() / 1'000'000'000) + "s";
                           }},
                           armor::fallback{[&]() -> std::string {
                             tried.push_back("cache");
                             if (!cache_has_it) throw cache_miss();
                             return "cached";
                           }},
                           std::ref(breaker)};
  auto live_fails = [&]() -> std::string {
    tried.push_back("live");
    throw upstream_down();
  };
  CHECK(p.execute(live_fails) == "cached");  // the breaker opens on this failure
  CHECK(tried == std::vector<std::string>{"live", "cache"});
  tried.clear();
  cache_has_it = false;
  CHECK(p.execute(live_fails) == "try again in 30s");  // open: no live call; the cache misses
  CHECK(tried == std::vector<std::string>{"cache", "try-again"});
}

TEST_CASE("errc_set holds armor codes only") {
  constexpr armor::errc_set s{armor::errc::circuit_open, armor::errc::bulkhead_full};
  static_assert(s.contains(armor::errc::circuit_open));
  static_assert(!s.contains(armor::errc::rate_limited));
  CHECK(s.contains(std::error_code(armor::errc::bulkhead_full)));
  CHECK_FALSE(s.contains(std::make_error_code(std::errc::resource_unavailable_try_again)));
  CHECK(armor::errc_set{}.empty());
}

TEST_CASE("hedge options are validated, naming the option") {
  CHECK_NOTHROW(armor::hedge{});
  CHECK(armor::hedge{}.max_attempts() == 2);
  CHECK(armor::hedge{}.delay() == 50ms);
  CHECK_THROWS_AS(armor::hedge({.max_attempts = 0}), armor::error);
  CHECK_THROWS_AS(armor::hedge({.max_attempts = 9}), armor::error);
  CHECK_THROWS_AS(armor::hedge({.max_attempts = 2, .delay = -1ms}), armor::error);
  try {
    armor::hedge h{{.max_attempts = 9}};
    FAIL("constructed");
  } catch (const armor::error& e) {
    CHECK(std::string(e.what()).find("max_attempts") != std::string::npos);
  }
}

TEST_CASE("hedge decisions: the first success or a permanent failure is final; retryable failures hedge at once") {
  CHECK(armor::hedge::is_final(armor::verdict::success()));
  CHECK(armor::hedge::is_final(armor::verdict::permanent_failure()));
  CHECK_FALSE(armor::hedge::is_final(armor::verdict::failure()));
  CHECK_FALSE(armor::hedge::is_final({armor::outcome::cancelled, false, std::nullopt, armor::errc::cancelled}));
  CHECK(armor::hedge::start_next_now(armor::verdict::failure()));
  CHECK(armor::hedge::start_next_now({armor::outcome::timeout, true, std::nullopt, armor::errc::deadline_exceeded}));
  CHECK_FALSE(armor::hedge::start_next_now(armor::verdict::success()));
  CHECK_FALSE(armor::hedge::start_next_now({armor::outcome::cancelled, false, std::nullopt, armor::errc::cancelled}));
  // armor::idempotent forwards the call, with or without the context.
  armor::idempotent op{[](const armor::context& ctx) { return ctx.cost(); }};
  const armor::context ctx(armor::timestamp{}, {.cost = 4});
  CHECK(op(ctx) == 4);
  armor::idempotent plain{[] { return 3; }};
  CHECK(plain() == 3);
}
