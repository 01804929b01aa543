// armor::deadline: one time budget for everything inside it.
#include <armor/deadline.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"
#include "test_policies.hpp"

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;

namespace {
struct transient : std::runtime_error {
  transient() : std::runtime_error("transient") {}
};
}  // namespace

TEST_CASE("the operation sees the whole budget as remaining time") {
  auto p = armor::pipeline{armor::manual_clock{}, armor::deadline{2s}};
  std::chrono::nanoseconds remaining{};
  bool has_deadline = false;
  p.execute([&](const armor::context& ctx) {
    remaining = ctx.remaining();
    has_deadline = ctx.has_deadline();
  });
  CHECK(has_deadline);
  CHECK(remaining == 2s);
}

TEST_CASE("without a deadline there is no limit") {
  auto p = armor::pipeline{armor::manual_clock{}};
  p.execute([](const armor::context& ctx) {
    CHECK_FALSE(ctx.has_deadline());
    CHECK(ctx.remaining() == std::chrono::nanoseconds::max());
  });
}

TEST_CASE("a zero or negative budget is refused at construction with a clear message") {
  CHECK_THROWS_AS(armor::deadline{0s}, armor::error);
  CHECK_THROWS_AS(armor::deadline{-5ms}, armor::error);
  try {
    armor::deadline d{-1s};
    FAIL("a negative budget was accepted");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    CHECK(std::string(e.what()).find("armor::deadline") != std::string::npos);
    CHECK(std::string(e.what()).find("budget") != std::string::npos);
  }
}

TEST_CASE("nested deadlines take the earliest") {
  armor::manual_clock clock;
  SECTION("outer is shorter") {
    auto p = armor::pipeline{clock, armor::deadline{1s}, armor::deadline{5s}};
    p.execute([](const armor::context& ctx) { CHECK(ctx.remaining() == 1s); });
  }
  SECTION("inner is shorter") {
    auto p = armor::pipeline{clock, armor::deadline{5s}, armor::deadline{300ms}};
    p.execute([](const armor::context& ctx) { CHECK(ctx.remaining() == 300ms); });
  }
}

TEST_CASE("an exhausted budget fails with deadline_exceeded without calling the operation") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::deadline{2s}};
  int calls = 0;
  for (auto left : {0ns, -5ns}) {
    // A server passing on what is left of its own caller's deadline.
    auto r = p.try_execute([&] { ++calls; }, {.timeout = left});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.code() == armor::errc::deadline_exceeded);
    CHECK_FALSE(r.error().cause);
  }
  CHECK(calls == 0);
  CHECK_THROWS_AS(p.execute([&] { ++calls; }, {.timeout = 0ns}), armor::error);
  CHECK(calls == 0);
}

TEST_CASE("a wait that would not fit says wait_exceeds_deadline; a spent budget says deadline_exceeded") {
  armor::manual_clock clock;
  armor_test::permit_log permits;
  auto p = armor::pipeline{clock, armor::deadline{10s}, armor_test::waiting_policy{7s, &permits}};
  int calls = 0;
  // With 6.5 s of the budget left (3.5 s into a 10 s deadline) a 7 s wait is
  // asked for: refused at once, with a code that says so.
  auto early = p.try_execute([&] { ++calls; }, {.timeout = 6500ms});
  REQUIRE_FALSE(early.has_value());
  CHECK(early.code() == armor::errc::wait_exceeds_deadline);
  CHECK(early.code() != armor::errc::deadline_exceeded);
  CHECK(early.code() == std::errc::timed_out);  // portable code still sees a timeout
  CHECK(early.code().message() == "wait would not fit before the deadline");
  CHECK(early.retry_after() == std::optional<std::chrono::nanoseconds>{7s});
  CHECK(clock.now().time_since_epoch() == 0s);
  CHECK(permits.dropped == 1);

  // The budget really spent: deadline_exceeded, as before.
  auto late = p.try_execute([&] { ++calls; }, {.timeout = 0ns});
  CHECK(late.code() == armor::errc::deadline_exceeded);
  CHECK(late.code() == std::errc::timed_out);
  CHECK(calls == 0);
}

