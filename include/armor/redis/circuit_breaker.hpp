// armor/redis/circuit_breaker.hpp: armor::redis_circuit_breaker, a circuit
// breaker whose open / half-open / closed state is shared through Redis by
// every instance that names it, guarded so that one bad instance cannot open
// it for all; each instance keeps its own local armor::circuit_breaker too.
//
//     armor::redis_connection redis{{.host = "10.0.0.5", .port = 6379}};
//     armor::redis_circuit_breaker<> upstream{{.failure_threshold = 5}, redis,
//                                             {.name = "payments", .min_reporting_instances = 2}};
//     if (auto d = upstream.try_acquire()) {
//         upstream.record(std::move(d).permit(), call_upstream());  // the call's armor::verdict
//     } else {
//         reply_503(d.retry_after());  // errc::circuit_open: shared or local breaker open
//     }
//
// Admission reads a cached copy of the shared state, never Redis: the call
// that finds the copy older than `sync_interval` sends this instance's
// outcomes and reads the state back in one Lua script (one round trip,
// bounded by the connection's command_timeout); the other calls go on with
// the copy. The shared breaker opens when its window holds minimum_calls,
// failure_rate of them failed and at least min_reporting_instances distinct
// instances reported failures. Redis away: the local breaker alone decides.
// Keys, staleness, probes, what is lost: docs/redis.md. Link armor::redis.
#pragma once

#include <armor/circuit_breaker.hpp>
#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/detail/redis_io.hpp>
#include <armor/detail/redis_reply.hpp>
#include <armor/detail/redis_scripts.hpp>
#include <armor/error.hpp>
#include <armor/policy.hpp>
#include <armor/redis/connection.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

namespace armor {

/// The shared side of armor::redis_circuit_breaker. An aggregate:
/// `{.name = "payments", .min_reporting_instances = 3}`.
struct redis_circuit_breaker_options {
  /// The breaker's name: instances (in any process) with the same name share
  /// its state. Not empty; no '{' or '}'.
  std::string name = "default";
  /// This instance's id among them (what min_reporting_instances counts);
  /// empty (the default): "<host name>-<pid>", one id per process. No '{' or '}'.
  std::string instance{};
  /// How old the cached copy of the shared state may get before a call
  /// refreshes it (and sends the outcomes gathered meanwhile); > 0.
  std::chrono::nanoseconds sync_interval = std::chrono::milliseconds{100};
  /// Distinct instances that must have reported a failure in the window
  /// before the shared breaker opens; >= 1 (1: no guard).
  std::uint32_t min_reporting_instances = 2;
  /// Failure rate over the shared window that opens it, in (0, 1].
  double failure_rate = 0.5;
  /// The shared window's rate is judged only once it holds this many calls; >= 1.
  std::uint32_t minimum_calls = 20;
  /// The shared window: a fixed window of this span (whole milliseconds, >= 1 ms).
  std::chrono::nanoseconds window = std::chrono::seconds{10};
  /// How long the shared breaker stays open (whole milliseconds, >= 1 ms).
  std::chrono::nanoseconds open_for = std::chrono::seconds{30};
  /// Probes admitted at a time, by all instances together, while half-open;
  /// in [1, 65535]. One instance holds at most half_open_max_calls /
  /// min_reporting_instances of them (at least 1).
  std::uint32_t half_open_max_calls = 1;
  /// Successful probes that close the shared breaker; in [1, 65535].
  std::uint32_t success_threshold = 1;
  /// Whose clock the script reads: Redis's (the default) or the caller's.
  redis_time_source time = redis_time_source::server;
};

/// Counters of a redis_circuit_breaker since it was made; each read with a
/// relaxed load. The local breaker has its own (local().stats()).
struct redis_circuit_breaker_stats {
  std::uint64_t syncs = 0;              ///< round trips that refreshed the shared copy
  std::uint64_t unanswered = 0;         ///< round trips Redis did not answer (the local breaker alone decided)
  std::uint64_t shared_rejections = 0;  ///< calls refused because the shared breaker was open or out of probes
  std::uint64_t probes = 0;             ///< half-open probe slots granted to this instance
  std::uint64_t reported = 0;           ///< outcomes sent to Redis (successes and failures)
  std::uint64_t dropped = 0;            ///< outcomes not sent: of an older generation, or lost with a failed round trip

