// armor::coalescer, sync: one execution per key in flight, its result for
// every caller, callers that leave alone. Threads meet through latches and
// the coalescer's own counters; nothing sleeps.
#include <armor/coalesce.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <latch>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct boom : std::runtime_error {
  boom() : std::runtime_error("boom") {}
};

// Blocks the thread until `n` callers have joined the flight of `c`.
template <class C>
void wait_for_joined(const C& c, std::uint64_t n) {
  while (c.stats().joined < n) std::this_thread::yield();
}

// An operation that blocks until released and counts its executions.
struct gated_operation {
  std::latch release{1};
  std::atomic<int> runs{0};

  int operator()() {
    ++runs;
    release.wait();
    return 42;
  }
};

}  // namespace

TEST_CASE("coalescer: three concurrent callers share one execution", "[coalesce]") {
  armor::coalescer<std::string, int> c;
  gated_operation op;
  std::vector<int> got(3, 0);
  std::thread leader([&] { got[0] = c.execute("k", [&] { return op(); }); });
  while (op.runs.load() == 0) std::this_thread::yield();  // the leader is inside the operation
  std::thread a([&] { got[1] = c.execute("k", [&] { return op(); }); });
  std::thread b([&] { got[2] = c.execute("k", [&] { return op(); }); });
  wait_for_joined(c, 2);
  op.release.count_down();
  leader.join();
  a.join();
  b.join();
  CHECK(op.runs == 1);
  CHECK(got == std::vector<int>{42, 42, 42});
  const auto st = c.stats();
  CHECK(st.executions == 1);
  CHECK(st.joined == 2);
  CHECK(st.abandoned == 0);
  CHECK(st.in_flight == 0);
  CHECK_FALSE(c.in_flight("k"));
}

TEST_CASE("coalescer: a caller after the flight ended starts a new one", "[coalesce]") {
  armor::coalescer<int, int> c;
  int runs = 0;
  CHECK(c.execute(1, [&] { return ++runs; }) == 1);
  CHECK(c.execute(1, [&] { return ++runs; }) == 2);
  CHECK(c.execute(2, [&] { return ++runs; }) == 3);
  CHECK(c.stats().executions == 3);
  CHECK(c.stats().joined == 0);
}

TEST_CASE("coalescer: different keys do not share", "[coalesce]") {
  armor::coalescer<int, int> c;
  gated_operation op;
  std::optional<int> first;
  std::thread leader([&] { first = c.execute(1, [&] { return op(); }); });
  while (op.runs.load() == 0) std::this_thread::yield();
  CHECK(c.in_flight(1));
  CHECK(c.execute(2, [] { return 7; }) == 7);  // not blocked by key 1's flight
  op.release.count_down();
  leader.join();
  CHECK(first == 42);
  CHECK(c.stats().executions == 2);
}

TEST_CASE("coalescer: the operation's exception reaches every waiter", "[coalesce]") {
  armor::coalescer<int, int> c;
  std::latch release{1};
  std::atomic<int> runs{0};
  auto op = [&]() -> int {
    ++runs;
    release.wait();
    throw boom{};
  };
  std::atomic<int> caught{0};
  std::optional<armor::result<int>> tried;
  std::thread leader([&] {
    try {
      (void)c.execute(1, op);
    } catch (const boom&) {
      ++caught;
    }
  });
  while (runs.load() == 0) std::this_thread::yield();
  std::thread a([&] {
    try {
      (void)c.execute(1, op);
    } catch (const boom&) {
      ++caught;
    }
  });
  std::thread b([&] { tried = c.try_execute(1, op); });
  wait_for_joined(c, 2);
  release.count_down();
  leader.join();
  a.join();
  b.join();
  CHECK(runs == 1);
  CHECK(caught == 2);
  REQUIRE(tried.has_value());
  REQUIRE_FALSE(tried->has_value());
  CHECK(tried->code() == armor::errc::operation_failed);
  CHECK(tried->error().from_operation());
  CHECK_THROWS_AS(tried->value(), boom);
}

TEST_CASE("coalescer: an armor error from the operation reaches every waiter", "[coalesce]") {
  armor::coalescer<int, int> c;
  std::latch release{1};
  std::atomic<int> runs{0};
  // The operation is a pipeline's try_execute, say: a refusal is a result.
  auto op = [&]() -> armor::result<int> {
    ++runs;
    release.wait();
    return armor::failure{armor::errc::circuit_open, 5s, nullptr};
  };
  std::vector<std::optional<armor::result<int>>> got(3);
  std::thread leader([&] { got[0] = c.try_execute(1, op); });
  while (runs.load() == 0) std::this_thread::yield();
  std::thread a([&] { got[1] = c.try_execute(1, op); });
  std::thread b([&] { got[2] = c.try_execute(1, op); });
  wait_for_joined(c, 2);
  release.count_down();
  leader.join();
  a.join();
  b.join();
  CHECK(runs == 1);
  for (const auto& r : got) {
    REQUIRE(r.has_value());
    CHECK(r->code() == armor::errc::circuit_open);
    CHECK(r->retry_after() == std::optional<std::chrono::nanoseconds>{5s});
  }
  // execute() throws it as armor::error, and an armor::error the operation
  // throws keeps its code.
  try {
    (void)c.execute(1, op);
    FAIL("no throw");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::circuit_open);
    CHECK(e.retry_after() == std::optional<std::chrono::nanoseconds>{5s});
  }
  auto r = c.try_execute(2, []() -> int { throw armor::error(armor::errc::rate_limited, 1s); });
  CHECK(r.code() == armor::errc::rate_limited);
  CHECK(r.retry_after() == std::optional<std::chrono::nanoseconds>{1s});
}

