// armor::redis_circuit_breaker against a real redis-server (started here):
// three instances sharing one breaker, each an object of its own with its
// own connection and instance id, in one process, on one manual clock (the
// script reads the caller's time): one instance failing alone does not open
// the shared breaker below the reporter threshold; all failing opens it
// everywhere within sync_interval; half-open probing, reopening and closing
// propagate; Redis away leaves the local breaker alone in charge;
// reconfigure() of the shared options. Plus four forked processes (one at a
// time) sharing one breaker.
#include <armor/pipeline.hpp>
#include <armor/redis/circuit_breaker.hpp>

#include "armor_catch.hpp"
#include "redis/redis_server.hpp"

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

const bool have_redis_server_for_breakers = armor_test::require_redis_server();

constexpr std::int64_t noon_ns = 1'718'452'800'000'000'000;

std::string breaker_name(const char* what) {
  static std::atomic<int> n{0};
  std::string s(what);
  s += "-";
  s += std::to_string(::getpid());
  s += "-";
  s += std::to_string(n.fetch_add(1));
  return s;
}

armor::redis_options breaker_redis(int port) {
  armor::redis_options o;
  o.port = static_cast<std::uint16_t>(port);
  o.prefix = "armor-test";
  o.connections = 1;
  return o;
}

using shared_breaker = armor::redis_circuit_breaker<armor::manual_clock>;

// A local breaker that never opens by itself in these tests (the shared one is under test).
constexpr armor::circuit_breaker_options patient_local{.failure_threshold = 60000};

armor::redis_circuit_breaker_options shared_options(const std::string& name, const char* instance) {
  armor::redis_circuit_breaker_options o;
  o.name = name;
  o.instance = instance;
  o.sync_interval = 100ms;
  o.min_reporting_instances = 2;
  o.failure_rate = 0.5;
  o.minimum_calls = 10;
  o.window = 10s;
  o.open_for = 5s;
  o.time = armor::redis_time_source::caller;
  return o;
}

struct trio {
  armor::manual_clock clock{std::chrono::nanoseconds{noon_ns}};
  std::string name;
  std::vector<shared_breaker> b;

  explicit trio(const char* what, armor::circuit_breaker_options local = patient_local,
                std::uint32_t half_open_max = 1, std::uint32_t success_threshold = 1)
      : name(breaker_name(what)) {
    const int port = armor_test::shared_redis().port();
    for (const char* id : {"a", "b", "c"}) {
      armor::redis_circuit_breaker_options o = shared_options(name, id);
      o.half_open_max_calls = half_open_max;
      o.success_threshold = success_threshold;
      b.emplace_back(local, armor::redis_connection{breaker_redis(port)}, o, clock);
    }
  }

  // n calls through instance i, each ending with `v`; returns how many were admitted.
  int calls(std::size_t i, int n, const armor::verdict& v) {
    int admitted = 0;
    for (int k = 0; k < n; ++k) {
      auto d = b[i].try_acquire();
      if (!d) continue;
      ++admitted;
      b[i].record(std::move(d).permit(), v);
    }
    return admitted;
  }
  bool admits(std::size_t i) {
    auto d = b[i].try_acquire();
    const bool ok = static_cast<bool>(d);
    if (ok) d.permit().cancel();
    return ok;
  }
  void sync_all() {
    for (shared_breaker& x : b) x.sync();
  }
};

}  // namespace

TEST_CASE("redis breaker: one instance failing alone does not open it for the others") {
  trio t("alone");
  t.sync_all();
  REQUIRE(t.b[0].shared_reachable());
  // Instance a: 30 failures, all of them sent (rate 100 %, calls >= minimum_calls).
  CHECK(t.calls(0, 30, armor::verdict::failure()) == 30);
  t.b[0].sync();
  CHECK(t.b[0].reporting_instances() == 1);
  CHECK(t.b[0].shared_state() == armor::breaker_state::closed);
  // b and c carry on, now and after any number of refreshes.
  t.clock.advance(200ms);
  CHECK(t.calls(1, 5, armor::verdict::success()) == 5);
  CHECK(t.calls(2, 5, armor::verdict::success()) == 5);
  t.sync_all();
  for (const shared_breaker& x : t.b) CHECK(x.shared_state() == armor::breaker_state::closed);
  CHECK(t.b[0].stats().reported == 30);
  CHECK(t.b[0].stats().shared_rejections == 0);
}