  static constexpr auto fields() noexcept {
    using s = redis_circuit_breaker_stats;
    return std::tuple{
        armor::counter("syncs", &s::syncs, "armor_redis_breaker_syncs_total",
                       "Round trips that refreshed the cached copy of the shared breaker."),
        armor::counter("unanswered", &s::unanswered, "armor_redis_breaker_unanswered_total",
                       "Round trips of the shared breaker that Redis did not answer."),
        armor::counter("shared_rejections", &s::shared_rejections, "armor_redis_breaker_shared_rejections_total",
                       "Calls refused because the shared breaker was open or had no probe slot."),
        armor::counter("probes", &s::probes, "armor_redis_breaker_probes_total",
                       "Half-open probe slots of the shared breaker granted to this instance."),
        armor::counter("reported", &s::reported, "armor_redis_breaker_reported_total",
                       "Outcomes sent to the shared breaker."),
        armor::counter("dropped", &s::dropped, "armor_redis_breaker_dropped_total",
                       "Outcomes not sent to the shared breaker (older generation, or a failed round trip)."),
    };
  }
};

namespace detail {

/// The shared options that may change at run time, as one trivially
/// copyable value (read whole from a config_cell).
struct redis_breaker_limits {
  std::chrono::nanoseconds sync_interval{};
  std::chrono::nanoseconds window{};
  std::chrono::nanoseconds open_for{};
  double failure_rate = 0.0;
  std::uint32_t min_reporting_instances = 0;
  std::uint32_t minimum_calls = 0;
  std::uint32_t half_open_max_calls = 0;
  std::uint32_t success_threshold = 0;

