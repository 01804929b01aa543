// armor/storage/sqlite.hpp: armor::sqlite_quota_storage, quota counts in an
// SQLite database: durable on one host, surviving restarts, shared by the
// processes of that host. Link armor::sqlite (CMake) or -lsqlite3; only
// this header includes <sqlite3.h>.
//
//     armor::quota_tracker gemini{
//         {.windows = {armor::quota_window::per_day(50)}},
//         armor::system_clock{},
//         armor::sqlite_quota_storage{{.path = "/var/lib/app/quota.db", .tracker = "gemini",
//                                      .create_if_missing = true}},
//     };
//
// The calling code is that of the memory backend; only this argument
// changes. Which alert thresholds fired is kept beside the counts, so a
// restarted tracker (or another process) does not fire them again in the
// same period (armor::alert_quota_storage). Modes (durable, batched), their loss and over-admission bounds,
// failures, the schema and costs: docs/quota_tracker.md,
// "armor::sqlite_quota_storage".
//
// Thread-safety: every member may be called concurrently (one connection,
// behind a mutex); moving is not thread-safe. Construction of the tracker
// throws armor::error(errc::storage_unavailable) naming the file and the
// cause when the database cannot be used.
#pragma once

#include <armor/storage/any.hpp>
#include <armor/storage/backend_url.hpp>
#include <armor/storage/quota_storage.hpp>
#include <armor/detail/quota_word.hpp>
#include <armor/error.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace armor {

/// When an sqlite_quota_storage commits (docs/quota_tracker.md, "Modes").
enum class sqlite_mode : std::uint8_t {
  durable,  ///< every operation committed before it returns
  batched,  ///< decided in memory; written (and other processes' counts read) every flush_every
};

/// The name of an sqlite_mode, as written in the code (`batched`).
[[nodiscard]] constexpr std::string_view to_string(sqlite_mode m) noexcept {
  switch (m) {
    case sqlite_mode::durable: return "durable";
    case sqlite_mode::batched: return "batched";
  }
  return "unknown";
}

/// The options of armor::sqlite_quota_storage. An aggregate:
/// `{.path = "quota.db", .tracker = "openai", .mode = armor::sqlite_mode::batched}`.
struct sqlite_quota_options {
  /// The database file. Required.
  std::string path{};
  /// The name this tracker's counts are kept under; several trackers (and
  /// processes) share one file, and those with the same name share counts.
  std::string tracker = "default";
  sqlite_mode mode = sqlite_mode::durable;
  /// batched: how often changes are written and counts read back; > 0.
  std::chrono::milliseconds flush_every{100};
  /// How long to wait for another process's lock before giving up (an
  /// error at construction, storage_unavailable at run time); >= 0.
  std::chrono::milliseconds busy_timeout{5000};
  /// Create the file (and its directory must exist) when it is missing.
  /// Off by default: a missing file is an error, not a silent reset to zero.
  bool create_if_missing = false;
};

/// The options a `sqlite:` backend URL names (armor/storage/backend_url.hpp,
/// docs/backend_urls.md), for a path read from configuration:
/// `sqlite:///var/lib/app/quota.db?tracker=openai&mode=batched&create=true`
/// (also `flush_every=100ms`, `busy_timeout=5s`). Throws
/// armor::error(errc::invalid_argument) for another scheme, a parameter it
/// does not know or a bad value; the storage checks the options it is given.
[[nodiscard]] inline sqlite_quota_options sqlite_quota_options_from_url(std::string_view url) {
  constexpr std::string_view who = "armor::sqlite_quota_options_from_url";
  const backend_url u = parse_backend_url(url);
  if (u.scheme != backend_scheme::sqlite) {
    detail::invalid_config(std::string(who) + ": \"" + std::string(url) + "\" names a " +
                           std::string(to_string(u.scheme)) + " backend, not sqlite:");
  }
  sqlite_quota_options o;
  o.path = u.path;
  detail::backend_url_reader r(u, who);
  if (const auto v = r.text("tracker")) o.tracker = std::string(*v);
  if (const auto v = r.text("mode")) {
    if (*v == "durable") {
      o.mode = sqlite_mode::durable;
    } else if (*v == "batched") {
      o.mode = sqlite_mode::batched;
    } else {
      r.fail("mode", *v, "durable or batched");
    }
  }
  if (const auto v = r.millis("flush_every")) o.flush_every = *v;
  if (const auto v = r.millis("busy_timeout")) o.busy_timeout = *v;
  if (const auto v = r.boolean("create")) o.create_if_missing = *v;
  r.finish();
  return o;
}

