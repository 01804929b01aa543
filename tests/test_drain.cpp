// armor::drain: admission until start(), refusals with errc::draining after,
// waits that end when the last call ends or at their deadline (calls that
// never finish), permits dropped unsettled, the listener, and a drain in
// front of a bulkhead and a shedder. Single-threaded on manual_clock, except
// one real wait with a call ending on another thread; the stress test is in
// tests/stress/.
#include <armor/bulkhead.hpp>
#include <armor/drain.hpp>
#include <armor/http/answer.hpp>
#include <armor/load_shedder.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <functional>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct recorder {
  std::vector<armor::drain_event>* events;
  void operator()(const armor::drain_event& e) const noexcept { events->push_back(e); }
};

struct test_waiter : armor::queue_waiter {
  test_waiter() : armor::queue_waiter(&on_wake) {}
  int wakes = 0;
  static void on_wake(armor::queue_waiter& w) noexcept { ++static_cast<test_waiter&>(w).wakes; }
};

}  // namespace

TEST_CASE("drain: counts calls in and out; after start() refuses new ones with draining") {
  armor::drain<> d;
  CHECK_FALSE(d.draining());
  auto a = d.try_acquire();
  auto b = d.try_acquire();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(d.in_flight() == 2);
  d.start();
  CHECK(d.draining());
  CHECK_FALSE(d.drained());
  const auto refused = d.try_acquire();
  CHECK_FALSE(refused);
  CHECK(refused.code() == armor::errc::draining);
  CHECK(refused.retry_after() == std::chrono::nanoseconds::max());
  CHECK(d.in_flight() == 2);  // the refusal is not counted in
  a.permit().release();
  CHECK(d.in_flight() == 1);
  { auto gone = std::move(b).permit(); }  // dropped: ends its count too
  CHECK(d.in_flight() == 0);
  CHECK(d.drained());
  const auto st = d.stats();
  CHECK(st.in_flight == 0);
  CHECK(st.draining);
  CHECK(st.refused == 1);
  d.resume();
  CHECK_FALSE(d.draining());
  CHECK(d.try_acquire());
}

TEST_CASE("drain: a wait with nothing in flight answers at once") {
  armor::manual_clock clock;
  armor::drain d{clock};
  d.start();
  CHECK(d.wait_for(10s));
  CHECK(clock.now().time_since_epoch() == 0s);  // no time passed
}

TEST_CASE("drain: calls that never finish before the deadline: the wait answers false at the deadline") {
  armor::manual_clock clock;
  armor::drain d{clock};
  auto stuck = d.try_acquire();
  REQUIRE(stuck);
  d.start();
  CHECK_FALSE(d.wait_for(15s));
  CHECK(clock.now().time_since_epoch() == 15s);  // the whole grace period, exactly
  CHECK(d.in_flight() == 1);
  CHECK_FALSE(d.wait_until(clock.now() + 5s));
  CHECK(clock.now().time_since_epoch() == 20s);
  CHECK_FALSE(d.wait_for(0s));
  stuck.permit().release();
  CHECK(d.wait_for(1s));
  CHECK(clock.now().time_since_epoch() == 20s);
}

TEST_CASE("drain: the last call to end wakes a blocked drainer (real clock)") {
  armor::drain<> d;
  auto p = d.try_acquire().permit();
  d.start();
  std::thread ender([&] {
    std::this_thread::sleep_for(20ms);
    p.release();
  });
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(d.wait_for(60s));
  CHECK(std::chrono::steady_clock::now() - t0 < 30s);  // woken, not timed out
  ender.join();
}

TEST_CASE("drain: waiters are woken once by the last call, and not by refusals after") {
  std::vector<armor::drain_event> events;
  armor::drain d{armor::steady_clock{}, recorder{&events}};
  auto a = d.try_acquire().permit();
  auto b = d.try_acquire().permit();
  d.start();
  test_waiter w;
  REQUIRE(d.add_waiter(w));
  a.release();
  CHECK(w.wakes == 0);
  b.release();
  CHECK(w.wakes == 1);
  CHECK(w.granted);
  d.remove_waiter(w);  // already out: harmless
  CHECK_FALSE(d.try_acquire());
  CHECK_FALSE(d.try_acquire());
  test_waiter late;
  CHECK_FALSE(d.add_waiter(late));  // nothing in flight: not registered
  // started, drained, refused, refused: drained heard once.
  REQUIRE(events.size() == 4);
  CHECK(events[0].kind == armor::drain_event_kind::started);
  CHECK(events[0].in_flight == 2);
  CHECK(events[1].kind == armor::drain_event_kind::drained);
  CHECK(events[2].kind == armor::drain_event_kind::refused);
  CHECK(events[3].kind == armor::drain_event_kind::refused);
  d.start();  // idempotent: no second `started`
  CHECK(events.size() == 4);
  d.resume();
  CHECK(events.back().kind == armor::drain_event_kind::resumed);
}

TEST_CASE("drain: start() with nothing in flight is drained at once; a removed waiter is not woken") {
  std::vector<armor::drain_event> events;
  armor::drain d{armor::steady_clock{}, recorder{&events}};
  auto a = d.try_acquire().permit();
  test_waiter w;
  REQUIRE(d.add_waiter(w));
  d.remove_waiter(w);
  a.release();
  d.start();
  CHECK(w.wakes == 0);
  REQUIRE(events.size() == 2);
  CHECK(events[0].kind == armor::drain_event_kind::started);
  CHECK(events[1].kind == armor::drain_event_kind::drained);
}

TEST_CASE("drain: outermost in a pipeline it covers the bulkhead and the shedder inside; refusals answer 503") {
  armor::manual_clock clock;
  armor::drain d{clock};
  armor::bulkhead<> slots{{.max_concurrent = 4}};
  armor::load_shedder<armor::manual_clock> shedder{{.resources = {{.name = "memory"}}}, clock};
  auto p = armor::pipeline{clock, std::ref(d), std::ref(shedder), std::ref(slots)};
  std::optional<bool> drained_inside;
  auto r = p.try_execute([&] {
    // Shutdown begins while this call is in flight.
    d.start();
    CHECK(d.in_flight() == 1);
    CHECK(slots.in_use() == 1);
    CHECK(p.try_execute([] { return 0; }).code() == armor::errc::draining);  // new calls refused
    drained_inside = d.wait_for(1s);  // this call is still inside: the wait times out
    return 7;
  });
  CHECK(r.ok());
  REQUIRE(drained_inside.has_value());
  CHECK_FALSE(*drained_inside);
  CHECK(d.in_flight() == 0);
  CHECK(slots.in_use() == 0);
  CHECK(d.wait_for(1s));
  auto refused = p.try_execute([] { return 0; });
  CHECK(refused.code() == armor::errc::draining);
  CHECK_FALSE(refused.retry_after().has_value());
  const auto a = armor::http::answer_for(refused.error());
  CHECK(a.status == 503);
  CHECK_FALSE(a.retry_after.has_value());
}

TEST_CASE("drain: a moved drain keeps its count; permits stay valid") {
  armor::drain<> a;
  auto p = a.try_acquire().permit();
  armor::drain<> b{std::move(a)};
  CHECK(b.in_flight() == 1);
  b.start();
  p.release();
  CHECK(b.drained());
}