TEST_CASE("redis breaker: one bad instance trips only its own local breaker") {
  trio t("local", {.failure_threshold = 5, .open_for = 30s});
  CHECK(t.calls(0, 20, armor::verdict::failure()) == 5);  // its local breaker opened after 5
  CHECK(t.b[0].local().state() == armor::breaker_state::open);
  t.clock.advance(200ms);
  t.sync_all();
  CHECK(t.b[0].shared_state() == armor::breaker_state::closed);
  CHECK(t.admits(1));
  CHECK(t.admits(2));
  CHECK_FALSE(t.admits(0));
}

TEST_CASE("redis breaker: failures from two instances open it everywhere within sync_interval") {
  trio t("all");
  t.sync_all();  // at t0: every copy fresh until t0 + 100 ms
  CHECK(t.calls(0, 6, armor::verdict::failure()) == 6);
  CHECK(t.calls(1, 6, armor::verdict::failure()) == 6);
  t.clock.advance(50ms);
  t.b[2].sync();  // c's copy: fresh until t0 + 150 ms
  // Outcomes travel with the next refresh: a's first, then b's (12 calls, 2 reporters).
  t.clock.advance(50ms);
  CHECK(t.admits(0));  // a's refresh: 6 calls in the window, below minimum_calls
  CHECK(t.b[0].shared_state() == armor::breaker_state::closed);
  CHECK_FALSE(t.admits(1));  // b's refresh sends 6 more failures from a second instance: open
  CHECK(t.b[1].shared_state() == armor::breaker_state::open);
  CHECK(t.b[1].reporting_instances() == 0);  // the set is cleared with the trip
  // c's copy is at most sync_interval old: it admits until it is refreshed...
  CHECK(t.admits(2));
  // ...and refuses from then on.
  t.clock.advance(50ms);
  auto d = t.b[2].try_acquire();
  REQUIRE_FALSE(d);
  CHECK(d.code() == armor::errc::circuit_open);
  CHECK(d.retry_after() == 5s - 50ms);
  CHECK(t.admits(0));  // a's copy (t0 + 100 ms) is still fresh: closed
  t.clock.advance(50ms);
  CHECK_FALSE(t.admits(0));
  CHECK(t.b[2].stats().shared_rejections >= 1);
  for (const shared_breaker& x : t.b) CHECK(x.shared_state() == armor::breaker_state::open);
}

namespace {
void open_all(trio& t) {
  t.sync_all();
  t.calls(0, 6, armor::verdict::failure());
  t.calls(1, 6, armor::verdict::failure());
  t.calls(2, 6, armor::verdict::failure());
  t.sync_all();
  t.sync_all();
  for (const shared_breaker& x : t.b) REQUIRE(x.shared_state() == armor::breaker_state::open);
}
// One instance (min_reporting_instances 1, minimum_calls 10) opens the
// shared breaker with ten failures.
void trip_alone(shared_breaker& b) {
  b.sync();
  for (int i = 0; i < 10; ++i) {
    auto d = b.try_acquire();
    REQUIRE(d);
    b.record(std::move(d).permit(), armor::verdict::failure());
  }
  b.sync();
  REQUIRE(b.shared_state() == armor::breaker_state::open);
}
}  // namespace

TEST_CASE("redis breaker: half-open admits one probe among all instances; its success closes it everywhere") {
  trio t("probe");
  open_all(t);
  t.clock.advance(5s);
  auto probe = t.b[0].try_acquire();  // a's copy shows the open time over: refresh, half-open, a probe slot
  REQUIRE(probe);
  CHECK(probe.permit().probe());
  CHECK(t.b[0].shared_state() == armor::breaker_state::half_open);
  CHECK_FALSE(t.admits(0));  // one probe at a time (half_open_max_calls = 1)
  CHECK_FALSE(t.admits(1));  // b refreshes: half-open, no slot left
  CHECK(t.b[1].shared_state() == armor::breaker_state::half_open);
  CHECK_FALSE(t.admits(2));
  t.b[0].record(std::move(probe).permit(), armor::verdict::success());
  CHECK(t.admits(0));  // the probe's success goes out with a's next call: closed
  CHECK(t.b[0].shared_state() == armor::breaker_state::closed);
  t.clock.advance(100ms);
  CHECK(t.admits(1));
  CHECK(t.admits(2));
  for (const shared_breaker& x : t.b) CHECK(x.shared_state() == armor::breaker_state::closed);
  // The window starts empty after closing: one instance cannot reopen it.
  CHECK(t.calls(1, 20, armor::verdict::failure()) == 20);
  t.sync_all();
  CHECK(t.b[0].shared_state() == armor::breaker_state::closed);
}