  static redis_breaker_limits of(const redis_circuit_breaker_options& o) noexcept {
    return {o.sync_interval,           o.window,        o.open_for,           o.failure_rate,
            o.min_reporting_instances, o.minimum_calls, o.half_open_max_calls, o.success_threshold};
  }
  void into(redis_circuit_breaker_options& o) const noexcept {
    o.sync_interval = sync_interval;
    o.window = window;
    o.open_for = open_for;
    o.failure_rate = failure_rate;
    o.min_reporting_instances = min_reporting_instances;
    o.minimum_calls = minimum_calls;
    o.half_open_max_calls = half_open_max_calls;
    o.success_threshold = success_threshold;
  }
};

/// Checks the shared options as construction and reconfigure() do: throws
/// armor::error(invalid_argument) naming the first bad one, `who` first.
inline void redis_breaker_check(const redis_circuit_breaker_options& o, const char* who) {
  const auto fail = [who](const std::string& what) {
    std::string m(who);
    m += ": ";
    m += what;
    invalid_config(m);
  };
  const auto braces = [](const std::string& v) { return v.find_first_of("{}") != std::string::npos; };
  if (o.name.empty() || braces(o.name)) {
    std::string m("name must not be empty nor hold '{' or '}' (got \"");
    m += o.name;
    m += "\")";
    fail(m);
  }
  if (braces(o.instance)) {
    std::string m("instance must not hold '{' or '}' (got \"");
    m += o.instance;
    m += "\")";
    fail(m);
  }
  if (o.sync_interval.count() <= 0) fail("sync_interval must be positive");
  if (o.min_reporting_instances < 1) fail("min_reporting_instances must be at least 1");
  if (!std::isfinite(o.failure_rate) || o.failure_rate <= 0.0 || o.failure_rate > 1.0) {
    std::string m("failure_rate must be in (0, 1] (got ");
    m += std::to_string(o.failure_rate);
    m += ")";
    fail(m);
  }
  if (o.minimum_calls < 1) fail("minimum_calls must be at least 1");
  constexpr auto one_ms = std::chrono::milliseconds{1};
  constexpr auto far = std::chrono::hours{24 * 365};
  if (o.window < one_ms || o.window > far) fail("window must be within [1 ms, 365 days]");
  if (o.open_for < one_ms || o.open_for > far) fail("open_for must be within [1 ms, 365 days]");
  if (o.half_open_max_calls < 1 || o.half_open_max_calls > 65535) fail("half_open_max_calls must be in [1, 65535]");
  if (o.success_threshold < 1 || o.success_threshold > 65535) fail("success_threshold must be in [1, 65535]");
}

/// The shared part of a redis_circuit_breaker, behind a pointer so that it moves.
class redis_breaker_shared {
 public:
  redis_breaker_shared(redis_connection conn, redis_circuit_breaker_options o, health_rule rule, bool throttled)
      : conn_(std::move(conn)),
        options_(std::move(o)),
        limits_(redis_breaker_limits::of(options_)),
        default_instance_(options_.instance.empty()),
        key_(conn_.options().prefix + ":cb:{" + options_.name + "}"),
        reporters_key_(key_ + ":r"),
        rule_(rule),
        count_throttled_(throttled) {
    if (options_.instance.empty()) {
      // Host name and pid: in containers every pid may be 1, host names
      // differ. One id per process, whatever the number of objects: two
      // objects of one name in one process are one reporter, not two.
      std::array<char, 256> host{};
      if (::gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
      options_.instance = host.data();
      options_.instance += "-";
      options_.instance += std::to_string(::getpid());
    }
  }
  redis_breaker_shared(const redis_breaker_shared&) = delete;
  redis_breaker_shared& operator=(const redis_breaker_shared&) = delete;
  ~redis_breaker_shared() = default;

  static constexpr std::uint8_t closed = 0, open = 1, half_open = 2;

  /// What the shared copy says about a call at `t`.
  struct gate {
    bool admitted = false;
    bool probe = false;
    std::uint64_t gen = 0;
    std::int64_t retry_after_ns = -1;  // -1: unknown
  };

  gate enter(std::int64_t t, redis_deadline until) noexcept {
    std::uint8_t ph = phase_.load(std::memory_order_acquire);
    if (t >= next_sync_.load(std::memory_order_relaxed) ||
        (ph == open && t >= open_until_.load(std::memory_order_relaxed))) {
      sync(t, until, true);
      ph = phase_.load(std::memory_order_acquire);
    }
    gate g;
    g.gen = gen_.load(std::memory_order_acquire);
    if (ph == closed) {
      g.admitted = true;
      return g;
    }
    if (ph == open) {
      const std::int64_t left = open_until_.load(std::memory_order_relaxed) - t;
      g.retry_after_ns = left > 0 ? left : 0;
      add(shared_rejections_);
      return g;
    }
    std::int64_t probes = probes_left_.load(std::memory_order_relaxed);
    while (probes > 0) {
      if (probes_left_.compare_exchange_weak(probes, probes - 1, std::memory_order_acq_rel)) {
        g.admitted = true;
        g.probe = true;
        return g;
      }
    }
    add(shared_rejections_);
    return g;
  }

  /// A probe slot taken by enter() and not used (the local breaker refused the call).
  void unused_probe(std::uint64_t gen) noexcept {
    if (gen == gen_.load(std::memory_order_acquire)) probes_left_.fetch_add(1, std::memory_order_relaxed);
  }

  /// The outcome of a call admitted under `gen`.
  void outcome(std::uint64_t gen, bool probe, const verdict& v) noexcept {
    if (gen != gen_.load(std::memory_order_acquire)) {
      add(dropped_);  // the generation moved on (a probe's slot went with it)
      return;
    }
    const health h = classify(v);
    if (probe) {
      if (h == health::healthy) add(probe_successes_);
      else if (h == health::unhealthy) add(probe_failures_);
      else add(probes_released_);
      next_sync_.store(std::numeric_limits<std::int64_t>::min(), std::memory_order_relaxed);  // tell Redis soon
      return;
    }
    if (h == health::healthy) add(successes_);
    else if (h == health::unhealthy) add(failures_);
  }

  /// A probe permit dropped without an outcome: its slot goes back to Redis.
  void cancel_probe(std::uint64_t gen) noexcept {
    if (gen == gen_.load(std::memory_order_acquire)) add(probes_released_);
  }

  [[nodiscard]] breaker_state state() const noexcept {
    switch (phase_.load(std::memory_order_acquire)) {
      case open: return breaker_state::open;
      case half_open: return breaker_state::half_open;
      default: return breaker_state::closed;
    }
  }
  [[nodiscard]] bool reachable() const noexcept { return reachable_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t reporters() const noexcept { return reporters_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t generation() const noexcept { return gen_.load(std::memory_order_acquire); }

  [[nodiscard]] redis_circuit_breaker_stats stats() const noexcept {
    redis_circuit_breaker_stats s;
    s.syncs = syncs_.load(std::memory_order_relaxed);
    s.unanswered = unanswered_.load(std::memory_order_relaxed);
    s.shared_rejections = shared_rejections_.load(std::memory_order_relaxed);
    s.probes = probes_granted_.load(std::memory_order_relaxed);
    s.reported = reported_.load(std::memory_order_relaxed);
    s.dropped = dropped_.load(std::memory_order_relaxed);
    return s;
  }

  /// Refreshes the copy now at `t` (tests; the next call would otherwise).
  void refresh(std::int64_t t) noexcept {
    next_sync_.store(std::numeric_limits<std::int64_t>::min(), std::memory_order_relaxed);
    sync(t, redis_no_deadline, false);
  }

  [[nodiscard]] const redis_connection& connection() const noexcept { return conn_; }
  /// The options in force: name, instance and time as built, the rest as
  /// last stored (read whole, without a lock).
  [[nodiscard]] redis_circuit_breaker_options options() const {
    redis_circuit_breaker_options o = options_;
    limits_.load().into(o);
    return o;
  }

  /// Throws naming name, instance, time or window when `o` changes one.
  void check_fixed(const redis_circuit_breaker_options& o, const char* who) const {
    if (o.name != options_.name) fixed_at_construction(who, "name");
    if (o.instance != options_.instance && !(o.instance.empty() && default_instance_)) {
      fixed_at_construction(who, "instance");
    }
    if (o.time != options_.time) fixed_at_construction(who, "time");
    if (o.window != limits_.load().window) fixed_at_construction(who, "window");
  }

  /// Publishes checked limits. Waits for a round trip under way (it sent
  /// the old ones), then makes the next call sync, sending the new ones.
  void reconfigure(const redis_breaker_limits& l) {
    const std::lock_guard<std::mutex> lock(sync_lock_);
    limits_.store(l);
    next_sync_.store(std::numeric_limits<std::int64_t>::min(), std::memory_order_relaxed);
  }

 private:
  static void add(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
    c.fetch_add(n, std::memory_order_relaxed);
  }
  static std::int64_t take(std::atomic<std::uint64_t>& c) noexcept {
    return static_cast<std::int64_t>(c.exchange(0, std::memory_order_relaxed));
  }
  static std::int64_t ms(std::chrono::nanoseconds d) noexcept {
    return std::chrono::ceil<std::chrono::milliseconds>(d).count();
  }

  [[nodiscard]] health classify(const verdict& v) const noexcept {
    if (rule_ != nullptr) return rule_(v);
    if (count_throttled_ && v.kind == outcome::throttled) return health::unhealthy;
    return default_health(v);
  }

  // The one round trip: outcomes in, state out. Only one call at a time
  // makes it; the others go on with the copy they have. Probe slots are
  // asked for only by a call about to use one (`probing`).
  void sync(std::int64_t t, redis_deadline until, bool probing) noexcept {
    if (!sync_lock_.try_lock()) return;
    const std::lock_guard<std::mutex> lock(sync_lock_, std::adopt_lock);
    const std::uint8_t ph = phase_.load(std::memory_order_relaxed);
    if (t < next_sync_.load(std::memory_order_relaxed) &&
        !(ph == open && t >= open_until_.load(std::memory_order_relaxed))) {
      return;  // another call refreshed it meanwhile
    }
    const std::uint64_t gen = gen_.load(std::memory_order_relaxed);
    const std::int64_t ok = take(successes_), bad = take(failures_);
    const std::int64_t pok = take(probe_successes_), pbad = take(probe_failures_), prel = take(probes_released_);
    // Probe slots: this instance holds at most its share of them (unused or
    // in flight: half_open_max_calls / min_reporting_instances, at least 1),
    // so that the first instance to sync while half-open cannot take every
    // probe. Those finished since the last sync are given back by this one.
    const std::int64_t finished = pok + pbad + prel;
    const redis_breaker_limits lim = limits_.load();  // one whole configuration for this round trip
    const std::int64_t share = std::max<std::int64_t>(
        1, static_cast<std::int64_t>(lim.half_open_max_calls / lim.min_reporting_instances));
    const std::int64_t want =
        !probing || ph == closed ? 0 : std::max<std::int64_t>(0, share - std::max<std::int64_t>(0, mine_ - finished));
    constexpr std::int64_t ns = 1'000'000'000;
    std::int64_t s = t / ns;
    std::int64_t r = t % ns;
    if (r < 0) {
      --s;
      r += ns;
    }
    redis_args args;
    args.add_flag(options_.time == redis_time_source::server);
    args.add(s);
    args.add(r);
    args.add(std::string_view(options_.instance));
    args.add(static_cast<std::int64_t>(gen));
    args.add(ok);
    args.add(bad);
    args.add(pok);
    args.add(pbad);
    args.add(prel);
    args.add(want);
    args.add(ms(lim.window));
    args.add(static_cast<std::int64_t>(std::llround(lim.failure_rate * 1e6)));
    args.add(static_cast<std::int64_t>(lim.minimum_calls));
    args.add(static_cast<std::int64_t>(lim.min_reporting_instances));
    args.add(ms(lim.open_for));
    args.add(static_cast<std::int64_t>(lim.half_open_max_calls));
    args.add(static_cast<std::int64_t>(lim.success_threshold));
    const std::array<std::string_view, 2> keys{key_, reporters_key_};
    const redis_answer a = conn_.client().run(redis_script::breaker_sync, keys, args.views(), until);
    const std::optional<redis_breaker_sync_answer> rep =
        a ? redis_breaker_sync_reply(a.reply.get(), want) : std::nullopt;
    if (a.status == redis_status::deadline || a.status == redis_status::pool_busy) {
      // Nothing learnt about Redis: this call's deadline ended first, or no
      // connection was free in time. The copy stays (an open breaker stays
      // open) and the next call syncs. Outcomes never sent go back; after a
      // deadline they may have reached the script, so they count as dropped.
      if (a.status == redis_status::pool_busy) {
        add(successes_, static_cast<std::uint64_t>(ok));
        add(failures_, static_cast<std::uint64_t>(bad));
        add(probe_successes_, static_cast<std::uint64_t>(pok));
        add(probe_failures_, static_cast<std::uint64_t>(pbad));
        add(probes_released_, static_cast<std::uint64_t>(prel));
      } else {
        add(dropped_, static_cast<std::uint64_t>(ok + bad + pok + pbad));
        mine_ = std::max<std::int64_t>(0, mine_ - finished);
      }
      next_sync_.store(t, std::memory_order_relaxed);
      return;
    }
    next_sync_.store(t + lim.sync_interval.count(), std::memory_order_relaxed);
    if (!rep) {
      // Redis away (or an answer the script cannot give): forget the shared
      // state; the local breaker alone decides.
      add(unanswered_);
      add(dropped_, static_cast<std::uint64_t>(ok + bad + pok + pbad));
      reachable_.store(false, std::memory_order_relaxed);
      probes_left_.store(0, std::memory_order_relaxed);
      mine_ = 0;
      phase_.store(closed, std::memory_order_release);
      return;
    }
    add(syncs_);
    add(reported_, static_cast<std::uint64_t>(ok + bad + pok + pbad));
    reachable_.store(true, std::memory_order_relaxed);
    const std::uint8_t next_phase = rep->phase;
    const std::uint64_t next_gen = rep->generation;
    const std::int64_t left_ms = rep->open_left_ms;
    const std::int64_t grant = rep->granted;
    reporters_.store(rep->reporters, std::memory_order_relaxed);
    if (next_gen != gen) probes_left_.store(grant, std::memory_order_relaxed);
    else if (grant > 0) probes_left_.fetch_add(grant, std::memory_order_relaxed);
    mine_ = next_gen != gen ? grant : std::max<std::int64_t>(0, mine_ - finished) + grant;
    if (grant > 0) add(probes_granted_, static_cast<std::uint64_t>(grant));
    open_until_.store(t + left_ms * 1'000'000, std::memory_order_relaxed);
    gen_.store(next_gen, std::memory_order_release);
    phase_.store(next_phase <= half_open ? next_phase : closed, std::memory_order_release);
  }

  redis_connection conn_;
  redis_circuit_breaker_options options_;  // name, instance, time (the rest: limits_)
  config_cell<redis_breaker_limits> limits_;
  bool default_instance_;  // built with an empty instance (options_.instance is the id made for it)
  std::string key_;
  std::string reporters_key_;
  health_rule rule_;
  bool count_throttled_;
  std::mutex sync_lock_;
  std::int64_t mine_ = 0;  // probe slots of this generation held, unused or in flight; under sync_lock_
  // The cached copy.
  std::atomic<std::uint8_t> phase_{closed};
  std::atomic<std::uint64_t> gen_{0};
  std::atomic<std::int64_t> open_until_{0};  // the caller's clock
  std::atomic<std::int64_t> next_sync_{std::numeric_limits<std::int64_t>::min()};
  std::atomic<std::int64_t> probes_left_{0};
  std::atomic<std::uint64_t> reporters_{0};
  std::atomic<bool> reachable_{false};
  // Outcomes gathered since the last sync.
  std::atomic<std::uint64_t> successes_{0}, failures_{0};
  std::atomic<std::uint64_t> probe_successes_{0}, probe_failures_{0}, probes_released_{0};
  // Stats.
  std::atomic<std::uint64_t> syncs_{0}, unanswered_{0}, shared_rejections_{0}, probes_granted_{0};
  std::atomic<std::uint64_t> reported_{0}, dropped_{0};
};

}  // namespace detail

/// A redis_circuit_breaker's receipt for one admitted call: the local
/// breaker's permit and the shared generation (and probe slot) that admitted
/// it. Move-only. Dropping it without an outcome gives both slots back.
class redis_circuit_breaker_permit {
 public:
  redis_circuit_breaker_permit() noexcept = default;
  redis_circuit_breaker_permit(redis_circuit_breaker_permit&& o) noexcept
      : local_(std::move(o.local_)), shared_(std::exchange(o.shared_, nullptr)), gen_(o.gen_), probe_(o.probe_) {}
  redis_circuit_breaker_permit& operator=(redis_circuit_breaker_permit&& o) noexcept {
    if (this != &o) {
      cancel();
      local_ = std::move(o.local_);
      shared_ = std::exchange(o.shared_, nullptr);
      gen_ = o.gen_;
      probe_ = o.probe_;
    }
    return *this;
  }
  redis_circuit_breaker_permit(const redis_circuit_breaker_permit&) = delete;
  redis_circuit_breaker_permit& operator=(const redis_circuit_breaker_permit&) = delete;
  ~redis_circuit_breaker_permit() { cancel(); }

  /// True when it admits a call (no outcome recorded yet).
  [[nodiscard]] explicit operator bool() const noexcept { return shared_ != nullptr; }
  /// True when it holds a probe slot of the shared breaker.
  [[nodiscard]] bool probe() const noexcept { return shared_ != nullptr && probe_; }
  /// The local breaker's permit.
  [[nodiscard]] const circuit_breaker_permit& local() const noexcept { return local_; }

  /// Gives the permit back without an outcome (probe slots are freed).
  void cancel() noexcept {
    local_.cancel();
    if (shared_ != nullptr && probe_) shared_->cancel_probe(gen_);
    shared_ = nullptr;
  }

 private:
  template <class>
  friend class redis_circuit_breaker;
  redis_circuit_breaker_permit(circuit_breaker_permit local, detail::redis_breaker_shared* shared, std::uint64_t gen,
                               bool probe) noexcept
      : local_(std::move(local)), shared_(shared), gen_(gen), probe_(probe) {}

  circuit_breaker_permit local_;
  detail::redis_breaker_shared* shared_ = nullptr;
  std::uint64_t gen_ = 0;
  bool probe_ = false;
};

/// A circuit breaker shared through Redis (see the top of this header and
/// docs/redis.md): a call goes through when both the shared breaker (as the
/// cached copy says) and this instance's local armor::circuit_breaker admit
/// it. `Clock` is both breakers' clock and the pipeline's. Move-only; moving
/// is not thread-safe, every other member is. The call that refreshes the
/// copy holds one of the connection's connections for one round trip; every
/// other call reads a few atomics and bumps relaxed counters (no lock, no
/// I/O, no allocation).
template <class Clock = steady_clock>
class redis_circuit_breaker {
  static_assert(armor::clock<Clock>, "armor::redis_circuit_breaker: Clock must have now() returning its time_point");

 public:
  using clock_type = Clock;
  using permit_type = redis_circuit_breaker_permit;
  static constexpr bool needs_completion_time = true;

  /// Checks both option sets (throws armor::error(invalid_argument) naming a
  /// bad one). Sends nothing to Redis yet: the first call syncs.
  redis_circuit_breaker(const circuit_breaker_options& local, redis_connection connection,
                        redis_circuit_breaker_options options, Clock clock = Clock{})
      : local_(local, clock), shared_(make_shared(local, std::move(connection), std::move(options))) {}

  redis_circuit_breaker(redis_circuit_breaker&&) noexcept = default;
  redis_circuit_breaker& operator=(redis_circuit_breaker&&) = delete;
  redis_circuit_breaker(const redis_circuit_breaker&) = delete;
  redis_circuit_breaker& operator=(const redis_circuit_breaker&) = delete;
  ~redis_circuit_breaker() = default;

  [[nodiscard]] bool wants_completion_time() const noexcept { return local_.wants_completion_time(); }

  /// Asks to make a call now: granted with a permit, or refused with
  /// errc::circuit_open (retry_after: until the shared breaker half-opens,
  /// the local breaker's, or nanoseconds::max() when unknown).
  [[nodiscard]] decision<redis_circuit_breaker_permit> try_acquire() noexcept(
      noexcept(std::declval<const Clock&>().now())) {
    return try_acquire(to_timestamp(local_.clock().now()));
  }
  /// try_acquire() at `now` (the breakers' clock).
  [[nodiscard]] decision<redis_circuit_breaker_permit> try_acquire(timestamp now) noexcept {
    return enter(now, detail::redis_no_deadline);
  }

  /// Records the verdict of a call, ended now.
  void record(redis_circuit_breaker_permit&& p, const verdict& v) noexcept(noexcept(std::declval<const Clock&>().now())) {
    record(std::move(p), v, to_timestamp(local_.clock().now()));
  }
  /// Records the verdict of a call that ended at `now`, in both breakers.
  void record(redis_circuit_breaker_permit&& p, const verdict& v, timestamp now) noexcept {
    if (p.shared_ != shared_.get() || p.shared_ == nullptr) {
      p.cancel();
      return;
    }
    local_.record(std::move(p.local_), v, now);
    shared_->outcome(p.gen_, p.probe_, v);
    p.shared_ = nullptr;
  }

  /// Policy protocol: as try_acquire at ctx.now(); the round trip, if this
  /// call makes one, ends by ctx's deadline. circuit_open is retryable
  /// unless the local breaker is isolated.
  [[nodiscard]] admission<redis_circuit_breaker_permit> admit(context& ctx) noexcept {
    decision<redis_circuit_breaker_permit> d = enter(ctx.now(), detail::redis_until(ctx.remaining()));
    if (d) return admission<redis_circuit_breaker_permit>::admit(std::move(d).permit());
    const std::chrono::nanoseconds r = d.retry_after();
    return admission<redis_circuit_breaker_permit>::reject(
        d.code(), r == std::chrono::nanoseconds::max() ? std::nullopt : std::optional<std::chrono::nanoseconds>{r},
        local_.state() != breaker_state::isolated);
  }
  /// Policy protocol: records the verdict at ctx.now().
  void settle(context& ctx, redis_circuit_breaker_permit&& p, const verdict& v) noexcept {
    record(std::move(p), v, ctx.now());
  }

  /// The shared state as this instance's copy has it (closed while Redis is away).
  [[nodiscard]] breaker_state shared_state() const noexcept { return shared_->state(); }
  /// False after a round trip Redis did not answer (and before the first).
  [[nodiscard]] bool shared_reachable() const noexcept { return shared_->reachable(); }
  /// Distinct instances that reported failures in the shared window, as of the last round trip.
  [[nodiscard]] std::uint64_t reporting_instances() const noexcept { return shared_->reporters(); }
  /// Refreshes the copy now, sending the outcomes gathered (normally the
  /// first call after sync_interval does).
  void sync() noexcept(noexcept(std::declval<const Clock&>().now())) { sync(to_timestamp(local_.clock().now())); }
  void sync(timestamp now) noexcept { shared_->refresh(now.time_since_epoch().count()); }

  /// This instance's own breaker (its state, stats, reset(), isolate()).
  [[nodiscard]] circuit_breaker<Clock>& local() noexcept { return local_; }
  [[nodiscard]] const circuit_breaker<Clock>& local() const noexcept { return local_; }
  [[nodiscard]] redis_circuit_breaker_stats stats() const noexcept { return shared_->stats(); }
  /// The shared options in force: those given at construction (instance:
  /// the id in use), with the changes of the last reconfigure().
  [[nodiscard]] redis_circuit_breaker_options options() const { return shared_->options(); }

  /// Changes the shared options of this instance: sync_interval,
  /// min_reporting_instances, failure_rate, minimum_calls, open_for,
  /// half_open_max_calls, success_threshold. Checked as at construction
  /// (armor::error(invalid_argument) naming the option; nothing changes);
  /// name, instance (empty: as built with an empty one), time and window
  /// cannot change (refused by name). They travel with this instance's
  /// next round trip, which the next call makes; each round trip sends one
  /// whole configuration. The script keeps no thresholds: each sync judges
  /// the shared window by the thresholds of the instance that sends it, so
  /// instances of one name with different options each apply their own
  /// (reconfigure every instance to change the breaker for all). Calls stay
  /// lock-free; reconfigure() waits for a round trip under way. The local
  /// breaker has its own: local().reconfigure().
  void reconfigure(const redis_circuit_breaker_options& options) {
    constexpr const char* who = "armor::redis_circuit_breaker::reconfigure";
    detail::redis_breaker_check(options, who);
    shared_->check_fixed(options, who);
    shared_->reconfigure(detail::redis_breaker_limits::of(options));
  }
  [[nodiscard]] const redis_connection& connection() const noexcept { return shared_->connection(); }
  [[nodiscard]] const Clock& clock() const noexcept { return local_.clock(); }

 private:
  decision<redis_circuit_breaker_permit> enter(timestamp now, detail::redis_deadline until) noexcept {
    using D = decision<redis_circuit_breaker_permit>;
    const detail::redis_breaker_shared::gate g = shared_->enter(now.time_since_epoch().count(), until);
    if (!g.admitted) {
      return D::refused(errc::circuit_open, g.retry_after_ns >= 0 ? std::chrono::nanoseconds{g.retry_after_ns}
                                                                  : std::chrono::nanoseconds::max());
    }
    decision<circuit_breaker_permit> l = local_.try_acquire(now);
    if (!l) {
      if (g.probe) shared_->unused_probe(g.gen);
      return D::refused(errc::circuit_open, l.retry_after());
    }
    return D::granted(redis_circuit_breaker_permit{std::move(l).permit(), shared_.get(), g.gen, g.probe});
  }

  static std::unique_ptr<detail::redis_breaker_shared> make_shared(const circuit_breaker_options& local,
                                                                   redis_connection conn,
                                                                   redis_circuit_breaker_options o) {
    detail::redis_breaker_check(o, "armor::redis_circuit_breaker");
    return std::make_unique<detail::redis_breaker_shared>(std::move(conn), std::move(o), local.health,
                                                          local.count_throttled);
  }

  circuit_breaker<Clock> local_;
  std::unique_ptr<detail::redis_breaker_shared> shared_;
};

}  // namespace armor
