// armor/redis/quota_storage.hpp: armor::redis_quota_storage, a quota_tracker
// storage that keeps the counts in Redis, shared by every instance of a
// service that names the same tracker.
//
//     armor::redis_connection redis{{.host = "10.0.0.5", .port = 6379}};
//     armor::quota_tracker gemini{
//         {.windows = {armor::quota_window::per_day(50)}},
//         armor::system_clock{},
//         armor::redis_quota_storage{redis, {.tracker = "gemini"}},
//     };
//
// The calling code is that of memory_quota_storage; only the storage
// argument changes. Each consumption, charge, release and read is one Lua
// script: one round trip, atomic in Redis, with the rules of
// storage/quota_storage.hpp; so is recording an alert, which then fires once
// per period between every instance. One Redis server, a Redis Cluster or a
// primary found through Sentinel (redis/connection.hpp). Failure modes, deadlines, leases and their bounds,
// keys and time: docs/redis.md.
#pragma once

#include <armor/detail/config.hpp>
#include <armor/detail/counter_set.hpp>
#include <armor/detail/quota_calendar.hpp>
#include <armor/detail/quota_word.hpp>
#include <armor/detail/redis_io.hpp>
#include <armor/detail/redis_reply.hpp>
#include <armor/detail/redis_scripts.hpp>
#include <armor/detail/time.hpp>
#include <armor/error.hpp>
#include <armor/redis/connection.hpp>
#include <armor/stats.hpp>
#include <armor/storage/any.hpp>
#include <armor/storage/backend_url.hpp>
#include <armor/storage/memory.hpp>
#include <armor/storage/quota_storage.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace armor {

/// The options of armor::redis_quota_storage. An aggregate:
/// `{.tracker = "gemini", .on_failure = armor::redis_failure_mode::fail_open}`.
struct redis_quota_storage_options {
  /// The name the counts are kept under: trackers (in any process) with the
  /// same name and windows share counts. Not empty; no '{' or '}'.
  std::string tracker = "default";
  /// What a call does when Redis does not answer (docs/redis.md).
  redis_failure_mode on_failure = redis_failure_mode::fail_closed;
  /// fallback_local: each window's local limit is this share of its limit
  /// (at least 1 unit); in (0, 1], required with fallback_local (1 / replicas).
  double local_share = 0;
  /// Units a replica takes from Redis at once and serves locally; 0 (the
  /// default) turns leases off. In [0, quota_max_limit]. Bounds: docs/redis.md.
  std::int64_t lease = 0;
  /// Whose clock numbers the periods. Windows must be whole microseconds
  /// (rolling: each bucket), which the scripts' arithmetic needs.
  redis_time_source time = redis_time_source::server;
};

/// How to reach Redis and what the quota storage does there: what a
/// `redis:` backend URL names (armor::redis_quota_config_from_url).
struct redis_quota_config {
  redis_options connection{};
  redis_quota_storage_options storage{};
};