namespace detail {

/// The state of one sqlite_quota_storage, behind a pointer so that the
/// storage moves cheaply and the flusher thread has a stable address.
class sqlite_quota_state {
 public:
  explicit sqlite_quota_state(sqlite_quota_options o) : options_(std::move(o)) {}
  [[nodiscard]] const sqlite_quota_options& options() const noexcept { return options_; }
  sqlite_quota_state(const sqlite_quota_state&) = delete;
  sqlite_quota_state& operator=(const sqlite_quota_state&) = delete;

  ~sqlite_quota_state() {
    if (flusher_.joinable()) {
      {
        const std::lock_guard<std::mutex> lock(m_);
        stop_ = true;
      }
      cv_.notify_all();
      flusher_.join();
    }
    if (db_ != nullptr && options_.mode == sqlite_mode::batched) (void)sync();
    for (sqlite3_stmt* s : {latest_, add_, sub_, prune_, alert_get_, alert_put_, alert_rearm_}) sqlite3_finalize(s);
    sqlite3_close_v2(db_);
  }

  void bind(std::span<const quota_window_layout> layouts) {
    const std::lock_guard<std::mutex> lock(m_);
    if (db_ != nullptr) fail("bind() called twice");
    for (const quota_window_layout& l : layouts) {
      windows_.push_back({l.buckets, l.key});
      limits_[windows_.size() - 1] = l.limit;
    }
    open();
    if (options_.mode == sqlite_mode::batched) {
      caches_.resize(windows_.size());
      synced_ = std::chrono::steady_clock::now();
      flusher_ = std::thread([this] { flush_loop(); });
    }
  }

  /// The limits bound, one per window.
  [[nodiscard]] const quota_values& limits() const noexcept { return limits_; }

  // `limits`: one per window, or nullptr to count whatever the limits (a charge).
  quota_consumption try_consume(const quota_stamp& at, std::int64_t n, const quota_values* limits) noexcept {
    try {
      const std::lock_guard<std::mutex> lock(m_);
      return options_.mode == sqlite_mode::durable ? consume_durable(at, n, limits) : consume_batched(at, n, limits);
    } catch (...) {
      return unavailable();
    }
  }

  void release(const quota_stamp& at, std::int64_t n) noexcept {
    if (n <= 0) return;
    try {
      const std::lock_guard<std::mutex> lock(m_);
      if (options_.mode == sqlite_mode::batched) {
        release_batched(at, n);
        return;
      }
      if (!begin()) return;
      for (std::size_t i = 0; i < windows_.size(); ++i) {
        if (!step(sub_, i, at[i], n)) {
          (void)roll_back();
          return;
        }
      }
      (void)commit();
    } catch (...) {
      // A release that cannot be written leaves the units counted: fewer
      // admissions, never more.
    }
  }

  std::int64_t read(std::size_t w, std::int64_t i, std::span<std::int64_t> out) {
    const std::lock_guard<std::mutex> lock(m_);
    if (options_.mode == sqlite_mode::batched) {
      if (!cached(w, i)) cannot_read();
      const cache& c = caches_[w];
      const std::size_t n = std::min(out.size(), c.base.size());
      for (std::size_t k = 0; k < n; ++k) out[k] = std::max<std::int64_t>(c.base[k] + c.pending[k], 0);
      return c.slice;
    }
    view v;
    if (!load(w, i, v, &out)) cannot_read();
    return v.slice;
  }

