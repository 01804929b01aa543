// armor/redis/connection.hpp: armor::redis_connection, a shared handle on a
// small pool of connections to one Redis with a circuit breaker in front of
// them, and what every Redis-backed limit shares (redis_options,
// redis_connection_stats, redis_failure_mode, redis_time_source).
//
//     armor::redis_connection redis{{.host = "10.0.0.5", .port = 6379, .connections = 4}};
//     // Give `redis` (copies share the pool) to every limit kept in this Redis:
//     // armor::redis_quota_storage, armor::redis_token_bucket.
//     if (redis.breaker() == armor::breaker_state::open) log(redis.stats().failures);
//
// One Redis server (a standalone node, or the primary of a replicated
// pair), a Redis Cluster with `.cluster = true` (hash slots, a pool per
// node, MOVED and ASK followed), or a primary found through Sentinel with
// `.sentinels` and `.primary_name` (asked again after a failed call and
// every `.sentinel_recheck`). How a call is bounded (timeouts, the
// breaker, a pipeline's deadline, redirections, failovers): docs/redis.md.
// Link armor::redis (hiredis).
#pragma once

#include <armor/circuit_breaker.hpp>
#include <armor/clock.hpp>
#include <armor/detail/counter_set.hpp>
#include <armor/detail/redis_io.hpp>
#include <armor/detail/redis_reply.hpp>
#include <armor/detail/redis_scripts.hpp>
#include <armor/error.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <hiredis/hiredis.h>

#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace armor {

/// What a Redis-backed limit does when Redis does not answer.
enum class redis_failure_mode : std::uint8_t {
  fail_closed,     ///< refuse with errc::storage_unavailable
  fail_open,       ///< admit without counting, and count that in stats
  fallback_local,  ///< decide in this process against `local_share` of the limit
};

[[nodiscard]] constexpr std::string_view to_string(redis_failure_mode m) noexcept {
  switch (m) {
    case redis_failure_mode::fail_closed: return "fail_closed";
    case redis_failure_mode::fail_open: return "fail_open";
    case redis_failure_mode::fallback_local: return "fallback_local";
  }
  return "unknown";
}

/// Whose clock a Redis-backed limit's scripts read.
enum class redis_time_source : std::uint8_t {
  server,  ///< Redis's TIME, read inside each script: replicas agree whatever their clocks
  caller,  ///< the caller's clock (the limit's Clock): for tests on a manual clock
};

[[nodiscard]] constexpr std::string_view to_string(redis_time_source t) noexcept {
  switch (t) {
    case redis_time_source::server: return "server";
    case redis_time_source::caller: return "caller";
  }
  return "unknown";
}

/// How to reach Redis. An aggregate: `{.host = "10.0.0.5", .port = 6379}`.
struct redis_options {
  /// Host name or IPv4/IPv6 address; with port == 0, a Unix socket path.
  std::string host = "127.0.0.1";
  /// TCP port; 0 to use `host` as a Unix socket path.
  std::uint16_t port = 6379;
  /// Sent with AUTH after connecting, when not empty.
  std::string password{};
  /// Prepended to every key armor writes (no '{' or '}': armor adds the
  /// hash tags itself).
  std::string prefix = "armor";
  /// How long one connection attempt may take; > 0.
  std::chrono::milliseconds connect_timeout{250};
  /// How long a reply may take (and a call may wait for a free connection); > 0.
  std::chrono::milliseconds command_timeout{100};
  /// Connections in the pool, in [1, 64]; each is used by one call at a time.
  std::size_t connections = 2;
  /// The breaker in front of the connections: after `failure_threshold`
  /// consecutive failures it refuses calls for `open_for`, then lets one
  /// probe through (which reconnects).
  circuit_breaker_options breaker{.failure_threshold = 3, .open_for = std::chrono::seconds{1}};
  /// Redis Cluster: `host`:`port` and `seeds` are nodes to read the slot map
  /// from (CLUSTER SLOTS); each call goes to the primary serving its keys'
  /// slot, with a pool of `connections` per node, following MOVED and ASK.
  bool cluster = false;
  /// Cluster only: more seed nodes, each "host:port".
  std::vector<std::string> seeds{};
  /// Cluster only: the most redirections (MOVED, ASK, TRYAGAIN) one call
  /// follows before it counts as failed; in [1, 16].
  std::size_t max_redirects = 5;
  /// Sentinel: the sentinels to ask for the primary, each "host:port"
  /// (Sentinel's own port is usually 26379), asked in turn. Not empty turns
  /// Sentinel on: `host` and `port` are then not used; calls go to the
  /// address the sentinels give for `primary_name` (its ROLE checked on
  /// every connection), asked again after every failed call.
  std::vector<std::string> sentinels{};
  /// Sentinel: the name the sentinels monitor the primary under
  /// (`sentinel monitor <name> ...`); required with `sentinels`.
  std::string primary_name{};
  /// Sentinel: sent with AUTH to each sentinel, when not empty (`password`
  /// is the primary's).
  std::string sentinel_password{};
  /// Sentinel: how often a call also asks the sentinels whether the primary
  /// moved without any call failing (a failover asked for, whose old
  /// primary answers as a primary until the sentinels demote it); >= 0, 0
  /// for never (then only a failed call asks).
  std::chrono::milliseconds sentinel_recheck{1000};
};