namespace detail {

/// The connection a redis*: backend URL names, with the connection's
/// parameters read through `r` (for redis_*_config_from_url); `fail` names
/// the URL and throws.
template <class Fail>
[[nodiscard]] redis_options redis_options_from_url(const backend_url& u, backend_url_reader& r, const Fail& fail) {
  if (u.scheme != backend_scheme::redis && u.scheme != backend_scheme::redis_cluster &&
      u.scheme != backend_scheme::redis_sentinel) {
    fail("names a " + std::string(to_string(u.scheme)) + " backend, not redis:");
  }
  if (!u.user.empty() && u.user != "default") {
    fail("user \"" + u.user + "\": only a password is sent (AUTH password); write redis://:password@host");
  }
  const std::string& db = u.scheme == backend_scheme::redis_sentinel ? u.database : u.path;
  if (!db.empty() && db.find_first_not_of('0') != std::string::npos) {
    fail("database " + db + ": armor's Redis backends use database 0 (keep applications apart with prefix=)");
  }
  redis_options c;
  c.host = u.hosts.front().host;
  c.port = u.hosts.front().port;
  c.password = u.password;
  if (u.scheme == backend_scheme::redis_cluster) {
    c.cluster = true;
    for (std::size_t i = 1; i < u.hosts.size(); ++i) {
      std::string seed = u.hosts[i].host;
      seed += ':';
      seed += std::to_string(u.hosts[i].port);
      c.seeds.push_back(std::move(seed));
    }
  }
  if (u.scheme == backend_scheme::redis_sentinel) {
    c.primary_name = u.path;
    for (const backend_endpoint& h : u.hosts) {
      std::string sentinel = h.host;
      sentinel += ':';
      sentinel += std::to_string(h.port);
      c.sentinels.push_back(std::move(sentinel));
    }
  }
  if (const auto v = r.text("prefix")) c.prefix = std::string(*v);
  if (const auto v = r.millis("connect_timeout")) c.connect_timeout = *v;
  if (const auto v = r.millis("command_timeout")) c.command_timeout = *v;
  if (const auto v = r.integer("connections", 1, 64)) c.connections = static_cast<std::size_t>(*v);
  if (u.scheme == backend_scheme::redis_sentinel) {
    if (const auto v = r.text("sentinel_password")) c.sentinel_password = std::string(*v);
    if (const auto v = r.millis("sentinel_recheck")) c.sentinel_recheck = *v;
  }
  return c;
}

/// The `on_failure` and `time` parameters of a redis*: backend URL.
inline void redis_limit_params_from_url(backend_url_reader& r, redis_failure_mode& on_failure, redis_time_source& time) {
  if (const auto v = r.text("on_failure")) {
    if (*v == "fail_closed") {
      on_failure = redis_failure_mode::fail_closed;
    } else if (*v == "fail_open") {
      on_failure = redis_failure_mode::fail_open;
    } else if (*v == "fallback_local") {
      on_failure = redis_failure_mode::fallback_local;
    } else {
      r.fail("on_failure", *v, "fail_closed, fail_open or fallback_local");
    }
  }
  if (const auto v = r.text("time")) {
    if (*v == "server") {
      time = redis_time_source::server;
    } else if (*v == "caller") {
      time = redis_time_source::caller;
    } else {
      r.fail("time", *v, "server or caller");
    }
  }
}

}  // namespace detail

/// The options a `redis:` backend URL names (armor/storage/backend_url.hpp,
/// docs/backend_urls.md), for a server read from configuration:
/// `redis://:secret@10.0.0.5:6379?tracker=openai&on_failure=fail_open&command_timeout=50ms`.
/// Parameters: prefix, connect_timeout, command_timeout, connections,
/// sentinel_password and sentinel_recheck (Sentinel URLs), tracker, on_failure (fail_closed, fail_open, fallback_local),
/// local_share, lease, time (server, caller). Throws
/// armor::error(errc::invalid_argument) for another scheme, a database
/// other than 0, a parameter it does not know or a bad value.
/// `redis+cluster://n1:7000,n2:7001` sets `connection.cluster` (the first
/// node is host:port, the others seeds).
/// `redis+sentinel://:pw@s1:26379,s2:26379/mymaster/0?sentinel_password=x`
/// sets `connection.sentinels`, `.primary_name` and `.sentinel_password`
/// (the URL's password is the primary's).
[[nodiscard]] inline redis_quota_config redis_quota_config_from_url(std::string_view url) {
  constexpr std::string_view who = "armor::redis_quota_config_from_url";
  const backend_url u = parse_backend_url(url);
  const auto fail = [&](const std::string& what) {
    detail::invalid_config(std::string(who) + ": \"" + std::string(url) + "\": " + what);
  };
  detail::backend_url_reader r(u, who);
  redis_quota_config c;
  c.connection = detail::redis_options_from_url(u, r, fail);
  if (const auto v = r.text("tracker")) c.storage.tracker = std::string(*v);
  if (const auto v = r.number("local_share")) c.storage.local_share = *v;
  if (const auto v = r.integer("lease", 0, std::numeric_limits<std::int64_t>::max())) c.storage.lease = *v;
  detail::redis_limit_params_from_url(r, c.storage.on_failure, c.storage.time);
  r.finish();
  return c;
}

/// Counters of a redis_quota_storage, since it was made; each read with a
/// relaxed load (consistent one by one, not as a whole).
struct redis_quota_storage_stats {
  std::uint64_t unanswered = 0;         ///< calls Redis did not answer (failure, open breaker, busy pool)
  std::uint64_t failed_open = 0;        ///< consumptions admitted uncounted (fail_open)
  std::uint64_t failed_closed = 0;      ///< consumptions refused with storage_unavailable (fail_closed)
  std::uint64_t served_locally = 0;     ///< consumptions decided by the local fallback (fallback_local)
  std::uint64_t deadline_exceeded = 0;  ///< consumptions and reads the caller's deadline ended before Redis answered
  std::uint64_t leases = 0;             ///< leases taken
  std::uint64_t leased_units = 0;       ///< units taken by leases
  std::uint64_t returned_units = 0;     ///< leased units given back unused

