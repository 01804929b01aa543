// armor/redis/token_bucket.hpp: armor::redis_token_bucket, the GCRA token
// bucket of armor::token_bucket with its state in Redis, shared by every
// instance of a service that names the same limiter; a pipeline policy.
//
//     armor::redis_connection redis{{.host = "10.0.0.5", .port = 6379}};
//     armor::redis_token_bucket<> api{{.rate = {100, 1s}, .burst = 20}, redis, {.name = "upstream-api"}};
//     if (armor::token_bucket_decision<> d = api.try_acquire(); !d) {
//         reject(d.code(), d.retry_after());  // rate_limited, or storage_unavailable (fail_closed)
//     }
//
// It answers with token_bucket's own decision, numbers included (with
// `time = caller`, call for call as token_bucket would); in a pipeline,
// call_options::key picks a Redis key per client. Every decision is one Lua
// script: one round trip, atomic in Redis. One Redis server, a Redis Cluster
// or a primary found through Sentinel (redis/connection.hpp). It never waits (max_wait must be 0).
// Keys, time, failure modes, deadlines, leases and their bounds:
// docs/redis.md.
#pragma once

#include <armor/any_token_bucket.hpp>
#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/detail/config.hpp>
#include <armor/redis/connection.hpp>
#include <armor/detail/redis_reply.hpp>
#include <armor/detail/redis_scripts.hpp>
#include <armor/error.hpp>
#include <armor/keyed.hpp>
#include <armor/policy.hpp>
#include <armor/redis/quota_storage.hpp>
#include <armor/storage/backend_url.hpp>
#include <armor/token_bucket.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace armor {

/// The Redis side of armor::redis_token_bucket. An aggregate:
/// `{.name = "upstream-api", .on_failure = armor::redis_failure_mode::fail_open}`.
struct redis_token_bucket_options {
  /// The limiter's name: buckets (in any process) with the same name share
  /// their tokens. Not empty; no '{' or '}'.
  std::string name = "default";
  /// What a call does when Redis does not answer (docs/redis.md).
  redis_failure_mode on_failure = redis_failure_mode::fail_closed;
  /// fallback_local: the local bucket has this share of the rate and burst
  /// (at least 1 token); in (0, 1], required with fallback_local (1 / replicas).
  double local_share = 0;
  /// Tokens an instance takes at once and serves locally; 0 (the default)
  /// turns leases off. In [0, burst].
  std::int64_t lease = 0;
  /// How long a lease may be served: 0 (the default) for as long as the
  /// bucket takes to refill it (g tokens taken: g intervals), which keeps
  /// every window within L tokens of the limit; longer suits rates so high
  /// that L intervals are too short to use a lease (the bounds:
  /// docs/redis.md). >= 0.
  std::chrono::nanoseconds lease_ttl{0};
  /// Whose clock the scripts read: Redis's (the default), or the bucket's
  /// Clock (for tests on a manual clock).
  redis_time_source time = redis_time_source::server;
  /// fallback_local: the most per-key local buckets held while Redis is
  /// away; >= 1.
  std::size_t local_keys = 10'000;
};

/// How to reach Redis and what the bucket does there: what a `redis:`
/// backend URL names (armor::redis_token_bucket_config_from_url).
struct redis_token_bucket_config {
  redis_options connection{};
  redis_token_bucket_options bucket{};
};

/// The options a `redis:`, `redis+sentinel:` or `redis+cluster:` backend
/// URL names for a token bucket (docs/backend_urls.md):
/// `redis://10.0.0.5?name=upstream&on_failure=fail_open&command_timeout=50ms`.
/// Parameters: those of the connection as for redis_quota_config_from_url
/// (prefix, connect_timeout, command_timeout, connections,
/// sentinel_password, sentinel_recheck), name, on_failure, local_share,
/// lease, lease_ttl (a duration), time, local_keys. Throws
/// armor::error(errc::invalid_argument) for another scheme, a database
/// other than 0, a parameter it does not know or a bad value, naming it.
[[nodiscard]] inline redis_token_bucket_config redis_token_bucket_config_from_url(std::string_view url) {
  constexpr std::string_view who = "armor::redis_token_bucket_config_from_url";
  const backend_url u = parse_backend_url(url);
  const auto fail = [&](const std::string& what) {
    detail::invalid_config(std::string(who) + ": \"" + std::string(url) + "\": " + what);
  };
  detail::backend_url_reader r(u, who);
  redis_token_bucket_config c;
  c.connection = detail::redis_options_from_url(u, r, fail);
  if (const auto v = r.text("name")) c.bucket.name = std::string(*v);
  if (const auto v = r.number("local_share")) c.bucket.local_share = *v;
  if (const auto v = r.integer("lease", 0, std::numeric_limits<std::int64_t>::max())) c.bucket.lease = *v;
  if (const auto v = r.millis("lease_ttl")) c.bucket.lease_ttl = *v;
  if (const auto v = r.integer("local_keys", 1, std::numeric_limits<std::int64_t>::max())) {
    c.bucket.local_keys = static_cast<std::size_t>(*v);
  }
  detail::redis_limit_params_from_url(r, c.bucket.on_failure, c.bucket.time);
  r.finish();
  return c;
}