/// A redis_connection's breaker state, and its counters since it was made.
/// Every call ends in exactly one of the first five counters; each field is
/// read with a relaxed load (consistent one by one, not as a whole).
struct redis_connection_stats {
  breaker_state breaker = breaker_state::closed;  ///< the breaker in front of the connections
  std::uint64_t calls = 0;              ///< scripts run to an answer
  std::uint64_t failures = 0;           ///< calls that failed (I/O, timeout, error reply, no connection)
  std::uint64_t breaker_rejections = 0; ///< calls the open breaker refused without touching the network
  std::uint64_t pool_timeouts = 0;      ///< calls that found no free connection within command_timeout
  std::uint64_t deadline_exceeded = 0;  ///< calls the caller's deadline ended (or found out of time) before an answer
  std::uint64_t connects = 0;           ///< connections made (the first ones and every reconnection)
  std::uint64_t script_reloads = 0;     ///< NOSCRIPT answers handled by EVAL
  std::uint64_t redirects = 0;          ///< cluster: MOVED, ASK and TRYAGAIN answers followed
  std::uint64_t slot_map_loads = 0;     ///< cluster: slot maps read (CLUSTER SLOTS: first, after MOVED, after a failure)
  std::uint64_t primary_lookups = 0;    ///< Sentinel: times the sentinels were asked for the primary (first call, after a failure, rechecks)
  std::uint64_t primary_changes = 0;    ///< Sentinel: times they named another primary than before (failovers followed)

  static constexpr auto fields() noexcept {
    using s = redis_connection_stats;
    constexpr std::string_view calls_help = "Calls to Redis, by how they ended.";
    return std::tuple{
        armor::gauge("breaker", &s::breaker, "armor_redis_breaker_state",
                     "State of the circuit breaker in front of the Redis connections: 0 closed, 1 open, 2 half-open."),
        armor::counter("calls", &s::calls, "armor_redis_calls_total", calls_help).labelled("outcome", "answered"),
        armor::counter("failures", &s::failures, "armor_redis_calls_total", calls_help).labelled("outcome", "failed"),
        armor::counter("breaker_rejections", &s::breaker_rejections, "armor_redis_calls_total", calls_help)
            .labelled("outcome", "breaker_open"),
        armor::counter("pool_timeouts", &s::pool_timeouts, "armor_redis_calls_total", calls_help)
            .labelled("outcome", "pool_busy"),
        armor::counter("deadline_exceeded", &s::deadline_exceeded, "armor_redis_calls_total", calls_help)
            .labelled("outcome", "deadline_exceeded"),
        armor::counter("connects", &s::connects, "armor_redis_connects_total",
                       "Connections made to Redis (the first ones and every reconnection)."),
        armor::counter("script_reloads", &s::script_reloads, "armor_redis_script_reloads_total",
                       "Scripts sent again with EVAL after a NOSCRIPT answer (Redis restarted or flushed its scripts)."),
        armor::counter("redirects", &s::redirects, "armor_redis_redirects_total",
                       "Redis Cluster redirections followed (MOVED, ASK, TRYAGAIN)."),
        armor::counter("slot_map_loads", &s::slot_map_loads, "armor_redis_slot_map_loads_total",
                       "Redis Cluster slot maps read (CLUSTER SLOTS): the first one, after a MOVED, after a failed call."),
        armor::counter("primary_lookups", &s::primary_lookups, "armor_redis_primary_lookups_total",
                       "Times the Redis Sentinels were asked for the primary: the first call, after each failed call, and each sentinel_recheck."),
        armor::counter("primary_changes", &s::primary_changes, "armor_redis_primary_changes_total",
                       "Times the Redis Sentinels named another primary than before (failovers followed)."),
    };
  }
};

namespace detail {

/// The counters behind redis_connection_stats.
enum class redis_connection_counter : std::uint8_t {
  calls,
  failures,
  breaker_rejections,
  pool_timeouts,
  deadline_exceeded,
  connects,
  script_reloads,
  redirects,
  slot_map_loads,
  primary_lookups,
  primary_changes,
  count
};

/// The pool, the breaker and the scripts behind a redis_connection (how a
/// call goes: docs/redis.md, "How a call is bounded").
class redis_client {
 public:
  explicit redis_client(redis_options o) : options_(checked(std::move(o))), breaker_(options_.breaker) {
    // With Sentinel the nodes are the primaries the sentinels name, added
    // as they are named (a failover adds one, or finds it known already).
    if (!sentinel() && add_node(options_.host, options_.port) == no_node) throw std::bad_alloc();
    if (options_.cluster) {
      for (const std::string& s : options_.seeds) {
        if (add_node(std::string_view(s).substr(0, s.rfind(':')), seed_port(s)) == no_node) throw std::bad_alloc();
      }
      slots_ = std::make_unique<std::atomic<std::uint16_t>[]>(redis_slot_count);
    }
  }
  redis_client(const redis_client&) = delete;
  redis_client& operator=(const redis_client&) = delete;
  ~redis_client() {
    for (auto& slot : nodes_) {
      node* n = slot.load(std::memory_order_relaxed);
      if (n == nullptr) continue;
      for (std::size_t i = 0; i < options_.connections; ++i) n->links[i].drop();
      delete n;
    }
  }