  static constexpr auto fields() noexcept {
    using s = redis_quota_storage_stats;
    return std::tuple{
        armor::counter("unanswered", &s::unanswered, "armor_redis_quota_unanswered_total",
                       "Calls of the Redis quota storage that Redis did not answer (failure, open breaker, busy pool)."),
        armor::counter("failed_open", &s::failed_open, "armor_redis_quota_failed_open_total",
                       "Consumptions admitted uncounted while Redis was away (fail_open)."),
        armor::counter("failed_closed", &s::failed_closed, "armor_redis_quota_failed_closed_total",
                       "Consumptions refused with storage_unavailable while Redis was away (fail_closed)."),
        armor::counter("served_locally", &s::served_locally, "armor_redis_quota_served_locally_total",
                       "Consumptions decided by the local fallback while Redis was away (fallback_local)."),
        armor::counter("deadline_exceeded", &s::deadline_exceeded, "armor_redis_quota_deadline_exceeded_total",
                       "Consumptions and reads that the caller's deadline ended before Redis answered."),
        armor::counter("leases", &s::leases, "armor_redis_quota_leases_total", "Quota leases taken from Redis."),
        armor::counter("leased_units", &s::leased_units, "armor_redis_quota_leased_units_total",
                       "Units taken from Redis by leases."),
        armor::counter("returned_units", &s::returned_units, "armor_redis_quota_returned_units_total",
                       "Leased units given back to Redis unused."),
    };
  }
};

namespace detail {

// Slices tagged as not counted in Redis: units admitted by fail_open or the
// local fallback, which a release must not subtract from Redis (docs/redis.md).
// Real slices stay within +-2^53 (redis_slice_max, the scripts' exact range).
static_assert(redis_quota_windows == quota_max_windows);
inline constexpr std::int64_t redis_tag_open = std::numeric_limits<std::int64_t>::min();
inline constexpr std::int64_t redis_tag_local = -(std::int64_t{1} << 62);

/// A window as the scripts see it, from its layout key.
struct redis_window {
  std::int64_t limit = 0;
  std::uint32_t buckets = 0;
  int cut = 0;  // 0: periods of step, 1: calendar months
  std::int64_t step_us = 0;
  std::int64_t shift_us = 0;
  std::string key;  // the Redis key
};

/// The state of one redis_quota_storage, behind a pointer so that the
/// storage moves cheaply.
class redis_quota_state {
 public:
  redis_quota_state(redis_connection c, redis_quota_storage_options o) : conn_(std::move(c)), options_(std::move(o)) {}
  redis_quota_state(const redis_quota_state&) = delete;
  redis_quota_state& operator=(const redis_quota_state&) = delete;
  ~redis_quota_state() { (void)return_lease(); }

  void bind(std::span<const quota_window_layout> layouts) {
    if (layouts.size() > quota_max_windows) fail("too many windows");
    count_ = layouts.size();
    std::vector<quota_window_layout> local(layouts.begin(), layouts.end());
    for (std::size_t i = 0; i < count_; ++i) {
      windows_[i] = parse(layouts[i]);
      if (options_.on_failure == redis_failure_mode::fallback_local) local[i].limit = local_limit(layouts[i].limit);
    }
    if (options_.on_failure == redis_failure_mode::fallback_local) local_.bind(local);
  }

  // fallback_local: each window's local limit, local_share of `limits`.
  [[nodiscard]] quota_values local_limits(const quota_values& limits) const noexcept {
    quota_values local{};
    for (std::size_t i = 0; i < count_; ++i) local[i] = local_limit(limits[i]);
    return local;
  }
  [[nodiscard]] std::int64_t local_limit(std::int64_t limit) const noexcept {
    const auto share = static_cast<long double>(options_.local_share) * static_cast<long double>(limit);
    return std::max<std::int64_t>(1, static_cast<std::int64_t>(share));
  }