  /// Records that `fired` thresholds of window w fired in `period`; returns
  /// how many were recorded before (alert_quota_storage). Its own
  /// transaction in both modes: alerts are rare, and must not wait a batch.
  std::size_t claim_alerts(std::size_t w, std::int64_t period, std::size_t fired) noexcept {
    try {
      const std::lock_guard<std::mutex> lock(m_);
      if (!begin()) return 0;
      sqlite3_stmt* s = alert_get_;
      sqlite3_reset(s);
      bind_window(s, w);
      const int rc = sqlite3_step(s);
      const bool any = rc == SQLITE_ROW;
      const std::int64_t stored_period = any ? sqlite3_column_int64(s, 0) : 0;
      const std::int64_t stored_fired = any ? sqlite3_column_int64(s, 1) : 0;
      sqlite3_reset(s);
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        (void)roll_back();
        return 0;
      }
      if (any && stored_period > period) {
        (void)commit();
        return fired;  // a later period is recorded: this one is over
      }
      const std::size_t before =
          any && stored_period == period ? static_cast<std::size_t>(std::max<std::int64_t>(stored_fired, 0)) : 0;
      if (fired > before && !alert_step(alert_put_, w, period, fired)) {
        (void)roll_back();
        return 0;
      }
      return commit() ? before : 0;
    } catch (...) {
      return 0;
    }
  }

  /// Lowers the record of `period` to `fired` thresholds if it holds more.
  void rearm_alerts(std::size_t w, std::int64_t period, std::size_t fired) noexcept {
    try {
      const std::lock_guard<std::mutex> lock(m_);
      (void)alert_step(alert_rearm_, w, period, fired);  // one statement: its own transaction
    } catch (...) {
      // Not re-armed: the threshold stays fired for this period (an alert
      // missed rather than a count wrong).
    }
  }

  /// batched: writes this process's changes and reads everyone's counts
  /// back, now. Returns false if that failed (the changes stay pending).
  bool flush() {
    const std::lock_guard<std::mutex> lock(m_);
    return options_.mode == sqlite_mode::durable || sync();
  }

 private:
  struct window {
    std::uint32_t buckets;
    std::string key;
  };
  struct view {
    std::int64_t slice = 0;   // the slice counted in (never before the latest one stored)
    std::int64_t latest = 0;  // the latest slice stored (or slice - 1 when none)
    std::int64_t used = 0;    // units counted as of `slice`
  };
  // batched: this process's view of one window. base[k] and pending[k]
  // are for slice `slice - buckets + k`: the counts read at the last sync,
  // and this process's changes since (negative: releases).
  struct cache {
    bool loaded = false;
    std::int64_t slice = 0;
    std::vector<std::int64_t> base;
    std::vector<std::int64_t> pending;
  };

  [[noreturn]] void cannot_read() const {
    throw error(errc::storage_unavailable,
                "armor::sqlite_quota_storage: cannot read '" + options_.path + "': " + sqlite3_errmsg(db_));
  }

  quota_consumption consume_durable(const quota_stamp& at, std::int64_t n, const quota_values* limits) noexcept {
    if (!begin()) return unavailable();
    const std::int64_t need = n > 0 ? n : 1;
    std::array<view, quota_max_windows> seen{};
    for (std::size_t i = 0; i < windows_.size(); ++i) {
      if (!load(i, at[i], seen[i], nullptr)) return roll_back();
      if (limits != nullptr && seen[i].used + need > (*limits)[i]) {
        (void)commit();  // nothing was written
        return refused(i, seen[i].slice, seen[i].used);
      }
    }
    const std::int64_t units = std::min(n, quota_used_cap);
    quota_consumption r;
    for (std::size_t i = 0; i < windows_.size(); ++i) {
      if (units > 0 && !step(add_, i, seen[i].slice, units)) return roll_back();
      // A new period (or bucket): drop what no longer counts.
      if (seen[i].slice > seen[i].latest && !step(prune_, i, seen[i].slice - windows_[i].buckets, 0)) {
        return roll_back();
      }
      r.at[i] = seen[i].slice;
      r.used[i] = quota_add(seen[i].used, units);
    }
    if (!commit()) return unavailable();
    return r;
  }