/// Counters of a redis_token_bucket, since it was made; each read with a
/// relaxed load (consistent one by one, not as a whole).
struct redis_token_bucket_stats {
  std::uint64_t unanswered = 0;         ///< calls Redis did not answer (failure, open breaker, busy pool)
  std::uint64_t failed_open = 0;        ///< calls admitted without Redis (fail_open)
  std::uint64_t failed_closed = 0;      ///< calls refused with storage_unavailable (fail_closed)
  std::uint64_t served_locally = 0;     ///< calls decided by the local fallback (fallback_local)
  std::uint64_t deadline_exceeded = 0;  ///< calls the caller's deadline ended before Redis answered (admit(ctx))
  std::uint64_t leases = 0;             ///< leases taken
  std::uint64_t leased_tokens = 0;      ///< tokens taken by leases
  std::uint64_t returned_tokens = 0;    ///< leased tokens given back unused
  std::uint64_t lost_tokens = 0;        ///< leased tokens neither served nor given back (the key moved on)

  static constexpr auto fields() noexcept {
    using s = redis_token_bucket_stats;
    return std::tuple{
        armor::counter("unanswered", &s::unanswered, "armor_redis_rate_limit_unanswered_total",
                       "Calls of the Redis token bucket that Redis did not answer (failure, open breaker, busy pool)."),
        armor::counter("failed_open", &s::failed_open, "armor_redis_rate_limit_failed_open_total",
                       "Calls admitted without Redis while it was away (fail_open)."),
        armor::counter("failed_closed", &s::failed_closed, "armor_redis_rate_limit_failed_closed_total",
                       "Calls refused with storage_unavailable while Redis was away (fail_closed)."),
        armor::counter("served_locally", &s::served_locally, "armor_redis_rate_limit_served_locally_total",
                       "Calls decided by the local fallback bucket while Redis was away (fallback_local)."),
        armor::counter("deadline_exceeded", &s::deadline_exceeded, "armor_redis_rate_limit_deadline_exceeded_total",
                       "Calls that the caller's deadline ended before Redis answered."),
        armor::counter("leases", &s::leases, "armor_redis_rate_limit_leases_total", "Token leases taken from Redis."),
        armor::counter("leased_tokens", &s::leased_tokens, "armor_redis_rate_limit_leased_tokens_total",
                       "Tokens taken from Redis by leases."),
        armor::counter("returned_tokens", &s::returned_tokens, "armor_redis_rate_limit_returned_tokens_total",
                       "Leased tokens given back to Redis unused."),
        armor::counter("lost_tokens", &s::lost_tokens, "armor_redis_rate_limit_lost_tokens_total",
                       "Leased tokens neither served nor given back (the bucket was written meanwhile)."),
    };
  }
};