  // `limits`: the limits to check (quota_tracker::reconfigure()), or
  // nullptr for those bound. Leases serve only the limits bound: with
  // others every consumption asks Redis, and a lease held (taken under the
  // limits bound) is given back first.
  quota_consumption consume(const quota_stamp& at, std::int64_t n, bool check,
                            redis_deadline until = redis_no_deadline, const quota_values* limits = nullptr) noexcept {
    if (limits != nullptr && bound(*limits)) limits = nullptr;
    if (limits != nullptr && options_.lease > 0 && lease_.units() > 0) (void)return_lease();
    quota_consumption r;
    if (check && options_.lease > 0 && n <= options_.lease && limits == nullptr) {
      if (lease_take(at, n, r)) return r;
      r = lease_refill(at, n, until);
    } else {
      r = remote_consume(at, n, n, check, nullptr, until, limits);
    }
    if (r.status == quota_storage_status::deadline_exceeded) {
      count(counter::deadline_exceeded);
      return r;
    }
    if (r.status != quota_storage_status::unavailable) return r;
    return degrade(at, n, check, limits);
  }

  // Whether `limits` are the limits bound.
  [[nodiscard]] bool bound(const quota_values& limits) const noexcept {
    for (std::size_t i = 0; i < count_; ++i) {
      if (limits[i] != windows_[i].limit) return false;
    }
    return true;
  }

  void release(const quota_stamp& at, std::int64_t n) noexcept {
    if (n <= 0 || count_ == 0) return;
    if (at[0] == redis_tag_open) return;
    if (at[0] < redis_tag_local / 2) {
      quota_stamp local{};
      for (std::size_t i = 0; i < count_; ++i) local[i] = at[i] - redis_tag_local;
      local_.release(local, n);
      return;
    }
    (void)remote_release(at, n);
  }

  std::int64_t read(std::size_t w, std::int64_t i, std::span<std::int64_t> out,
                    redis_deadline until = redis_no_deadline) const {
    const redis_window& win = windows_[w];
    redis_args args;
    args.add_flag(options_.time == redis_time_source::server);
    args.add(i);
    args.add(std::int64_t{win.buckets});
    args.add(std::int64_t{win.cut});
    args.add(win.step_us);
    args.add(win.shift_us);
    const std::array<std::string_view, 1> keys{win.key};
    const redis_answer a = conn_.client().run(redis_script::quota_read, keys, args.views(), until);
    if (a) {
      if (const std::optional<std::int64_t> slice = redis_quota_read_reply(a.reply.get(), win.buckets, out)) {
        return *slice;
      }
    }
    count(counter::unanswered);
    const bool late = a.status == redis_status::deadline;
    if (late) count(counter::deadline_exceeded);
    if (options_.on_failure == redis_failure_mode::fallback_local) return local_.read(w, i, out);
    throw error(late ? errc::deadline_exceeded : errc::storage_unavailable,
                "armor::redis_quota_storage: cannot read tracker '" + options_.tracker + "' from Redis at " +
                    conn_.options().host + ":" + std::to_string(conn_.options().port) +
                    (late ? " before the deadline" : ""));
  }

  /// The alert record of window w (alert_quota_storage): one script, one
  /// round trip. Redis not answering: 0 (the caller fires; see the concept).
  std::size_t alert(std::size_t w, bool claim, std::int64_t period, std::size_t fired) const noexcept {
    if (w >= count_ || period > redis_slice_max || period < -redis_slice_max) return 0;
    redis_args args;
    args.add_flag(claim);
    args.add(period);
    args.add(static_cast<std::int64_t>(fired));
    const std::array<std::string_view, 1> keys{windows_[w].key};
    const redis_answer a = conn_.client().run(redis_script::quota_alert, keys, args.views(), redis_no_deadline);
    const std::optional<std::size_t> before = a ? redis_quota_alert_reply(a.reply.get()) : std::nullopt;
    if (!before) {
      count(counter::unanswered);
      return 0;
    }
    return *before;
  }

  /// Gives the unused units of the current lease back to Redis.
  bool return_lease() noexcept {
    if (options_.lease <= 0 || count_ == 0) return true;
    if (!redis_lock_within(refill_, conn_.options().command_timeout)) return false;
    const std::lock_guard<std::mutex> lock(refill_, std::adopt_lock);
    return drain();
  }

  [[nodiscard]] redis_quota_storage_stats stats() const noexcept {
    const redis_limit_counters c = counters_;
    redis_quota_storage_stats s;
    redis_limit_snapshot(s, c);
    s.leased_units = c.load(counter::leased);
    s.returned_units = c.load(counter::returned);
    return s;
  }

  /// Units held by the current lease, not yet served.
  [[nodiscard]] std::int64_t leased() const noexcept {
    return static_cast<std::int64_t>(lease_.units());
  }