TEST_CASE("redis breaker: a failed probe reopens it everywhere; a dropped probe gives its slot back") {
  trio t("reopen");
  open_all(t);
  t.clock.advance(5s);
  {
    auto dropped = t.b[2].try_acquire();
    REQUIRE(dropped);
    REQUIRE(dropped.permit().probe());
  }  // dropped without an outcome: the slot goes back to Redis with c's next refresh
  t.b[2].sync();
  auto probe = t.b[1].try_acquire();
  REQUIRE(probe);
  REQUIRE(probe.permit().probe());
  t.b[1].record(std::move(probe).permit(), armor::verdict::failure());
  t.b[1].sync();
  CHECK(t.b[1].shared_state() == armor::breaker_state::open);
  t.clock.advance(100ms);
  auto d = t.b[0].try_acquire();
  REQUIRE_FALSE(d);
  CHECK(d.retry_after() == 5s - 100ms);
}

TEST_CASE("redis breaker: two probes at a time are shared among the instances") {
  // min_reporting_instances 2, half_open_max_calls 2: one instance holds at
  // most one slot, so the first to sync cannot take every probe.
  trio t("two-probes", patient_local, 2);
  open_all(t);
  t.clock.advance(5s);
  auto p1 = t.b[0].try_acquire();  // a asks for its share: one slot
  REQUIRE(p1);
  CHECK_FALSE(t.admits(0));  // not the second
  auto p2 = t.b[1].try_acquire();  // b gets the other
  REQUIRE(p2);
  CHECK_FALSE(t.admits(2));  // both held: c gets none
  t.b[0].record(std::move(p1).permit(), armor::verdict::success());
  t.b[1].record(std::move(p2).permit(), armor::verdict::success());
  t.b[0].sync();
  t.b[1].sync();
  CHECK(t.b[1].shared_state() == armor::breaker_state::closed);
  CHECK(t.b[0].stats().probes == 1);
  CHECK(t.b[1].stats().probes == 1);
}

TEST_CASE("redis breaker: a lone instance probes its share at a time, and still closes it") {
  // half_open_max_calls 4, min_reporting_instances 2: two slots each; three successes close it.
  trio t("lone-prober", patient_local, 4, 3);
  open_all(t);
  t.clock.advance(5s);
  auto p1 = t.b[0].try_acquire();
  auto p2 = t.b[0].try_acquire();
  REQUIRE(p1);
  REQUIRE(p2);
  CHECK_FALSE(t.admits(0));
  CHECK(t.b[0].stats().probes == 2);
  t.b[0].record(std::move(p1).permit(), armor::verdict::success());  // its slot is freed at the next sync
  auto p3 = t.b[0].try_acquire();
  REQUIRE(p3);
  CHECK(t.b[0].shared_state() == armor::breaker_state::half_open);
  CHECK(t.b[0].stats().probes == 3);
  t.b[0].record(std::move(p2).permit(), armor::verdict::success());
  t.b[0].record(std::move(p3).permit(), armor::verdict::success());
  t.b[0].sync();
  CHECK(t.b[0].shared_state() == armor::breaker_state::closed);
}

TEST_CASE("redis breaker: two objects of one name in one process are one reporter (default instance id)") {
  const int port = armor_test::shared_redis().port();
  const armor::manual_clock clock{std::chrono::nanoseconds{noon_ns}};
  armor::redis_circuit_breaker_options o = shared_options(breaker_name("one-process"), "");
  std::vector<shared_breaker> b;
  for (int i = 0; i < 2; ++i) b.emplace_back(patient_local, armor::redis_connection{breaker_redis(port)}, o, clock);
  CHECK(b[0].options().instance == b[1].options().instance);
  for (shared_breaker& x : b) {
    for (int k = 0; k < 10; ++k) {
      auto d = x.try_acquire();
      REQUIRE(d);
      x.record(std::move(d).permit(), armor::verdict::failure());
    }
    x.sync();
  }
  // 20 failures in the window, but from one process: below min_reporting_instances (2).
  CHECK(b[1].shared_state() == armor::breaker_state::closed);
  CHECK(b[1].reporting_instances() == 1);
}

