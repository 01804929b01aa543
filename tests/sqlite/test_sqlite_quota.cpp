// armor::sqlite_quota_storage: counts that survive restarts, shared by
// trackers and processes on one host; clear errors for missing, corrupt and
// locked files; batched commits; and the crash test: a child process
// consuming in durable mode is killed with SIGKILL at a random moment, and
// nothing it was told it could spend is forgotten.
//
// Quota time runs on manual clocks; only the crash tests and the batched
// flusher use real time, with bounds that do not depend on machine speed.
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/storage/sqlite.hpp>

#include "armor_catch.hpp"

#include <sqlite3.h>

#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using namespace std::chrono;
using armor::quota_window;

namespace {

using sql_tracker = armor::quota_tracker<armor::manual_clock, armor::sqlite_quota_storage>;

/// A database path of its own, removed (with its WAL files) at the end.
struct temp_db {
  std::string path;
  temp_db() {
    static std::atomic<int> n{0};
    path = (std::filesystem::temp_directory_path() /
            ("armor_quota_" + std::to_string(::getpid()) + "_" + std::to_string(n.fetch_add(1)) + ".db"))
               .string();
    remove();
  }
  ~temp_db() { remove(); }
  temp_db(const temp_db&) = delete;
  temp_db& operator=(const temp_db&) = delete;
  void remove() const {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::filesystem::remove(path + suffix);
  }
};

armor::manual_clock clock_at(sys_time<nanoseconds> t) {
  armor::manual_clock c;
  c.set(armor::manual_clock::time_point{t.time_since_epoch()});
  return c;
}

const auto noon = sys_days{2024y / June / 15} + 12h;

armor::sqlite_quota_storage storage(const temp_db& db, armor::sqlite_mode mode = armor::sqlite_mode::durable,
                                    std::string tracker = "test") {
  return armor::sqlite_quota_storage{
      {.path = db.path, .tracker = std::move(tracker), .mode = mode, .create_if_missing = true}};
}

/// The message and code of the armor::error that `f` throws.
template <class F>
std::pair<std::error_code, std::string> error_of(F f) {
  try {
    f();
  } catch (const armor::error& e) {
    return {e.code(), e.what()};
  }
  return {{}, "(no error)"};
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// Runs one SQL statement on its own connection; returns the first column
/// of the first row as an integer (0 if none).
std::int64_t sql_value(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
  std::int64_t v = 0;
  if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(db);
  return v;
}

/// Reads what a child wrote to `fd` until `deadline` or end of file.
std::string read_until(int fd, steady_clock::time_point deadline) {
  std::string got;
  char buf[4096];
  for (;;) {
    const auto left = duration_cast<milliseconds>(deadline - steady_clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

std::string read_all(int fd) {
  std::string got;
  char buf[4096];
  ssize_t n = 0;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) got.append(buf, static_cast<std::size_t>(n));
  return got;
}

}  // namespace

// ---------------------------------------------------------------- persistence

TEST_CASE("a quota kept in sqlite survives a restart") {
  temp_db db;
  const auto clock = clock_at(noon + 11h + 30min);  // 23:30
  const armor::quota_tracker_options options{
      .windows = {quota_window::per_day(5), quota_window::rolling(8, 1h, 4), quota_window::per_month(100)}};
  {
    sql_tracker t{options, clock, storage(db)};
    CHECK(t.try_consume(3));
  }
  sql_tracker t{options, clock, storage(db)};
  CHECK(t.usage(0).used == 3);
  CHECK(t.usage(1).used == 3);
  CHECK(t.usage(2).used == 3);
  CHECK(t.try_consume(2));
  const armor::quota_tracker_decision<> d = t.try_consume();
  CHECK(d.status() == armor::quota_tracker_status::exhausted);
  CHECK(d.window() == 0);
  CHECK(d.retry_after() == 30min);
  // Both full: the rolling window waits longest (its bucket leaves at 00:45).
  const armor::quota_tracker_decision<> both = t.try_consume(4);
  CHECK(both.window() == 1);
  CHECK(both.retry_after() == 1h + 15min);
  clock.advance(30min);  // a new day; the rolling window still holds 5 of 8
  CHECK(t.usage(0).used == 0);
  CHECK_FALSE(t.try_consume(4));
  CHECK(t.try_consume(3));
  CHECK(t.usage(2).used == 8);
}

namespace {

/// Keeps every event it hears, as "window@threshold:used".
struct alert_log {
  std::vector<std::string>* out = nullptr;
  void operator()(const armor::quota_tracker_event& a) const noexcept {
    out->push_back(std::to_string(a.window) + "@" + std::to_string(a.threshold) + ":" + std::to_string(a.used));
  }
};

using alerting_tracker = armor::quota_tracker<armor::manual_clock, armor::sqlite_quota_storage, alert_log>;

}  // namespace

TEST_CASE("an alert fired before a restart is not fired again in the same period") {
  // Issue 17, item 5: three restarts gave three 80 % alerts the same day.
  for (const armor::sqlite_mode mode : {armor::sqlite_mode::durable, armor::sqlite_mode::batched}) {
    INFO("mode " << armor::to_string(mode));
    temp_db db;
    const auto clock = clock_at(noon);
    const armor::quota_tracker_options options{.windows = {quota_window::per_day(10), quota_window::per_hour(100)}};
    std::vector<std::string> heard;
    {
      alerting_tracker t{options, clock, storage(db, mode), alert_log{&heard}};
      CHECK(t.try_consume(8));
      CHECK(heard == std::vector<std::string>{"0@0.800000:8"});
    }
    for (int restart = 0; restart < 3; ++restart) {
      alerting_tracker t{options, clock, storage(db, mode), alert_log{&heard}};
      CHECK(t.usage(0).used == (restart == 0 ? 8 : 9));
      CHECK(t.try_consume(restart == 0 ? 1 : 0));  // 9 (90 % once), then nothing new
      CHECK(t.stats().alerts == (restart == 0 ? 1U : 0U));
    }
    CHECK(heard == std::vector<std::string>{"0@0.800000:8", "0@0.900000:9"});
    clock.advance(12h);  // a new day: its thresholds are armed again, before and after a restart
    {
      alerting_tracker t{options, clock, storage(db, mode), alert_log{&heard}};
      CHECK(t.try_consume(8));
    }
    {
      alerting_tracker t{options, clock, storage(db, mode), alert_log{&heard}};
      CHECK(t.try_consume(1));
    }
    CHECK(heard ==
          std::vector<std::string>{"0@0.800000:8", "0@0.900000:9", "0@0.800000:8", "0@0.900000:9"});
  }
}

TEST_CASE("two trackers sharing an sqlite quota fire each alert once between them") {
  temp_db db;
  const auto clock = clock_at(noon);
  const armor::quota_tracker_options options{.windows = {quota_window::per_hour(10)}};
  std::vector<std::string> heard_a;
  std::vector<std::string> heard_b;
  alerting_tracker a{options, clock, storage(db), alert_log{&heard_a}};
  alerting_tracker b{options, clock, storage(db), alert_log{&heard_b}};
  CHECK(a.try_consume(7));
  CHECK(b.try_consume(1));  // 8: b reaches 80 %
  CHECK(a.try_consume(1));  // 9: a reaches 90 %; 80 % is b's already
  CHECK(b.try_consume(1));  // 10: b, 100 %
  CHECK(heard_a == std::vector<std::string>{"0@0.900000:9"});
  CHECK(heard_b == std::vector<std::string>{"0@0.800000:8", "0@1.000000:10"});
  CHECK(a.stats().alerts + b.stats().alerts == 3);
}

TEST_CASE("a database written before alerts were kept opens, keeps its counts and gains the alert table") {
  temp_db db;
  {
    // The schema armor wrote before alert state was persisted.
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(db.path.c_str(), &raw) == SQLITE_OK);
    REQUIRE(sqlite3_exec(raw,
                         "PRAGMA journal_mode=WAL;"
                         "CREATE TABLE armor_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
                         "INSERT INTO armor_meta (name, value) VALUES ('quota_schema', '1');"
                         "CREATE TABLE armor_quota_usage ("
                         "  tracker TEXT NOT NULL, window TEXT NOT NULL, slice INTEGER NOT NULL,"
                         "  used INTEGER NOT NULL CHECK (used >= 0),"
                         "  PRIMARY KEY (tracker, window, slice)) WITHOUT ROWID;",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    // 7 units used on 2024-06-15 by the daily window of tracker 'test'.
    const std::string day = std::to_string(sys_days{2024y / June / 15}.time_since_epoch().count());
    const std::string row = "INSERT INTO armor_quota_usage VALUES ('test', 'fixed/86400000000000ns/+0min', " + day +
                            ", 7)";
    REQUIRE(sqlite3_exec(raw, row.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
  }
  const auto clock = clock_at(noon);
  const armor::quota_tracker_options options{.windows = {quota_window::per_day(10)}};
  std::vector<std::string> heard;
  alerting_tracker t{options, clock, storage(db), alert_log{&heard}};
  REQUIRE(sql_value(db.path, "SELECT count(*) FROM sqlite_master WHERE name = 'armor_quota_alerts'") == 1);
  CHECK(t.usage(0).used == 7);  // the old rows are read as before
  CHECK(t.try_consume(1));
  CHECK(heard == std::vector<std::string>{"0@0.800000:8"});
  CHECK(sql_value(db.path, "SELECT fired FROM armor_quota_alerts") == 1);
  CHECK(sql_value(db.path, "SELECT value FROM armor_meta WHERE name = 'quota_schema'") == 1);
}

TEST_CASE("the database is in WAL mode and keeps one row per fixed window") {
  temp_db db;
  const auto clock = clock_at(noon);
  sql_tracker t{{.windows = {quota_window::per_minute(1000), quota_window::per_day(100'000)}}, clock, storage(db)};
  for (int minute = 0; minute < 50; ++minute) {
    CHECK(t.try_consume(2));
    clock.advance(1min);
  }
  CHECK(sql_value(db.path, "SELECT count(*) FROM armor_quota_usage") == 2);  // older periods were deleted
  CHECK(sql_value(db.path, "SELECT sum(used) FROM armor_quota_usage") == 102);
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(db.path.c_str(), &raw) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &s, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, 0))) == "wal");
  sqlite3_finalize(s);
  sqlite3_close(raw);
}

TEST_CASE("two trackers on one file share their counts, as two processes would") {
  temp_db db;
  const auto clock = clock_at(noon);
  const armor::quota_tracker_options options{.windows = {quota_window::per_hour(5)}};
  sql_tracker a{options, clock, storage(db)};
  sql_tracker b{options, clock, storage(db)};
  sql_tracker other{options, clock, storage(db, armor::sqlite_mode::durable, "another")};
  CHECK(a.try_consume(3));
  CHECK(b.usage(0).used == 3);
  CHECK(b.try_consume(2));
  CHECK_FALSE(a.try_consume());
  CHECK(other.try_consume(5));  // another name, other counts
  auto r = b.reserve(0);        // nothing left for a zero estimate either
  CHECK_FALSE(r);
}

TEST_CASE("a changed limit keeps what was used; a changed window starts afresh") {
  temp_db db;
  const auto clock = clock_at(noon);
  {
    sql_tracker t{{.windows = {quota_window::per_day(10)}}, clock, storage(db)};
    CHECK(t.try_consume(7));
  }
  {
    sql_tracker t{{.windows = {quota_window::per_day(8)}}, clock, storage(db)};
    CHECK(t.usage(0).used == 7);
    CHECK_FALSE(t.try_consume(2));
  }
  sql_tracker shifted{{.windows = {quota_window::per_day(8)}, .utc_offset = 1h}, clock, storage(db)};
  CHECK(shifted.usage(0).used == 0);
}

TEST_CASE("reservations through sqlite commit, cancel and release like the memory backend") {
  temp_db db;
  const auto clock = clock_at(noon);
  sql_tracker t{{.windows = {quota_window::per_day(10'000), quota_window::rolling(20'000, 1h, 6)}}, clock, storage(db)};
  auto d = t.reserve(4000);
  REQUIRE(d);
  CHECK(d.permit().commit(1000) == armor::quota_tracker_status::granted);
  CHECK(t.usage(0).used == 1000);
  auto over = t.reserve(100).permit();
  CHECK(over.commit(600) == armor::quota_tracker_status::granted);
  CHECK(t.usage(0).used == 1600);
  CHECK(t.usage(1).used == 1600);
  { auto dropped = t.reserve(5000); }
  auto cancelled = t.reserve(5000).permit();
  cancelled.cancel();
  CHECK(t.usage(0).used == 1600);
  CHECK(t.charge(10'000) == armor::quota_tracker_status::granted);
  CHECK(t.usage(0).used == 11'600);
  CHECK(t.try_consume(0).status() == armor::quota_tracker_status::exhausted);
}

TEST_CASE("a pipeline over an sqlite-backed tracker") {
  temp_db db;
  const auto clock = clock_at(noon);
  sql_tracker t{{.windows = {quota_window::per_day(10'000)}}, clock, storage(db)};
  auto p = armor::pipeline{clock, std::ref(t)};
  (void)p.execute([](const armor::context& ctx) { ctx.report_cost(1234); }, {.cost = 4000});
  CHECK(t.usage(0).used == 1234);
  auto r = p.try_execute([] { return 1; }, {.cost = 9000});
  CHECK(r.code() == armor::errc::quota_exhausted);
  CHECK(r.retry_after() == 12h);
}

TEST_CASE("threads sharing an sqlite-backed tracker admit exactly its limit") {
  temp_db db;
  const auto clock = clock_at(noon);
  sql_tracker t{{.windows = {quota_window::per_day(300), quota_window::rolling(400, 1h, 10)}}, clock,
                storage(db, armor::sqlite_mode::batched)};
  std::atomic<long> admitted{0};
  std::vector<std::thread> pool;
  for (int i = 0; i < 4; ++i) {
    pool.emplace_back([&] {
      long mine = 0;
      while (t.try_consume(1)) ++mine;
      admitted.fetch_add(mine);
    });
  }
  for (auto& th : pool) th.join();
  CHECK(admitted.load() == 300);
  CHECK(t.usage(0).used == 300);
}

// ---------------------------------------------------------------- batched mode

TEST_CASE("batched mode commits on flush, on its own within flush_every, and on destruction") {
  temp_db db;
  const auto clock = clock_at(noon);
  const auto count = [&] { return sql_value(db.path, "SELECT coalesce(sum(used), 0) FROM armor_quota_usage"); };
  {
    sql_tracker t{{.windows = {quota_window::per_day(100)}}, clock,
                  armor::sqlite_quota_storage{{.path = db.path, .tracker = "b", .mode = armor::sqlite_mode::batched,
                                               .flush_every = 1h, .create_if_missing = true}}};
    CHECK(t.try_consume(5));
    CHECK(count() == 0);  // not committed yet: an hour to go
    CHECK(t.usage(0).used == 5);
    CHECK(t.storage().flush());
    CHECK(count() == 5);
    CHECK(t.try_consume(2));
  }
  CHECK(count() == 7);  // committed by the destructor
  sql_tracker t{{.windows = {quota_window::per_day(100)}}, clock,
                armor::sqlite_quota_storage{{.path = db.path, .tracker = "b", .mode = armor::sqlite_mode::batched,
                                             .flush_every = 20ms}}};
  CHECK(t.try_consume(3));
  // The flusher commits within flush_every and a tick; poll for it
  // (generously: a loaded machine may delay the thread).
  const auto give_up = steady_clock::now() + 10s;
  while (count() != 10 && steady_clock::now() < give_up) std::this_thread::sleep_for(5ms);
  CHECK(count() == 10);
}

TEST_CASE("batched trackers see each other's counts one sync late") {
  temp_db db;
  const auto clock = clock_at(noon);
  const armor::quota_tracker_options options{.windows = {quota_window::per_day(5), quota_window::rolling(50, 1h, 6)}};
  const auto batched = [&] {
    return armor::sqlite_quota_storage{{.path = db.path, .tracker = "shared", .mode = armor::sqlite_mode::batched,
                                        .flush_every = 1h, .create_if_missing = true}};
  };
  sql_tracker a{options, clock, batched()};
  sql_tracker b{options, clock, batched()};
  CHECK(a.try_consume(3));
  CHECK(b.usage(0).used == 0);
  CHECK(a.storage().flush());
  CHECK(b.usage(0).used == 0);  // b has not synced since
  CHECK(b.storage().flush());
  CHECK(b.usage(0).used == 3);
  CHECK(b.usage(1).used == 3);
  CHECK(b.try_consume(2));
  CHECK_FALSE(b.try_consume(1));
  CHECK(b.storage().flush());
  CHECK(a.storage().flush());
  CHECK_FALSE(a.try_consume(1));
  CHECK(a.usage(0).used == 5);
  // The documented bound: between syncs each sees only its own changes.
  clock.advance(12h);
  CHECK(a.try_consume(5));
  CHECK(b.try_consume(5));
  CHECK(a.storage().flush());
  CHECK(b.storage().flush());
  CHECK(b.usage(0).used == 10);
  CHECK(b.usage(1).used == 10);  // the noon units have left the rolling hour
  // Releases reach the file too.
  clock.advance(24h);
  auto r = a.reserve(4).permit();
  CHECK(a.storage().flush());
  CHECK(b.storage().flush());
  CHECK(b.usage(0).used == 4);
  r.cancel();
  CHECK(a.storage().flush());
  CHECK(b.storage().flush());
  CHECK(b.usage(0).used == 0);
}

// ---------------------------------------------------------------- errors

TEST_CASE("sqlite options are checked at construction") {
  const auto refusal = [](armor::sqlite_quota_options o) {
    return error_of([&] { armor::sqlite_quota_storage s{std::move(o)}; });
  };
  CHECK(contains(refusal({}).second, "path must name the database file"));
  CHECK(refusal({}).first == armor::errc::invalid_argument);
  CHECK(contains(refusal({.path = "x.db", .tracker = ""}).second, "tracker must not be empty"));
  CHECK(contains(refusal({.path = "x.db", .flush_every = 0ms}).second, "flush_every must be positive"));
  CHECK(contains(refusal({.path = "x.db", .busy_timeout = -1ms}).second, "busy_timeout must not be negative"));
}

TEST_CASE("a missing database file is an error unless create_if_missing") {
  temp_db db;
  const auto clock = clock_at(noon);
  const auto [code, what] = error_of([&] {
    sql_tracker t{{.windows = {quota_window::per_day(5)}}, clock, armor::sqlite_quota_storage{{.path = db.path}}};
  });
  CHECK(code == armor::errc::storage_unavailable);
  CHECK(contains(what, db.path));
  CHECK(contains(what, "no such file (set create_if_missing"));
  CHECK_FALSE(std::filesystem::exists(db.path));
  const auto [code2, what2] = error_of([&] {
    sql_tracker t{{.windows = {quota_window::per_day(5)}}, clock,
                  armor::sqlite_quota_storage{{.path = "/nonexistent-dir/q.db", .create_if_missing = true}}};
  });
  CHECK(code2 == armor::errc::storage_unavailable);
  CHECK(contains(what2, "cannot open"));
}

TEST_CASE("a file that is not a quota database is refused and left untouched") {
  temp_db db;
  const auto clock = clock_at(noon);
  const std::string garbage(8192, 'x');
  {
    std::ofstream f(db.path, std::ios::binary);
    f << garbage;
  }
  const auto [code, what] = error_of([&] {
    sql_tracker t{{.windows = {quota_window::per_day(5)}}, clock, storage(db)};
  });
  CHECK(code == armor::errc::storage_unavailable);
  CHECK(contains(what, "not a valid SQLite database"));
  std::ifstream f(db.path, std::ios::binary);
  const std::string after((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CHECK(after == garbage);

  // A real database whose quota schema is another version.
  temp_db other;
  {
    sql_tracker t{{.windows = {quota_window::per_day(5)}}, clock, storage(other)};
  }
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(other.path.c_str(), &raw) == SQLITE_OK);
  REQUIRE(sqlite3_exec(raw, "UPDATE armor_meta SET value = '7'", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(raw);
  const auto [code2, what2] = error_of([&] {
    sql_tracker t{{.windows = {quota_window::per_day(5)}}, clock, storage(other)};
  });
  CHECK(code2 == armor::errc::storage_unavailable);
  CHECK(contains(what2, "schema version is '7'"));
}

TEST_CASE("a locked database is an error at construction and a refusal at run time, never a crash") {
  temp_db db;
  const auto clock = clock_at(noon);
  const armor::quota_tracker_options options{.windows = {quota_window::per_day(5)}};
  const auto quick = [&] {
    return armor::sqlite_quota_storage{{.path = db.path, .tracker = "t", .busy_timeout = 20ms,
                                        .create_if_missing = true}};
  };
  sql_tracker t{options, clock, quick()};
  CHECK(t.try_consume(1));

  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open(db.path.c_str(), &other) == SQLITE_OK);
  REQUIRE(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) == SQLITE_OK);

  const auto [code, what] = error_of([&] { sql_tracker late{options, clock, quick()}; });
  CHECK(code == armor::errc::storage_unavailable);
  CHECK(contains(what, "locked by another connection for more than busy_timeout = 20 ms"));

  const armor::quota_tracker_decision<> d = t.try_consume(1);
  CHECK(d.status() == armor::quota_tracker_status::unavailable);
  CHECK(d.code() == armor::errc::storage_unavailable);
  auto p = armor::pipeline{clock, std::ref(t)};
  auto r = p.try_execute([] { return 1; });
  CHECK(r.code() == armor::errc::storage_unavailable);
  CHECK(t.usage(0).used == 1);  // WAL readers are not blocked

  REQUIRE(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(other);
  CHECK(t.try_consume(1));
  CHECK(t.usage(0).used == 2);
}

// ---------------------------------------------------------------- processes

TEST_CASE("processes sharing a database admit exactly its limit between them") {
  temp_db db;
  {
    sql_tracker init{{.windows = {quota_window::per_day(120)}}, clock_at(noon), storage(db)};
  }
  constexpr int children = 3;
  std::vector<std::pair<pid_t, int>> kids;
  for (int c = 0; c < children; ++c) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      int status = 0;
      try {
        sql_tracker t{{.windows = {quota_window::per_day(120)}}, clock_at(noon), storage(db)};
        while (t.try_consume(1)) {
          if (::write(fds[1], "x", 1) != 1) status = 2;
        }
      } catch (...) {
        status = 3;
      }
      ::_exit(status);
    }
    ::close(fds[1]);
    kids.emplace_back(pid, fds[0]);
  }
  std::size_t reported = 0;
  for (auto [pid, fd] : kids) {
    reported += read_all(fd).size();
    ::close(fd);
    int status = 0;
    ::waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  CHECK(reported == 120);
  sql_tracker t{{.windows = {quota_window::per_day(120)}}, clock_at(noon), storage(db)};
  CHECK(t.usage(0).used == 120);
}

namespace {

const armor::quota_tracker_options crash_options{
    .windows = {quota_window::per_day(armor::quota_max_limit), quota_window::rolling(armor::quota_max_limit, 1h, 60)}};

/// Forks a child that consumes one unit at a time through `mode` until it
/// is killed, writing an 'x' to a pipe after each unit admitted (and, in
/// batched mode, an 'F' after each flush() that committed). Once it has
/// admitted a unit, SIGKILLs it after a random 0..300 ms. Returns what it
/// wrote before it died.
std::string run_and_kill(const temp_db& db, armor::sqlite_mode mode, std::mt19937& rng) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    try {
      sql_tracker t{crash_options, clock_at(noon), storage(db, mode, "crash")};
      for (long n = 1;; ++n) {
        if (t.try_consume(1) && ::write(fds[1], "x", 1) != 1) ::_exit(2);
        if (mode == armor::sqlite_mode::batched && n % 50 == 0 && t.storage().flush() &&
            ::write(fds[1], "F", 1) != 1) {
          ::_exit(2);
        }
      }
    } catch (...) {
      ::_exit(3);
    }
  }
  ::close(fds[1]);
  std::string got;
  char c = 0;
  // The first unit (opening the database may take a while on a busy machine).
  pollfd p{fds[0], POLLIN, 0};
  if (::poll(&p, 1, 30'000) == 1 && ::read(fds[0], &c, 1) == 1) got.push_back(c);
  const auto kill_at = steady_clock::now() + milliseconds{rng() % 300};
  got += read_until(fds[0], kill_at);
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  got += read_all(fds[0]);  // what it wrote before it died
  ::close(fds[0]);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  return got;
}

std::int64_t count_of(const std::string& s, char c) {
  return static_cast<std::int64_t>(std::count(s.begin(), s.end(), c));
}

}  // namespace

TEST_CASE("crash test: a child killed by SIGKILL in durable mode forgets nothing it admitted") {
  std::mt19937 rng{std::random_device{}()};
  for (int round = 0; round < 3; ++round) {
    temp_db db;
    const std::string got = run_and_kill(db, armor::sqlite_mode::durable, rng);
    const std::int64_t reported = count_of(got, 'x');
    INFO("round " << round << ": the child reported " << reported << " units");
    REQUIRE(reported >= 1);
    sql_tracker t{crash_options, clock_at(noon), storage(db, armor::sqlite_mode::durable, "crash")};
    // Every unit the child was told it could spend is stored; at most one
    // more (admitted and committed, killed before it could say so).
    for (std::size_t w = 0; w < 2; ++w) {
      CHECK(t.usage(w).used >= reported);
      CHECK(t.usage(w).used <= reported + 1);
    }
  }
}

TEST_CASE("crash test: in batched mode a SIGKILL loses nothing committed by a flush") {
  std::mt19937 rng{std::random_device{}()};
  for (int round = 0; round < 3; ++round) {
    temp_db db;
    const std::string got = run_and_kill(db, armor::sqlite_mode::batched, rng);
    const auto last_flush = got.rfind('F');
    const std::int64_t flushed = last_flush == std::string::npos ? 0 : count_of(got.substr(0, last_flush), 'x');
    const std::int64_t reported = count_of(got, 'x');
    INFO("round " << round << ": " << reported << " units reported, " << flushed << " before the last flush");
    sql_tracker t{crash_options, clock_at(noon), storage(db, armor::sqlite_mode::batched, "crash")};
    CHECK(t.usage(0).used >= flushed);
    CHECK(t.usage(0).used <= reported + 1);
  }
}

TEST_CASE("sqlite_mode has a to_string naming its enumerator") {
  static_assert(armor::to_string(armor::sqlite_mode::durable) == "durable");
  CHECK(armor::to_string(armor::sqlite_mode::batched) == "batched");
  CHECK(armor::to_string(static_cast<armor::sqlite_mode>(7)) == "unknown");
}

// ---------------------------------------------------------------- from a URL

TEST_CASE("sqlite quota options from a backend URL: every parameter, and a tracker that persists through it") {
  temp_db db;
  const std::string url = "sqlite://" + db.path + "?tracker=from-url&mode=batched&flush_every=250ms" +
                          "&busy_timeout=2s&create=true";
  const armor::sqlite_quota_options o = armor::sqlite_quota_options_from_url(url);
  CHECK(o.path == db.path);
  CHECK(o.tracker == "from-url");
  CHECK(o.mode == armor::sqlite_mode::batched);
  CHECK(o.flush_every == 250ms);
  CHECK(o.busy_timeout == 2s);
  CHECK(o.create_if_missing);
  // Defaults where the URL says nothing.
  const armor::sqlite_quota_options d = armor::sqlite_quota_options_from_url("sqlite:quota.db");
  CHECK(d.path == "quota.db");
  CHECK(d.tracker == "default");
  CHECK(d.mode == armor::sqlite_mode::durable);
  CHECK_FALSE(d.create_if_missing);

  const auto clock = clock_at(noon);
  const armor::quota_tracker_options options{.windows = {quota_window::per_day(5)}};
  const std::string durable = "sqlite://" + db.path + "?tracker=t&create=true";
  {
    sql_tracker t{options, clock, armor::sqlite_quota_storage{armor::sqlite_quota_options_from_url(durable)}};
    CHECK(t.try_consume(4));
  }
  sql_tracker t{options, clock, armor::sqlite_quota_storage{armor::sqlite_quota_options_from_url(durable)}};
  CHECK(t.usage(0).used == 4);
  CHECK_FALSE(t.try_consume(2));
}

TEST_CASE("sqlite quota options from a backend URL: bad parameters are refused by name") {
  const auto message = [](const std::string& url) {
    return error_of([&] { (void)armor::sqlite_quota_options_from_url(url); }).second;
  };
  CHECK_THAT(message("sqlite:q.db?mode=fast"), Catch::Contains("mode=\"fast\": durable or batched"));
  CHECK_THAT(message("sqlite:q.db?flush_every=100"), Catch::Contains("flush_every=\"100\": a duration with a unit"));
  CHECK_THAT(message("sqlite:q.db?busy_timeout=-1s"), Catch::Contains("busy_timeout"));
  CHECK_THAT(message("sqlite:q.db?create=maybe"), Catch::Contains("create=\"maybe\": true or false"));
  CHECK_THAT(message("sqlite:q.db?trackr=x"),
             Catch::Contains("unknown query parameter \"trackr\"") && Catch::Contains("known: tracker, mode"));
  CHECK_THAT(message("redis://h"), Catch::Contains("names a redis backend, not sqlite:"));
  CHECK_THAT(message("sqlite:"), Catch::Contains("path is missing"));
}

TEST_CASE("sqlite quota: reconfigure() changes the limits from the next consumption; the file's counts stay",
          "[sqlite][reconfigure]") {
  for (const armor::sqlite_mode mode : {armor::sqlite_mode::durable, armor::sqlite_mode::batched}) {
    CAPTURE(armor::to_string(mode));
    const temp_db db;
    const auto per_day = [](std::int64_t limit) {
      return armor::quota_tracker_options{.windows = {quota_window::per_day(limit), quota_window::per_minute(100)}};
    };
    {
      sql_tracker t{per_day(3), clock_at(noon), storage(db, mode)};
      CHECK(t.try_consume(2));
      t.reconfigure(per_day(5));
      CHECK(t.try_consume(3));  // 5 of 5: the old limit would have refused
      auto d = t.try_consume(1);
      CHECK(d.status() == armor::quota_tracker_status::exhausted);
      CHECK(d.used() == 5);
      CHECK(d.limit() == 5);
      // Lowered below the use: refused until the day turns, used above limit.
      t.reconfigure(per_day(4));
      CHECK(t.try_consume(0).status() == armor::quota_tracker_status::exhausted);
      CHECK(t.usage(0).used == 5);
      CHECK(t.usage(0).limit == 4);
      // A bad value is refused by name; the old limits stay.
      const auto [code, what] = error_of([&] { t.reconfigure(per_day(0)); });
      CHECK(code == armor::errc::invalid_argument);
      CHECK(contains(what, "windows[0].limit"));
      CHECK(t.options().windows[0].limit == 4);
      CHECK(t.try_consume(1).status() == armor::quota_tracker_status::exhausted);
      // A charge counts whatever the limits.
      CHECK(t.charge(1) == armor::quota_tracker_status::granted);
      if (mode == armor::sqlite_mode::batched) REQUIRE(t.storage().flush());
    }
    // The counts are in the file, under keys without the limit: a tracker
    // built with other limits finds them.
    sql_tracker again{per_day(8), clock_at(noon), storage(db, mode)};
    CHECK(again.usage(0).used == 6);
    CHECK(again.try_consume(2));
    CHECK(!again.try_consume(1));
  }
}