  quota_consumption consume_batched(const quota_stamp& at, std::int64_t n, const quota_values* limits) {
    if (std::chrono::steady_clock::now() - synced_ >= options_.flush_every) (void)sync();
    const std::int64_t need = n > 0 ? n : 1;
    std::array<std::int64_t, quota_max_windows> used{};
    for (std::size_t i = 0; i < windows_.size(); ++i) {
      if (!cached(i, at[i])) return unavailable();
      used[i] = cached_used(caches_[i]);
      if (limits != nullptr && used[i] + need > (*limits)[i]) return refused(i, caches_[i].slice, used[i]);
    }
    const std::int64_t units = std::min(n, quota_used_cap);
    quota_consumption r;
    for (std::size_t i = 0; i < windows_.size(); ++i) {
      cache& c = caches_[i];
      c.pending.back() = std::min(c.pending.back() + units, quota_used_cap);  // both at most the cap
      r.at[i] = c.slice;
      r.used[i] = quota_add(used[i], units);
    }
    return r;
  }

  void release_batched(const quota_stamp& at, std::int64_t n) {
    for (std::size_t i = 0; i < windows_.size(); ++i) {
      cache& c = caches_[i];
      const std::int64_t first = c.slice - windows_[i].buckets;
      if (!c.loaded || at[i] < first || at[i] > c.slice) continue;  // no longer counted
      const auto k = static_cast<std::size_t>(at[i] - first);
      // Never below zero in the view: what was read plus what was added.
      c.pending[k] -= std::min(n, std::max<std::int64_t>(c.base[k] + c.pending[k], 0));
    }
  }

  // Makes window w's view current as of slice i (loading it on first use).
  bool cached(std::size_t w, std::int64_t i) {
    cache& c = caches_[w];
    const std::size_t size = std::size_t{windows_[w].buckets} + 1;
    if (!c.loaded) {
      c.base.assign(size, 0);
      c.pending.assign(size, 0);
      std::span<std::int64_t> out(c.base);
      view v;
      if (!load(w, i, v, &out)) return false;
      c.slice = v.slice;
      c.loaded = true;
      return true;
    }
    if (i > c.slice) {  // the window moves on: older slices leave the view
      const std::int64_t shift = i - c.slice;
      for (std::size_t k = 0; k < size; ++k) {
        const bool kept = static_cast<std::int64_t>(k) + shift < static_cast<std::int64_t>(size);
        c.base[k] = kept ? c.base[k + static_cast<std::size_t>(shift)] : 0;
        c.pending[k] = kept ? c.pending[k + static_cast<std::size_t>(shift)] : 0;
      }
      c.slice = i;
    }
    return true;
  }

  static std::int64_t cached_used(const cache& c) noexcept {
    std::int64_t used = 0;
    for (std::size_t k = 0; k < c.base.size(); ++k) {
      used = quota_add(used, std::max<std::int64_t>(c.base[k] + c.pending[k], 0));
    }
    return used;
  }

  // batched: one transaction that writes every pending change and reads
  // every window's counts back (other processes' included).
  bool sync() noexcept {
    try {
      return sync_now();
    } catch (...) {  // out of memory for the read-back buffers
      if (in_tx_) (void)roll_back();
      return false;
    }
  }

  bool sync_now() {
    synced_ = std::chrono::steady_clock::now();
    if (std::none_of(caches_.begin(), caches_.end(), [](const cache& c) { return c.loaded; })) return true;
    if (!begin()) return false;
    for (std::size_t i = 0; i < windows_.size(); ++i) {
      cache& c = caches_[i];
      if (!c.loaded) continue;
      const std::int64_t first = c.slice - windows_[i].buckets;
      for (std::size_t k = 0; k < c.pending.size(); ++k) {
        const std::int64_t d = c.pending[k];
        const std::int64_t slice = first + static_cast<std::int64_t>(k);
        if ((d > 0 && !step(add_, i, slice, d)) || (d < 0 && !step(sub_, i, slice, -d))) {
          (void)roll_back();
          return false;
        }
      }
      if (!step(prune_, i, first, 0)) {
        (void)roll_back();
        return false;
      }
    }
    // Read back before committing, so that the view matches what is stored.
    std::vector<std::vector<std::int64_t>> fresh(windows_.size());
    std::vector<std::int64_t> slices(windows_.size(), 0);
    for (std::size_t i = 0; i < windows_.size(); ++i) {
      const cache& c = caches_[i];
      if (!c.loaded) continue;
      fresh[i].assign(c.base.size(), 0);
      std::span<std::int64_t> out(fresh[i]);
      view v;
      if (!load(i, c.slice, v, &out)) {
        (void)roll_back();
        return false;
      }
      slices[i] = v.slice;
    }
    if (!commit()) return false;
    for (std::size_t i = 0; i < windows_.size(); ++i) {
      cache& c = caches_[i];
      if (!c.loaded) continue;
      c.base = std::move(fresh[i]);
      std::fill(c.pending.begin(), c.pending.end(), 0);
      c.slice = slices[i];
    }
    return true;
  }