TEST_CASE("redis breaker: success_threshold above half_open_max_calls: each finished probe frees its slot") {
  const std::string name = breaker_name("threshold");
  armor::manual_clock clock{std::chrono::nanoseconds{noon_ns}};
  armor::redis_circuit_breaker_options o = shared_options(name, "a");
  o.min_reporting_instances = 1;
  o.half_open_max_calls = 1;
  o.success_threshold = 3;
  shared_breaker b{patient_local, armor::redis_connection{breaker_redis(armor_test::shared_redis().port())}, o, clock};
  trip_alone(b);
  clock.advance(5s);
  // Three probes one after another, without waiting: each success frees
  // the one slot for the next (before the fix the second waited open_for).
  for (int k = 0; k < 3; ++k) {
    INFO("probe " << k);
    auto probe = b.try_acquire();
    REQUIRE(probe);
    CHECK(probe.permit().probe());
    b.record(std::move(probe).permit(), armor::verdict::success());
    clock.advance(1ms);
  }
  b.sync();
  CHECK(b.shared_state() == armor::breaker_state::closed);
}

TEST_CASE("redis breaker: a sync cut short by the caller's deadline keeps an open copy open") {
  const std::string name = breaker_name("deadline");
  armor::manual_clock clock{std::chrono::nanoseconds{noon_ns}};
  armor::redis_circuit_breaker_options o = shared_options(name, "a");
  o.min_reporting_instances = 1;
  o.open_for = 30s;
  shared_breaker b{patient_local, armor::redis_connection{breaker_redis(armor_test::shared_redis().port())}, o, clock};
  trip_alone(b);
  clock.advance(150ms);  // the copy is due for a sync
  armor::call_options co;
  co.timeout = 0ns;  // no time left for a round trip
  armor::context ctx{armor::to_timestamp(b.clock().now()), co};
  const auto first = b.admit(ctx);
  CHECK(first.kind != armor::admission_kind::admitted);
  CHECK(b.shared_state() == armor::breaker_state::open);
  CHECK(b.shared_reachable());
  CHECK(b.stats().unanswered == 0);
  CHECK_FALSE(b.try_acquire());  // the next call syncs for real: still open
  CHECK(b.shared_state() == armor::breaker_state::open);
}

TEST_CASE("redis breaker: Redis away, the local breaker alone decides") {
  armor::redis_options o = breaker_redis(armor_test::free_port());  // nobody listens there
  o.connect_timeout = 50ms;
  armor::manual_clock clock{std::chrono::nanoseconds{noon_ns}};
  shared_breaker b{{.failure_threshold = 3, .open_for = 1s}, armor::redis_connection{o},
                   shared_options(breaker_name("away"), "a"), clock};
  int admitted = 0;
  for (int i = 0; i < 10; ++i) {
    auto d = b.try_acquire();
    if (!d) continue;
    ++admitted;
    b.record(std::move(d).permit(), armor::verdict::failure());
  }
  CHECK(admitted == 3);
  CHECK_FALSE(b.shared_reachable());
  CHECK(b.shared_state() == armor::breaker_state::closed);
  CHECK(b.local().state() == armor::breaker_state::open);
  CHECK(b.stats().unanswered >= 1);
  CHECK(b.stats().unanswered <= 2);  // one round trip per sync_interval at most (time stood still)
}

TEST_CASE("redis breaker: as a pipeline layer") {
  trio t("pipeline");
  auto p = armor::pipeline{t.clock, std::ref(t.b[0])};
  int runs = 0;
  const auto r = p.try_execute([&] {
    ++runs;
    return 1;
  });
  CHECK(r.has_value());
  CHECK(runs == 1);
  CHECK(t.b[0].stats().syncs == 1);
}

TEST_CASE("redis breaker: four threads share one instance while it syncs (TSan)") {
  armor::manual_clock clock{std::chrono::nanoseconds{noon_ns}};
  armor::redis_circuit_breaker_options o = shared_options(breaker_name("threads"), "a");
  o.sync_interval = 1ms;
  shared_breaker b{patient_local, armor::redis_connection{breaker_redis(armor_test::shared_redis().port())}, o, clock};
  constexpr int per_thread = 400;
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int i = 0; i < per_thread; ++i) {
        clock.advance(100us);
        auto d = b.try_acquire();
        if (!d) continue;
        admitted.fetch_add(1, std::memory_order_relaxed);
        b.record(std::move(d).permit(), (i + k) % 2 == 0 ? armor::verdict::success() : armor::verdict::failure());
      }
    });
  }
  for (std::thread& th : threads) th.join();
  b.sync();
  // One instance alone never opens it: every call admitted, every outcome sent exactly once.
  CHECK(admitted.load() == 4 * per_thread);
  CHECK(b.stats().reported == 4 * per_thread);
  CHECK(b.stats().dropped == 0);
  CHECK(b.stats().syncs >= 2);
}