namespace detail {

/// Builds token_bucket_decisions: from a script's numbers, or refused
/// without them (Redis did not answer in time: `code` says why).
struct redis_bucket_maker {
  [[nodiscard]] static constexpr token_bucket_decision<> decision(token_bucket_status s, const bucket_config& c,
                                                                  std::int64_t n, std::int64_t debt,
                                                                  std::int64_t late) noexcept {
    return bucket_decision_access::make(s, c, n, debt, late);
  }
  [[nodiscard]] static constexpr token_bucket_decision<> refused(errc code, const bucket_config& c,
                                                                 std::int64_t n) noexcept {
    return bucket_decision_access::refused(code, c, n);
  }
};

/// What one acquire script answered.
struct redis_bucket_reply {
  bool ok = false;
  bool out_of_time = false;  // no answer: the caller's deadline passed first
  std::int64_t status = 0;  // 0 granted, 1 denied, 2 too large
  std::int64_t debt = 0;
  std::int64_t late = 0;
  std::int64_t granted = 0;
  bucket_config config{};
  std::int64_t q = 0;
  std::int64_t t = 0;
};

/// The state of a redis_token_bucket, behind a pointer so that it moves.
template <class Clock>
class redis_bucket_state {
 public:
  redis_bucket_state(redis_connection conn, redis_token_bucket_options o, const bucket_config& config,
                     std::optional<token_bucket_options> local, Clock clock)
      : conn_(std::move(conn)),
        options_(std::move(o)),
        config_(config),
        key_(conn_.options().prefix + ":b:{" + options_.name + "}"),
        config_key_(key_ + ":config") {
    seen_c_.store(config.count, std::memory_order_relaxed);
    seen_p_.store(config.period, std::memory_order_relaxed);
    seen_b_.store(config.burst, std::memory_order_relaxed);
    if (local) {
      local_ = std::make_unique<keyed<token_bucket<Clock>>>(*local, keyed_options{.max_keys = options_.local_keys},
                                                            std::move(clock));
    }
  }
  redis_bucket_state(const redis_bucket_state&) = delete;
  redis_bucket_state& operator=(const redis_bucket_state&) = delete;
  ~redis_bucket_state() { (void)return_lease(); }

  // `left`: the time the call has left (nanoseconds::max(): no deadline).
  token_bucket_decision<> acquire(std::string_view key, std::int64_t n, std::int64_t now,
                                  std::chrono::nanoseconds left = std::chrono::nanoseconds::max()) noexcept {
    if (n < 0) {
      return redis_bucket_maker::decision(token_bucket_status::invalid, seen(), n, 0, 0);
    }
    if (options_.lease > 0 && key.empty() && n > 0 && n <= options_.lease) {
      if (std::optional<token_bucket_decision<>> d = lease_take(n, now)) return *d;
      return lease_refill(n, now, redis_until(left));
    }
    const redis_deadline until = redis_until(left);
    try {
      if (key.empty()) return remote_decision(key_, key, n, now, until);
      const std::size_t len = key_.size() + 3 + key.size();
      if (len <= stack_key) {
        std::array<char, stack_key> buf;
        std::copy(key_.begin(), key_.end(), buf.begin());
        std::copy_n(":k:", 3, buf.begin() + static_cast<std::ptrdiff_t>(key_.size()));
        std::copy(key.begin(), key.end(), buf.begin() + static_cast<std::ptrdiff_t>(key_.size() + 3));
        return remote_decision(std::string_view(buf.data(), len), key, n, now, until);
      }
      std::string long_key = key_;
      long_key += ":k:";
      long_key += key;
      return remote_decision(long_key, key, n, now, until);
    } catch (...) {  // out of memory for a long key or a local bucket
      count(counter::failed_closed);
      return closed(n);
    }
  }

  /// Changes the shared config (0: keep that part); throws as documented.
  void configure(std::int64_t c, std::int64_t p, std::int64_t b, std::int64_t now, const char* who) {
    if (!redis_lock_within(refill_, conn_.options().command_timeout)) unavailable(who);
    const std::lock_guard<std::mutex> lock(refill_, std::adopt_lock);
    (void)drain();  // a lease of the old config could not be given back after the change
    redis_args args;
    add_time(args, now);
    args.add(config_.count);
    args.add(config_.period);
    args.add(config_.burst);
    args.add(c);
    args.add(p);
    args.add(b);
    const std::array<std::string_view, 2> keys{config_key_, key_};
    const redis_answer a = conn_.client().run(redis_script::bucket_configure, keys, args.views());
    const std::optional<redis_bucket_configure_answer> r =
        a ? redis_bucket_configure_reply(a.reply.get()) : std::nullopt;
    if (!r) {
      count(counter::unanswered);
      unavailable(who);
    }
    const bucket_config now_config = r->config;
    if (r->refused) {
      invalid_config(std::string(who) + ": burst " + std::to_string(now_config.burst) + " at " +
                     std::to_string(now_config.count) + " per " + std::to_string(now_config.period) +
                     " ns is too long for the Redis bucket (burst * interval at most 2^52 ticks of 1/" +
                     std::to_string(now_config.count) + " ns)");
    }
    see(now_config);
  }

  bool return_lease() noexcept {
    if (options_.lease <= 0) return true;
    if (!redis_lock_within(refill_, conn_.options().command_timeout)) return false;
    const std::lock_guard<std::mutex> lock(refill_, std::adopt_lock);
    return drain();
  }