  [[nodiscard]] const redis_options& options() const noexcept { return options_; }

  /// Runs script `id` with `keys` and `args`: one round trip when the
  /// connection is up and the script loaded; ends by `until`. In a cluster,
  /// goes to the node serving the keys' slot (every key of a script shares
  /// one hash tag) and follows up to max_redirects MOVED, ASK and TRYAGAIN
  /// answers. Never throws.
  [[nodiscard]] redis_answer run(redis_script id, std::span<const std::string_view> keys,
                                 std::span<const std::string_view> args,
                                 redis_deadline until = redis_no_deadline) noexcept {
    redis_answer a;
    if (until != redis_no_deadline && std::chrono::steady_clock::now() >= until) {
      count(counter::deadline_exceeded);
      a.status = redis_status::deadline;
      return a;  // out of time: touches neither Redis nor the breaker
    }
    auto permit = breaker_.try_acquire();
    if (!permit) {
      count(counter::breaker_rejections);
      a.status = redis_status::breaker_open;
      return a;
    }
    bool cut = false;
    node* n = route(keys);
    if (n == nullptr && options_.cluster) n = load_map(keys, until, cut);
    if (sentinel()) {
      if (n != nullptr) n = recheck(*n, until);
      else n = find_primary(until, cut);
    }
    bool asking = false;
    bool refresh = false;
    std::size_t tries = 0;  // TRYAGAIN answers so far
    bool deadline_ended = cut && std::chrono::steady_clock::now() >= until;
    for (std::size_t hop = 0; n != nullptr; ++hop) {
      link* l = take(*n, until, cut);
      if (l == nullptr && cut) {
        count(counter::deadline_exceeded);
        a.status = redis_status::deadline;
        return a;  // the permit goes back unsettled
      }
      if (l == nullptr) {
        count(counter::pool_timeouts);
        a.status = redis_status::pool_busy;
        return a;  // the permit goes back unsettled: a busy pool says nothing of Redis
      }
      {
        const std::lock_guard<std::mutex> hold(l->m, std::adopt_lock);
        if (refresh && refresh_.try_lock()) {
          // After a MOVED: the whole map again, from the node the slot moved to.
          const std::lock_guard<std::mutex> reading(refresh_, std::adopt_lock);
          (void)read_slots(*l, *n, until);
        }
        a.reply = call(*l, *n, id, keys, args, until, asking);
        deadline_ended = !a.reply && l->cut && std::chrono::steady_clock::now() >= until;
        if (sentinel() && redis_error_starts_with(a.reply.get(), "READONLY")) {
          l->drop();  // a primary demoted to replica: the next connection checks ROLE again
        }
      }
      refresh = false;
      asking = false;
      if (!a.reply || a.reply->type != REDIS_REPLY_ERROR) break;
      const redirect r = redis_redirect_of(a.reply.get());
      if (!options_.cluster || r.kind == redirect_kind::none || hop >= options_.max_redirects) {
        a.reply.reset();  // an error answer: a failure
        break;
      }
      count(counter::redirects);
      if (r.kind == redirect_kind::try_again) {
        a.reply.reset();
        // The slot is moving and this script's keys are split for now:
        // pauses of 1, 2, 4, 8, 16, then 32 ms each (bounded by the deadline).
        const std::chrono::milliseconds pause{std::int64_t{1} << std::min<std::size_t>(tries++, 5)};
        if (!redis_pause(pause, until)) {
          deadline_ended = true;
          break;
        }
        if (node* owner = route(keys)) n = owner;  // again where the slot lives (ASKING lasted one command)
        continue;
      }
      const std::size_t to = add_node(r.host.empty() ? std::string_view(n->host) : r.host, r.port);
      a.reply.reset();  // r.host pointed into it
      if (to == no_node) break;
      if (r.kind == redirect_kind::moved) {
        slots_[r.slot].store(static_cast<std::uint16_t>(to + 1), std::memory_order_release);
        refresh = true;
      } else {
        asking = true;
      }
      n = nodes_[to].load(std::memory_order_acquire);
    }
    if (a.reply) {
      a.status = redis_status::ok;
      count(counter::calls);
      breaker_.record(std::move(permit).permit(), verdict::success());
    } else if (deadline_ended) {
      // The deadline ended the step that failed; the permit goes back unsettled.
      a.status = redis_status::deadline;
      count(counter::deadline_exceeded);
    } else {
      a.status = redis_status::failed;
      count(counter::failures);
      breaker_.record(std::move(permit).permit(), verdict::failure(errc::storage_unavailable));
      // A node that died (its replica promoted, or its slots given away)
      // sends no MOVED: the map is read again from another node.
      if (options_.cluster && n != nullptr) reread_elsewhere(*n, until);
      // A primary that died or was demoted (READONLY, or ROLE not master):
      // the sentinels are asked again (skipped if another call is asking).
      if (sentinel() && n != nullptr) reask(until);
    }
    return a;
  }