TEST_CASE("redis breaker: threads through open and half-open cycles (TSan)") {
  armor::manual_clock clock{std::chrono::nanoseconds{noon_ns}};
  armor::redis_circuit_breaker_options o = shared_options(breaker_name("cycles"), "a");
  o.sync_interval = 1ms;
  o.min_reporting_instances = 1;
  o.open_for = 50ms;
  o.half_open_max_calls = 2;
  shared_breaker b{patient_local, armor::redis_connection{breaker_redis(armor_test::shared_redis().port())}, o, clock};
  constexpr int per_thread = 300;
  std::atomic<int> admitted{0}, refused{0}, other_codes{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        clock.advance(2ms);
        auto d = b.try_acquire();
        if (!d) {
          if (d.code() != armor::errc::circuit_open) other_codes.fetch_add(1, std::memory_order_relaxed);
          refused.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        admitted.fetch_add(1, std::memory_order_relaxed);
        b.record(std::move(d).permit(), armor::verdict::failure());
      }
    });
  }
  for (std::thread& th : threads) th.join();
  CHECK(other_codes.load() == 0);
  CHECK(admitted.load() + refused.load() == 4 * per_thread);
  CHECK(b.stats().shared_rejections == static_cast<std::uint64_t>(refused.load()));
}

namespace {
// One instance of its own name that opens the shared breaker alone
// (min_reporting_instances 1, minimum_calls 10, failure_rate 0.5, open_for 5 s).
struct lone {
  armor::manual_clock clock{std::chrono::nanoseconds{noon_ns}};
  shared_breaker b;
  explicit lone(const char* what, const char* instance = "a")
      : b(patient_local, armor::redis_connection{breaker_redis(armor_test::shared_redis().port())},
          [&] {
            armor::redis_circuit_breaker_options o = shared_options(breaker_name(what), instance);
            o.min_reporting_instances = 1;
            return o;
          }(),
          clock) {}
  void record(int n, const armor::verdict& v) {
    for (int i = 0; i < n; ++i) {
      auto d = b.try_acquire();
      REQUIRE(d);
      b.record(std::move(d).permit(), v);
    }
  }
  bool admits() {
    auto d = b.try_acquire();
    const bool ok = static_cast<bool>(d);
    if (ok) d.permit().cancel();
    return ok;
  }
};
}  // namespace

TEST_CASE("redis breaker reconfigure: a lower minimum_calls opens it at the new threshold; a refused one keeps the old") {
  lone l("re-minc");
  l.b.sync();
  l.record(4, armor::verdict::failure());
  l.b.sync();
  REQUIRE(l.b.shared_state() == armor::breaker_state::closed);  // 4 calls < 10
  // Refused: nothing changes, the old minimum (10) still rules.
  armor::redis_circuit_breaker_options bad = l.b.options();
  bad.minimum_calls = 0;
  CHECK_THROWS_WITH(l.b.reconfigure(bad), Catch::Contains("minimum_calls"));
  CHECK(l.b.options().minimum_calls == 10);
  l.record(1, armor::verdict::failure());
  l.b.sync();
  CHECK(l.b.shared_state() == armor::breaker_state::closed);  // 5 calls < 10
  // Accepted: 6. The next call syncs at once (no time passed), sends the new
  // threshold with the 6th failure: open.
  armor::redis_circuit_breaker_options o = l.b.options();
  o.minimum_calls = 6;
  const std::uint64_t syncs = l.b.stats().syncs;
  l.b.reconfigure(o);
  CHECK(l.b.options().minimum_calls == 6);
  l.record(1, armor::verdict::failure());  // its sync runs before it: 5 calls, closed
  CHECK(l.b.stats().syncs == syncs + 1);
  CHECK(l.b.shared_state() == armor::breaker_state::closed);
  l.b.sync();
  CHECK(l.b.shared_state() == armor::breaker_state::open);
  auto d = l.b.try_acquire();
  REQUIRE_FALSE(d);
  CHECK(d.code() == armor::errc::circuit_open);
  CHECK(d.retry_after() == 5s);
}

TEST_CASE("redis breaker reconfigure: a lower failure_rate opens it on the next call, with no new outcome") {
  lone l("re-rate");
  l.b.sync();
  l.record(3, armor::verdict::failure());
  l.record(7, armor::verdict::success());
  l.b.sync();
  REQUIRE(l.b.shared_state() == armor::breaker_state::closed);  // 30 % < 50 %
  armor::redis_circuit_breaker_options o = l.b.options();
  o.failure_rate = 0.31;
  l.b.reconfigure(o);
  CHECK(l.admits());  // 30 % < 31 %: still closed
  o.failure_rate = 0.3;
  l.b.reconfigure(o);
  CHECK_FALSE(l.admits());  // its sync judges the same window at 30 %: open
  CHECK(l.b.shared_state() == armor::breaker_state::open);
}