  [[nodiscard]] std::int64_t leased() const noexcept {
    return static_cast<std::int64_t>(lease_.units());
  }

  [[nodiscard]] bucket_config seen() const noexcept {
    return {seen_c_.load(std::memory_order_relaxed), seen_p_.load(std::memory_order_relaxed),
            seen_b_.load(std::memory_order_relaxed)};
  }

  [[nodiscard]] redis_token_bucket_stats stats() const noexcept {
    const redis_limit_counters c = counters_;
    redis_token_bucket_stats s;
    redis_limit_snapshot(s, c);
    s.leased_tokens = c.load(counter::leased);
    s.returned_tokens = c.load(counter::returned);
    s.lost_tokens = c.load(counter::lost);
    return s;
  }

  [[nodiscard]] const redis_connection& connection() const noexcept { return conn_; }
  [[nodiscard]] const redis_token_bucket_options& options() const noexcept { return options_; }

 private:
  static constexpr std::size_t stack_key = 256;
  using counter = redis_limit_counter;

  // Written only under refill_, for a generation not yet published; the
  // fast path's CAS on the word fails unless the generation it read them
  // for is still current (a slot is rewritten only for generation + 2).
  struct lease_slot {
    std::atomic<std::int64_t> expires{0};  // caller-clock ns: served only before
    std::atomic<std::int64_t> debt{0};     // ticks until full right after the grant
    std::atomic<std::int64_t> q{0};        // what the grant wrote (for the give-back)
    std::atomic<std::int64_t> t{0};
    std::atomic<std::int64_t> c{1}, p{1}, b{1};
  };
  void count(counter c, std::uint64_t n = 1) noexcept { counters_.add(c, n); }

  [[noreturn]] void unavailable(const char* who) const {
    throw error(errc::storage_unavailable, std::string(who) + ": Redis at " + conn_.options().host + ":" +
                                               std::to_string(conn_.options().port) + " did not answer");
  }

  void see(const bucket_config& c) noexcept {
    seen_c_.store(c.count, std::memory_order_relaxed);
    seen_p_.store(c.period, std::memory_order_relaxed);
    seen_b_.store(c.burst, std::memory_order_relaxed);
  }

  // server flag, then the caller's time as whole seconds and nanoseconds.
  void add_time(redis_args& args, std::int64_t now) const noexcept {
    constexpr std::int64_t ns = 1'000'000'000;
    std::int64_t s = now / ns;
    std::int64_t r = now % ns;
    if (r < 0) {
      --s;
      r += ns;
    }
    args.add_flag(options_.time == redis_time_source::server);
    args.add(s);
    args.add(r);
  }

  redis_bucket_reply remote(std::string_view key, std::int64_t n, std::int64_t want, std::int64_t now,
                            redis_deadline until) noexcept {
    redis_bucket_reply out;
    redis_args args;
    add_time(args, now);
    args.add(n);
    args.add(want);
    args.add(config_.count);
    args.add(config_.period);
    args.add(config_.burst);
    const std::array<std::string_view, 2> keys{key, config_key_};
    const redis_answer a = conn_.client().run(redis_script::bucket_acquire, keys, args.views(), until);
    const std::optional<redis_bucket_answer> r = a ? redis_bucket_acquire_reply(a.reply.get(), n, want) : std::nullopt;
    if (!r) {
      count(counter::unanswered);
      out.out_of_time = a.status == redis_status::deadline;
      return out;
    }
    out.ok = true;
    out.status = r->status;
    out.debt = r->debt;
    out.late = r->late;
    out.granted = r->granted;
    out.config = r->config;
    out.q = r->q;
    out.t = r->t;
    if (out.config != seen()) see(out.config);
    return out;
  }

  static token_bucket_status status_of(std::int64_t s) noexcept {
    return s == 0   ? token_bucket_status::granted
           : s == 1 ? token_bucket_status::denied
                    : token_bucket_status::too_large;
  }

  token_bucket_decision<> remote_decision(std::string_view redis_key, std::string_view key, std::int64_t n,
                                          std::int64_t now, redis_deadline until) {
    const redis_bucket_reply r = remote(redis_key, n, n, now, until);
    if (r.out_of_time) return out_of_time(n);
    if (!r.ok) return degrade(key, n, now);
    return redis_bucket_maker::decision(status_of(r.status), r.config, n, r.debt, r.late);
  }

  token_bucket_decision<> closed(std::int64_t n) const noexcept {
    return redis_bucket_maker::refused(errc::storage_unavailable, seen(), n);
  }