  [[nodiscard]] redis_connection_stats stats() const noexcept {
    const counter_set<counter> c = counters_;  // one relaxed load per counter
    return {.breaker = breaker_.state(),
            .calls = c.load(counter::calls),
            .failures = c.load(counter::failures),
            .breaker_rejections = c.load(counter::breaker_rejections),
            .pool_timeouts = c.load(counter::pool_timeouts),
            .deadline_exceeded = c.load(counter::deadline_exceeded),
            .connects = c.load(counter::connects),
            .script_reloads = c.load(counter::script_reloads),
            .redirects = c.load(counter::redirects),
            .slot_map_loads = c.load(counter::slot_map_loads),
            .primary_lookups = c.load(counter::primary_lookups),
            .primary_changes = c.load(counter::primary_changes)};
  }

  [[nodiscard]] breaker_state breaker() const noexcept { return breaker_.state(); }

 private:
  struct link {
    std::mutex m;
    redisContext* ctx = nullptr;
    std::array<std::string, static_cast<std::size_t>(redis_script::count)> sha;
    std::chrono::nanoseconds timeout{0};  // the reply timeout set on ctx
    bool cut = false;                     // the last step's limit was the caller's deadline
    void drop() noexcept {
      if (ctx != nullptr) redisFree(ctx);
      ctx = nullptr;
      for (auto& s : sha) s.clear();
    }
  };
  // One server and its pool; in a cluster, one per node seen (never removed
  // before the client goes).
  struct node {
    node(std::string_view h, std::uint16_t p, std::size_t connections)
        : host(h), port(p), links(std::make_unique<link[]>(connections)) {}
    std::string host;
    std::uint16_t port;
    std::unique_ptr<link[]> links;
    std::atomic<std::size_t> next{0};
  };
  using redirect_kind = redis_redirect_kind;
  using redirect = redis_redirect;
  using counter = redis_connection_counter;
  static constexpr std::size_t max_nodes = 256;
  static constexpr std::size_t no_node = max_nodes;
  static constexpr std::size_t max_sentinels = 64;

  void count(counter c) noexcept { counters_.add(c); }
  static std::int64_t redis_now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  [[nodiscard]] bool sentinel() const noexcept { return !options_.sentinels.empty(); }

  static std::uint16_t seed_port(std::string_view s) noexcept { return redis_port_of(s); }

  static redis_options checked(redis_options o) {
    const auto fail = [](const std::string& what) { invalid_config("armor::redis_options: " + what); };
    if (o.host.empty()) fail("host must not be empty");
    if (o.prefix.find_first_of("{}") != std::string::npos) {
      fail("prefix must not contain '{' or '}' (got \"" + o.prefix + "\"): armor adds the hash tags");
    }
    if (o.connect_timeout.count() <= 0) {
      fail("connect_timeout must be positive (got " + std::to_string(o.connect_timeout.count()) + " ms)");
    }
    if (o.command_timeout.count() <= 0) {
      fail("command_timeout must be positive (got " + std::to_string(o.command_timeout.count()) + " ms)");
    }
    if (o.connections < 1 || o.connections > 64) {
      fail("connections must be within [1, 64] (got " + std::to_string(o.connections) + ")");
    }
    if (!o.cluster && !o.seeds.empty()) fail("seeds are for a cluster: set cluster = true, or leave seeds empty");
    if (o.cluster && o.port == 0) fail("cluster needs TCP nodes: port must not be 0 (a Unix socket) with cluster");
    for (const std::string& s : o.seeds) {
      if (s.rfind(':') == 0 || seed_port(s) == 0) fail("seeds: \"" + s + "\" is not host:port (port in [1, 65535])");
    }
    if (o.seeds.size() + 1 > max_nodes) fail("seeds: at most " + std::to_string(max_nodes - 1) + " seed nodes");
    if (o.max_redirects < 1 || o.max_redirects > 16) {
      fail("max_redirects must be within [1, 16] (got " + std::to_string(o.max_redirects) + ")");
    }
    if (o.sentinels.empty()) {
      if (!o.primary_name.empty()) fail("primary_name is for Sentinel: list the sentinels too, or leave it empty");
      if (!o.sentinel_password.empty()) fail("sentinel_password is for Sentinel: list the sentinels too, or leave it empty");
    } else {
      if (o.cluster) fail("sentinels and cluster exclude each other: a cluster finds its primaries itself");
      if (o.primary_name.empty()) fail("primary_name must name the primary the sentinels monitor (sentinel monitor <name>)");
      if (o.sentinel_recheck.count() < 0) {
        fail("sentinel_recheck must not be negative (got " + std::to_string(o.sentinel_recheck.count()) +
             " ms; 0 for never)");
      }
      if (o.sentinels.size() > max_sentinels) fail("sentinels: at most " + std::to_string(max_sentinels) + " sentinels");
      for (const std::string& s : o.sentinels) {
        if (s.rfind(':') == 0 || seed_port(s) == 0) {
          fail("sentinels: \"" + s + "\" is not host:port (port in [1, 65535])");
        }
      }
    }
    return o;
  }

