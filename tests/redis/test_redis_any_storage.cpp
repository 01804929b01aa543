// armor::make_quota_storage with armor::redis_quota_backend on one
// redis-server on loopback: a redis:// URL builds the tracker type memory:
// builds, deciding alike; the URL's parameters and the options' tracker
// reach the storage; redis+sentinel:// builds without a server up (nothing
// connects before the first call). The cluster: test_redis_cluster.cpp.
#include <armor/keyed.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/redis/quota_storage.hpp>
#include <armor/storage/any.hpp>

#include "armor_catch.hpp"
#include "redis/any_storage_support.hpp"
#include "redis/redis_server.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace std::chrono_literals;

namespace {

const bool have_redis_server_for_any = armor_test::require_redis_server();

std::string server_url() {
  return "redis://127.0.0.1:" + std::to_string(armor_test::shared_redis().port());
}

}  // namespace

TEST_CASE("redis: a redis:// URL builds the tracker memory: builds, deciding alike", "[any_quota_storage][redis]") {
  armor_test::decides_as_memory(server_url() + "?time=caller&prefix=armor-test&command_timeout=1s&tracker=any-" +
                                    std::to_string(::getpid()),
                                25, 400);
}

TEST_CASE("redis: the URL's parameters and the options' tracker reach the storage", "[any_quota_storage][redis]") {
  const armor::any_quota_storage_options how{.tracker = "openai", .backends = {armor::redis_quota_backend}};
  armor::any_quota_storage s = armor::make_quota_storage(
      server_url() + "?prefix=armor-test&on_failure=fail_open&command_timeout=250ms&connections=3", how);
  const armor::redis_quota_storage* r = s.target<armor::redis_quota_storage>();
  REQUIRE(r != nullptr);
  CHECK(r->connection().options().command_timeout == 250ms);
  CHECK(r->connection().options().connections == 3);
  CHECK(r->connection().options().port == armor_test::shared_redis().port());

  // Two trackers named alike (one by the options, one by its URL) share counts.
  const armor::quota_tracker_options options{.windows = {armor::quota_window::per_day(10)}};
  const std::string name = "any-shared-" + std::to_string(::getpid());
  armor::quota_tracker<armor::system_clock, armor::any_quota_storage> a{
      options, {}, armor::make_quota_storage(server_url() + "?prefix=armor-test", {.tracker = name, .backends = how.backends})};
  armor::quota_tracker<armor::system_clock, armor::any_quota_storage> b{
      options, {}, armor::make_quota_storage(server_url() + "?prefix=armor-test&tracker=" + name, how)};
  CHECK(a.try_consume(7));
  CHECK(b.usage(0).used == 7);
  CHECK_FALSE(b.try_consume(4));
  CHECK(a.storage().target<armor::redis_quota_storage>()->stats().unanswered == 0);

  // A bad value is refused by the Redis backend, naming the parameter.
  try {
    (void)armor::make_quota_storage(server_url() + "?on_failure=retry", how);
    FAIL("on_failure=retry was accepted");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    CHECK(std::string(e.what()).find("on_failure") != std::string::npos);
  }
}

TEST_CASE("redis: redis+sentinel:// and redis+cluster:// build their storages before any server answers",
          "[any_quota_storage][redis]") {
  const armor::any_quota_storage_options how{.backends = {armor::redis_quota_backend}};
  armor::any_quota_storage s =
      armor::make_quota_storage("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/mymaster?sentinel_recheck=0ms", how);
  const armor::redis_quota_storage* r = s.target<armor::redis_quota_storage>();
  REQUIRE(r != nullptr);
  CHECK(r->connection().options().primary_name == "mymaster");
  CHECK(r->connection().options().sentinels.size() == 2);
  armor::any_quota_storage c = armor::make_quota_storage("redis+cluster://127.0.0.1:1,127.0.0.1:2", how);
  REQUIRE(c.target<armor::redis_quota_storage>() != nullptr);
  CHECK(c.target<armor::redis_quota_storage>()->connection().options().cluster);
}

TEST_CASE("redis: a tracker and a keyed map on a redis:// URL change their limits at run time",
          "[any_quota_storage][redis][reconfigure]") {
  using tracker = armor::quota_tracker<armor::manual_clock, armor::any_quota_storage>;
  const armor::any_quota_storage_options how{.tracker = "any-reconf-" + std::to_string(::getpid()),
                                             .backends = {armor::redis_quota_backend}};
  const std::string url = server_url() + "?prefix=armor-test&time=caller";
  const auto daily = [](std::int64_t limit) {
    return armor::quota_tracker_options{.windows = {armor::quota_window::per_day(limit)}, .alerts = {}};
  };
  const armor::manual_clock clock{armor::manual_clock::time_point{20'000 * 24h + 9h}};
  tracker t{daily(2), clock, armor::make_quota_storage(url, how)};
  REQUIRE(t.storage().takes_limits());
  REQUIRE(t.try_consume(2));
  CHECK_FALSE(t.try_consume(1));
  t.reconfigure(daily(3));
  CHECK(t.try_consume(1));
  CHECK_FALSE(t.try_consume(1));
  CHECK(t.usage(0).used == 3);

  armor::keyed<tracker> per_user{{.quota = daily(1), .storage = armor::make_quota_storage(url, how)}, {}, clock};
  REQUIRE(per_user.get("ann")->try_consume(1));
  per_user.reconfigure(daily(2));
  CHECK(per_user.get("ann")->try_consume(1));
  CHECK_FALSE(per_user.get("ann")->try_consume(1));
  CHECK(per_user.get("bob")->try_consume(2));
  CHECK(per_user.get("bob")->usage(0).limit == 2);
}
