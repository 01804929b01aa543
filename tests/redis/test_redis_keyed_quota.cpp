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