  // The node serving the keys' slot (the one server outside a cluster);
  // nullptr while the slot map does not name one.
  node* route(std::span<const std::string_view> keys) const noexcept {
    if (sentinel()) {
      const std::size_t at = primary_.load(std::memory_order_acquire);
      return at == no_node ? nullptr : nodes_[at].load(std::memory_order_acquire);
    }
    if (!options_.cluster) return nodes_[0].load(std::memory_order_relaxed);
    const std::uint16_t slot = keys.empty() ? 0 : redis_key_slot(keys[0]);
    const std::uint16_t at = slots_[slot].load(std::memory_order_acquire);
    return at == 0 ? nullptr : nodes_[at - 1U].load(std::memory_order_acquire);
  }

  // The index of the node at host:port, added if new; no_node when the
  // table is full (or out of memory). Off the hot path: topology changes only.
  std::size_t add_node(std::string_view host, std::uint16_t port) noexcept {
    const auto find = [&]() -> std::size_t {
      const std::size_t count = node_count_.load(std::memory_order_acquire);
      for (std::size_t i = 0; i < count; ++i) {
        const node* n = nodes_[i].load(std::memory_order_acquire);
        if (n != nullptr && n->port == port && n->host == host) return i;
      }
      return no_node;
    };
    if (const std::size_t i = find(); i != no_node) return i;
    try {
      const std::lock_guard<std::mutex> adding(topology_);
      if (const std::size_t i = find(); i != no_node) return i;
      const std::size_t i = node_count_.load(std::memory_order_relaxed);
      if (i >= max_nodes) return no_node;
      nodes_[i].store(new node(host, port, options_.connections), std::memory_order_release);
      node_count_.store(i + 1, std::memory_order_release);
      return i;
    } catch (...) {
      return no_node;
    }
  }

  // Reads the slot map (CLUSTER SLOTS) on `l`, a locked connection to `from`.
  bool read_slots(link& l, const node& from, redis_deadline until) noexcept {
    l.cut = false;
    if ((l.ctx == nullptr || l.ctx->err != 0) && !connect(l, from, until)) return false;
    const std::array<std::string_view, 2> words{"CLUSTER", "SLOTS"};
    const redis_reply_ptr r = command(l, words, until);
    if (!r || r->type != REDIS_REPLY_ARRAY) return false;
    count(counter::slot_map_loads);
    for (std::size_t i = 0; i < r->elements; ++i) {
      const std::optional<redis_slot_range> range = redis_cluster_slots_entry(r.get(), i);
      if (!range) continue;
      // No host: "the host you asked", or unknown ("?").
      const std::size_t to = add_node(range->host.empty() ? std::string_view(from.host) : range->host, range->port);
      if (to == no_node) continue;
      for (std::size_t s = range->first; s <= range->last; ++s) {
        slots_[s].store(static_cast<std::uint16_t>(to + 1), std::memory_order_release);
      }
    }
    return true;
  }

  // The first slot map, from whichever known node answers; the node serving
  // the keys then, or nullptr (`cut`: the deadline ended the wait).
  node* load_map(std::span<const std::string_view> keys, redis_deadline until, bool& cut) noexcept {
    if (!redis_lock_until(refresh_, options_.command_timeout, until, cut)) return nullptr;
    const std::lock_guard<std::mutex> reading(refresh_, std::adopt_lock);
    if (node* n = route(keys)) return n;  // another call read it meanwhile
    const std::size_t count = node_count_.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < count; ++i) {
      node& from = *nodes_[i].load(std::memory_order_acquire);
      link* l = take(from, until, cut);
      if (l == nullptr && cut) return nullptr;
      if (l == nullptr) continue;
      const std::lock_guard<std::mutex> hold(l->m, std::adopt_lock);
      if (read_slots(*l, from, until)) return route(keys);
      if (l->cut) {
        cut = true;
        return nullptr;
      }
    }
    return nullptr;
  }

