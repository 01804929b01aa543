// The pipeline and its sync driver: how layers are admitted, settled,
// looped and waited on, and what execute/try_execute give back.
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"
#include "test_policies.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;
using armor_test::rejecting_policy;
using armor_test::scripted_retry;
using armor_test::tracing_policy;
using armor_test::verdict_recorder;

namespace {

struct upstream_down : std::runtime_error {
  upstream_down() : std::runtime_error("upstream down") {}
};

}  // namespace

TEST_CASE("an empty pipeline returns what the operation returns") {
  auto p = armor::pipeline{};
  CHECK(p.execute([] { return 42; }) == 42);
  CHECK(p.execute([](const armor::context&) { return std::string("ctx"); }) == "ctx");
  auto r = p.try_execute([] { return 7; });
  REQUIRE(r.has_value());
  CHECK(*r == 7);
}

TEST_CASE("void operations run and succeed") {
  armor::manual_clock clock;
  verdict_recorder rec;
  auto p = armor::pipeline{clock, std::ref(rec)};
  int calls = 0;
  p.execute([&] { ++calls; });
  auto r = p.try_execute([&](const armor::context&) { ++calls; });
  CHECK(calls == 2);
  CHECK(r.has_value());
  REQUIRE(rec.verdicts.size() == 2);
  CHECK(rec.verdicts[0].ok());
}

TEST_CASE("the operation sees the attempt number, the key and the cost") {
  auto p = armor::pipeline{armor::manual_clock{}};
  std::string seen_key;
  std::int64_t seen_cost = 0;
  unsigned seen_attempt = 0;
  p.execute(
      [&](const armor::context& ctx) {
        seen_key = std::string(ctx.key());
        seen_cost = ctx.cost();
        seen_attempt = ctx.attempt();
      },
      {.key = "10.0.0.1", .cost = 3});
  CHECK(seen_key == "10.0.0.1");
  CHECK(seen_cost == 3);
  CHECK(seen_attempt == 1);
}

