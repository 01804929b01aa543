// armor::make_quota_storage with armor::sqlite_quota_backend: a sqlite: URL
// builds the same tracker type as memory:, deciding the same way on the same
// sequence; the URL's parameters and tracker reach the storage; counts are
// shared through the file between storages that name the same tracker.
#include <armor/keyed.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/storage/any.hpp>
#include <armor/storage/sqlite.hpp>

#include "armor_catch.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>

using namespace std::chrono_literals;
using armor::quota_window;

namespace {

using any_tracker = armor::quota_tracker<armor::manual_clock, armor::any_quota_storage>;

struct temp_path {
  std::string path;
  temp_path() {
    static std::atomic<int> n{0};
    path = (std::filesystem::temp_directory_path() /
            ("armor_any_" + std::to_string(::getpid()) + "_" + std::to_string(n.fetch_add(1)) + ".db"))
               .string();
    remove();
  }
  ~temp_path() { remove(); }
  temp_path(const temp_path&) = delete;
  temp_path& operator=(const temp_path&) = delete;
  void remove() const {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::filesystem::remove(path + suffix);
  }
};

const armor::any_quota_storage_options with_sqlite{.tracker = "openai", .backends = {armor::sqlite_quota_backend}};

}  // namespace

TEST_CASE("memory: and sqlite: URLs build one tracker type that decides the same way", "[any_quota_storage][sqlite]") {
  const temp_path db;
  const armor::quota_tracker_options options{
      .windows = {quota_window::per_minute(30), quota_window::rolling(80, 10min, 5)}};
  const armor::manual_clock clock;
  // The same code for both; only the URL differs.
  const auto make = [&](const std::string& url) {
    return any_tracker{options, clock, armor::make_quota_storage(url, with_sqlite)};
  };
  any_tracker mem = make("memory:");
  any_tracker sql = make("sqlite://" + db.path + "?create=true&mode=durable");
  REQUIRE(mem.storage().target<armor::memory_quota_storage>() != nullptr);
  REQUIRE(sql.storage().target<armor::sqlite_quota_storage>() != nullptr);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 600; ++i) {
    const auto cost = static_cast<std::int64_t>(rng() % 6);
    INFO("step " << i << " cost " << cost);
    if (rng() % 5 == 0) {
      clock.advance(std::chrono::nanoseconds{static_cast<std::int64_t>(rng() % 40'000'000'000)});
    } else if (rng() % 4 == 0) {
      auto a = mem.reserve(cost + 1);
      auto b = sql.reserve(cost + 1);
      REQUIRE(a.status() == b.status());
      if (a) REQUIRE(a.permit().commit(cost) == b.permit().commit(cost));
    } else {
      const auto a = mem.try_consume(cost);
      const auto b = sql.try_consume(cost);
      REQUIRE(a.status() == b.status());
      REQUIRE(a.used() == b.used());
      REQUIRE(a.window() == b.window());
    }
    for (std::size_t w = 0; w < 2; ++w) REQUIRE(mem.usage(w).used == sql.usage(w).used);
  }
  CHECK(mem.stats().exhausted == sql.stats().exhausted);
  CHECK(mem.stats().exhausted > 0);
}

TEST_CASE("a sqlite: URL's parameters and tracker reach the storage; the options' tracker is the default",
          "[any_quota_storage][sqlite]") {
  const temp_path db;
  const armor::quota_tracker_options options{.windows = {quota_window::per_day(10)}};
  const armor::manual_clock clock;
  const std::string url = "sqlite://" + db.path + "?create=true&mode=batched&flush_every=20ms";
  any_tracker a{options, clock, armor::make_quota_storage(url, with_sqlite)};
  any_tracker b{options, clock, armor::make_quota_storage(url + "&tracker=openai", with_sqlite)};
  any_tracker other{options, clock, armor::make_quota_storage(url + "&tracker=gemini", with_sqlite)};
  const armor::sqlite_quota_storage* s = a.storage().target<armor::sqlite_quota_storage>();
  REQUIRE(s != nullptr);
  CHECK(a.try_consume(6));
  REQUIRE(a.storage().target<armor::sqlite_quota_storage>()->flush());
  // b names the same tracker through its URL; other does not.
  CHECK(b.usage(0).used == 6);
  CHECK(other.usage(0).used == 0);
  CHECK_FALSE(b.try_consume(5));
  CHECK(other.try_consume(5));

  // The storage's own checks still run, naming the parameter.
  try {
    (void)armor::make_quota_storage("sqlite:" + db.path + "?mode=fast", with_sqlite);
    FAIL("mode=fast was accepted");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    CHECK(std::string(e.what()).find("mode") != std::string::npos);
  }
  // Given only the SQLite backend, a Redis URL is still refused, naming what is missing.
  try {
    (void)armor::make_quota_storage("redis://127.0.0.1:6379", with_sqlite);
    FAIL("redis: was accepted");
  } catch (const armor::error& e) {
    CHECK(std::string(e.what()).find("armor::redis_quota_backend") != std::string::npos);
  }
}

TEST_CASE("a keyed map of trackers on a sqlite: URL keeps each key's counts under tracker/key",
          "[any_quota_storage][sqlite]") {
  const temp_path db;
  const armor::quota_tracker_options options{.windows = {quota_window::per_day(3)}};
  armor::any_quota_storage proto =
      armor::make_quota_storage("sqlite:" + db.path + "?create=true", {.tracker = "per-user", .backends = {armor::sqlite_quota_backend}});
  any_tracker alice{options, armor::manual_clock{}, proto.for_key("alice")};
  any_tracker alice_again{options, armor::manual_clock{}, proto.for_key("alice")};
  any_tracker bob{options, armor::manual_clock{}, proto.for_key("bob")};
  CHECK(alice.try_consume(3));
  CHECK_FALSE(alice_again.try_consume(1));
  CHECK(bob.try_consume(3));
}

TEST_CASE("a tracker and a keyed map on a sqlite: URL change their limits at run time; the file's counts stay",
          "[any_quota_storage][sqlite][reconfigure]") {
  const temp_path db;
  const auto daily = [](std::int64_t limit) {
    return armor::quota_tracker_options{.windows = {quota_window::per_day(limit)}, .alerts = {}};
  };
  const std::string url = "sqlite:" + db.path + "?create=true";
  const armor::manual_clock clock{armor::manual_clock::time_point{20'000 * 24h + 9h}};
  {
    any_tracker t{daily(3), clock, armor::make_quota_storage(url, with_sqlite)};
    REQUIRE(t.storage().takes_limits());
    REQUIRE(t.try_consume(3));
    t.reconfigure(daily(4));
    CHECK(t.try_consume(1));
    CHECK_FALSE(t.try_consume(1));
    CHECK(t.usage(0).used == 4);
  }
  any_tracker reopened{daily(5), clock, armor::make_quota_storage(url, with_sqlite)};
  CHECK(reopened.usage(0).used == 4);

  using keyed_any = armor::keyed<any_tracker>;
  keyed_any per_user{{.quota = daily(1), .storage = armor::make_quota_storage(url, with_sqlite)}, {}, clock};
  REQUIRE(per_user.get("ann")->try_consume(1));
  CHECK_FALSE(per_user.get("ann")->try_consume(1));
  per_user.reconfigure(daily(3));
  CHECK(per_user.get("ann")->try_consume(2));
  CHECK_FALSE(per_user.get("ann")->try_consume(1));
  CHECK(per_user.get("bob")->try_consume(3));
  CHECK_THAT(std::string([&] {
               try {
                 per_user.reconfigure(daily(-1));
               } catch (const armor::error& e) {
                 return std::string(e.what());
               }
               return std::string();
             }()),
             Catch::Contains("windows[0].limit"));
  CHECK(per_user.options().windows[0].limit == 3);
  // Another map over the file sees ann's 3 under its own limits.
  keyed_any other{{.quota = daily(4), .storage = armor::make_quota_storage(url, with_sqlite)}, {}, clock};
  CHECK(other.get("ann")->usage(0).used == 3);
  CHECK(other.get("ann")->try_consume(1));
  CHECK_FALSE(per_user.get("ann")->try_consume(1));  // 4 used, limit 3
}
