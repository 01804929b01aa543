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