  [[nodiscard]] const redis_connection& connection() const noexcept { return conn_; }
  [[nodiscard]] const redis_quota_storage_options& options() const noexcept { return options_; }

 private:
  using counter = redis_limit_counter;

  // Written only under refill_, for a generation not yet published; read by
  // the fast path, whose CAS on the word fails unless the generation it read
  // them for is still current (the slot is rewritten only for generation + 2).
  struct lease_slot {
    std::array<std::atomic<std::int64_t>, quota_max_windows> caller_at{};
    std::array<std::atomic<std::int64_t>, quota_max_windows> redis_at{};
    std::array<std::atomic<std::int64_t>, quota_max_windows> used{};  // counts right after the lease
  };

  [[noreturn]] void fail(const std::string& what) const {
    invalid_config("armor::redis_quota_storage (tracker '" + options_.tracker + "'): " + what);
  }

  void count(counter c, std::uint64_t n = 1) const noexcept { counters_.add(c, n); }

  // The window's slicing, read back from its layout key (quota_tracker
  // names a window "fixed/<ns>ns/<+-min>min", "week/<+-min>min",
  // "month/<+-min>min" or "rolling/<ns>ns/<buckets>").
  redis_window parse(const quota_window_layout& l) const {
    redis_window w;
    w.limit = l.limit;
    w.buckets = l.buckets;
    w.key = conn_.options().prefix + ":q:{" + options_.tracker + "}:" + l.key;
    std::string_view k = l.key;
    const auto number = [&](std::string_view unit) {
      if (!k.empty() && k.front() == '+') k.remove_prefix(1);
      std::int64_t v = 0;
      const auto [end, ec] = std::from_chars(k.data(), k.data() + k.size(), v);
      const std::string_view rest(end, static_cast<std::size_t>(k.data() + k.size() - end));
      if (ec != std::errc{} || !rest.starts_with(unit)) fail("cannot read the window key '" + l.key + "'");
      k = rest.substr(unit.size());
      return v;
    };
    const auto prefix = [&](std::string_view p) {
      if (!k.starts_with(p)) return false;
      k.remove_prefix(p.size());
      return true;
    };
    constexpr std::int64_t ns_per_minute = 60'000'000'000;
    std::int64_t step = 0;
    std::int64_t shift = 0;
    if (prefix("fixed/")) {
      step = number("ns/");
      shift = number("min") * ns_per_minute;
    } else if (prefix("week/")) {
      step = ns_per_week;
      shift = number("min") * ns_per_minute - first_monday_ns;
    } else if (prefix("month/")) {
      w.cut = 1;
      step = 1000;
      shift = number("min") * ns_per_minute;
    } else if (prefix("rolling/")) {
      const std::int64_t length = number("ns/");
      const std::int64_t buckets = number("");
      if (buckets != l.buckets || buckets <= 0) fail("cannot read the window key '" + l.key + "'");
      step = length / buckets;
    } else {
      fail("cannot read the window key '" + l.key + "'");
    }
    if (!k.empty()) fail("cannot read the window key '" + l.key + "'");
    if (step < 1000 || step % 1000 != 0 || shift % 1000 != 0) {
      fail("window '" + l.key +
           "': its periods (a rolling window: each bucket) must be whole microseconds, at least 1 us");
    }
    w.step_us = step / 1000;
    w.shift_us = shift / 1000;
    return w;
  }

  bool add_stamp(redis_args& args, const quota_stamp& at, std::size_t i) const noexcept {
    if (at[i] > redis_slice_max || at[i] < -redis_slice_max) return false;
    args.add(at[i]);
    return true;
  }