TEST_CASE("coalescer: a waiter whose timeout passes leaves alone; the others get the value", "[coalesce]") {
  armor::coalescer<int, int> c;
  gated_operation op;
  std::optional<int> leader_got;
  std::optional<int> patient_got;
  std::thread leader([&] { leader_got = c.execute(1, [&] { return op(); }); });
  while (op.runs.load() == 0) std::this_thread::yield();
  std::thread patient([&] { patient_got = c.execute(1, [&] { return op(); }); });
  wait_for_joined(c, 1);
  // A real clock: the impatient caller waits 1 ms and leaves.
  auto r = c.try_execute(1, [&] { return op(); }, {.timeout = 1ms});
  CHECK(r.code() == armor::errc::deadline_exceeded);
  CHECK_THROWS_AS(c.execute(1, [&] { return op(); }, {.timeout = 0ns}), armor::error);
  CHECK(c.in_flight(1));  // leaving did not remove the key: no second execution
  op.release.count_down();
  leader.join();
  patient.join();
  CHECK(leader_got == 42);
  CHECK(patient_got == 42);
  CHECK(op.runs == 1);
  const auto st = c.stats();
  CHECK(st.executions == 1);
  CHECK(st.joined == 3);
  CHECK(st.abandoned == 2);
  CHECK(st.cancelled == 0);
}

TEST_CASE("coalescer: over a manual clock a waiter moves the clock to its deadline", "[coalesce]") {
  armor::manual_clock clock;
  armor::coalescer<int, int, armor::manual_clock> c({}, clock);
  gated_operation op;
  std::optional<int> leader_got;
  std::thread leader([&] { leader_got = c.execute(1, [&] { return op(); }); });
  while (op.runs.load() == 0) std::this_thread::yield();
  const auto start = clock.now();
  auto r = c.try_execute(1, [&] { return op(); }, {.timeout = 5s});
  CHECK(r.code() == armor::errc::deadline_exceeded);
  CHECK(clock.now() - start == 5s);
  op.release.count_down();
  leader.join();
  CHECK(leader_got == 42);
  CHECK(op.runs == 1);
}

TEST_CASE("coalescer: try_begin starts a flight that callers join; nobody waits for it", "[coalesce]") {
  armor::coalescer<int, std::string> c;
  auto flight = c.try_begin(1);
  REQUIRE(flight.has_value());
  CHECK_FALSE(c.try_begin(1).has_value());  // one refresh however many ask
  CHECK(c.in_flight(1));
  std::optional<std::string> joined;
  std::thread caller([&] { joined = c.execute(1, [] { return std::string("not me"); }); });
  wait_for_joined(c, 1);
  // The handle can move to another thread (an executor of the user's).
  std::thread worker([h = std::move(*flight)]() mutable { (void)h.run([] { return std::string("fresh"); }); });
  worker.join();
  caller.join();
  CHECK(joined == "fresh");
  CHECK_FALSE(c.in_flight(1));
  CHECK(c.stats().executions == 1);
}

TEST_CASE("coalescer: a flight handle dropped without running ends the flight as cancelled", "[coalesce]") {
  armor::coalescer<int, int> c;
  std::optional<armor::result<int>> joined;
  {
    auto flight = c.try_begin(1);
    REQUIRE(flight.has_value());
    std::thread caller([&] { joined = c.try_execute(1, [] { return 1; }); });
    wait_for_joined(c, 1);
    flight.reset();
    caller.join();
  }
  REQUIRE(joined.has_value());
  CHECK(joined->code() == armor::errc::cancelled);
  CHECK(c.execute(1, [] { return 2; }) == 2);  // the key is free again
}

TEST_CASE("coalescer: void operations and values judged by the caller", "[coalesce]") {
  armor::coalescer<int, void> c;
  int runs = 0;
  c.execute(1, [&] { ++runs; });
  CHECK(c.try_execute(1, [&] { ++runs; }).ok());
  CHECK(runs == 2);
  CHECK_THROWS_AS(c.execute(1, []() { throw boom{}; }), boom);
}

TEST_CASE("coalescer: a bad shard count is refused at construction, naming the option", "[coalesce]") {
  for (std::size_t n : {std::size_t{0}, std::size_t{3}, std::size_t{8192}}) {
    try {
      armor::coalescer<int, int> c({.shards = n});
      FAIL("accepted " << n);
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      CHECK(std::string(e.what()).find("shards") != std::string::npos);
    }
  }
  armor::coalescer<int, int> one({.shards = 1});
  CHECK(one.execute(3, [] { return 3; }) == 3);
}