  token_bucket_decision<> out_of_time(std::int64_t n) noexcept {
    count(counter::deadline_exceeded);
    return redis_bucket_maker::refused(errc::deadline_exceeded, seen(), n);
  }

  // What on_failure says to do when Redis did not answer. May throw (a new
  // local bucket); the caller turns that into fail_closed.
  token_bucket_decision<> degrade(std::string_view key, std::int64_t n, std::int64_t now) {
    switch (options_.on_failure) {
      case redis_failure_mode::fail_open:
        count(counter::failed_open);
        return redis_bucket_maker::decision(token_bucket_status::granted, seen(), n, 0, 0);  // a full bucket
      case redis_failure_mode::fallback_local: {
        count(counter::served_locally);
        const timestamp at{std::chrono::nanoseconds{now}};
        auto h = local_->get(key, at);
        return h->try_acquire(n, at);
      }
      case redis_failure_mode::fail_closed: break;
    }
    count(counter::failed_closed);
    return closed(n);
  }

  token_bucket_decision<> degrade_noexcept(std::int64_t n, std::int64_t now) noexcept {
    try {
      return degrade({}, n, now);
    } catch (...) {
      count(counter::failed_closed);
      return closed(n);
    }
  }

  // The fast path: n tokens from the current lease, if it holds enough and
  // has not expired.
  std::optional<token_bucket_decision<>> lease_take(std::int64_t n, std::int64_t now) noexcept {
    const auto need = static_cast<std::uint64_t>(n);
    // Acquire: sees the slot written before the generation was published.
    redis_lease::view w = lease_.load();
    for (;;) {
      const std::uint64_t left = w.units;
      if (left < need) return std::nullopt;
      const lease_slot& s = slots_[w.slot()];
      if (now >= s.expires.load(std::memory_order_acquire)) return std::nullopt;
      const bucket_config c{s.c.load(std::memory_order_acquire), s.p.load(std::memory_order_acquire),
                            s.b.load(std::memory_order_acquire)};
      const std::int64_t debt = s.debt.load(std::memory_order_acquire);
      // A full barrier: the slot loads above cannot move past it, and it
      // fails if the generation (or the count) moved on meanwhile.
      if (lease_.take(w, need)) {
        // The numbers of the lease's grant, counting its unused tokens as there.
        const std::int64_t unused = static_cast<std::int64_t>(left - need);
        return redis_bucket_maker::decision(token_bucket_status::granted, c, n, debt - unused * c.period, 0);
      }
    }
  }

  // Empties the lease and gives its tokens back. Under refill_.
  bool drain(redis_deadline until = redis_no_deadline) noexcept {
    const redis_lease::view w = lease_.empty();
    const auto left = static_cast<std::int64_t>(w.units);
    if (left == 0) return true;
    const lease_slot& s = slots_[w.slot()];
    redis_args args;
    args.add(s.q.load(std::memory_order_relaxed));
    args.add(s.t.load(std::memory_order_relaxed));
    args.add(left);
    args.add(s.c.load(std::memory_order_relaxed));
    args.add(s.p.load(std::memory_order_relaxed));
    args.add(s.b.load(std::memory_order_relaxed));
    const std::array<std::string_view, 1> keys{key_};
    const redis_answer a = conn_.client().run(redis_script::bucket_return, keys, args.views(), until);
    const bool back = a && redis_bucket_return_reply(a.reply.get()).value_or(false);
    if (!a) count(counter::unanswered);
    count(back ? counter::returned : counter::lost, static_cast<std::uint64_t>(left));
    return back;
  }

