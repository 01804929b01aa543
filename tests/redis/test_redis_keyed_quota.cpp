// Per-key quotas kept in Redis (issue 21): keyed<quota_tracker<C,
// redis_quota_storage>> keeps each key's counts under "<tracker>/<key>",
// shared by every map (every process) that names the same tracker. The
// server is the tests' own (redis/redis_server.hpp); without redis-server
// the executable exits 77 (see test_redis_quota.cpp).
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/redis/quota_storage.hpp>

#include "armor_catch.hpp"
#include "redis/fork_children.hpp"
#include "redis/redis_server.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

using namespace std::chrono_literals;

namespace {

armor::redis_options keyed_redis(int port) {
  armor::redis_options o;
  o.port = static_cast<std::uint16_t>(port);
  o.prefix = "armor-test";
  return o;
}

std::string keyed_name(const char* what) {
  static std::atomic<int> n{0};
  return std::string(what) + "-" + std::to_string(::getpid()) + "-" + std::to_string(n.fetch_add(1));
}

template <class Clock>
using keyed_redis_quota = armor::keyed<armor::quota_tracker<Clock, armor::redis_quota_storage>>;

// $0.50 per user per day, in micro-dollars.
template <class Clock>
keyed_redis_quota<Clock> per_user_daily(const armor::redis_connection& conn, const std::string& name, Clock clock,
                                        armor::redis_time_source time) {
  return keyed_redis_quota<Clock>{{.quota = {.windows = {armor::quota_window::per_day(500'000)}, .alerts = {}},
                                   .storage = armor::redis_quota_storage{conn, {.tracker = name, .time = time}}},
                                  {.max_keys = 100},
                                  std::move(clock)};
}

}  // namespace

TEST_CASE("redis keyed quota: $0.50 per user per day, exact on a manual clock, shared by two maps",
          "[redis][keyed_quota]") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{keyed_redis(server.port())};
  const std::string name = keyed_name("keyed-day");
  armor::manual_clock clock{20'000 * 24h + 9h};
  auto a = per_user_daily(conn, name, clock, armor::redis_time_source::caller);
  auto b = per_user_daily(conn, name, clock, armor::redis_time_source::caller);
  REQUIRE(a.get("ann")->try_consume(300'000));
  auto p = armor::pipeline{clock, std::ref(b)};
  REQUIRE(p.try_execute([] { return 1; }, {.key = "ann", .cost = 200'000}).has_value());
  const auto d = a.get("ann")->try_consume(1);
  CHECK(d.status() == armor::quota_tracker_status::exhausted);
  CHECK(d.retry_after() == 15h);  // to midnight UTC
  CHECK(b.get("ann")->usage(0).used == 500'000);
  CHECK(a.get("bob")->try_consume(500'000));  // each user has a budget of their own
  clock.advance(15h);
  CHECK(b.get("ann")->try_consume(500'000));  // a new day
  // A key Redis cannot hold (a hash tag's braces) is refused by name.
  CHECK_THROWS_AS(a.get("a{b}"), armor::error);
}

TEST_CASE("redis keyed quota: two processes share each user's budget", "[redis][keyed_quota]") {
  auto& server = armor_test::shared_redis();
  const std::string name = keyed_name("keyed-procs");
  const int port = server.port();
  // Each child spends $0.01 at a time for "ann" until refused.
  const std::int64_t cents = armor_test::sum_over_children(2, [&] {
    const armor::redis_connection conn{keyed_redis(port)};
    auto per_user = per_user_daily(conn, name, armor::system_clock{}, armor::redis_time_source::server);
    armor_test::child_report r;
    while (per_user.get("ann")->try_consume(10'000)) ++r.units;
    r.refused_as_expected = per_user.get("ann")->try_consume(10'000).status() == armor::quota_tracker_status::exhausted;
    return r;
  });
  CHECK(cents == 50);
  const armor::redis_connection conn{keyed_redis(port)};
  auto per_user = per_user_daily(conn, name, armor::system_clock{}, armor::redis_time_source::server);
  CHECK(per_user.get("ann")->usage(0).used == 500'000);
}

// ---------------------------------------------------------------- reconfigure (issue 21)

TEST_CASE("redis keyed quota: reconfigure reaches every key held and every new key; Redis keeps the counts",
          "[redis][keyed_quota][reconfigure]") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{keyed_redis(server.port())};
  const std::string name = keyed_name("keyed-reconf");
  armor::manual_clock clock{20'000 * 24h + 9h};
  const auto daily = [](std::int64_t limit) {
    return armor::quota_tracker_options{.windows = {armor::quota_window::per_day(limit)}, .alerts = {}};
  };
  // Two maps (two processes) over one tracker name; leases on, to check that
  // a reconfigured key asks Redis (a lease serves only the limits bound).
  const auto make = [&](std::int64_t limit) {
    return keyed_redis_quota<armor::manual_clock>{
        {.quota = daily(limit),
         .storage = armor::redis_quota_storage{
             conn, {.tracker = name, .lease = 2, .time = armor::redis_time_source::caller}}},
        {.max_keys = 100},
        clock};
  };
  auto a = make(4);
  auto b = make(4);
  static_assert(std::is_same_v<decltype(a)::reconfigure_type, armor::quota_tracker_options>);
  REQUIRE(a.get("ann")->try_consume(3));
  REQUIRE(a.get("ann")->storage().return_lease());
  CHECK(b.get("ann")->usage(0).used == 3);

  a.reconfigure(daily(6));
  CHECK(a.options().windows[0].limit == 6);
  CHECK(a.get("ann")->usage(0).limit == 6);
  CHECK(a.get("ann")->try_consume(3));  // 6 of 6 in Redis: the old limit would have refused
  CHECK(a.get("ann")->storage().leased() == 0);  // no lease under limits other than those bound
  const auto full = a.get("ann")->try_consume(1);
  CHECK(full.status() == armor::quota_tracker_status::exhausted);
  CHECK(full.used() == 6);
  CHECK(full.limit() == 6);
  CHECK(full.retry_after() == 15h);
  // b keeps its own limits: Redis holds counts, each tracker its limits.
  const auto other = b.get("ann")->try_consume(1);
  CHECK(other.status() == armor::quota_tracker_status::exhausted);
  CHECK(other.limit() == 4);
  CHECK(other.used() == 6);
  CHECK(a.get("cat")->try_consume(6));  // a key made after: the new limit
  CHECK_FALSE(a.get("cat")->try_consume(1));

  // Lowered: b's key and a key made later in b, under 2.
  b.reconfigure(daily(2));
  CHECK(b.get("bob")->try_consume(2));
  CHECK_FALSE(b.get("bob")->try_consume(1));
  CHECK(b.get("cat")->usage(0).used == 6);  // a's spend, seen through Redis
  CHECK(b.get("cat")->usage(0).limit == 2);

  // Refused by name; nothing changes.
  try {
    a.reconfigure({.windows = {armor::quota_window::per_day(6), armor::quota_window::per_hour(1)}, .alerts = {}});
    FAIL("a window added in place was accepted");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    CHECK_THAT(std::string(e.what()), Catch::Contains("the number of windows cannot change at run time"));
  }
  try {
    a.reconfigure(daily(armor::quota_max_limit + 1));
    FAIL("a limit over quota_max_limit was accepted");
  } catch (const armor::error& e) {
    CHECK_THAT(std::string(e.what()), Catch::Contains("windows[0].limit"));
  }
  CHECK(a.options().windows[0].limit == 6);
  CHECK(a.get("dan")->usage(0).limit == 6);
  clock.advance(15h);  // a new day: the new limits, whole
  CHECK(a.get("ann")->try_consume(6));
  CHECK(b.get("bob")->try_consume(2));
  CHECK_FALSE(b.get("bob")->try_consume(1));
}