  static quota_consumption refused(std::size_t w, std::int64_t slice, std::int64_t used) noexcept {
    quota_consumption r;
    r.status = quota_storage_status::refused;
    r.window = w;
    r.at[w] = slice;
    r.used[w] = used;
    return r;
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw error(errc::storage_unavailable, "armor::sqlite_quota_storage: '" + options_.path + "': " + what);
  }

  [[noreturn]] void fail_sqlite(const std::string& doing) const {
    const int code = db_ != nullptr ? sqlite3_extended_errcode(db_) : SQLITE_CANTOPEN;
    std::string why = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
    if ((code & 0xff) == SQLITE_BUSY) {
      why += " (locked by another connection for more than busy_timeout = " +
             std::to_string(options_.busy_timeout.count()) + " ms)";
    } else if ((code & 0xff) == SQLITE_NOTADB || (code & 0xff) == SQLITE_CORRUPT) {
      why += " (the file is not a valid SQLite database; it is left untouched)";
    }
    fail(doing + ": " + why);
  }

  bool exec(const char* sql) noexcept { return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) == SQLITE_OK; }

  void exec_or_fail(const std::string& sql, const std::string& doing) {
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) fail_sqlite(doing);
  }

  // The first column of the first row of `sql`, as text.
  std::string query_text(const char* sql, const std::string& doing) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) fail_sqlite(doing);
    std::string out;
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(s, 0);
      if (t != nullptr) out = reinterpret_cast<const char*>(t);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) fail_sqlite(doing);
    return out;
  }

  sqlite3_stmt* prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK) {
      sqlite3_finalize(s);
      fail_sqlite("the database has an unexpected schema (preparing \"" + std::string(sql) + "\")");
    }
    return s;
  }

  void open() {
    if (!options_.create_if_missing && !std::filesystem::exists(options_.path)) {
      fail("no such file (set create_if_missing to create a new, empty quota database)");
    }
    const int flags = SQLITE_OPEN_READWRITE | (options_.create_if_missing ? SQLITE_OPEN_CREATE : 0) |
                      SQLITE_OPEN_NOMUTEX;  // one connection, behind m_
    if (sqlite3_open_v2(options_.path.c_str(), &db_, flags, nullptr) != SQLITE_OK) fail_sqlite("cannot open");
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, static_cast<int>(std::min<std::int64_t>(options_.busy_timeout.count(), 1 << 30)));
    // Reading the header is the first touch of the file: a file that is not
    // a database fails here, before anything is written to it.
    if (query_text("PRAGMA quick_check", "checking the database") != "ok") {
      fail("the database failed SQLite's quick_check; it is left untouched");
    }
    if (query_text("PRAGMA journal_mode=WAL", "switching to WAL mode") != "wal") {
      fail("cannot use WAL mode (is the file on a network file system, or read-only?)");
    }
    exec_or_fail(options_.mode == sqlite_mode::durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                 "setting synchronous");
    exec_or_fail("BEGIN IMMEDIATE", "locking the database to create its tables");
    in_tx_ = true;
    exec_or_fail(
        "CREATE TABLE IF NOT EXISTS armor_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
        "INSERT OR IGNORE INTO armor_meta (name, value) VALUES ('quota_schema', '1');"
        "CREATE TABLE IF NOT EXISTS armor_quota_usage ("
        "  tracker TEXT NOT NULL, window TEXT NOT NULL, slice INTEGER NOT NULL,"
        "  used INTEGER NOT NULL CHECK (used >= 0),"
        "  PRIMARY KEY (tracker, window, slice)) WITHOUT ROWID;"
        // Added after the first release: a file written before gains it here.
        // The schema stays version 1, since armor without alert state reads
        // such a file unchanged (it never looks at this table).
        "CREATE TABLE IF NOT EXISTS armor_quota_alerts ("
        "  tracker TEXT NOT NULL, window TEXT NOT NULL, period INTEGER NOT NULL,"
        "  fired INTEGER NOT NULL CHECK (fired >= 0),"
        "  PRIMARY KEY (tracker, window)) WITHOUT ROWID;",
        "creating the tables");
    const std::string version =
        query_text("SELECT value FROM armor_meta WHERE name = 'quota_schema'", "reading the schema version");
    if (version != "1") fail("the quota schema version is '" + version + "'; this armor reads version 1");
    latest_ = prepare(
        "SELECT slice, used FROM armor_quota_usage WHERE tracker = ?1 AND window = ?2 ORDER BY slice DESC LIMIT ?3");
    add_ = prepare(
        "INSERT INTO armor_quota_usage (tracker, window, slice, used) VALUES (?1, ?2, ?3, ?4) "
        "ON CONFLICT (tracker, window, slice) DO UPDATE SET used = min(used + excluded.used, ?5)");
    sub_ = prepare(
        "UPDATE armor_quota_usage SET used = max(used - ?4, 0) WHERE tracker = ?1 AND window = ?2 AND slice = ?3");
    prune_ = prepare("DELETE FROM armor_quota_usage WHERE tracker = ?1 AND window = ?2 AND slice < ?3");
    alert_get_ = prepare("SELECT period, fired FROM armor_quota_alerts WHERE tracker = ?1 AND window = ?2");
    alert_put_ = prepare(
        "INSERT INTO armor_quota_alerts (tracker, window, period, fired) VALUES (?1, ?2, ?3, ?4) "
        "ON CONFLICT (tracker, window) DO UPDATE SET period = excluded.period, fired = excluded.fired");
    alert_rearm_ = prepare(
        "UPDATE armor_quota_alerts SET fired = ?4 WHERE tracker = ?1 AND window = ?2 AND period = ?3 AND fired > ?4");
    exec_or_fail("COMMIT", "creating the tables");
    in_tx_ = false;
  }

  // Reads window w as of slice `now`: the slice to count in (never before
  // the latest stored) and the units counted there (a rolling window: in it
  // and the buckets before it). With `out`, also each bucket's count.
  bool load(std::size_t w, std::int64_t now, view& v, std::span<std::int64_t>* out) noexcept {
    const window& win = windows_[w];
    sqlite3_stmt* s = latest_;
    sqlite3_reset(s);
    sqlite3_bind_text(s, 1, options_.tracker.c_str(), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, win.key.c_str(), -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, std::int64_t{win.buckets} + 1);
    bool any = false;
    v.used = 0;
    // Rows come newest first; the newest decides the slice.
    int rc = 0;
    std::int64_t slice = now;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      const std::int64_t row_slice = sqlite3_column_int64(s, 0);
      const std::int64_t row_used = sqlite3_column_int64(s, 1);
      if (!any) {
        any = true;
        slice = std::max(now, row_slice);
        v.latest = row_slice;
      }
      if (row_slice <= slice && slice - row_slice <= win.buckets) {
        v.used = quota_add(v.used, row_used);
        if (out != nullptr) (*out)[static_cast<std::size_t>(row_slice - (slice - win.buckets))] = row_used;
      }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return false;
    if (!any) v.latest = slice - 1;
    v.slice = slice;
    return true;
  }

  // Runs add_, sub_ or prune_ for window w at `slice` with `n` units.
  bool step(sqlite3_stmt* s, std::size_t w, std::int64_t slice, std::int64_t n) noexcept {
    sqlite3_reset(s);
    sqlite3_bind_text(s, 1, options_.tracker.c_str(), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, windows_[w].key.c_str(), -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, slice);
    if (s != prune_) sqlite3_bind_int64(s, 4, n);
    if (s == add_) sqlite3_bind_int64(s, 5, quota_used_cap);
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE;
  }

  void bind_window(sqlite3_stmt* s, std::size_t w) noexcept {
    sqlite3_bind_text(s, 1, options_.tracker.c_str(), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, windows_[w].key.c_str(), -1, SQLITE_STATIC);
  }

  // Runs alert_put_ or alert_rearm_ for window w.
  bool alert_step(sqlite3_stmt* s, std::size_t w, std::int64_t period, std::size_t fired) noexcept {
    sqlite3_reset(s);
    bind_window(s, w);
    sqlite3_bind_int64(s, 3, period);
    sqlite3_bind_int64(s, 4, static_cast<std::int64_t>(std::min<std::size_t>(fired, 255)));
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE;
  }

  // Opens a write transaction (BEGIN IMMEDIATE: the database's write lock,
  // waiting up to busy_timeout for another connection's).
  bool begin() noexcept {
    if (!exec("BEGIN IMMEDIATE")) return false;
    in_tx_ = true;
    return true;
  }

  bool commit() noexcept {
    if (!in_tx_) return true;
    in_tx_ = false;
    if (exec("COMMIT")) return true;
    (void)exec("ROLLBACK");  // a failed COMMIT may leave the transaction open
    return false;
  }

  quota_consumption roll_back() noexcept {
    (void)exec("ROLLBACK");
    in_tx_ = false;
    return unavailable();
  }

  static quota_consumption unavailable() noexcept {
    quota_consumption r;
    r.status = quota_storage_status::unavailable;
    return r;
  }

  void flush_loop() {
    const auto tick = std::max<std::chrono::milliseconds>(options_.flush_every / 4, std::chrono::milliseconds{1});
    std::unique_lock<std::mutex> lock(m_);
    while (!stop_) {
      cv_.wait_for(lock, tick, [this] { return stop_; });
      if (std::chrono::steady_clock::now() - synced_ >= options_.flush_every) (void)sync();
    }
  }

  sqlite_quota_options options_;
  std::vector<window> windows_;
  quota_values limits_{};  // per window, as bound (read-only after bind())
  sqlite3* db_ = nullptr;
  sqlite3_stmt* latest_ = nullptr;
  sqlite3_stmt* add_ = nullptr;
  sqlite3_stmt* sub_ = nullptr;
  sqlite3_stmt* prune_ = nullptr;
  sqlite3_stmt* alert_get_ = nullptr;
  sqlite3_stmt* alert_put_ = nullptr;
  sqlite3_stmt* alert_rearm_ = nullptr;
  std::mutex m_;
  bool in_tx_ = false;
  std::vector<cache> caches_;                            // batched
  std::chrono::steady_clock::time_point synced_{};       // batched: the last sync
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread flusher_;
};

}  // namespace detail