  // After a call failed on `failed`: the slot map again, from the first
  // other node that answers; skipped if another call is reading it.
  void reread_elsewhere(const node& failed, redis_deadline until) noexcept {
    if (!refresh_.try_lock()) return;
    const std::lock_guard<std::mutex> reading(refresh_, std::adopt_lock);
    const std::size_t count = node_count_.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < count; ++i) {
      node& from = *nodes_[i].load(std::memory_order_acquire);
      if (&from == &failed) continue;
      bool cut = false;
      link* l = take(from, until, cut);
      if (l == nullptr && cut) return;
      if (l == nullptr) continue;
      const std::lock_guard<std::mutex> hold(l->m, std::adopt_lock);
      if (read_slots(*l, from, until) || l->cut) return;
    }
  }

  // Sentinel, no primary known yet: asks the sentinels (or waits for the
  // call asking them); the primary then, or nullptr (`cut`: the deadline
  // ended the wait).
  node* find_primary(redis_deadline until, bool& cut) noexcept {
    if (!redis_lock_until(refresh_, options_.command_timeout, until, cut)) return nullptr;
    const std::lock_guard<std::mutex> asking(refresh_, std::adopt_lock);
    if (node* n = route({})) return n;  // another call asked meanwhile
    (void)ask_sentinels(until, cut);
    return route({});
  }

  // Sentinel, a primary known: once per sentinel_recheck, the call that
  // finds it over asks the sentinels again (skipped if another call is
  // asking) before it runs; the primary then.
  node* recheck(node& n, redis_deadline until) noexcept {
    if (options_.sentinel_recheck.count() == 0) return &n;
    const std::int64_t now = redis_now_ns();
    if (now < next_recheck_.load(std::memory_order_relaxed) || !refresh_.try_lock()) return &n;
    const std::lock_guard<std::mutex> asking(refresh_, std::adopt_lock);
    if (now < next_recheck_.load(std::memory_order_relaxed)) return &n;  // asked meanwhile
    bool cut = false;
    (void)ask_sentinels(until, cut);
    node* to = route({});
    return to != nullptr ? to : &n;
  }

  // Sentinel, after a failed call: the sentinels asked again; skipped if
  // another call is asking them.
  void reask(redis_deadline until) noexcept {
    if (!refresh_.try_lock()) return;
    const std::lock_guard<std::mutex> asking(refresh_, std::adopt_lock);
    bool cut = false;
    (void)ask_sentinels(until, cut);
  }

  // Asks each sentinel in turn, from the last one that answered, for the
  // primary's address, and makes the first answer the primary (a new one:
  // the idle connections to the old one are closed). With refresh_ held.
  // False when none answered (the primary known before stays, if any).
  bool ask_sentinels(redis_deadline until, bool& cut) noexcept {
    count(counter::primary_lookups);
    // Read and written under refresh_; atomic for the unlocked first look in recheck().
    next_recheck_.store(redis_now_ns() +
                            std::chrono::nanoseconds(options_.sentinel_recheck).count(),
                        std::memory_order_relaxed);
    const std::size_t total = options_.sentinels.size();
    const std::size_t first = sentinel_first_.load(std::memory_order_relaxed);
    for (std::size_t k = 0; k < total; ++k) {
      const std::size_t i = (first + k) % total;
      const std::optional<std::pair<std::string, std::uint16_t>> at = ask_sentinel(options_.sentinels[i], until, cut);
      if (!at) {
        if (cut) return false;
        continue;
      }
      sentinel_first_.store(i, std::memory_order_relaxed);  // only a hint: relaxed is enough
      const std::size_t to = add_node(at->first, at->second);
      if (to == no_node) return false;
      const std::size_t was = primary_.exchange(to, std::memory_order_acq_rel);
      if (was != to && was != no_node) {
        count(counter::primary_changes);
        close_idle(*nodes_[was].load(std::memory_order_acquire));
      }
      return true;
    }
    return false;
  }

  // `SENTINEL get-master-addr-by-name <primary_name>` on a connection of
  // its own to the sentinel at "host:port" (closed after): the primary's
  // host and port, or nothing (no connection, no answer in time, or a name
  // the sentinel does not monitor).
  std::optional<std::pair<std::string, std::uint16_t>> ask_sentinel(std::string_view where, redis_deadline until,
                                                                     bool& cut) noexcept {
    try {
      const std::string host(where.substr(0, where.rfind(':')));
      const std::chrono::nanoseconds limit = redis_limit(options_.connect_timeout, until, cut);
      if (limit <= std::chrono::nanoseconds::zero()) return std::nullopt;
      const std::unique_ptr<redisContext, void (*)(redisContext*)> c(
          redisConnectWithTimeout(host.c_str(), seed_port(where), redis_timeval(limit)), &redisFree);
      if (c == nullptr || c->err != 0) return std::nullopt;
      const auto ask = [&](std::span<const std::string_view> words) -> redis_reply_ptr {
        const std::chrono::nanoseconds left = redis_limit(options_.command_timeout, until, cut);
        if (left <= std::chrono::nanoseconds::zero() || redisSetTimeout(c.get(), redis_timeval(left)) != REDIS_OK) {
          return nullptr;
        }
        std::array<const char*, 4> argv{};
        std::array<std::size_t, 4> lens{};
        for (std::size_t i = 0; i < words.size(); ++i) {
          argv[i] = words[i].data();
          lens[i] = words[i].size();
        }
        return redis_reply_ptr(static_cast<redisReply*>(
            redisCommandArgv(c.get(), static_cast<int>(words.size()), argv.data(), lens.data())));
      };
      if (!options_.sentinel_password.empty()) {
        const std::array<std::string_view, 2> auth{"AUTH", options_.sentinel_password};
        const redis_reply_ptr r = ask(auth);
        if (!r || r->type == REDIS_REPLY_ERROR) return std::nullopt;
      }
      const std::array<std::string_view, 3> words{"SENTINEL", "get-master-addr-by-name", options_.primary_name};
      const redis_reply_ptr r = ask(words);
      const std::optional<redis_sentinel_primary> at = redis_sentinel_primary_reply(r.get());
      if (!at) return std::nullopt;
      return std::pair{std::string(at->host), at->port};
    } catch (...) {  // out of memory for a host name
      return std::nullopt;
    }
  }

  // Closes the connections to `n` that no call holds (the others are
  // closed by their next failure).
  void close_idle(node& n) noexcept {
    for (std::size_t i = 0; i < options_.connections; ++i) {
      link& l = n.links[i];
      if (!l.m.try_lock()) continue;
      l.drop();
      l.m.unlock();
    }
  }

  // Sleeps `d`, or until `until` if that is sooner; false when no time is left.
  static bool redis_pause(std::chrono::nanoseconds d, redis_deadline until) noexcept {
    bool cut = false;
    const std::chrono::nanoseconds limit = redis_limit(d, until, cut);
    if (limit <= std::chrono::nanoseconds::zero()) return false;
    std::this_thread::sleep_for(limit);
    return !cut;
  }

  // A free connection to `n`, locked; nullptr when none frees up in time.
  link* take(node& n, redis_deadline until, bool& cut) noexcept {
    const std::size_t count = options_.connections;
    const std::size_t first = n.next.fetch_add(1, std::memory_order_relaxed) % count;
    for (std::size_t k = 0; k < count; ++k) {
      link& l = n.links[(first + k) % count];
      if (l.m.try_lock()) return &l;
    }
    link& l = n.links[first];
    return redis_lock_until(l.m, options_.command_timeout, until, cut) ? &l : nullptr;
  }

  bool connect(link& l, const node& n, redis_deadline until) noexcept {
    l.drop();
    const std::chrono::nanoseconds limit = redis_limit(options_.connect_timeout, until, l.cut);
    if (limit <= std::chrono::nanoseconds::zero()) return false;
    count(counter::connects);
    const timeval ct = redis_timeval(limit);
    l.ctx = n.port == 0 ? redisConnectUnixWithTimeout(n.host.c_str(), ct)
                        : redisConnectWithTimeout(n.host.c_str(), n.port, ct);
    if (l.ctx == nullptr || l.ctx->err != 0) {
      l.drop();
      return false;
    }
    if (redisSetTimeout(l.ctx, redis_timeval(options_.command_timeout)) != REDIS_OK) {
      l.drop();
      return false;
    }
    l.timeout = options_.command_timeout;
    (void)redisEnableKeepAlive(l.ctx);
    if (!options_.password.empty()) {
      const std::array<std::string_view, 2> auth{"AUTH", options_.password};
      const redis_reply_ptr r = command(l, auth, until);
      if (!r || r->type == REDIS_REPLY_ERROR) {
        l.drop();
        return false;
      }
    }
    if (sentinel() && !is_primary(l, until)) {
      l.drop();  // the sentinels named a replica (a failover under way, or over): asked again after this failure
      return false;
    }
    return true;
  }

  // Whether the server on `l` answers ROLE with "master".
  bool is_primary(link& l, redis_deadline until) noexcept {
    const std::array<std::string_view, 1> role{"ROLE"};
    const redis_reply_ptr r = command(l, role, until);
    return redis_role_is_primary(r.get());
  }

  // One command; null (and the connection dropped) on I/O error or timeout.
  // The reply may take command_timeout, or until `until` if that is sooner
  // (null, the connection kept, if no time is left).
  redis_reply_ptr command(link& l, std::span<const std::string_view> words, redis_deadline until) noexcept {
    const std::chrono::nanoseconds limit = redis_limit(options_.command_timeout, until, l.cut);
    if (limit <= std::chrono::nanoseconds::zero()) return nullptr;
    if (limit != l.timeout) {
      if (redisSetTimeout(l.ctx, redis_timeval(limit)) != REDIS_OK) {
        l.drop();
        return nullptr;
      }
      l.timeout = limit;
    }
    std::array<const char*, redis_args::max_args + 8> argv{};
    std::array<std::size_t, redis_args::max_args + 8> lens{};
    if (words.size() > argv.size()) return nullptr;
    for (std::size_t i = 0; i < words.size(); ++i) {
      argv[i] = words[i].data();
      lens[i] = words[i].size();
    }
    void* r = redisCommandArgv(l.ctx, static_cast<int>(words.size()), argv.data(), lens.data());
    if (r == nullptr) {
      l.drop();
      return nullptr;
    }
    return redis_reply_ptr(static_cast<redisReply*>(r));
  }

  // The script's answer on `l`, a locked connection to `n`: a reply, an
  // error reply (run() reads redirections from it), or null. `asking`: sent
  // after ASKING (an ASK redirection), which lasts for one command.
  redis_reply_ptr call(link& l, const node& n, redis_script id, std::span<const std::string_view> keys,
                       std::span<const std::string_view> args, redis_deadline until, bool asking) noexcept {
    l.cut = false;
    try {
      if ((l.ctx == nullptr || l.ctx->err != 0) && !connect(l, n, until)) return nullptr;
      const auto ask = [&] {
        if (!asking) return true;
        const std::array<std::string_view, 1> word{"ASKING"};
        const redis_reply_ptr r = command(l, word, until);
        return r && r->type == REDIS_REPLY_STATUS;
      };
      const auto sid = static_cast<std::size_t>(id);
      const std::string& body = redis_script_body(id);
      if (l.sha[sid].empty()) {
        const std::array<std::string_view, 3> load{"SCRIPT", "LOAD", body};
        redis_reply_ptr r = command(l, load, until);
        if (!r) return nullptr;
        if (r->type != REDIS_REPLY_STRING) return nullptr;
        l.sha[sid].assign(r->str, r->len);
      }
      std::array<std::string_view, redis_args::max_args + 8> words{};
      if (keys.size() + args.size() + 3 > words.size()) return nullptr;
      std::array<char, 24> nkeys{};
      const auto [end, ec] = std::to_chars(nkeys.data(), nkeys.data() + nkeys.size(), keys.size());
      (void)ec;
      std::size_t w = 0;
      words[w++] = "EVALSHA";
      words[w++] = l.sha[sid];
      words[w++] = std::string_view(nkeys.data(), static_cast<std::size_t>(end - nkeys.data()));
      for (const std::string_view k : keys) words[w++] = k;
      for (const std::string_view a : args) words[w++] = a;
      if (!ask()) return nullptr;
      redis_reply_ptr r = command(l, {words.data(), w}, until);
      if (redis_error_starts_with(r.get(), "NOSCRIPT")) {
        count(counter::script_reloads);
        words[0] = "EVAL";
        words[1] = body;
        if (!ask()) return nullptr;
        r = command(l, {words.data(), w}, until);
      }
      return r;
    } catch (...) {  // out of memory for a SHA string
      return nullptr;
    }
  }

  redis_options options_;
  circuit_breaker<steady_clock> breaker_;
  std::array<std::atomic<node*>, max_nodes> nodes_{};  // published once each, freed by the destructor
  std::atomic<std::size_t> node_count_{0};
  std::mutex topology_;  // adds nodes
  std::mutex refresh_;   // one slot map read at a time
  std::unique_ptr<std::atomic<std::uint16_t>[]> slots_;  // cluster: node index + 1 per slot, 0 unknown
  std::atomic<std::size_t> primary_{no_node};            // Sentinel: the primary's node, no_node until named
  std::atomic<std::size_t> sentinel_first_{0};           // Sentinel: the one to ask first (the last that answered)
  std::atomic<std::int64_t> next_recheck_{0};            // Sentinel: steady_clock ns when a call asks again
  counter_set<counter> counters_;
};