TEST_CASE("a call carries a main cost, cost slots, and a per-call cost of 1; a source selects one") {
  using armor::cost_source;
  const armor::context plain(armor::timestamp{});
  CHECK(plain.cost() == 1);
  CHECK(plain.cost(cost_source::main()) == 1);
  CHECK(plain.cost(cost_source::slot(0)) == 0);  // a slot not given is 0
  CHECK(plain.cost(cost_source::per_call()) == 1);

  const armor::context ctx(armor::timestamp{}, {.cost = 40'000, .costs = {3'000, 7}});
  CHECK(ctx.cost() == 40'000);
  CHECK(ctx.cost(cost_source{}) == 40'000);
  CHECK(ctx.cost(cost_source::slot(0)) == 3'000);
  CHECK(ctx.cost(cost_source::slot(1)) == 7);
  CHECK(ctx.cost(cost_source::slot(2)) == 0);
  CHECK(ctx.cost(cost_source::per_call()) == 1);
  CHECK(ctx.cost(cost_source::slot(armor::cost_slots)) == -1);  // no such slot: a policy refuses it as invalid

  CHECK(cost_source{} == cost_source::main());
  CHECK(cost_source::slot(1).is_slot());
  CHECK(cost_source::slot(1).index() == 1);
  CHECK(cost_source::per_call().is_per_call());
  CHECK(cost_source::slot(armor::cost_slots - 1).valid());
  CHECK_FALSE(cost_source::slot(armor::cost_slots).valid());
  CHECK_FALSE(cost_source::slot(std::size_t{1} << 40).valid());
  CHECK(cost_source::per_call().valid());
}

TEST_CASE("a reported cost settles only the source it was reported for") {
  using armor::cost_source;
  const armor::context ctx(armor::timestamp{}, {.cost = 40'000, .costs = {3'000}});
  ctx.report_cost(cost_source::slot(0), 2'500);
  CHECK_FALSE(ctx.reported_cost().has_value());
  CHECK(ctx.reported_cost(cost_source::slot(0)) == std::optional<std::int64_t>{2'500});
  CHECK_FALSE(ctx.reported_cost(cost_source::slot(1)).has_value());
  ctx.report_cost(12'345);
  CHECK(ctx.reported_cost() == std::optional<std::int64_t>{12'345});
  CHECK(ctx.reported_cost(cost_source::main()) == std::optional<std::int64_t>{12'345});
  // A per-call count has nothing to settle; reports for it, or for a slot
  // that does not exist, are ignored.
  ctx.report_cost(cost_source::per_call(), 5);
  ctx.report_cost(cost_source::slot(armor::cost_slots), 5);
  CHECK_FALSE(ctx.reported_cost(cost_source::per_call()).has_value());
  CHECK_FALSE(ctx.reported_cost(cost_source::slot(armor::cost_slots)).has_value());
  CHECK(ctx.reported_cost(cost_source::slot(0)) == std::optional<std::int64_t>{2'500});
}

TEST_CASE("every reported cost is forgotten when the next attempt begins") {
  using armor::cost_source;
  struct cost_recorder {
    using permit_type = armor::no_permit;
    std::vector<std::optional<std::int64_t>> main{}, slot{};
    armor::admission<> admit(armor::context&) { return armor::admission<>::admit(); }
    void settle(armor::context& ctx, armor::no_permit, const armor::verdict&) {
      main.push_back(ctx.reported_cost());
      slot.push_back(ctx.reported_cost(cost_source::slot(2)));
    }
  };
  cost_recorder rec;
  auto p = armor::pipeline{armor::manual_clock{}, scripted_retry{.max_attempts = 2}, std::ref(rec)};
  (void)p.try_execute(
      [](const armor::context& ctx) -> int {
        if (ctx.attempt() == 1) {
          ctx.report_cost(10);
          ctx.report_cost(cost_source::slot(2), 20);
          throw std::runtime_error("first attempt fails");
        }
        return 0;
      },
      {.cost = 1, .costs = {0, 0, 30}});
  REQUIRE(rec.slot.size() == 2);
  CHECK(rec.main[0] == std::optional<std::int64_t>{10});
  CHECK(rec.slot[0] == std::optional<std::int64_t>{20});
  CHECK_FALSE(rec.main[1].has_value());
  CHECK_FALSE(rec.slot[1].has_value());
}

TEST_CASE("layers are admitted outermost first and settled innermost first") {
  std::vector<std::string> log;
  auto p = armor::pipeline{armor::manual_clock{}, tracing_policy{"outer", &log}, tracing_policy{"inner", &log}};
  p.execute([&] { log.push_back("call"); });
  const std::vector<std::string> expected{"admit:outer", "admit:inner", "call", "settle:inner:0", "settle:outer:0"};
  CHECK(log == expected);
}

TEST_CASE("execute rethrows the operation's own exception and try_execute keeps it as the cause") {
  auto p = armor::pipeline{armor::manual_clock{}};
  CHECK_THROWS_AS(p.execute([]() -> int { throw upstream_down(); }), upstream_down);

  auto r = p.try_execute([]() -> int { throw upstream_down(); });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::operation_failed);
  REQUIRE(r.error().cause);
  CHECK(r.error().from_operation());
  CHECK_THROWS_AS(r.value(), upstream_down);
}

TEST_CASE("a rejection stops the call without running the operation") {
  rejecting_policy gate{armor::errc::circuit_open, 30s};
  auto p = armor::pipeline{armor::manual_clock{}, std::ref(gate)};
  int calls = 0;

  auto r = p.try_execute([&] { return ++calls; });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::circuit_open);
  REQUIRE(r.retry_after().has_value());
  CHECK(*r.retry_after() == 30s);
  CHECK_FALSE(r.error().cause);

  try {
    (void)p.execute([&] { return ++calls; });
    FAIL("execute should have thrown");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::circuit_open);
    REQUIRE(e.retry_after().has_value());
    CHECK(*e.retry_after() == 30s);
  }
  CHECK(calls == 0);
  CHECK(gate.admits == 2);
}

TEST_CASE("layers outside a rejecting layer settle with a rejected verdict") {
  verdict_recorder outer;
  rejecting_policy gate{armor::errc::rate_limited, 1s};
  auto p = armor::pipeline{armor::manual_clock{}, std::ref(outer), std::ref(gate)};
  (void)p.try_execute([] { return 1; });
  REQUIRE(outer.verdicts.size() == 1);
  CHECK(outer.verdicts[0].kind == armor::outcome::rejected);
  CHECK(outer.verdicts[0].code == armor::errc::rate_limited);
}

TEST_CASE("execute behaves as try_execute(f).value() for every ending") {
  armor::manual_clock clock;
  SECTION("a value") {
    auto p = armor::pipeline{clock};
    CHECK(p.execute([] { return 5; }) == p.try_execute([] { return 5; }).value());
  }
  SECTION("an exception") {
    auto p = armor::pipeline{clock};
    CHECK_THROWS_AS(p.try_execute([]() -> int { throw upstream_down(); }).value(), upstream_down);
  }
  SECTION("a rejection") {
    auto p = armor::pipeline{clock, rejecting_policy{armor::errc::quota_exhausted, 1h}};
    CHECK_THROWS_AS(p.try_execute([] { return 1; }).value(), armor::error);
    CHECK_THROWS_AS(p.execute([] { return 1; }), armor::error);
  }
}

TEST_CASE("settle receives the classified verdict of the attempt") {
  armor::manual_clock clock;
  verdict_recorder rec;
  auto p = armor::pipeline{clock, std::ref(rec)};

  (void)p.try_execute([] { return 1; });
  (void)p.try_execute([]() -> int { throw upstream_down(); });
  (void)p.try_execute([] { return std::make_error_code(std::errc::connection_refused); });
  (void)p.try_execute([] { return std::error_code{}; });

  REQUIRE(rec.verdicts.size() == 4);
  CHECK(rec.verdicts[0].kind == armor::outcome::success);
  CHECK(rec.verdicts[1].kind == armor::outcome::failure);
  CHECK(rec.verdicts[1].retryable);
  CHECK(rec.verdicts[2].kind == armor::outcome::failure);
  CHECK(rec.verdicts[2].code == std::errc::connection_refused);
  CHECK(rec.verdicts[3].kind == armor::outcome::success);
}

TEST_CASE("an error value judged a failure is still returned to the caller") {
  auto p = armor::pipeline{armor::manual_clock{}, scripted_retry{.max_attempts = 3}};
  int calls = 0;
  const std::error_code ec = p.execute([&] {
    ++calls;
    return std::make_error_code(std::errc::connection_reset);
  });
  CHECK(calls == 3);
  CHECK(ec == std::errc::connection_reset);
}

TEST_CASE("ok() tells a value judged a success from a value judged a failure or throttled") {
  struct response {
    int status;
  };
  auto p = armor::pipeline{armor::manual_clock{}, armor::classify{[](const response& r) {
                             if (r.status == 429) return armor::verdict::throttled();
                             if (r.status >= 500) return armor::verdict::failure();
                             return armor::verdict::success();
                           }},
                           scripted_retry{.max_attempts = 2}};
  const auto good = p.try_execute([] { return response{200}; });
  CHECK(good.has_value());
  CHECK(good.ok());
  const auto bad = p.try_execute([] { return response{500}; });
  REQUIRE(bad.has_value());  // the value is still returned...
  CHECK_FALSE(bad.ok());     // ...and said to be a failure
  CHECK(bad->status == 500);
  CHECK(bad.code() == std::error_code{});
  const auto slow_down = p.try_execute([] { return response{429}; });
  REQUIRE(slow_down.has_value());
  CHECK_FALSE(slow_down.ok());
  // The last attempt decides: a failure then a success is ok.
  int calls = 0;
  const auto second = p.try_execute([&] { return response{++calls == 1 ? 503 : 200}; });
  CHECK(second.ok());
  CHECK(calls == 2);
  // A failure is never ok; a result a user builds from a value is.
  const auto refused = p.try_execute([]() -> response { throw armor::error(armor::errc::rate_limited); });
  CHECK_FALSE(refused.ok());
  CHECK(armor::result<int>(3).ok());
}

TEST_CASE("a user classifier judges values and leaves exceptions to the default") {
  struct response {
    int status;
  };
  armor::manual_clock clock;
  verdict_recorder rec;
  auto p = armor::pipeline{clock, armor::classify{[](const response& r) {
                             if (r.status >= 500) return armor::verdict::failure();
                             if (r.status >= 400) return armor::verdict::permanent_failure();
                             return armor::verdict::success();
                           }},
                           std::ref(rec)};
  (void)p.try_execute([] { return response{503}; });
  (void)p.try_execute([] { return response{404}; });
  (void)p.try_execute([] { return response{200}; });
  (void)p.try_execute([]() -> response { throw upstream_down(); });
  REQUIRE(rec.verdicts.size() == 4);
  CHECK((rec.verdicts[0].kind == armor::outcome::failure && rec.verdicts[0].retryable));
  CHECK((rec.verdicts[1].kind == armor::outcome::failure && !rec.verdicts[1].retryable));
  CHECK(rec.verdicts[2].ok());
  CHECK((rec.verdicts[3].kind == armor::outcome::failure && rec.verdicts[3].retryable));
}

TEST_CASE("a user classifier can judge exceptions too") {
  armor::manual_clock clock;
  verdict_recorder rec;
  auto p = armor::pipeline{clock, armor::classify{[](const std::exception_ptr&) {
                             return armor::verdict::permanent_failure();
                           }},
                           std::ref(rec)};
  (void)p.try_execute([]() -> int { throw upstream_down(); });
  REQUIRE(rec.verdicts.size() == 1);
  CHECK_FALSE(rec.verdicts[0].retryable);
}

TEST_CASE("a looping layer re-runs only the layers inside it") {
  std::vector<std::string> log;
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, tracing_policy{"outer", &log}, scripted_retry{.max_attempts = 3},
                           tracing_policy{"inner", &log}};
  int calls = 0;
  auto r = p.try_execute([&]() -> int {
    ++calls;
    throw upstream_down();
  });
  CHECK(calls == 3);
  const std::vector<std::string> expected{"admit:outer",    "admit:inner",    "settle:inner:1", "admit:inner",
                                          "settle:inner:1", "admit:inner",    "settle:inner:1", "settle:outer:1"};
  CHECK(log == expected);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::retries_exhausted);
  CHECK(r.error().from_operation());
}

TEST_CASE("a looping layer's delay is slept through the pipeline's clock") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, scripted_retry{.max_attempts = 3, .delay = 250ms}};
  std::vector<armor::timestamp> starts;
  int calls = 0;
  const int v = p.execute([&](const armor::context& ctx) {
    starts.push_back(ctx.now());
    if (++calls < 3) throw upstream_down();
    return calls;
  });
  CHECK(v == 3);
  REQUIRE(starts.size() == 3);
  CHECK(starts[1] - starts[0] == 250ms);
  CHECK(starts[2] - starts[1] == 250ms);
  CHECK(clock.now().time_since_epoch() == 500ms);
}

TEST_CASE("a value after failed attempts wins and the attempt counter keeps counting") {
  auto p = armor::pipeline{armor::manual_clock{}, scripted_retry{.max_attempts = 5}};
  unsigned last_attempt = 0;
  const int v = p.execute([&](const armor::context& ctx) {
    last_attempt = ctx.attempt();
    if (ctx.attempt() < 4) throw upstream_down();
    return 99;
  });
  CHECK(v == 99);
  CHECK(last_attempt == 4);
}

TEST_CASE("a non-retryable failure is not looped and is not 'retries exhausted'") {
  scripted_retry retry{.max_attempts = 5};
  auto p = armor::pipeline{armor::manual_clock{},
                           armor::classify{[](const std::exception_ptr&) { return armor::verdict::permanent_failure(); }},
                           std::ref(retry)};
  int calls = 0;
  auto r = p.try_execute([&]() -> int {
    ++calls;
    throw upstream_down();
  });
  CHECK(calls == 1);
  CHECK(r.code() == armor::errc::operation_failed);
}

TEST_CASE("a rejection after failed attempts keeps the last exception as the cause") {
  // The retry layer is outside a gate that opens after the first attempt.
  struct closes_after_one {
    using permit_type = armor::no_permit;
    int admits = 0;
    armor::admission<> admit(armor::context&) {
      if (admits++ == 0) return armor::admission<>::admit();
      return armor::admission<>::reject(armor::errc::circuit_open, 5s, false);
    }
    void settle(armor::context&, armor::no_permit, const armor::verdict&) {}
  };
  auto p = armor::pipeline{armor::manual_clock{}, scripted_retry{.max_attempts = 3}, closes_after_one{}};
  auto r = p.try_execute([]() -> int { throw upstream_down(); });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::circuit_open);
  REQUIRE(r.error().cause);
  CHECK_FALSE(r.error().from_operation());
  CHECK_THROWS_AS(std::rethrow_exception(r.error().cause), upstream_down);
  CHECK_THROWS_AS(r.value(), armor::error);
}

TEST_CASE("a wait admission is slept through the clock before the attempt") {
  armor::manual_clock clock;
  armor_test::permit_log permits;
  auto p = armor::pipeline{clock, armor_test::waiting_policy{150ms, &permits}};
  armor::timestamp started{};
  p.execute([&](const armor::context& ctx) { started = ctx.now(); });
  CHECK(started.time_since_epoch() == 150ms);
  CHECK(clock.now().time_since_epoch() == 150ms);
  CHECK(permits.issued == 1);
  CHECK(permits.settled == 1);
  CHECK(permits.dropped == 0);
}

TEST_CASE("a wait that would outlast the deadline is not slept and gives its reservation back") {
  // A deadline-like policy: tightens the deadline to now + 1 s.
  struct one_second_budget {
    using permit_type = armor::no_permit;
    armor::admission<> admit(armor::context& ctx) {
      ctx.tighten_deadline(ctx.now() + 1s);
      return armor::admission<>::admit();
    }
    void settle(armor::context&, armor::no_permit, const armor::verdict&) {}
  };
  armor::manual_clock clock;
  armor_test::permit_log permits;
  auto p = armor::pipeline{clock, one_second_budget{}, armor_test::waiting_policy{2s, &permits}};
  int calls = 0;
  auto r = p.try_execute([&] { ++calls; });
  REQUIRE_FALSE(r.has_value());
  // Refused before the deadline, for the deadline: its own code, still a timeout to portable code.
  CHECK(r.code() == armor::errc::wait_exceeds_deadline);
  CHECK(r.code() == std::errc::timed_out);
  CHECK(r.retry_after() == std::optional<std::chrono::nanoseconds>{2s});  // the wait that did not fit
  CHECK(calls == 0);
  CHECK(clock.now().time_since_epoch() == 0ns);  // did not sleep at all
  CHECK(permits.issued == 1);
  CHECK(permits.dropped == 1);
  CHECK(permits.settled == 0);
}

TEST_CASE("a permit is dropped, not settled, when an exception escapes the driver") {
  armor::manual_clock clock;
  armor_test::permit_log permits;
  auto p = armor::pipeline{clock,
                           armor::classify{[](const int&) -> armor::verdict { throw std::logic_error("classifier bug"); }},
                           armor_test::waiting_policy{0ns, &permits}};
  CHECK_THROWS_AS(p.try_execute([] { return 1; }), std::logic_error);
  CHECK(permits.issued == 1);
  CHECK(permits.dropped == 1);
  CHECK(permits.settled == 0);
}

TEST_CASE("several pipelines share one policy held by reference") {
  verdict_recorder shared;
  auto a = armor::pipeline{armor::manual_clock{}, std::ref(shared)};
  auto b = armor::pipeline{armor::manual_clock{}, std::ref(shared)};
  a.execute([] {});
  b.execute([] {});
  CHECK(shared.verdicts.size() == 2);
  CHECK(&a.layer<0>() == &shared);
}

TEST_CASE("the driver reads the clock once per attempt on the success path") {
  int reads = 0;
  armor::manual_clock base;
  armor_test::counting_clock clock{base, &reads};
  auto q = armor::pipeline{clock, verdict_recorder{}, verdict_recorder{}, verdict_recorder{}};
  q.execute([] {});
  CHECK(reads == 1);
  reads = 0;
  for (int i = 0; i < 10; ++i) q.execute([] {});
  CHECK(reads == 10);
}

TEST_CASE("a layer that times calls gets a second clock reading after the operation") {
  int reads = 0;
  armor::manual_clock base;
  armor_test::counting_clock clock{base, &reads};
  armor_test::timing_recorder rec;
  auto p = armor::pipeline{clock, std::ref(rec)};
  p.execute([&] { base.advance(40ms); });
  CHECK(reads == 2);
  REQUIRE(rec.settled_at.size() == 1);
  CHECK(rec.settled_at[0].time_since_epoch() == 40ms);
}

TEST_CASE("a failure gets a fresh clock reading even when no layer times calls") {
  int reads = 0;
  armor::manual_clock base;
  armor_test::counting_clock clock{base, &reads};
  verdict_recorder rec;
  auto p = armor::pipeline{clock, std::ref(rec)};
  (void)p.try_execute([&]() -> int {
    base.advance(70ms);
    throw upstream_down();
  });
  CHECK(reads == 2);
  REQUIRE(rec.settled_at.size() == 1);
  CHECK(rec.settled_at[0].time_since_epoch() == 70ms);
}

TEST_CASE("an exception from a nested armor pipeline keeps its meaning") {
  armor::manual_clock clock;
  verdict_recorder rec;
  auto inner = armor::pipeline{clock, rejecting_policy{armor::errc::rate_limited, 2s}};
  auto outer = armor::pipeline{clock, std::ref(rec)};
  (void)outer.try_execute([&] { return inner.execute([] { return 1; }); });
  REQUIRE(rec.verdicts.size() == 1);
  CHECK(rec.verdicts[0].kind == armor::outcome::rejected);
  CHECK(rec.verdicts[0].code == armor::errc::rate_limited);
  REQUIRE(rec.verdicts[0].retry_after.has_value());
  CHECK(*rec.verdicts[0].retry_after == 2s);
}

TEST_CASE("pipelines are built with any mix of clock, classifier and policies") {
  armor::manual_clock clock;
  auto judge = armor::classify{[](const int& v) { return v > 0 ? armor::verdict::success() : armor::verdict::failure(); }};
  auto a = armor::pipeline{};
  auto b = armor::pipeline{clock};
  auto c = armor::pipeline{judge, verdict_recorder{}};
  auto d = armor::pipeline{clock, judge, verdict_recorder{}, verdict_recorder{}};
  auto e = armor::pipeline{verdict_recorder{}};
  static_assert(std::is_same_v<decltype(a)::clock_type, armor::steady_clock>);
  static_assert(std::is_same_v<decltype(b)::clock_type, armor::manual_clock>);
  static_assert(std::is_same_v<decltype(c)::clock_type, armor::steady_clock>);
  static_assert(decltype(d)::size() == 2);
  static_assert(decltype(e)::size() == 1);
  CHECK(d.execute([] { return 3; }) == 3);
  CHECK(d.clock() == clock);
}

TEST_CASE("a wait of zero is not slept and costs no extra clock read") {
  int reads = 0;
  armor::manual_clock base;
  armor_test::counting_clock clock{base, &reads};
  armor_test::permit_log permits;
  auto p = armor::pipeline{clock, armor_test::waiting_policy{0ns, &permits}};
  p.execute([] {});
  CHECK(reads == 1);
  CHECK(permits.settled == 1);
}

TEST_CASE("the operation reports its real cost and policies see it at settle") {
  struct cost_recorder {
    using permit_type = armor::no_permit;
    std::vector<std::optional<std::int64_t>> reported{};
    armor::admission<> admit(armor::context&) { return armor::admission<>::admit(); }
    void settle(armor::context& ctx, armor::no_permit, const armor::verdict&) { reported.push_back(ctx.reported_cost()); }
  };
  cost_recorder rec;
  auto p = armor::pipeline{armor::manual_clock{}, scripted_retry{.max_attempts = 2}, std::ref(rec)};
  (void)p.try_execute(
      [](const armor::context& ctx) -> int {
        if (ctx.attempt() == 1) {
          ctx.report_cost(1234);
          throw std::runtime_error("first attempt fails after spending tokens");
        }
        return 0;  // the second attempt reports nothing
      },
      {.cost = 1000});
  REQUIRE(rec.reported.size() == 2);
  CHECK(rec.reported[0] == std::optional<std::int64_t>{1234});
  CHECK_FALSE(rec.reported[1].has_value());
}