TEST_CASE("redis breaker reconfigure: open_for applies from the next trip; an open period keeps its end") {
  lone l("re-open");
  trip_alone(l.b);  // open for 5 s
  armor::redis_circuit_breaker_options o = l.b.options();
  o.open_for = 1s;
  l.b.reconfigure(o);
  l.clock.advance(1s);
  auto d = l.b.try_acquire();  // syncs: the end was set when it opened
  REQUIRE_FALSE(d);
  CHECK(d.retry_after() == 4s);
  l.clock.advance(4s);
  auto probe = l.b.try_acquire();
  REQUIRE(probe);
  REQUIRE(probe.permit().probe());
  l.b.record(std::move(probe).permit(), armor::verdict::failure());
  l.b.sync();  // the failed probe reopens it, now for 1 s
  REQUIRE(l.b.shared_state() == armor::breaker_state::open);
  auto again = l.b.try_acquire();
  REQUIRE_FALSE(again);
  CHECK(again.retry_after() == 1s);
  l.clock.advance(1s);
  CHECK(l.admits());  // half-open, a probe slot
}

TEST_CASE("redis breaker reconfigure: success_threshold and half_open_max_calls reach the half-open breaker") {
  lone l("re-half");
  trip_alone(l.b);
  armor::redis_circuit_breaker_options o = l.b.options();
  o.half_open_max_calls = 2;
  o.success_threshold = 2;
  l.b.reconfigure(o);
  l.clock.advance(5s);
  auto p1 = l.b.try_acquire();
  REQUIRE(p1);
  REQUIRE(p1.permit().probe());
  auto p2 = l.b.try_acquire();  // a second slot (1 before the change)
  REQUIRE(p2);
  REQUIRE(p2.permit().probe());
  CHECK_FALSE(l.admits());
  l.b.record(std::move(p1).permit(), armor::verdict::success());
  l.b.sync();
  CHECK(l.b.shared_state() == armor::breaker_state::half_open);  // 1 success < 2
  l.b.record(std::move(p2).permit(), armor::verdict::success());
  l.b.sync();
  CHECK(l.b.shared_state() == armor::breaker_state::closed);
}

TEST_CASE("redis breaker reconfigure: instances of one name with different thresholds each judge by their own") {
  trio t("re-mixed");  // min_reporting_instances 2, minimum_calls 10
  t.sync_all();
  armor::redis_circuit_breaker_options o = t.b[1].options();
  o.minimum_calls = 4;
  t.b[1].reconfigure(o);
  CHECK(t.b[0].options().minimum_calls == 10);  // the others keep theirs
  CHECK(t.calls(0, 2, armor::verdict::failure()) == 2);
  CHECK(t.calls(1, 2, armor::verdict::failure()) == 2);  // b's first call synced: sent nothing yet
  t.b[1].sync();  // b's 2 failures: 2 calls, 1 reporter
  CHECK(t.b[1].shared_state() == armor::breaker_state::closed);
  t.b[0].sync();  // a's 2: 4 calls, 2 reporters, but a judges by minimum_calls 10
  CHECK(t.b[0].shared_state() == armor::breaker_state::closed);
  CHECK(t.b[0].reporting_instances() == 2);
  t.b[2].sync();  // c too (minimum_calls 10)
  CHECK(t.b[2].shared_state() == armor::breaker_state::closed);
  t.b[1].sync();  // b: nothing new, but 4 >= its 4: open, for everyone
  CHECK(t.b[1].shared_state() == armor::breaker_state::open);
  t.b[0].sync();
  CHECK(t.b[0].shared_state() == armor::breaker_state::open);
}