  // The slow path: gives the current lease back and takes another, serving
  // n tokens of it to the caller.
  token_bucket_decision<> lease_refill(std::int64_t n, std::int64_t now, redis_deadline until) noexcept {
    bool cut = false;
    if (!redis_lock_until(refill_, conn_.options().command_timeout, until, cut)) {
      return cut ? out_of_time(n) : degrade_noexcept(n, now);
    }
    const std::lock_guard<std::mutex> lock(refill_, std::adopt_lock);
    if (std::optional<token_bucket_decision<>> d = lease_take(n, now)) return *d;  // refilled meanwhile
    (void)drain(until);
    const redis_bucket_reply r = remote(key_, n, options_.lease, now, until);
    if (r.out_of_time) return out_of_time(n);
    if (!r.ok) return degrade_noexcept(n, now);
    const token_bucket_decision<> d = redis_bucket_maker::decision(status_of(r.status), r.config, n, r.debt, r.late);
    if (r.status != 0) return d;
    const std::int64_t left = r.granted - n;
    const std::uint64_t gen = lease_.next_gen();
    lease_slot& s = slots_[gen & 1U];
    // Served only until the bucket would have refilled what was granted
    // (measured from before the request: never later than Redis's grant).
    const std::int64_t refill = r.granted * r.config.period / r.config.count;
    s.expires.store(saturating_add(now, std::max(refill, options_.lease_ttl.count())), std::memory_order_release);
    s.debt.store(r.debt, std::memory_order_release);
    s.q.store(r.q, std::memory_order_release);
    s.t.store(r.t, std::memory_order_release);
    s.c.store(r.config.count, std::memory_order_release);
    s.p.store(r.config.period, std::memory_order_release);
    s.b.store(r.config.burst, std::memory_order_release);
    count(counter::leases);
    count(counter::leased, static_cast<std::uint64_t>(r.granted));
    // Release: publishes the slot with the new generation.
    lease_.publish(gen, static_cast<std::uint64_t>(left));
    return redis_bucket_maker::decision(token_bucket_status::granted, r.config, n, r.debt - left * r.config.period, 0);
  }

  redis_connection conn_;
  redis_token_bucket_options options_;
  bucket_config config_;  // the construction options, used until set_rate writes a config to Redis
  std::string key_;
  std::string config_key_;
  std::atomic<std::int64_t> seen_c_{1}, seen_p_{1}, seen_b_{1};
  std::unique_ptr<keyed<token_bucket<Clock>>> local_;
  alignas(cache_line) redis_lease lease_;
  std::array<lease_slot, 2> slots_{};
  std::mutex refill_;
  redis_limit_counters counters_;
};

}  // namespace detail

/// A token bucket in Redis, shared by every instance that names the same
/// limiter, and an armor::policy. `Clock` is the clock try_acquire() reads
/// (caller time: the decisions' time; server time: only lease expiry and the
/// local fallback) and the pipeline's clock. Move-only; moving is not
/// thread-safe, every other member is. A call that reaches Redis holds one
/// of the connection's connections for its round trip; a call served from a
/// lease takes one CAS (no lock, no I/O, no allocation).
template <class Clock = steady_clock>
class redis_token_bucket {
  static_assert(armor::clock<Clock>, "armor::redis_token_bucket: Clock must have now() returning its time_point");

 public:
  using clock_type = Clock;
  using options_type = token_bucket_options;
  /// Tokens are spent when admitted; dropping a permit gives nothing back.
  using permit_type = no_permit;

  /// Checks the options (throws armor::error(invalid_argument) naming a bad
  /// one: those token_bucket refuses, a max_wait other than 0, a burst *
  /// interval beyond 2^52 ticks, a lease above the burst). Sends nothing to
  /// Redis yet. count_calls is ignored (see stats()).
  redis_token_bucket(const token_bucket_options& bucket, redis_connection connection, redis_token_bucket_options options,
                     Clock clock = Clock{})
      : state_(make_state(bucket, std::move(connection), std::move(options), clock)),
        clock_(std::move(clock)),
        cost_(bucket.cost) {}

  redis_token_bucket(redis_token_bucket&&) noexcept = default;
  redis_token_bucket& operator=(redis_token_bucket&&) noexcept = default;
  redis_token_bucket(const redis_token_bucket&) = delete;
  redis_token_bucket& operator=(const redis_token_bucket&) = delete;
  ~redis_token_bucket() = default;

  /// Takes n tokens now (reads the clock), or none. Never waits. Refused
  /// with code() rate_limited (and the exact retry_after()),
  /// request_too_large, invalid_argument, or storage_unavailable
  /// (fail_closed; retry_after() zero). A fail_open answer reports a full
  /// bucket.
  [[nodiscard]] token_bucket_decision<> try_acquire(std::int64_t n = 1) noexcept(
      noexcept(std::declval<const Clock&>().now())) {
    return try_acquire(n, to_timestamp(clock_.now()));
  }
  /// Takes n tokens at `now` (caller time: the decision's time).
  [[nodiscard]] token_bucket_decision<> try_acquire(std::int64_t n, timestamp now) noexcept {
    return state_->acquire({}, n, ns(now));
  }
  /// Takes n tokens from `key`'s bucket (one Redis key per key; never leased).
  [[nodiscard]] token_bucket_decision<> try_acquire(std::string_view key, std::int64_t n = 1) noexcept(
      noexcept(std::declval<const Clock&>().now())) {
    return try_acquire(key, n, to_timestamp(clock_.now()));
  }
  /// Takes n tokens from `key`'s bucket at `now`.
  [[nodiscard]] token_bucket_decision<> try_acquire(std::string_view key, std::int64_t n, timestamp now) noexcept {
    return state_->acquire(key, n, ns(now));
  }