TEST_CASE("a caller's timeout and the layers' deadlines take the earliest") {
  auto p = armor::pipeline{armor::manual_clock{}, armor::deadline{2s}};
  p.execute([](const armor::context& ctx) { CHECK(ctx.remaining() == 700ms); }, {.timeout = 700ms});
  p.execute([](const armor::context& ctx) { CHECK(ctx.remaining() == 2s); }, {.timeout = 5s});
}

TEST_CASE("when the budget runs out during retries the call ends with the last failure") {
  armor::manual_clock clock;
  // Attempt 1 runs for 3 s of a 2 s budget and fails; the retry layer asks
  // for another round at once, which must not start.
  auto p = armor::pipeline{clock, armor::deadline{2s}, armor_test::scripted_retry{.max_attempts = 5}};
  int calls = 0;
  auto r = p.try_execute([&]() -> int {
    ++calls;
    clock.advance(3s);
    throw transient();
  });
  CHECK(calls == 1);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().from_operation());
  CHECK_THROWS_AS(r.value(), transient);
}

TEST_CASE("a failure that ends past the deadline is judged a timeout") {
  armor::manual_clock clock;
  armor_test::verdict_recorder rec;
  auto p = armor::pipeline{clock, armor::deadline{1s}, std::ref(rec)};
  (void)p.try_execute([&]() -> int {
    clock.advance(1500ms);
    throw transient();
  });
  REQUIRE(rec.verdicts.size() == 1);
  CHECK(rec.verdicts[0].kind == armor::outcome::timeout);
}

TEST_CASE("a success that ends past the deadline is still returned") {
  // The sync driver cannot interrupt a blocking call; discarding work that
  // completed would help nobody.
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::deadline{1s}};
  CHECK(p.execute([&] {
    clock.advance(2s);
    return 8;
  }) == 8);
}

TEST_CASE("waits inside a deadline never exceed it") {
  armor::manual_clock clock;
  armor_test::permit_log permits;
  SECTION("a wait that fits is slept") {
    auto p = armor::pipeline{clock, armor::deadline{2s}, armor_test::waiting_policy{1500ms, &permits}};
    p.execute([](const armor::context& ctx) { CHECK(ctx.remaining() == 500ms); });
    CHECK(clock.now().time_since_epoch() == 1500ms);
  }
  SECTION("a wait that does not fit fails at once") {
    auto p = armor::pipeline{clock, armor::deadline{2s}, armor_test::waiting_policy{2s, &permits}};
    auto r = p.try_execute([] {});
    CHECK(r.code() == armor::errc::wait_exceeds_deadline);
    CHECK(clock.now().time_since_epoch() == 0s);
    CHECK(permits.dropped == 1);
  }
}

TEST_CASE("retry delays count against a deadline outside the retry layer") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::deadline{1s}, armor_test::scripted_retry{.max_attempts = 10, .delay = 300ms}};
  std::vector<std::chrono::nanoseconds> remaining;
  auto r = p.try_execute([&](const armor::context& ctx) -> int {
    remaining.push_back(ctx.remaining());
    throw transient();
  });
  // 0 ms, 300 ms, 600 ms, 900 ms: the next delay would end at 1200 ms > 1 s.
  const std::vector<std::chrono::nanoseconds> expected{1000ms, 700ms, 400ms, 100ms};
  CHECK(remaining == expected);
  CHECK(clock.now().time_since_epoch() == 900ms);  // the last delay was not slept
  CHECK(r.code() == armor::errc::retries_exhausted);
}

TEST_CASE("a deadline inside a retry layer is a per-attempt timeout") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor_test::scripted_retry{.max_attempts = 3, .delay = 1s}, armor::deadline{250ms}};
  std::vector<std::chrono::nanoseconds> remaining;
  (void)p.try_execute([&](const armor::context& ctx) -> int {
    remaining.push_back(ctx.remaining());
    clock.advance(100ms);
    throw transient();
  });
  const std::vector<std::chrono::nanoseconds> expected{250ms, 250ms, 250ms};
  CHECK(remaining == expected);
}

TEST_CASE("a huge budget saturates instead of overflowing") {
  armor::manual_clock clock{std::chrono::hours(24 * 365 * 100)};
  auto p = armor::pipeline{clock, armor::deadline{std::chrono::hours::max()}};
  CHECK(p.execute([](const armor::context& ctx) { return ctx.remaining() > std::chrono::hours(1); }));
}