TEST_CASE("redis breaker reconfigure: bad values and fixed options are refused by name; nothing changes") {
  lone l("re-bad");
  const armor::redis_circuit_breaker_options before = l.b.options();
  const auto refuses = [&](const auto& change, const char* what) {
    armor::redis_circuit_breaker_options o = l.b.options();
    change(o);
    try {
      l.b.reconfigure(o);
      FAIL("accepted: " << what);
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      CHECK_THAT(e.what(), Catch::Contains(what) && Catch::Contains("reconfigure"));
    }
    const armor::redis_circuit_breaker_options now = l.b.options();
    CHECK(now.sync_interval == before.sync_interval);
    CHECK(now.min_reporting_instances == before.min_reporting_instances);
    CHECK(now.failure_rate == before.failure_rate);
    CHECK(now.minimum_calls == before.minimum_calls);
    CHECK(now.window == before.window);
    CHECK(now.open_for == before.open_for);
    CHECK(now.half_open_max_calls == before.half_open_max_calls);
    CHECK(now.success_threshold == before.success_threshold);
  };
  using opts = armor::redis_circuit_breaker_options;
  refuses([](opts& o) { o.sync_interval = 0ms; }, "sync_interval");
  refuses([](opts& o) { o.min_reporting_instances = 0; }, "min_reporting_instances");
  refuses([](opts& o) { o.failure_rate = 0; }, "failure_rate");
  refuses([](opts& o) { o.failure_rate = 1.5; }, "failure_rate");
  refuses([](opts& o) { o.failure_rate = std::numeric_limits<double>::quiet_NaN(); }, "failure_rate");
  refuses([](opts& o) { o.minimum_calls = 0; }, "minimum_calls");
  refuses([](opts& o) { o.open_for = 0s; }, "open_for");
  refuses([](opts& o) { o.open_for = 24h * 366; }, "open_for");
  refuses([](opts& o) { o.half_open_max_calls = 0; }, "half_open_max_calls");
  refuses([](opts& o) { o.half_open_max_calls = 65536; }, "half_open_max_calls");
  refuses([](opts& o) { o.success_threshold = 0; }, "success_threshold");
  refuses([](opts& o) {
    o.minimum_calls = 3;  // good, but with a bad one: nothing applied
    o.success_threshold = 70000;
  }, "success_threshold");
  refuses([](opts& o) { o.name = "other"; }, "name");
  refuses([](opts& o) { o.name = ""; }, "name");
  refuses([](opts& o) { o.instance = "b"; }, "instance");
  refuses([](opts& o) { o.instance = ""; }, "instance");  // built with "a", not with an empty one
  refuses([](opts& o) { o.time = armor::redis_time_source::server; }, "time");
  refuses([](opts& o) { o.window = 20s; }, "window");
  refuses([](opts& o) { o.window = 500us; }, "window");
  // The old behaviour: still minimum_calls 10.
  l.b.sync();
  l.record(9, armor::verdict::failure());
  l.b.sync();
  CHECK(l.b.shared_state() == armor::breaker_state::closed);
  l.record(1, armor::verdict::failure());
  l.b.sync();
  CHECK(l.b.shared_state() == armor::breaker_state::open);
}

TEST_CASE("redis breaker reconfigure: an instance built with an empty id takes an empty one or its own") {
  const armor::redis_connection c{breaker_redis(armor_test::shared_redis().port())};
  shared_breaker b{{}, c, {.name = breaker_name("re-id")}};
  armor::redis_circuit_breaker_options o = b.options();
  o.minimum_calls = 7;
  b.reconfigure(o);  // its own id
  CHECK(b.options().minimum_calls == 7);
  o.instance.clear();
  o.minimum_calls = 8;
  b.reconfigure(o);  // empty: the id it made
  CHECK(b.options().minimum_calls == 8);
  CHECK_FALSE(b.options().instance.empty());
  o.instance = "someone-else";
  CHECK_THROWS_WITH(b.reconfigure(o), Catch::Contains("instance"));
}