/// The counters of a Redis-backed limit (redis_quota_storage,
/// redis_token_bucket); `leased`, `returned` and `lost` count units or
/// tokens. Their stats types share the members named after the first five
/// and `leases` (redis_limit_snapshot fills them).
enum class redis_limit_counter : std::uint8_t {
  unanswered,
  failed_open,
  failed_closed,
  served_locally,
  deadline_exceeded,
  leases,
  leased,
  returned,
  lost,
  count
};
using redis_limit_counters = counter_set<redis_limit_counter>;

/// Fills the members every Redis limit's stats share from a snapshot of
/// its counters.
template <class Stats>
void redis_limit_snapshot(Stats& s, const redis_limit_counters& c) noexcept {
  s.unanswered = c.load(redis_limit_counter::unanswered);
  s.failed_open = c.load(redis_limit_counter::failed_open);
  s.failed_closed = c.load(redis_limit_counter::failed_closed);
  s.served_locally = c.load(redis_limit_counter::served_locally);
  s.deadline_exceeded = c.load(redis_limit_counter::deadline_exceeded);
  s.leases = c.load(redis_limit_counter::leases);
}

/// Checks the options every Redis limit shares: its name (`what` names the
/// option), on_failure with local_share, and time. `fail(message)` throws.
template <class Fail>
void redis_check_limit_options(const Fail& fail, std::string_view what, const std::string& name,
                               redis_failure_mode on_failure, double local_share, redis_time_source time) {
  if (name.empty()) fail(std::string(what) + " must not be empty");
  if (name.find_first_of("{}") != std::string::npos) {
    fail(std::string(what) + " must not contain '{' or '}' (got \"" + name + "\")");
  }
  if (on_failure != redis_failure_mode::fail_closed && on_failure != redis_failure_mode::fail_open &&
      on_failure != redis_failure_mode::fallback_local) {
    fail("on_failure is not a redis_failure_mode value");
  }
  if (on_failure == redis_failure_mode::fallback_local && !(local_share > 0.0 && local_share <= 1.0)) {
    fail("local_share must be within (0, 1] with fallback_local (got " + std::to_string(local_share) +
         "); 1 / replicas keeps the replicas together within the limit");
  }
  if (time != redis_time_source::server && time != redis_time_source::caller) {
    fail("time is not a redis_time_source value");
  }
}

}  // namespace detail

/// A shared handle on a pool of connections to one Redis (or a pool per
/// node of a Redis Cluster), with its circuit breaker. Copies share the
/// pools: give the same handle to every limit that uses this Redis.
/// Connects on first use (a cluster also reads its slot map then; with
/// Sentinel, the sentinels are asked then). Every member is thread-safe; a
/// call that reaches Redis holds one pooled connection (a std::mutex each)
/// for its round trip.
class redis_connection {
 public:
  /// Checks the options (throws armor::error(invalid_argument) naming a bad
  /// one). Does not connect yet.
  explicit redis_connection(redis_options options = {})
      : client_(std::make_shared<detail::redis_client>(std::move(options))) {}

  [[nodiscard]] const redis_options& options() const noexcept { return client_->options(); }
  [[nodiscard]] redis_connection_stats stats() const noexcept { return client_->stats(); }
  /// The state of the breaker in front of the connections.
  [[nodiscard]] breaker_state breaker() const noexcept { return client_->breaker(); }

  /// For armor's Redis backends.
  [[nodiscard]] detail::redis_client& client() const noexcept { return *client_; }

 private:
  std::shared_ptr<detail::redis_client> client_;
};

}  // namespace armor