/// Quota counts in an SQLite database (see the top of this header). Give it
/// to a quota_tracker as its Storage. Move-only.
class sqlite_quota_storage {
 public:
  /// Checks the options (throws armor::error(invalid_argument) naming a bad
  /// one); the file is opened when the tracker binds the storage.
  explicit sqlite_quota_storage(sqlite_quota_options options)
      : state_(std::make_unique<detail::sqlite_quota_state>(checked(std::move(options)))) {}

  sqlite_quota_storage(sqlite_quota_storage&&) noexcept = default;
  sqlite_quota_storage& operator=(sqlite_quota_storage&&) noexcept = default;
  sqlite_quota_storage(const sqlite_quota_storage&) = delete;
  sqlite_quota_storage& operator=(const sqlite_quota_storage&) = delete;
  ~sqlite_quota_storage() = default;

  /// Opens the file, checks it and creates the tables if need be. Throws
  /// armor::error(storage_unavailable) saying what is wrong with the file.
  void bind(std::span<const quota_window_layout> layouts) { state_->bind(layouts); }

  [[nodiscard]] quota_consumption try_consume(const quota_stamp& at, std::int64_t n) noexcept {
    return state_->try_consume(at, n, &state_->limits());
  }
  /// The same, against `limits` (one per window) instead of the limits
  /// bound: the limits of the tracker's last reconfigure(), read with the
  /// decision (the file keeps no limit: only counts).
  [[nodiscard]] quota_consumption try_consume(const quota_stamp& at, std::int64_t n,
                                              const quota_values& limits) noexcept {
    return state_->try_consume(at, n, &limits);
  }
  [[nodiscard]] quota_consumption charge(const quota_stamp& at, std::int64_t n) noexcept {
    return state_->try_consume(at, n, nullptr);
  }
  void release(const quota_stamp& at, std::int64_t n) noexcept {
    if (state_) state_->release(at, n);
  }
  /// Throws armor::error(storage_unavailable) when the database cannot be read.
  [[nodiscard]] std::int64_t read(std::size_t w, std::int64_t i, std::span<std::int64_t> out) const {
    return state_->read(w, i, out);
  }