TEST_CASE("redis breaker reconfigure: threads call while another reconfigures (TSan)") {
  armor::manual_clock clock{std::chrono::nanoseconds{noon_ns}};
  armor::redis_circuit_breaker_options a = shared_options(breaker_name("re-threads"), "a");
  a.sync_interval = 1ms;
  armor::redis_circuit_breaker_options b_opts = a;
  b_opts.sync_interval = 2ms;
  b_opts.min_reporting_instances = 3;
  b_opts.failure_rate = 0.25;
  b_opts.minimum_calls = 40;
  b_opts.open_for = 7s;
  b_opts.half_open_max_calls = 3;
  b_opts.success_threshold = 4;
  shared_breaker b{patient_local, armor::redis_connection{breaker_redis(armor_test::shared_redis().port())}, a, clock};
  constexpr int per_thread = 300;
  constexpr int changes = 200;
  std::atomic<int> admitted{0}, torn{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 3; ++k) {
    threads.emplace_back([&, k] {
      for (int i = 0; i < per_thread; ++i) {
        clock.advance(100us);
        auto d = b.try_acquire();
        if (!d) continue;
        admitted.fetch_add(1, std::memory_order_relaxed);
        b.record(std::move(d).permit(), (i + k) % 2 == 0 ? armor::verdict::success() : armor::verdict::failure());
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < changes; ++i) b.reconfigure(i % 2 == 0 ? b_opts : a);
  });
  threads.emplace_back([&] {  // a reader of options() beside the writer: each read one whole configuration
    for (int i = 0; i < 4 * changes; ++i) {
      const armor::redis_circuit_breaker_options o = b.options();
      const armor::redis_circuit_breaker_options& want = o.minimum_calls == a.minimum_calls ? a : b_opts;
      if (o.sync_interval != want.sync_interval || o.min_reporting_instances != want.min_reporting_instances ||
          o.failure_rate != want.failure_rate || o.open_for != want.open_for ||
          o.half_open_max_calls != want.half_open_max_calls || o.success_threshold != want.success_threshold) {
        torn.fetch_add(1, std::memory_order_relaxed);
      }
    }
  });
  for (std::thread& th : threads) th.join();
  b.sync();
  // One instance under min_reporting_instances >= 2 never opens it: every
  // call admitted, every outcome sent exactly once, whatever the changes.
  CHECK(torn.load() == 0);
  CHECK(admitted.load() == 3 * per_thread);
  CHECK(b.stats().reported == 3 * per_thread);
  CHECK(b.stats().dropped == 0);
  CHECK(b.options().minimum_calls == a.minimum_calls);  // the last change (199: odd)
}

TEST_CASE("redis breaker: bad options are refused, naming the option") {
  const armor::redis_connection c{breaker_redis(armor_test::shared_redis().port())};
  const auto refuses = [&](armor::redis_circuit_breaker_options o, const char* what) {
    try {
      shared_breaker b{{}, c, std::move(o)};
      FAIL("accepted");
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      CHECK(std::string(e.what()).find(what) != std::string::npos);
    }
  };
  refuses({.name = ""}, "name");
  refuses({.name = "a{b"}, "name");
  refuses({.instance = "x}"}, "instance");
  refuses({.sync_interval = 0ms}, "sync_interval");
  refuses({.min_reporting_instances = 0}, "min_reporting_instances");
  refuses({.failure_rate = 0}, "failure_rate");
  refuses({.failure_rate = 1.5}, "failure_rate");
  refuses({.minimum_calls = 0}, "minimum_calls");
  refuses({.window = 500us}, "window");
  refuses({.open_for = 0s}, "open_for");
  refuses({.half_open_max_calls = 0}, "half_open_max_calls");
  refuses({.success_threshold = 70000}, "success_threshold");
  // The default instance id: host name and pid, the same for every object of the process.
  const shared_breaker x{{}, c, {.name = "ids"}}, y{{}, c, {.name = "ids"}};
  std::string pid = "-";
  pid += std::to_string(::getpid());
  CHECK(x.options().instance.ends_with(pid));
  CHECK(x.options().instance == y.options().instance);
}

TEST_CASE("redis breaker: processes share one breaker") {
  const int port = armor_test::shared_redis().port();
  const std::string name = breaker_name("procs");
  // Each child: its own connection and instance id; reports `failing` failures
  // (or successes), syncs, then says (exit code) whether the shared breaker is open.
  const auto child = [&](const char* id, bool failing) -> int {
    armor::redis_circuit_breaker_options o;
    o.name = name;
    o.instance = id;
    o.minimum_calls = 10;
    o.min_reporting_instances = 2;
    o.open_for = 60s;
    o.time = armor::redis_time_source::caller;  // every process at noon: no window ends between them
    const armor::manual_clock clock{std::chrono::nanoseconds{noon_ns}};
    shared_breaker b{patient_local, armor::redis_connection{breaker_redis(port)}, o, clock};
    for (int i = 0; i < 10; ++i) {
      auto d = b.try_acquire();
      if (d) b.record(std::move(d).permit(), failing ? armor::verdict::failure() : armor::verdict::success());
    }
    b.sync();
    return b.shared_state() == armor::breaker_state::open ? 1 : 0;
  };
  const auto fork_one = [&](const char* id, bool failing) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int code = 2;
      try {
        code = child(id, failing);
      } catch (...) {
      }
      std::_Exit(code);
    }
    return pid;
  };
  const auto status_of = [](pid_t pid) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  // One failing process alone: the shared breaker stays closed.
  CHECK(status_of(fork_one("p1", true)) == 0);
  CHECK(status_of(fork_one("p2", false)) == 0);
  // A second failing process makes two reporters: open, seen by a third one.
  CHECK(status_of(fork_one("p3", true)) == 1);
  CHECK(status_of(fork_one("p4", false)) == 1);
}