  // One consumption script: n units (a lease: up to `want`), all windows or
  // none. `granted` receives the units counted.
  quota_consumption remote_consume(const quota_stamp& at, std::int64_t n, std::int64_t want, bool check,
                                   std::int64_t* granted, redis_deadline until,
                                   const quota_values* limits = nullptr) const noexcept {
    redis_args args;
    args.add(n);
    args.add(std::max<std::int64_t>(n, 1));
    args.add(want);
    args.add_flag(check);
    args.add_flag(options_.time == redis_time_source::server);
    args.add(quota_used_cap);
    std::array<std::string_view, quota_max_windows> keys{};
    for (std::size_t i = 0; i < count_; ++i) {
      const redis_window& w = windows_[i];
      keys[i] = w.key;
      if (!add_stamp(args, at, i)) return unavailable();
      args.add(limits != nullptr ? (*limits)[i] : w.limit);
      args.add(std::int64_t{w.buckets});
      args.add(std::int64_t{w.cut});
      args.add(w.step_us);
      args.add(w.shift_us);
    }
    if (args.overflow()) return unavailable();
    const redis_answer a =
        conn_.client().run(redis_script::quota_consume, {keys.data(), count_}, args.views(), until);
    if (!a) {
      count(counter::unanswered);
      return a.status == redis_status::deadline ? late() : unavailable();
    }
    const std::optional<redis_quota_answer> r = redis_quota_consume_reply(a.reply.get(), count_, n, want, check);
    if (!r) {
      count(counter::unanswered);
      return unavailable();
    }
    quota_consumption c;
    if (r->refused) {
      c.status = quota_storage_status::refused;
      c.window = r->window;
      c.at[r->window] = r->at[r->window];
      c.used[r->window] = r->used[r->window];
      return c;
    }
    if (granted != nullptr) *granted = r->granted;
    for (std::size_t i = 0; i < count_; ++i) {
      c.at[i] = r->at[i];
      c.used[i] = r->used[i];
    }
    return c;
  }

  bool remote_release(const quota_stamp& at, std::int64_t n, redis_deadline until = redis_no_deadline) const noexcept {
    redis_args args;
    args.add(n);
    std::array<std::string_view, quota_max_windows> keys{};
    for (std::size_t i = 0; i < count_; ++i) {
      keys[i] = windows_[i].key;
      if (!add_stamp(args, at, i)) return false;
      args.add(std::int64_t{windows_[i].buckets});
    }
    const redis_answer a =
        conn_.client().run(redis_script::quota_release, {keys.data(), count_}, args.views(), until);
    if (!a) count(counter::unanswered);
    return static_cast<bool>(a);
  }

  static quota_consumption unavailable() noexcept {
    quota_consumption r;
    r.status = quota_storage_status::unavailable;
    return r;
  }
  static quota_consumption late() noexcept {
    quota_consumption r;
    r.status = quota_storage_status::deadline_exceeded;
    return r;
  }

  // What on_failure says to do when Redis did not answer.
  quota_consumption degrade(const quota_stamp& at, std::int64_t n, bool check,
                            const quota_values* limits = nullptr) noexcept {
    switch (options_.on_failure) {
      case redis_failure_mode::fail_open: {
        count(counter::failed_open);
        quota_consumption r;
        for (std::size_t i = 0; i < count_; ++i) r.at[i] = redis_tag_open;  // used stays 0: no alerts
        return r;
      }
      case redis_failure_mode::fallback_local: {
        count(counter::served_locally);
        quota_consumption r = !check            ? local_.charge(at, n)
                              : limits == nullptr ? local_.try_consume(at, n)
                                                  : local_.try_consume(at, n, local_limits(*limits));
        if (r.status == quota_storage_status::consumed) {
          for (std::size_t i = 0; i < count_; ++i) {
            r.at[i] += redis_tag_local;
            r.used[i] = 0;  // no alerts from local counts
          }
        }
        return r;
      }
      case redis_failure_mode::fail_closed: break;
    }
    count(counter::failed_closed);
    return unavailable();
  }

  // The fast path: n units from the current lease, if it was taken in the
  // caller's slices and holds enough.
  bool lease_take(const quota_stamp& at, std::int64_t n, quota_consumption& r) noexcept {
    const auto need = static_cast<std::uint64_t>(n > 0 ? n : 1);
    // Acquire: sees the slot written before the generation was published.
    redis_lease::view w = lease_.load();
    for (;;) {
      const std::uint64_t left = w.units;
      if (left < need) return false;
      const lease_slot& s = slots_[w.slot()];
      for (std::size_t i = 0; i < count_; ++i) {
        if (s.caller_at[i].load(std::memory_order_acquire) != at[i]) return false;
        r.at[i] = s.redis_at[i].load(std::memory_order_acquire);
        r.used[i] = s.used[i].load(std::memory_order_acquire) - static_cast<std::int64_t>(left) + n;
      }
      // A full barrier: the slot loads above cannot move past it, and it
      // fails if the generation (or the count) moved on meanwhile.
      if (lease_.take(w, static_cast<std::uint64_t>(n))) return true;
    }
  }