  /// The alert state, kept in the file beside the counts (see
  /// armor::alert_quota_storage): each threshold fires once per period
  /// between every tracker of the same name, restarts included. Each is one
  /// transaction, in either mode; they run only when a threshold is crossed.
  [[nodiscard]] std::size_t claim_alerts(std::size_t w, std::int64_t period, std::size_t fired) noexcept {
    return state_ ? state_->claim_alerts(w, period, fired) : 0;
  }
  void rearm_alerts(std::size_t w, std::int64_t period, std::size_t fired) noexcept {
    if (state_) state_->rearm_alerts(w, period, fired);
  }

  /// For armor::keyed (armor::keyed_quota_storage): a storage with the same
  /// options whose tracker is this one's + "/" + key. Each opens its own
  /// connection when its tracker binds it.
  [[nodiscard]] sqlite_quota_storage for_key(std::string_view key) const {
    sqlite_quota_options o = state_->options();
    o.tracker.append("/").append(key);
    return sqlite_quota_storage(std::move(o));
  }

  /// batched: commits what is pending now (durable: nothing to do). Returns
  /// false when the commit failed (the batch is then lost).
  bool flush() { return state_->flush(); }

 private:
  static sqlite_quota_options checked(sqlite_quota_options o) {
    const auto fail = [](const std::string& what) { detail::invalid_config("armor::sqlite_quota_storage: " + what); };
    if (o.path.empty()) fail("path must name the database file");
    if (o.tracker.empty()) fail("tracker must not be empty");
    if (o.mode != sqlite_mode::durable && o.mode != sqlite_mode::batched) fail("mode is not a sqlite_mode value");
    if (o.flush_every.count() <= 0) {
      fail("flush_every must be positive (got " + std::to_string(o.flush_every.count()) + " ms)");
    }
    if (o.busy_timeout.count() < 0) {
      fail("busy_timeout must not be negative (got " + std::to_string(o.busy_timeout.count()) + " ms)");
    }
    return o;
  }

  std::unique_ptr<detail::sqlite_quota_state> state_;
};

static_assert(alert_quota_storage<sqlite_quota_storage>);
static_assert(keyed_quota_storage<sqlite_quota_storage>);

/// For armor::make_quota_storage (armor/storage/any.hpp): builds an
/// sqlite_quota_storage from a `sqlite:` URL
/// (sqlite_quota_options_from_url), its tracker the options' when the URL
/// names none. `.backends = {armor::sqlite_quota_backend}`.
inline constexpr quota_backend sqlite_quota_backend{
    "sqlite",
    [](backend_scheme s) noexcept { return s == backend_scheme::sqlite; },
    [](std::string_view url, std::string_view tracker) {
      sqlite_quota_options o = sqlite_quota_options_from_url(url);
      if (!parse_backend_url(url).param("tracker")) o.tracker = std::string(tracker);
      return any_quota_storage(sqlite_quota_storage(std::move(o)));
    },
};

}  // namespace armor