  /// Policy protocol: takes the call's cost (or the one
  /// token_bucket_options::cost selects) in tokens from the bucket of
  /// ctx.key() (the unkeyed bucket when empty) at ctx.now(), every round trip to
  /// Redis ending by ctx's deadline. Rejections: rate_limited with
  /// retry_after, storage_unavailable (fail_closed) and deadline_exceeded
  /// (the deadline passed before Redis answered) are retryable;
  /// request_too_large (cost > burst) and invalid_argument (negative cost)
  /// are not.
  [[nodiscard]] admission<no_permit> admit(context& ctx) noexcept {
    const std::int64_t n = ctx.cost(cost_);
    if (n == 0) return admission<no_permit>::admit();
    const token_bucket_decision<> d = state_->acquire(ctx.key(), n, ns(ctx.now()), ctx.remaining());
    if (d) return admission<no_permit>::admit();
    const std::error_code code = d.code();
    if (code == errc::rate_limited) return admission<no_permit>::reject(code, d.retry_after(), true);
    const bool retryable = code == errc::storage_unavailable || code == errc::deadline_exceeded;
    return admission<no_permit>::reject(code, std::nullopt, retryable);
  }
  /// Policy protocol: nothing to do (the tokens stay spent).
  void settle(context&, no_permit, const verdict&) noexcept {}

  /// Changes rate and burst for every instance sharing the name, keeping
  /// the tokens (the rule of token_bucket::set_rate), in one script: the
  /// unkeyed bucket is converted at once; a per-key bucket when it is next
  /// used, as of the change's time (exact unless its key saw no write
  /// across two changes: then it converts from its own config at the later
  /// change). Throws armor::error(invalid_argument) for values the
  /// constructor refuses, armor::error(storage_unavailable) when Redis does
  /// not answer (nothing changed then, or the change is unknown).
  void set_rate(const armor::rate& r, std::int64_t burst) { set_rate(r, burst, to_timestamp(clock_.now())); }
  /// The same at `now` (caller time).
  void set_rate(const armor::rate& r, std::int64_t burst, timestamp now) {
    const detail::bucket_config c = checked(r, burst, "armor::redis_token_bucket::set_rate");
    state_->configure(c.count, c.period, c.burst, ns(now), "armor::redis_token_bucket::set_rate");
  }
  /// Changes the rate, keeping the burst (as stored in Redis) and the tokens.
  void set_rate(const armor::rate& r) { set_rate(r, to_timestamp(clock_.now())); }
  void set_rate(const armor::rate& r, timestamp now) {
    const detail::bucket_config c = detail::checked_bucket_config(r, 1, std::chrono::nanoseconds{0},
                                                                  "armor::redis_token_bucket::set_rate");
    state_->configure(c.count, c.period, 0, ns(now), "armor::redis_token_bucket::set_rate");
  }
  /// Changes the burst, keeping the rate (as stored in Redis) and the tokens.
  void set_burst(std::int64_t burst) { set_burst(burst, to_timestamp(clock_.now())); }
  void set_burst(std::int64_t burst, timestamp now) {
    if (burst < 1) {
      detail::invalid_config("armor::redis_token_bucket::set_burst: burst must be at least 1 (got " +
                             std::to_string(burst) + ")");
    }
    state_->configure(0, 0, burst, ns(now), "armor::redis_token_bucket::set_burst");
  }

  /// The rate of the latest answer from Redis (or the construction options),
  /// in lowest terms.
  [[nodiscard]] armor::rate rate() const noexcept {
    const detail::bucket_config c = state_->seen();
    return {c.count, std::chrono::nanoseconds{c.period}};
  }
  /// The burst of the latest answer from Redis (or the construction options).
  [[nodiscard]] std::int64_t burst() const noexcept { return state_->seen().burst; }

  /// Gives the current lease's unused tokens back to Redis now (the
  /// destructor does too), if no grant touched the bucket since the lease
  /// was taken. False if they could not be given back.
  bool return_lease() noexcept { return state_->return_lease(); }
  /// Tokens the current lease still holds.
  [[nodiscard]] std::int64_t leased() const noexcept { return state_->leased(); }