  // Empties the lease and gives its units back. Under refill_.
  bool drain(redis_deadline until = redis_no_deadline) noexcept {
    const redis_lease::view w = lease_.empty();
    const auto left = static_cast<std::int64_t>(w.units);
    if (left == 0) return true;
    const lease_slot& s = slots_[w.slot()];
    quota_stamp at{};
    for (std::size_t i = 0; i < count_; ++i) at[i] = s.redis_at[i].load(std::memory_order_relaxed);
    count(counter::returned, static_cast<std::uint64_t>(left));
    return remote_release(at, left, until);
  }

  // The slow path: returns the current lease and takes another (serving n
  // units of it to the caller).
  quota_consumption lease_refill(const quota_stamp& at, std::int64_t n, redis_deadline until) noexcept {
    bool cut = false;
    if (!redis_lock_until(refill_, conn_.options().command_timeout, until, cut)) {
      return cut ? late() : unavailable();
    }
    const std::lock_guard<std::mutex> lock(refill_, std::adopt_lock);
    quota_consumption r;
    if (lease_take(at, n, r)) return r;  // another thread refilled meanwhile
    (void)drain(until);
    std::int64_t granted = 0;
    r = remote_consume(at, n, options_.lease, true, &granted, until);
    if (r.status != quota_storage_status::consumed) return r;
    const std::uint64_t gen = lease_.next_gen();
    lease_slot& s = slots_[gen & 1U];
    for (std::size_t i = 0; i < count_; ++i) {
      s.caller_at[i].store(at[i], std::memory_order_release);
      s.redis_at[i].store(r.at[i], std::memory_order_release);
      s.used[i].store(r.used[i], std::memory_order_release);
    }
    const std::int64_t left = granted - n;
    for (std::size_t i = 0; i < count_; ++i) r.used[i] -= left;
    count(counter::leases);
    count(counter::leased, static_cast<std::uint64_t>(granted));
    // Release: publishes the slot with the new generation.
    lease_.publish(gen, static_cast<std::uint64_t>(left));
    return r;
  }

  redis_connection conn_;
  redis_quota_storage_options options_;
  std::array<redis_window, quota_max_windows> windows_{};
  std::size_t count_ = 0;
  memory_quota_storage local_;
  alignas(cache_line) redis_lease lease_;
  std::array<lease_slot, 2> slots_{};
  std::mutex refill_;
  mutable redis_limit_counters counters_;
};

}  // namespace detail

/// Quota counts in Redis, shared by every process that names the same
/// tracker. Give it to a quota_tracker as its Storage. Move-only; moving is
/// not thread-safe, every other member is. A call that reaches Redis holds
/// one of the connection's connections for its round trip; a call served
/// from a lease takes one CAS (no lock, no I/O, no allocation).
class redis_quota_storage {
 public:
  /// Checks the options (throws armor::error(invalid_argument) naming a bad
  /// one). Nothing is sent to Redis before the first consumption.
  redis_quota_storage(redis_connection connection, redis_quota_storage_options options)
      : state_(std::make_unique<detail::redis_quota_state>(std::move(connection), checked(std::move(options)))) {}

  redis_quota_storage(redis_quota_storage&&) noexcept = default;
  redis_quota_storage& operator=(redis_quota_storage&&) noexcept = default;
  redis_quota_storage(const redis_quota_storage&) = delete;
  redis_quota_storage& operator=(const redis_quota_storage&) = delete;
  ~redis_quota_storage() = default;

  /// Reads the windows' slicing. Throws armor::error(invalid_argument) for a
  /// window the scripts cannot count exactly (narrower than a microsecond).
  void bind(std::span<const quota_window_layout> layouts) { state_->bind(layouts); }

