// Per-key quotas kept in SQLite (issue 21): keyed<quota_tracker<C,
// sqlite_quota_storage>> keeps each key's counts under "<tracker>/<key>",
// so a restarted map (a new process over the same file) sees the spend.
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/storage/sqlite.hpp>

#include "armor_catch.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

using namespace std::chrono_literals;

namespace {

using sql_tracker = armor::quota_tracker<armor::manual_clock, armor::sqlite_quota_storage>;
using keyed_sql = armor::keyed<sql_tracker>;

static_assert(std::is_same_v<keyed_sql::options_type, armor::keyed_quota_options<armor::sqlite_quota_storage>>);

struct keyed_db {
  std::string path;
  keyed_db() {
    static std::atomic<int> n{0};
    path = (std::filesystem::temp_directory_path() /
            ("armor_keyed_quota_" + std::to_string(::getpid()) + "_" + std::to_string(n.fetch_add(1)) + ".db"))
               .string();
    remove();
  }
  ~keyed_db() { remove(); }
  keyed_db(const keyed_db&) = delete;
  keyed_db& operator=(const keyed_db&) = delete;
  void remove() const {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::filesystem::remove(path + suffix);
  }
};

// $0.50 per user per day, in micro-dollars.
keyed_sql per_user_daily(const keyed_db& db, const armor::manual_clock& clock) {
  return keyed_sql{{.quota = {.windows = {armor::quota_window::per_day(500'000)}, .alerts = {}},
                    .storage = armor::sqlite_quota_storage{{.path = db.path, .tracker = "llm", .create_if_missing = true}}},
                   {.max_keys = 100},
                   clock};
}

}  // namespace

TEST_CASE("sqlite keyed quota: $0.50 per user per day survives a restart", "[sqlite][keyed_quota]") {
  keyed_db db;
  armor::manual_clock clock{20'000 * 24h + 9h};
  {
    keyed_sql per_user = per_user_daily(db, clock);
    REQUIRE(per_user.get("ann")->try_consume(300'000));  // $0.30
    REQUIRE(per_user.get("bob")->try_consume(500'000));  // $0.50: spent
    auto p = armor::pipeline{clock, std::ref(per_user)};
    REQUIRE(p.try_execute([] { return 1; }, {.key = "ann", .cost = 100'000}).has_value());  // $0.40
  }
  // The process restarts: a new map over the same file sees each user's spend.
  keyed_sql per_user = per_user_daily(db, clock);
  CHECK(per_user.get("ann")->usage(0).used == 400'000);
  const auto d = per_user.get("ann")->try_consume(100'001);
  CHECK(d.status() == armor::quota_tracker_status::exhausted);
  CHECK(d.retry_after() == 15h);  // to midnight UTC
  CHECK(per_user.get("ann")->try_consume(100'000));  // exactly $0.50
  CHECK_FALSE(per_user.get("ann")->try_consume(1));
  CHECK_FALSE(per_user.get("bob")->try_consume(1));
  CHECK(per_user.get("cat")->try_consume(500'000));  // a new user has a whole budget
  // Evicted from the map (a new day: idle), a user's tracker comes back from the file.
  clock.advance(15h);
  CHECK(per_user.evict_idle() == 3);
  CHECK(per_user.get("ann")->try_consume(500'000));
  CHECK(per_user.stats().created == 4);
}

TEST_CASE("sqlite keyed quota: two maps over one file share each key's counts", "[sqlite][keyed_quota]") {
  keyed_db db;
  armor::manual_clock clock{20'000 * 24h + 9h};
  keyed_sql a = per_user_daily(db, clock);
  keyed_sql b = per_user_daily(db, clock);
  REQUIRE(a.get("ann")->try_consume(250'000));
  REQUIRE(b.get("ann")->try_consume(250'000));
  CHECK_FALSE(a.get("ann")->try_consume(1));
  CHECK_FALSE(b.get("ann")->try_consume(1));
  CHECK(a.get("bob")->try_consume(500'000));
}

// ---------------------------------------------------------------- reconfigure (issue 21)

namespace {

armor::quota_tracker_options daily(std::int64_t limit) {
  return {.windows = {armor::quota_window::per_day(limit)}, .alerts = {}};
}

keyed_sql keyed_over(const keyed_db& db, const armor::quota_tracker_options& quota, armor::sqlite_mode mode,
                     const armor::manual_clock& clock) {
  return keyed_sql{{.quota = quota,
                    .storage = armor::sqlite_quota_storage{
                        {.path = db.path, .tracker = "llm", .mode = mode, .create_if_missing = true}}},
                   {.max_keys = 100},
                   clock};
}

// The message of the armor::error(invalid_argument) `f` throws ("" if none).
template <class F>
std::string refusal_of(F&& f) {
  try {
    f();
  } catch (const armor::error& e) {
    return e.code() == armor::errc::invalid_argument ? e.what() : "wrong code";
  }
  return "";
}

}  // namespace

TEST_CASE("sqlite keyed quota: reconfigure reaches every key held and every new key; the file's usage is kept",
          "[sqlite][keyed_quota][reconfigure]") {
  static_assert(std::is_same_v<keyed_sql::reconfigure_type, armor::quota_tracker_options>);
  for (const armor::sqlite_mode mode : {armor::sqlite_mode::durable, armor::sqlite_mode::batched}) {
    CAPTURE(armor::to_string(mode));
    keyed_db db;
    armor::manual_clock clock{20'000 * 24h + 9h};
    {
      keyed_sql per_user = keyed_over(db, daily(3), mode, clock);
      REQUIRE(per_user.get("ann")->try_consume(3));
      REQUIRE(per_user.get("bob")->try_consume(1));
      CHECK_FALSE(per_user.get("ann")->try_consume(1));

      per_user.reconfigure(daily(5));  // raised: the 3 counted in the file stay
      CHECK(per_user.options().windows[0].limit == 5);
      CHECK(per_user.get("ann")->usage(0).used == 3);
      CHECK(per_user.get("ann")->usage(0).limit == 5);
      CHECK(per_user.get("ann")->try_consume(2));
      CHECK_FALSE(per_user.get("ann")->try_consume(1));
      CHECK(per_user.get("bob")->try_consume(4));
      CHECK(per_user.get("cat")->try_consume(5));  // a key made after: the new limit
      CHECK_FALSE(per_user.get("cat")->try_consume(1));

      per_user.reconfigure(daily(2));  // lowered under what ann and bob hold: refused, used above limit
      const auto d = per_user.get("bob")->try_consume(1);
      CHECK(d.status() == armor::quota_tracker_status::exhausted);
      CHECK(d.used() == 5);
      CHECK(d.limit() == 2);
      CHECK(d.retry_after() == 15h);  // to midnight UTC
      // A key evicted and made again reads its usage back from the file, under the new limit.
      CHECK(per_user.erase("ann"));
      CHECK(per_user.get("ann")->usage(0).used == 5);
      CHECK(per_user.get("ann")->usage(0).limit == 2);
      CHECK(per_user.get("dan")->try_consume(2));
      CHECK_FALSE(per_user.get("dan")->try_consume(1));
      if (mode == armor::sqlite_mode::batched) {
        for (const char* k : {"ann", "bob", "cat", "dan"}) REQUIRE(per_user.get(k)->storage().flush());
      }
    }
    // Restarted with the new limit: each key's usage is in the file.
    keyed_sql again = keyed_over(db, daily(6), mode, clock);
    CHECK(again.get("ann")->usage(0).used == 5);
    CHECK(again.get("bob")->usage(0).used == 5);
    CHECK(again.get("dan")->usage(0).used == 2);
    CHECK(again.get("dan")->try_consume(4));
    CHECK_FALSE(again.get("dan")->try_consume(1));
    clock.advance(15h);  // the day turns: the new limit, whole
    CHECK(again.get("ann")->try_consume(6));
  }
}

TEST_CASE("sqlite keyed quota: a refused reconfigure changes no key; windows cannot be added or removed in place",
          "[sqlite][keyed_quota][reconfigure]") {
  keyed_db db;
  armor::manual_clock clock{20'000 * 24h + 9h};
  keyed_sql per_user = keyed_over(db, daily(3), armor::sqlite_mode::durable, clock);
  REQUIRE(per_user.get("ann")->try_consume(2));
  CHECK_THAT(refusal_of([&] { per_user.reconfigure(daily(0)); }), Catch::Contains("windows[0].limit"));
  CHECK_THAT(refusal_of([&] {
               per_user.reconfigure({.windows = {armor::quota_window::per_day(3), armor::quota_window::per_hour(2)},
                                     .alerts = {}});
             }),
             Catch::Contains("the number of windows cannot change at run time"));
  CHECK_THAT(refusal_of([&] {
               per_user.reconfigure({.windows = {armor::quota_window::per_hour(3)}, .alerts = {}});
             }),
             Catch::Contains("windows[0] kind, length or buckets cannot change at run time"));
  auto alerting = daily(3);
  alerting.alerts = {0.8};
  CHECK_THAT(refusal_of([&] { per_user.reconfigure(alerting); }), Catch::Contains("alerts"));
  CHECK(per_user.options().windows[0].limit == 3);
  CHECK(per_user.get("ann")->try_consume(1));
  CHECK_FALSE(per_user.get("ann")->try_consume(1));
  CHECK(per_user.get("new")->usage(0).limit == 3);
}

TEST_CASE("sqlite keyed quota: a map rebuilt with windows added or removed keeps each kept window's usage",
          "[sqlite][keyed_quota][reconfigure]") {
  // A window's counts are stored under its slicing (kind, length, offset,
  // buckets), not its limit nor its place in the list: a rebuilt map finds
  // the counts of the windows it keeps; a window added starts empty; a
  // window removed leaves its rows, found again if it comes back within
  // the same period.
  keyed_db db;
  armor::manual_clock clock{20'000 * 24h + 9h};
  const armor::quota_tracker_options day_and_hour{
      .windows = {armor::quota_window::per_day(10), armor::quota_window::per_hour(4)}, .alerts = {}};
  const armor::quota_tracker_options hour_and_minute{
      .windows = {armor::quota_window::per_hour(5), armor::quota_window::per_minute(2)}, .alerts = {}};
  {
    keyed_sql per_user = keyed_over(db, daily(10), armor::sqlite_mode::durable, clock);
    REQUIRE(per_user.get("ann")->try_consume(3));
  }
  {
    keyed_sql per_user = keyed_over(db, day_and_hour, armor::sqlite_mode::durable, clock);  // an hour window added
    CHECK(per_user.get("ann")->usage(0).used == 3);  // the day's kept
    CHECK(per_user.get("ann")->usage(1).used == 0);  // the hour starts empty
    REQUIRE(per_user.get("ann")->try_consume(4));
    CHECK_FALSE(per_user.get("ann")->try_consume(1));  // the hour's 4
    CHECK(per_user.get("ann")->usage(0).used == 7);
  }
  {
    keyed_sql per_user = keyed_over(db, hour_and_minute, armor::sqlite_mode::durable, clock);  // the day removed
    CHECK(per_user.get("ann")->usage(0).used == 4);  // the hour's, now first in the list, kept
    CHECK(per_user.get("ann")->usage(0).limit == 5);
    CHECK(per_user.get("ann")->usage(1).used == 0);
    REQUIRE(per_user.get("ann")->try_consume(1));
    CHECK_FALSE(per_user.get("ann")->try_consume(1));  // the hour's 5
  }
  keyed_sql per_user = keyed_over(db, daily(10), armor::sqlite_mode::durable, clock);  // the day back, same day
  CHECK(per_user.get("ann")->usage(0).used == 7);  // its rows were left in the file
}