  [[nodiscard]] redis_token_bucket_stats stats() const noexcept { return state_->stats(); }
  [[nodiscard]] const redis_connection& connection() const noexcept { return state_->connection(); }
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  static constexpr std::int64_t ns(timestamp t) noexcept { return t.time_since_epoch().count(); }

  static detail::bucket_config checked(const armor::rate& r, std::int64_t burst, const char* who) {
    const detail::bucket_config c = detail::checked_bucket_config(r, burst, std::chrono::nanoseconds{0}, who);
    if (c.tau() > detail::redis_bucket_max_span) {
      detail::invalid_config(std::string(who) + ": burst " + std::to_string(burst) +
                             " is too large for the Redis bucket at this rate: burst * interval must be at most " +
                             std::to_string(detail::redis_bucket_max_span / c.count) +
                             " ns (2^52 ticks, the scripts' exact range)");
    }
    return c;
  }

  static std::unique_ptr<detail::redis_bucket_state<Clock>> make_state(const token_bucket_options& b,
                                                                       redis_connection conn, redis_token_bucket_options o,
                                                                       const Clock& clock) {
    const auto fail = [](const std::string& what) { detail::invalid_config("armor::redis_token_bucket: " + what); };
    if (b.max_wait.count() != 0) {
      fail("max_wait must be 0 (got " + std::to_string(b.max_wait.count()) +
           " ns): the Redis bucket does not reserve tokens, so calls never wait for them");
    }
    const detail::bucket_config c = checked(b.rate, b.burst, "armor::redis_token_bucket");
    detail::check_cost_source(b.cost, "armor::redis_token_bucket");
    detail::redis_check_limit_options(fail, "name", o.name, o.on_failure, o.local_share, o.time);
    if (o.lease < 0 || o.lease > b.burst) {
      fail("lease must be within [0, burst = " + std::to_string(b.burst) + "] tokens (got " + std::to_string(o.lease) +
           ")");
    }
    if (o.lease_ttl.count() < 0) {
      fail("lease_ttl must not be negative (got " + std::to_string(o.lease_ttl.count()) + " ns)");
    }
    std::optional<token_bucket_options> local;
    if (o.on_failure == redis_failure_mode::fallback_local) {
      if (o.local_keys < 1) fail("local_keys must be at least 1");
      // share of the rate: the interval stretched (rounded up); share of the burst (rounded down, >= 1)
      const long double per = std::ceil(static_cast<long double>(b.rate.per.count()) / o.local_share);
      if (per > static_cast<long double>(std::numeric_limits<std::int64_t>::max())) {
        fail("local_share " + std::to_string(o.local_share) + " makes the local rate's period too long");
      }
      const auto burst = std::max<std::int64_t>(
          1, static_cast<std::int64_t>(static_cast<long double>(b.burst) * static_cast<long double>(o.local_share)));
      local = token_bucket_options{{b.rate.count, std::chrono::nanoseconds{static_cast<std::int64_t>(per)}}, burst};
    }
    return std::make_unique<detail::redis_bucket_state<Clock>>(std::move(conn), std::move(o), c, local, clock);
  }

  std::unique_ptr<detail::redis_bucket_state<Clock>> state_;
  [[no_unique_address]] Clock clock_;
  cost_source cost_;  // token_bucket_options::cost
};

/// For armor::make_token_bucket (armor/any_token_bucket.hpp): builds a
/// redis_token_bucket<Clock>, on a connection of its own, from a `redis:`,
/// `redis+sentinel:` or `redis+cluster:` URL
/// (redis_token_bucket_config_from_url), named as the options say when the
/// URL names none. `.backends = {armor::redis_token_bucket_backend<>}`.
template <class Clock = steady_clock>
inline constexpr token_bucket_backend<Clock> redis_token_bucket_backend{
    "redis",
    [](backend_scheme s) noexcept {
      return s == backend_scheme::redis || s == backend_scheme::redis_sentinel || s == backend_scheme::redis_cluster;
    },
    [](std::string_view url, const token_bucket_options& bucket, std::string_view name, const Clock& clock) {
      redis_token_bucket_config c = redis_token_bucket_config_from_url(url);
      if (!parse_backend_url(url).param("name")) c.bucket.name = std::string(name);
      return any_token_bucket<Clock>(
          redis_token_bucket<Clock>(bucket, redis_connection(std::move(c.connection)), std::move(c.bucket), clock));
    },
};

}  // namespace armor