  [[nodiscard]] quota_consumption try_consume(const quota_stamp& at, std::int64_t n) noexcept {
    return state_->consume(at, n, true);
  }
  [[nodiscard]] quota_consumption charge(const quota_stamp& at, std::int64_t n) noexcept {
    return state_->consume(at, n, false);
  }
  /// The same, ending by `until` (quota_tracker::admit passes a pipeline
  /// call's deadline): deadline_exceeded if it passes before Redis answers,
  /// or has passed (then nothing is sent), whatever on_failure says. The
  /// lease fast path reads no clock.
  [[nodiscard]] quota_consumption try_consume(const quota_stamp& at, std::int64_t n, quota_deadline until) noexcept {
    return state_->consume(at, n, true, until);
  }
  /// The same, against `limits` (one per window) instead of the limits
  /// bound: the limits of the tracker's last reconfigure(), read with the
  /// decision (the scripts take the limits per call; Redis keeps counts
  /// only). With limits other than those bound, no lease is used (one held
  /// is given back first): every consumption asks Redis; fallback_local
  /// counts local_share of them.
  [[nodiscard]] quota_consumption try_consume(const quota_stamp& at, std::int64_t n, quota_deadline until,
                                              const quota_values& limits) noexcept {
    return state_->consume(at, n, true, until, &limits);
  }
  /// Carries no deadline: units are not lost to a spent one.
  void release(const quota_stamp& at, std::int64_t n) noexcept {
    if (state_) state_->release(at, n);
  }
  /// Throws armor::error(storage_unavailable) when Redis does not answer
  /// (fallback_local: reads the local counts instead).
  [[nodiscard]] std::int64_t read(std::size_t w, std::int64_t i, std::span<std::int64_t> out) const {
    return state_->read(w, i, out);
  }
  /// The same, ending by `until`: throws armor::error(deadline_exceeded) if
  /// it passes first (fallback_local: reads the local counts instead).
  [[nodiscard]] std::int64_t read(std::size_t w, std::int64_t i, std::span<std::int64_t> out,
                                  quota_deadline until) const {
    return state_->read(w, i, out, until);
  }

  /// The alert state, kept in each window's hash beside its counts (see
  /// armor::alert_quota_storage): each threshold fires once per period
  /// between every tracker of the same name, in any process. One round trip
  /// each; they run only when a threshold is crossed or re-armed.
  [[nodiscard]] std::size_t claim_alerts(std::size_t w, std::int64_t period, std::size_t fired) noexcept {
    return state_ ? state_->alert(w, true, period, fired) : 0;
  }
  void rearm_alerts(std::size_t w, std::int64_t period, std::size_t fired) noexcept {
    if (state_) (void)state_->alert(w, false, period, fired);
  }

  /// Gives the current lease's unused units back to Redis now (the
  /// destructor does too). False if Redis did not take them.
  bool return_lease() noexcept { return state_->return_lease(); }
  /// Units the current lease still holds.
  [[nodiscard]] std::int64_t leased() const noexcept { return state_->leased(); }

  [[nodiscard]] redis_quota_storage_stats stats() const noexcept { return state_->stats(); }
  [[nodiscard]] const redis_connection& connection() const noexcept { return state_->connection(); }

  /// For armor::keyed (armor::keyed_quota_storage): a storage on the same
  /// connection with the same options whose tracker is this one's + "/" +
  /// key. Throws armor::error(invalid_argument) for a key with '{' or '}'.
  [[nodiscard]] redis_quota_storage for_key(std::string_view key) const {
    redis_quota_storage_options o = state_->options();
    o.tracker.append("/").append(key);
    return redis_quota_storage(state_->connection(), std::move(o));
  }

 private:
  static redis_quota_storage_options checked(redis_quota_storage_options o) {
    const auto fail = [](const std::string& what) { detail::invalid_config("armor::redis_quota_storage: " + what); };
    detail::redis_check_limit_options(fail, "tracker", o.tracker, o.on_failure, o.local_share, o.time);
    if (o.lease < 0 || o.lease > detail::quota_limit_max) {
      fail("lease must be within [0, " + std::to_string(detail::quota_limit_max) + "] units (got " +
           std::to_string(o.lease) + ")");
    }
    return o;
  }

  std::unique_ptr<detail::redis_quota_state> state_;
};

static_assert(deadline_quota_storage<redis_quota_storage>);
static_assert(alert_quota_storage<redis_quota_storage>);
static_assert(keyed_quota_storage<redis_quota_storage>);

/// For armor::make_quota_storage (armor/storage/any.hpp): builds a
/// redis_quota_storage, on a connection of its own, from a `redis:`,
/// `redis+sentinel:` or `redis+cluster:` URL (redis_quota_config_from_url),
/// its tracker the options' when the URL names none.
/// `.backends = {armor::redis_quota_backend}`.
inline constexpr quota_backend redis_quota_backend{
    "redis",
    [](backend_scheme s) noexcept {
      return s == backend_scheme::redis || s == backend_scheme::redis_sentinel || s == backend_scheme::redis_cluster;
    },
    [](std::string_view url, std::string_view tracker) {
      redis_quota_config c = redis_quota_config_from_url(url);
      if (!parse_backend_url(url).param("tracker")) c.storage.tracker = std::string(tracker);
      return any_quota_storage(redis_quota_storage(redis_connection(std::move(c.connection)), std::move(c.storage)));
    },
};

}  // namespace armor
