// armor/host_set.hpp: armor::host_set, a set of replicated upstream hosts
// that picks one per call (power of two choices over peak-EWMA latency by
// default; round robin; least pending), ejects outliers as Envoy and gRPC
// (gRFC A50) do, and takes a new host list at run time without blocking
// calls. Defines its options, permit, event, stats and enumerations.
//
//     using namespace std::chrono_literals;
//     armor::host_set<> hosts{{.outlier = {.consecutive_failures = 3}}};
//     hosts.update({{"10.0.0.1:443"}, {"10.0.0.2:443"}, {"10.0.0.3:443", 2}});
//     if (auto d = hosts.pick()) {
//       auto permit = std::move(d).permit();
//       const bool ok = call_upstream(permit.id());
//       hosts.record(std::move(permit), ok ? armor::host_outcome::success : armor::host_outcome::failure);
//     }
//
// A pick reads the published list without a lock and allocates nothing;
// update() publishes a new list and returns once no pick can still see the
// old one, so a removed host is never picked after update() returns. The
// ejection rules are evaluated every interval by the call that finds the
// interval over (sans-I/O: no timer, no thread). Thread-safe; no mutex on
// the call path. As a pipeline layer it picks per attempt (ctx.host()), a
// retry outside it goes elsewhere. The rules, the defaults beside Envoy's
// and A50's, the layer and the cost: docs/host_sets.md.
#pragma once

#include <armor/backoff.hpp>
#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/host_set_state.hpp>
#include <armor/detail/random.hpp>
#include <armor/error.hpp>
#include <armor/http/status.hpp>
#include <armor/listener.hpp>
#include <armor/policy.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace armor {

/// How a host set chooses among its eligible hosts.
enum class host_balancer : std::uint8_t {
  peak_ewma,      ///< power of two choices (drawn by weight), the cheaper by peak-EWMA latency x (pending + 1)
  round_robin,    ///< in turn, each host as often as its weight
  least_pending,  ///< the fewest calls in flight per unit of weight (ties, idle hosts included, in turn)
};

/// The enumerator's name: "peak_ewma", "round_robin", "least_pending".
[[nodiscard]] constexpr std::string_view to_string(host_balancer b) noexcept {
  switch (b) {
    case host_balancer::peak_ewma: return "peak_ewma";
    case host_balancer::round_robin: return "round_robin";
    case host_balancer::least_pending: return "least_pending";
  }
  return "unknown";
}

/// What a call to a host came to, as host_set::record takes it.
enum class host_outcome : std::uint8_t {
  success,          ///< answered well
  failure,          ///< failed (a 5xx, a reset, a timeout)
  gateway_failure,  ///< a failure that is a gateway's (502, 503, 504): also counts as a failure
  cancelled,        ///< not a verdict on the host (the caller gave up): only the call in flight ends
};

/// The enumerator's name: "success", "failure", "gateway_failure", "cancelled".
[[nodiscard]] constexpr std::string_view to_string(host_outcome o) noexcept {
  switch (o) {
    case host_outcome::success: return "success";
    case host_outcome::failure: return "failure";
    case host_outcome::gateway_failure: return "gateway_failure";
    case host_outcome::cancelled: return "cancelled";
  }
  return "unknown";
}

/// Why a host was ejected.
enum class ejection_reason : std::uint8_t {
  consecutive_failures,          ///< `consecutive_failures` failures in a row
  consecutive_gateway_failures,  ///< `consecutive_gateway_failures` gateway failures in a row
  success_rate,                  ///< success rate below mean - stdev_factor x stdev of its peers
  failure_percentage,            ///< failure percentage at or above the threshold
};

/// The enumerator's name.
[[nodiscard]] constexpr std::string_view to_string(ejection_reason r) noexcept {
  switch (r) {
    case ejection_reason::consecutive_failures: return "consecutive_failures";
    case ejection_reason::consecutive_gateway_failures: return "consecutive_gateway_failures";
    case ejection_reason::success_rate: return "success_rate";
    case ejection_reason::failure_percentage: return "failure_percentage";
  }
  return "unknown";
}

/// One endpoint: an id the caller understands (an address, a name) and
/// its weight (>= 1), its share of the picks relative to the others.
struct host_spec {
  std::string id;
  std::uint32_t weight = 1;
};

/// Outlier detection (docs/host_sets.md has Envoy's and A50's defaults
/// beside these). Percentages are whole percents in [0, 100]; an
/// `enforcing_*` percentage is the chance that a host meeting the rule is
/// ejected (0 turns the rule off, 100 always ejects).
struct outlier_detection_options {
  /// How often the statistical rules run and ejected hosts are reconsidered; > 0.
  std::chrono::nanoseconds interval = std::chrono::seconds{10};
  /// An ejection lasts base_ejection_time x (the host's multiplier), at most
  /// max_ejection_time, plus a random jitter in [0, max_ejection_time_jitter].
  std::chrono::nanoseconds base_ejection_time = std::chrono::seconds{30};
  /// >= base_ejection_time.
  std::chrono::nanoseconds max_ejection_time = std::chrono::seconds{300};
  /// >= 0.
  std::chrono::nanoseconds max_ejection_time_jitter = std::chrono::nanoseconds{0};
  /// Never more than this share of the hosts ejected at once (rounded down:
  /// 3 hosts at 50 % allow one; Envoy and A50 round up and allow two).
  std::uint32_t max_ejection_percent = 10;
  /// Failures in a row that eject a host at once; 0 = off.
  std::uint32_t consecutive_failures = 5;
  std::uint32_t enforcing_consecutive_failures = 100;
  /// Gateway failures in a row that eject a host at once; 0 = off.
  std::uint32_t consecutive_gateway_failures = 5;
  std::uint32_t enforcing_consecutive_gateway_failures = 0;
  /// Success rate: among hosts with at least `success_rate_request_volume`
  /// calls in the interval, if there are `success_rate_minimum_hosts` of
  /// them, eject those below mean - stdev_factor x stdev.
  std::uint32_t enforcing_success_rate = 100;
  std::uint32_t success_rate_minimum_hosts = 5;
  std::uint32_t success_rate_request_volume = 100;
  /// Finite, >= 0 (Envoy writes 1900 for 1.9).
  double success_rate_stdev_factor = 1.9;
  /// Failure percentage: among hosts with at least
  /// `failure_percentage_request_volume` calls in the interval, if there
  /// are `failure_percentage_minimum_hosts` of them, eject those whose
  /// failures are at least `failure_percentage_threshold` percent.
  std::uint32_t enforcing_failure_percentage = 0;
  std::uint32_t failure_percentage_threshold = 85;
  std::uint32_t failure_percentage_minimum_hosts = 5;
  std::uint32_t failure_percentage_request_volume = 50;
};

/// The options of armor::host_set. An aggregate: `{.balancer = ..., .outlier = {...}}`.
struct host_set_options {
  host_balancer balancer = host_balancer::peak_ewma;
  /// Peak EWMA: the time constant of the latency average (> 0); Finagle and linkerd use 10 s.
  std::chrono::nanoseconds decay = std::chrono::seconds{10};
  /// Peak EWMA: a new host's latency estimate (> 0); Finagle and linkerd use 30 ms.
  std::chrono::nanoseconds default_latency = std::chrono::milliseconds{30};
  /// Panic mode: when fewer than this percentage of the hosts are healthy
  /// (not ejected), picks ignore ejections; in [0, 100]. Also whenever no
  /// host is healthy.
  std::uint32_t min_health_percent = 50;
  outlier_detection_options outlier{};
};

/// A host set's receipt for one pick: the host, held until the call's
/// outcome is recorded. Move-only. Dropping it unrecorded ends the call in
/// flight without a verdict (as host_outcome::cancelled). Must not outlive
/// its host set.
class host_set_permit {
 public:
  host_set_permit() noexcept = default;
  host_set_permit(host_set_permit&& other) noexcept
      : core_(std::exchange(other.core_, nullptr)),
        state_(std::exchange(other.state_, nullptr)),
        picked_at_(other.picked_at_) {}
  host_set_permit& operator=(host_set_permit&& other) noexcept {
    if (this != &other) {
      cancel();
      core_ = std::exchange(other.core_, nullptr);
      state_ = std::exchange(other.state_, nullptr);
      picked_at_ = other.picked_at_;
    }
    return *this;
  }
  host_set_permit(const host_set_permit&) = delete;
  host_set_permit& operator=(const host_set_permit&) = delete;
  ~host_set_permit() { cancel(); }

  /// True while it holds a host.
  [[nodiscard]] explicit operator bool() const noexcept { return state_ != nullptr; }
  /// The host's id (empty for an empty permit); valid while the permit holds it.
  [[nodiscard]] std::string_view id() const noexcept { return state_ ? std::string_view{state_->id} : std::string_view{}; }
  /// When it was picked.
  [[nodiscard]] timestamp picked_at() const noexcept { return picked_at_; }

  /// Ends the call without a verdict; the permit is empty afterwards.
  void cancel() noexcept {
    core_ = nullptr;
    if (detail::host_state* s = std::exchange(state_, nullptr)) s->pending.fetch_sub(1, std::memory_order_release);
  }

 private:
  template <class, class, class>
  friend class host_set;
  host_set_permit(detail::host_set_core* c, detail::host_state* s, timestamp t) noexcept
      : core_(c), state_(s), picked_at_(t) {}

  detail::host_set_core* core_ = nullptr;
  detail::host_state* state_ = nullptr;
  timestamp picked_at_{};
};

static_assert(decision_like<decision<host_set_permit>>);

/// What happened, for a host set's listener.
enum class host_set_event_kind : std::uint8_t {
  ejected,   ///< a host was ejected (reason, duration)
  returned,  ///< an ejected host's time was over at an evaluation: it takes calls again
};

/// The enumerator's name: "ejected", "returned".
[[nodiscard]] constexpr std::string_view to_string(host_set_event_kind k) noexcept {
  switch (k) {
    case host_set_event_kind::ejected: return "ejected";
    case host_set_event_kind::returned: return "returned";
  }
  return "unknown";
}

/// What a host set's listener hears: each ejection and each return.
struct host_set_event {
  host_set_event_kind kind = host_set_event_kind::ejected;
  std::string_view host{};                ///< the host's id (valid during the call only)
  ejection_reason reason = ejection_reason::consecutive_failures;  ///< ejected: why
  std::chrono::nanoseconds ejection_time{};  ///< ejected: for how long
  std::uint32_t multiplier = 0;           ///< the host's multiplier after the event

  /// How fmt prints it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using e = host_set_event;
    return std::tuple{armor::field("kind", &e::kind), armor::field("host", &e::host),
                      armor::field("reason", &e::reason), armor::field("ejection_time", &e::ejection_time),
                      armor::field("multiplier", &e::multiplier)};
  }
};

/// A snapshot of a host set: its hosts now and its counts since construction.
struct host_set_stats {
  std::uint64_t hosts = 0;         ///< hosts in the published list
  std::uint64_t ejected = 0;       ///< of those, ejected now
  std::int64_t pending = 0;        ///< calls in flight on listed hosts
  std::uint64_t picks = 0;         ///< hosts picked
  std::uint64_t panic_picks = 0;   ///< of those, picked in panic mode (ejections ignored)
  std::uint64_t no_host = 0;       ///< picks refused: no host listed
  std::uint64_t ejections = 0;     ///< ejections
  std::uint64_t ejections_capped = 0;  ///< ejections max_ejection_percent prevented
  std::uint64_t updates = 0;       ///< lists published by update()

  /// How fmt prints and Prometheus exports it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using s = host_set_stats;
    return std::tuple{
        gauge("hosts", &s::hosts, "armor_host_set_hosts", "Hosts in the host set's published list."),
        gauge("ejected", &s::ejected, "armor_host_set_ejected_hosts", "Hosts of the host set ejected now."),
        gauge("pending", &s::pending, "armor_host_set_pending", "Calls in flight on the host set's hosts."),
        counter("picks", &s::picks, "armor_host_set_picks_total", "Hosts the host set picked."),
        counter("panic_picks", &s::panic_picks, "armor_host_set_panic_picks_total",
                "Picks made in panic mode, ignoring ejections."),
        counter("no_host", &s::no_host, "armor_host_set_no_host_total", "Picks refused because no host was listed."),
        counter("ejections", &s::ejections, "armor_host_set_ejections_total", "Hosts the host set ejected."),
        counter("ejections_capped", &s::ejections_capped, "armor_host_set_ejections_capped_total",
                "Ejections that max_ejection_percent prevented."),
        counter("updates", &s::updates, "armor_host_set_updates_total", "Host lists published by update()."),
    };
  }
};

/// One host as host_set::hosts() reports it.
struct host_status {
  std::string id;
  std::uint32_t weight = 1;
  std::int64_t pending = 0;             ///< calls in flight
  bool ejected = false;
  timestamp ejected_until{};            ///< when ejected: the earliest return
  std::uint32_t multiplier = 0;         ///< the ejection-time multiplier
  std::uint64_t times_ejected = 0;
  std::chrono::nanoseconds latency{};   ///< the peak-EWMA estimate, decayed to the time asked
  bool failing_active_check = false;    ///< marked unhealthy by an active health check (set_active_health)
};

/// What a pipeline's verdict says about the host that served the attempt,
/// as a host set layer records it (armor::default_health): a success is a
/// success; a failure or a timeout is a failure, a gateway_failure when
/// its code is HTTP 502, 503 or 504 (armor::http::make_status_code, as
/// armor/http.hpp's classifier gives it); throttled, rejected (an inner
/// layer refused: the host was not asked) and cancelled say nothing
/// about the host (cancelled).
[[nodiscard]] inline host_outcome host_outcome_of(const verdict& v) noexcept {
  switch (default_health(v)) {
    case health::healthy: return host_outcome::success;
    case health::unhealthy: {
      const int status = v.code.value();
      if ((status == 502 || status == 503 || status == 504) && v.code.category() == http::status_category()) {
        return host_outcome::gateway_failure;
      }
      return host_outcome::failure;
    }
    case health::neutral: break;
  }
  return host_outcome::cancelled;
}

namespace detail {

struct host_set_config {
  std::int64_t decay = 0;
  double default_latency = 0;
  std::int64_t interval = 0;
  std::int64_t base = 0;
  std::int64_t max = 0;
  std::int64_t jitter = 0;
  std::uint32_t max_multiplier = 1;
};

[[noreturn]] inline void host_set_refuse(const std::string& what) { invalid_config("armor::host_set: " + what); }

inline void host_set_percent(std::uint32_t v, const char* name) {
  if (v > 100) host_set_refuse(std::string(name) + " must be within [0, 100] (got " + std::to_string(v) + ")");
}

[[nodiscard]] inline host_set_config host_set_checked(const host_set_options& o) {
  const outlier_detection_options& d = o.outlier;
  if (o.decay.count() <= 0) host_set_refuse("decay must be positive (got " + std::to_string(o.decay.count()) + " ns)");
  if (o.default_latency.count() <= 0) {
    host_set_refuse("default_latency must be positive (got " + std::to_string(o.default_latency.count()) + " ns)");
  }
  if (d.interval.count() <= 0) {
    host_set_refuse("outlier.interval must be positive (got " + std::to_string(d.interval.count()) + " ns)");
  }
  if (d.base_ejection_time.count() <= 0) {
    host_set_refuse("outlier.base_ejection_time must be positive (got " +
                    std::to_string(d.base_ejection_time.count()) + " ns)");
  }
  if (d.max_ejection_time < d.base_ejection_time) {
    host_set_refuse("outlier.max_ejection_time must be >= base_ejection_time (got " +
                    std::to_string(d.max_ejection_time.count()) + " ns)");
  }
  if (d.max_ejection_time_jitter.count() < 0) {
    host_set_refuse("outlier.max_ejection_time_jitter must be >= 0 (got " +
                    std::to_string(d.max_ejection_time_jitter.count()) + " ns)");
  }
  if (!std::isfinite(d.success_rate_stdev_factor) || d.success_rate_stdev_factor < 0) {
    host_set_refuse("outlier.success_rate_stdev_factor must be a finite number >= 0 (got " +
                    std::to_string(d.success_rate_stdev_factor) + ")");
  }
  host_set_percent(o.min_health_percent, "min_health_percent");
  host_set_percent(d.max_ejection_percent, "outlier.max_ejection_percent");
  host_set_percent(d.enforcing_consecutive_failures, "outlier.enforcing_consecutive_failures");
  host_set_percent(d.enforcing_consecutive_gateway_failures, "outlier.enforcing_consecutive_gateway_failures");
  host_set_percent(d.enforcing_success_rate, "outlier.enforcing_success_rate");
  host_set_percent(d.enforcing_failure_percentage, "outlier.enforcing_failure_percentage");
  host_set_percent(d.failure_percentage_threshold, "outlier.failure_percentage_threshold");
  host_set_config c;
  c.decay = o.decay.count();
  c.default_latency = static_cast<double>(o.default_latency.count());
  c.interval = d.interval.count();
  c.base = d.base_ejection_time.count();
  c.max = d.max_ejection_time.count();
  c.jitter = d.max_ejection_time_jitter.count();
  // The multiplier stops growing once base x multiplier reaches the maximum,
  // so that it decays back within as many healthy intervals.
  c.max_multiplier = static_cast<std::uint32_t>(std::min<std::int64_t>((c.max + c.base - 1) / c.base, 1'000'000));
  return c;
}

}  // namespace detail

/// A set of hosts (see the top of this header and docs/host_sets.md).
/// A moved-from host set may only be destroyed.
///
/// `Clock` is read by the calls without a time (pick(), record(p, o),
/// update(), stats(), hosts()). `Rng` (armor::random_source: thread_rng by
/// default, a scripted source in tests) draws the two choices of
/// peak_ewma, the enforcement chances strictly between 0 and 100 % and the
/// ejection jitter; it is called from every thread that picks or records.
/// `Listener` (armor::listener_for host_set_event) hears ejections and
/// returns; it runs inside a read section and must not call update().
///
/// Construction throws armor::error(errc::invalid_argument) naming a bad
/// option. pick() and record() may be called concurrently from any thread,
/// with each other and with update(); update() calls are serialised among
/// themselves by a mutex and wait (yielding) for picks in progress to leave
/// the old list, never for calls in flight. Cost of a pick: one pass over
/// the listed hosts (to skip ejected ones) plus the balancer's choice, two
/// atomic read-modify-writes to enter and leave the read side, one on the
/// host; of a record: a few relaxed atomics on the host. No allocation.
template <class Clock = steady_clock, class Rng = thread_rng, class Listener = no_listener>
class host_set {
  static_assert(armor::clock<Clock>, "armor::host_set: Clock must have now() returning its time_point");
  static_assert(random_source<Rng> && detail::full_range_generator<Rng>(),
                "armor::host_set: Rng must be a random source producing the full 64-bit range "
                "(armor::thread_rng, armor::seeded_rng, std::mt19937_64)");
  static_assert(listener_for<Listener, host_set_event>,
                "armor::host_set: Listener must be no_listener or callable as "
                "listener(const armor::host_set_event&) noexcept (or std::ref to such a callable)");

  static constexpr bool quiet = std::is_nothrow_invocable_v<Rng&>;

 public:
  using clock_type = Clock;
  using rng_type = Rng;
  using listener_type = Listener;
  using permit_type = host_set_permit;
  using options_type = host_set_options;

  explicit host_set(const host_set_options& options = {}, Clock clock = Clock{}, Rng rng = Rng{},
                    Listener listener = Listener{})
      : options_(options),
        config_(detail::host_set_checked(options)),
        clock_(std::move(clock)),
        rng_(std::move(rng)),
        listener_(std::move(listener)),
        core_(std::make_unique<detail::host_set_core>()) {
    core_->list = std::make_unique<detail::host_list>();
    core_->current.store(core_->list.get(), std::memory_order_release);
  }

  friend struct detail::host_set_peek;

  host_set(host_set&&) noexcept(std::is_nothrow_move_constructible_v<Clock> &&
                                std::is_nothrow_move_constructible_v<Rng> &&
                                std::is_nothrow_move_constructible_v<Listener>) = default;
  host_set(const host_set&) = delete;
  host_set& operator=(const host_set&) = delete;
  host_set& operator=(host_set&&) = delete;
  ~host_set() = default;

  // ---------------------------------------------------------------- the list

  /// Publishes a new list of hosts, read at the host set's clock. A host
  /// whose id was listed keeps its state (latency, streaks, ejection) and
  /// takes the new weight; a new one starts at default_latency. Returns once
  /// no pick can see the old list: from then on a removed host is never
  /// picked (calls already holding it finish and are recorded). Throws
  /// armor::error(invalid_argument) for a weight of 0 or an id listed twice
  /// (and publishes nothing); std::bad_alloc.
  void update(std::span<const host_spec> hosts) { update(hosts, now()); }
  void update(std::initializer_list<host_spec> hosts) { update(std::span<const host_spec>{hosts.begin(), hosts.size()}); }
  /// update() with the time a new host's latency estimate starts from.
  void update(std::initializer_list<host_spec> hosts, timestamp now) {
    update(std::span<const host_spec>{hosts.begin(), hosts.size()}, now);
  }
  void update(std::span<const host_spec> hosts, timestamp now) {
    for (std::size_t i = 0; i < hosts.size(); ++i) {
      if (hosts[i].weight == 0) detail::host_set_refuse("host \"" + hosts[i].id + "\" has weight 0 (must be >= 1)");
      for (std::size_t j = 0; j < i; ++j) {
        if (hosts[j].id == hosts[i].id) detail::host_set_refuse("host \"" + hosts[i].id + "\" is listed twice");
      }
    }
    detail::host_set_core& c = *core_;
    const std::scoped_lock lock(c.writer);
    auto next = std::make_unique<detail::host_list>();
    next->hosts.reserve(hosts.size());
    c.owned.reserve(c.owned.size() + hosts.size());
    for (const host_spec& h : hosts) {
      detail::host_state* state = nullptr;
      for (const detail::host_entry& e : c.list->hosts) {
        if (e.state->id == h.id) state = e.state;
      }
      if (state == nullptr) {
        c.owned.push_back(std::make_unique<detail::host_state>(h.id, now.time_since_epoch().count(),
                                                               config_.default_latency));
        state = c.owned.back().get();
      }
      next->hosts.push_back({state, h.weight});
    }
    c.publish(std::move(next));
    c.counters.add(detail::host_set_counter::updates);
  }

  // ---------------------------------------------------------------- picks

  /// Picks a host now (the host set's clock): granted with a permit naming
  /// it, to be handed back with the call's outcome by record(); refused
  /// with errc::no_host (retry_after nanoseconds::max()) when no host is
  /// listed. Runs the interval's evaluation first when one is due.
  [[nodiscard]] decision<host_set_permit> pick() noexcept(quiet && noexcept(std::declval<const Clock&>().now())) {
    return pick(now());
  }

  /// pick() at the given time (on the host set's clock).
  [[nodiscard]] decision<host_set_permit> pick(timestamp now) noexcept(quiet) { return pick(now, {}); }

  /// pick() for a retry: the host named `avoid` (the one that just failed)
  /// is not picked while another host is eligible.
  [[nodiscard]] decision<host_set_permit> pick(timestamp now, std::string_view avoid) noexcept(quiet) {
    return pick_avoiding(now, avoid, nullptr);
  }

 private:
  // A pick that avoids `avoid` (an id) or `avoid_state` (a host's state, as
  // a host set layer remembers the call's last host; only compared).
  [[nodiscard]] decision<host_set_permit> pick_avoiding(timestamp now, std::string_view avoid,
                                                        const void* avoid_state) noexcept(quiet) {
    detail::host_set_core& c = *core_;
    const detail::host_set_core::guard g(c);
    const detail::host_list& list = *c.current.load(std::memory_order_acquire);
    const std::int64_t t = now.time_since_epoch().count();
    if (ARMOR_UNLIKELY(t >= c.next_evaluation.load(std::memory_order_relaxed))) evaluate_if_due(t);
    const std::size_t n = list.hosts.size();
    if (ARMOR_UNLIKELY(n == 0)) {
      c.counters.add(detail::host_set_counter::no_host);
      return decision<host_set_permit>::refused(errc::no_host, std::chrono::nanoseconds::max());
    }
    std::uint64_t healthy = 0;
    std::uint64_t healthy_weight = 0;
    std::uint64_t total_weight = 0;
    std::size_t avoided = n;
    for (std::size_t i = 0; i < n; ++i) {
      const detail::host_entry& e = list.hosts[i];
      if (ARMOR_UNLIKELY(avoid_state != nullptr || !avoid.empty()) &&
          (e.state == avoid_state || (!avoid.empty() && e.state->id == avoid))) {
        avoided = i;
      }
      total_weight += e.weight;
      if (usable(*e.state)) {
        ++healthy;
        healthy_weight += e.weight;
      }
    }
    const bool panic = healthy == 0 || healthy * 100 < std::uint64_t{options_.min_health_percent} * n;
    eligibility el{panic, panic ? total_weight : healthy_weight, panic ? n : healthy, n};
    if (avoided < n && el.count > 1 && eligible(list, avoided, el)) {
      el.weight -= list.hosts[avoided].weight;
      el.count -= 1;
      el.avoid = avoided;
    }
    detail::host_state& chosen = options_.balancer == host_balancer::peak_ewma     ? choose_p2c(list, el, t)
                                 : options_.balancer == host_balancer::round_robin ? choose_round_robin(list, el)
                                                                                   : choose_least_pending(list, el);
    // Inside the read-side section: a writer past its grace period sees it.
    chosen.pending.fetch_add(1, std::memory_order_relaxed);
    c.counters.add(detail::host_set_counter::picks);
    if (panic) c.counters.add(detail::host_set_counter::panic_picks);
    return decision<host_set_permit>::granted(host_set_permit(&c, &chosen, now));
  }

 public:
  /// Records the outcome of a picked call, now (the host set's clock), and
  /// empties the permit. See record(permit, outcome, now).
  void record(host_set_permit&& permit, host_outcome outcome) noexcept(
      quiet && noexcept(std::declval<const Clock&>().now())) {
    record(std::move(permit), outcome, now());
  }

  /// Records the outcome of a picked call that ended at `now` (its latency
  /// is now - picked_at()) and empties the permit. A success or a failure
  /// feeds the latency estimate, the streaks and the interval's counts; a
  /// failure that completes a streak ejects the host at once (unless that
  /// would exceed max_ejection_percent); cancelled only ends the call. A
  /// permit that is empty or from another host set is cancelled.
  void record(host_set_permit&& permit, host_outcome outcome, timestamp now) noexcept(quiet) {
    if (permit.core_ != core_.get()) {
      permit.cancel();
      return;
    }
    detail::host_state* s = std::exchange(permit.state_, nullptr);
    permit.core_ = nullptr;
    if (outcome != host_outcome::cancelled) {
      const std::int64_t t = now.time_since_epoch().count();
      observe(*s, static_cast<double>(std::max<std::int64_t>(0, t - permit.picked_at_.time_since_epoch().count())), t);
      judge_outcome(*s, outcome, t);
    }
    s->pending.fetch_sub(1, std::memory_order_release);  // the permit's last touch of the host
  }

  // ---------------------------------------------------------------- as a layer

  /// Policy protocol: picks a host for this attempt at ctx.now(), avoiding
  /// the host this call's previous attempt went to while another is
  /// eligible (a retry layer outside goes elsewhere), and names it in the
  /// context (ctx.host(), key_source::host()). Refused with errc::no_host,
  /// not retryable, when no host is listed.
  [[nodiscard]] admission<host_set_permit> admit(context& ctx) noexcept(quiet) {
    auto d = pick_avoiding(ctx.now(), {}, detail::context_access::last_host(ctx));
    if (ARMOR_UNLIKELY(!d)) {
      detail::context_access::set_host(ctx, {}, detail::context_access::last_host(ctx));
      return admission<host_set_permit>::reject(errc::no_host, std::nullopt, false);
    }
    host_set_permit p = std::move(d).permit();
    detail::context_access::set_host(ctx, p.id(), p.state_);
    return admission<host_set_permit>::admit(std::move(p));
  }

  /// Policy protocol: records the attempt's outcome on its host at ctx.now()
  /// (host_outcome_of(v)); ctx.host() is empty afterwards.
  void settle(context& ctx, host_set_permit permit, const verdict& v) noexcept(quiet) {
    detail::context_access::set_host(ctx, {}, detail::context_access::last_host(ctx));
    record(std::move(permit), host_outcome_of(v), ctx.now());
  }

  /// What the driver keeps per call for next(): the picks refused so far.
  struct loop_state {
    std::uint32_t refused = 0;
  };

  /// Policy protocol (a looping layer): when a layer inside refused the
  /// attempt (a per-host breaker open, a per-host limit spent), picks
  /// again at once, away from that host, at most as many times as there
  /// are hosts, less one; any other verdict ends the loop.
  [[nodiscard]] step next(const context&, const verdict& v, loop_state& s) const noexcept {
    if (ARMOR_LIKELY(v.kind != outcome::rejected) || v.code == errc::no_host) return step::done();
    detail::host_set_core& c = *core_;
    const detail::host_set_core::guard g(c);
    const std::size_t n = c.current.load(std::memory_order_acquire)->hosts.size();
    if (++s.refused >= n) return step::done();
    return step::retry_after(std::chrono::nanoseconds{0});
  }

  /// The driver reads the clock after each attempt: peak EWMA times calls.
  static constexpr bool needs_completion_time = true;
  /// Only peak_ewma uses latency; the other balancers spare the clock read.
  [[nodiscard]] bool wants_completion_time() const noexcept { return options_.balancer == host_balancer::peak_ewma; }

  // ---------------------------------------------------------------- observation

  /// A snapshot now (the host set's clock).
  [[nodiscard]] host_set_stats stats() const noexcept {
    detail::host_set_core& c = *core_;
    const detail::host_set_core::guard g(c);
    const detail::host_list& list = *c.current.load(std::memory_order_acquire);
    host_set_stats s;
    s.hosts = list.hosts.size();
    for (const detail::host_entry& e : list.hosts) {
      if (e.state->ejected.load(std::memory_order_relaxed)) ++s.ejected;
      s.pending += e.state->pending.load(std::memory_order_relaxed);
    }
    using k = detail::host_set_counter;
    s.picks = c.counters.load(k::picks);
    s.panic_picks = c.counters.load(k::panic_picks);
    s.no_host = c.counters.load(k::no_host);
    s.ejections = c.counters.load(k::ejections);
    s.ejections_capped = c.counters.load(k::ejections_capped);
    s.updates = c.counters.load(k::updates);
    return s;
  }

  /// Each listed host's state, latency estimates decayed to now (the host
  /// set's clock). Allocates (for inspection, not for the call path).
  [[nodiscard]] std::vector<host_status> hosts() const { return hosts(now()); }
  [[nodiscard]] std::vector<host_status> hosts(timestamp now) const {
    detail::host_set_core& c = *core_;
    const detail::host_set_core::guard g(c);
    const detail::host_list& list = *c.current.load(std::memory_order_acquire);
    std::vector<host_status> out;
    out.reserve(list.hosts.size());
    for (const detail::host_entry& e : list.hosts) {
      const detail::host_state& h = *e.state;
      host_status st;
      st.id = h.id;
      st.weight = e.weight;
      st.pending = h.pending.load(std::memory_order_relaxed);
      st.ejected = h.ejected.load(std::memory_order_relaxed);
      st.ejected_until = timestamp{std::chrono::nanoseconds{h.ejected_until.load(std::memory_order_relaxed)}};
      st.multiplier = h.multiplier.load(std::memory_order_relaxed);
      st.times_ejected = h.times_ejected.load(std::memory_order_relaxed);
      st.latency = std::chrono::nanoseconds{static_cast<std::int64_t>(latency_of(h, now.time_since_epoch().count()))};
      st.failing_active_check = h.failing_active.load(std::memory_order_relaxed);
      out.push_back(std::move(st));
    }
    return out;
  }

  // ---------------------------------------------------------------- active health

  /// An active health check's verdict on the listed host `id` (armor/health_check.hpp
  /// calls it): a host marked unhealthy is not picked (as if ejected,
  /// panic mode aside) until marked healthy again. With `end_ejection`, a
  /// host marked healthy that is ejected takes calls again at once (Envoy's
  /// successful_active_health_check_uneject_host). False if `id` is not
  /// listed. Lock-free; allocates nothing.
  bool set_active_health(std::string_view id, bool healthy, bool end_ejection = false) noexcept(
      quiet && noexcept(std::declval<const Clock&>().now())) {
    detail::host_set_core& c = *core_;
    const detail::host_set_core::guard g(c);
    const detail::host_list& list = *c.current.load(std::memory_order_acquire);
    for (const detail::host_entry& e : list.hosts) {
      detail::host_state& h = *e.state;
      if (h.id != id) continue;
      h.failing_active.store(!healthy, std::memory_order_relaxed);
      if (healthy && end_ejection && h.ejected.load(std::memory_order_relaxed)) {
        // Owed to the judge, as an ejection is (see judge_outcome).
        h.owed_return.store(true, std::memory_order_relaxed);
        c.owed.store(true, std::memory_order_seq_cst);
        if (!c.judging.exchange(true, std::memory_order_seq_cst)) judge_and_release(now().time_since_epoch().count());
      }
      return true;
    }
    return false;
  }

  /// Listed hosts that take calls outside panic mode: neither ejected nor
  /// marked unhealthy by an active health check. Lock-free.
  [[nodiscard]] std::uint64_t healthy_hosts() const noexcept {
    detail::host_set_core& c = *core_;
    const detail::host_set_core::guard g(c);
    const detail::host_list& list = *c.current.load(std::memory_order_acquire);
    std::uint64_t n = 0;
    for (const detail::host_entry& e : list.hosts) n += usable(*e.state) ? 1 : 0;
    return n;
  }

  /// The options given at construction.
  [[nodiscard]] const host_set_options& options() const noexcept { return options_; }
  /// The clock read when no time is given.
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }
  /// The listener.
  [[nodiscard]] const Listener& listener() const noexcept { return listener_; }

 private:
  using counter = detail::host_set_counter;

  struct eligibility {
    bool all = false;            // panic: ejected hosts are eligible too
    std::uint64_t weight = 0;    // their total weight
    std::uint64_t count = 0;     // how many
    std::size_t avoid = 0;       // a host left out (a retry's last host), or the list's size
  };

  [[nodiscard]] timestamp now() const noexcept(noexcept(std::declval<const Clock&>().now())) {
    return to_timestamp(clock_.now());
  }

  [[nodiscard]] static bool eligible(const detail::host_list& list, std::size_t i, const eligibility& el) noexcept {
    return i != el.avoid && (el.all || usable(*list.hosts[i].state));
  }

  // Neither ejected nor failing active health checks.
  [[nodiscard]] static bool usable(const detail::host_state& h) noexcept {
    return !h.ejected.load(std::memory_order_relaxed) && !h.failing_active.load(std::memory_order_relaxed);
  }

  // A draw in [0, bound), bound > 0: the top bits of a random word scaled.
  [[nodiscard]] std::uint64_t draw(std::uint64_t bound) noexcept(quiet) {
    const double u = detail::unit_interval(static_cast<std::uint64_t>(std::invoke(rng_)));
    const auto v = static_cast<std::uint64_t>(u * static_cast<double>(bound));
    return v < bound ? v : bound - 1;
  }

  // True with probability percent / 100; no draw at 0 or 100.
  [[nodiscard]] bool roll(std::uint32_t percent) noexcept(quiet) {
    if (percent >= 100) return true;
    if (percent == 0) return false;
    return draw(100) < percent;
  }

  // The eligible host where the cumulative weight passes `target`, skipping
  // `skip`. Ejections made since `el` was counted can leave the target past
  // the end (then the last eligible host) or no host eligible (then the
  // first host neither skipped nor avoided, else the first not skipped).
  [[nodiscard]] static std::size_t walk(const detail::host_list& list, const eligibility& el, std::uint64_t target,
                                        std::size_t skip) noexcept {
    const std::size_t n = list.hosts.size();
    std::size_t last = n;
    std::size_t fallback = n;
    for (std::size_t i = 0; i < n; ++i) {
      const detail::host_entry& e = list.hosts[i];
      if (i == skip) continue;
      if (fallback == n && i != el.avoid) fallback = i;
      if (!eligible(list, i, el)) continue;
      last = i;
      if (target < e.weight) return i;
      target -= e.weight;
    }
    if (last < n) return last;
    if (fallback < n) return fallback;
    return skip == 0 && n > 1 ? 1 : 0;
  }

  // The estimate decayed to t: estimate x exp(-(t - stamp) / decay).
  [[nodiscard]] double latency_of(const detail::host_state& h, std::int64_t t) const noexcept {
    const double est = std::bit_cast<double>(h.estimate.load(std::memory_order_relaxed));
    const std::int64_t since = t - h.stamp.load(std::memory_order_relaxed);
    if (since <= 0) return est;
    return est * std::exp(-static_cast<double>(since) / static_cast<double>(config_.decay));
  }

  // Weights act in the draw of the two candidates, not here.
  [[nodiscard]] double cost(const detail::host_entry& e, std::int64_t t) const noexcept {
    const auto pending = static_cast<double>(e.state->pending.load(std::memory_order_relaxed));
    return latency_of(*e.state, t) * (pending + 1.0);
  }

  [[nodiscard]] detail::host_state& choose_p2c(const detail::host_list& list, const eligibility& el,
                                               std::int64_t t) noexcept(quiet) {
    const std::size_t none = list.hosts.size();
    const std::size_t a = walk(list, el, draw(el.weight), none);
    // a may have turned eligible (returned) since el was counted: then its
    // weight is not in el.weight.
    const std::uint64_t rest = el.weight > list.hosts[a].weight ? el.weight - list.hosts[a].weight : 0;
    if (el.count < 2 || rest == 0) return *list.hosts[a].state;
    const std::size_t b = walk(list, el, draw(rest), a);
    return cost(list.hosts[b], t) < cost(list.hosts[a], t) ? *list.hosts[b].state : *list.hosts[a].state;
  }

  [[nodiscard]] detail::host_state& choose_round_robin(const detail::host_list& list, const eligibility& el) noexcept {
    const std::uint64_t turn = core_->turn.fetch_add(1, std::memory_order_relaxed);
    return *list.hosts[walk(list, el, turn % el.weight, list.hosts.size())].state;
  }

  [[nodiscard]] detail::host_state& choose_least_pending(const detail::host_list& list,
                                                         const eligibility& el) noexcept {
    const std::size_t n = list.hosts.size();
    const std::size_t start = static_cast<std::size_t>(core_->turn.fetch_add(1, std::memory_order_relaxed) % n);
    const detail::host_entry* best = &list.hosts[start];
    std::int64_t best_pending = -1;
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = (start + k) % n;
      if (!eligible(list, i, el)) continue;
      const detail::host_entry& e = list.hosts[i];
      // pending / weight, compared cross-multiplied; idle hosts tie (and
      // take turns), so weights act once calls overlap.
      const std::int64_t p = e.state->pending.load(std::memory_order_relaxed);
      if (best_pending < 0 ||
          p * static_cast<std::int64_t>(best->weight) < best_pending * static_cast<std::int64_t>(e.weight)) {
        best = &e;
        best_pending = p;
      }
    }
    return *best->state;
  }

  // Peak EWMA (Finagle): a latency above the estimate replaces it; one at or
  // below it is blended in with weight 1 - exp(-elapsed / decay), elapsed
  // being the time since the host's previous observation.
  void observe(detail::host_state& h, double latency, std::int64_t t) noexcept {
    std::int64_t prev = h.stamp.load(std::memory_order_relaxed);
    while (prev < t && !h.stamp.compare_exchange_weak(prev, t, std::memory_order_relaxed)) {
    }
    const double elapsed = prev < t ? static_cast<double>(t - prev) : 0.0;
    const double w = std::exp(-elapsed / static_cast<double>(config_.decay));
    std::uint64_t old_bits = h.estimate.load(std::memory_order_relaxed);
    for (;;) {
      const double old = std::bit_cast<double>(old_bits);
      const double next = latency > old ? latency : old * w + latency * (1.0 - w);
      if (h.estimate.compare_exchange_weak(old_bits, std::bit_cast<std::uint64_t>(next), std::memory_order_relaxed)) {
        return;
      }
    }
  }

  void judge_outcome(detail::host_state& h, host_outcome o, std::int64_t t) noexcept(quiet) {
    const outlier_detection_options& d = options_.outlier;
    if (o == host_outcome::success) {
      h.interval_successes.fetch_add(1, std::memory_order_relaxed);
      h.consecutive.store(0, std::memory_order_relaxed);
      h.consecutive_gateway.store(0, std::memory_order_relaxed);
      return;
    }
    h.interval_failures.fetch_add(1, std::memory_order_relaxed);
    const std::uint32_t streak = h.consecutive.fetch_add(1, std::memory_order_relaxed) + 1;
    std::uint32_t gateway = 0;
    if (o == host_outcome::gateway_failure) {
      gateway = h.consecutive_gateway.fetch_add(1, std::memory_order_relaxed) + 1;
    } else {
      h.consecutive_gateway.store(0, std::memory_order_relaxed);
    }
    const bool by_gateway = d.consecutive_gateway_failures > 0 && gateway >= d.consecutive_gateway_failures;
    const bool by_streak = d.consecutive_failures > 0 && streak >= d.consecutive_failures;
    if (!by_gateway && !by_streak) return;
    if (h.ejected.load(std::memory_order_relaxed)) return;
    // Envoy checks the gateway streak first: it is the narrower rule.
    ejection_reason reason = ejection_reason::consecutive_failures;
    if (by_gateway && roll(d.enforcing_consecutive_gateway_failures)) {
      reason = ejection_reason::consecutive_gateway_failures;
    } else if (!(by_streak && roll(d.enforcing_consecutive_failures))) {
      return;
    }
    detail::host_set_core& c = *core_;
    const detail::host_set_core::guard g(c);
    // Owed to the judge: this thread if `judging` is free, else its holder
    // before it lets go. A host no longer listed then is not ejected.
    h.owed_ejection.store(static_cast<std::uint8_t>(static_cast<std::uint8_t>(reason) + 1), std::memory_order_relaxed);
    c.owed.store(true, std::memory_order_seq_cst);
    if (c.judging.exchange(true, std::memory_order_seq_cst)) return;
    judge_and_release(t);
  }

  // The judge (holds core_->judging, inside a read section): does the work
  // owed, lets go of `judging`, and takes it back for work owed meanwhile.
  void judge_and_release(std::int64_t t) noexcept(quiet) {
    detail::host_set_core& c = *core_;
    for (;;) {
      if (c.owed.exchange(false, std::memory_order_seq_cst)) {
        // The newest list: it stays valid while this read section lasts.
        const detail::host_list& list = *c.current.load(std::memory_order_acquire);
        const std::int64_t at = c.owed_evaluation.exchange(0, std::memory_order_relaxed);
        if (at != 0) evaluate(list, at);
        for (const detail::host_entry& e : list.hosts) {
          if (e.state->owed_ejection.load(std::memory_order_relaxed) == 0) continue;
          const std::uint8_t r = e.state->owed_ejection.exchange(0, std::memory_order_relaxed);
          if (r != 0) eject(list, *e.state, static_cast<ejection_reason>(r - 1), std::max(t, at));
        }
        for (const detail::host_entry& e : list.hosts) {
          if (e.state->owed_return.load(std::memory_order_relaxed) &&
              e.state->owed_return.exchange(false, std::memory_order_relaxed)) {
            give_back(*e.state);
          }
        }
      }
      c.judging.store(false, std::memory_order_seq_cst);
      if (!c.owed.load(std::memory_order_seq_cst)) return;
      if (c.judging.exchange(true, std::memory_order_seq_cst)) return;  // its holder does it
    }
  }

  // The judge (holds core_->judging): ejects h unless that would exceed
  // max_ejection_percent of the listed hosts.
  bool eject(const detail::host_list& list, detail::host_state& h, ejection_reason reason,
             std::int64_t t) noexcept(quiet) {
    if (h.ejected.load(std::memory_order_relaxed)) return false;
    std::uint64_t ejected = 0;
    for (const detail::host_entry& e : list.hosts) ejected += e.state->ejected.load(std::memory_order_relaxed) ? 1 : 0;
    const std::uint64_t n = list.hosts.size();
    if ((ejected + 1) * 100 > std::uint64_t{options_.outlier.max_ejection_percent} * n) {
      core_->counters.add(counter::ejections_capped);
      return false;
    }
    const std::uint32_t m = std::min(h.multiplier.load(std::memory_order_relaxed) + 1, config_.max_multiplier);
    std::int64_t span = std::min(config_.base * static_cast<std::int64_t>(m), config_.max);
    if (config_.jitter > 0) span += static_cast<std::int64_t>(draw(static_cast<std::uint64_t>(config_.jitter) + 1));
    h.multiplier.store(m, std::memory_order_relaxed);
    h.ejected_until.store(t + span, std::memory_order_relaxed);
    h.times_ejected.fetch_add(1, std::memory_order_relaxed);
    h.consecutive.store(0, std::memory_order_relaxed);
    h.consecutive_gateway.store(0, std::memory_order_relaxed);
    h.ejected.store(true, std::memory_order_relaxed);
    core_->counters.add(counter::ejections);
    detail::notify(listener_, [&] {
      return host_set_event{host_set_event_kind::ejected, h.id, reason, std::chrono::nanoseconds{span}, m};
    });
    return true;
  }

  // The judge: an ejected host takes calls again (its time is over, or it
  // passed an active health check that may end an ejection early).
  void give_back(detail::host_state& h) noexcept {
    if (!h.ejected.load(std::memory_order_relaxed)) return;
    h.ejected.store(false, std::memory_order_relaxed);
    h.consecutive.store(0, std::memory_order_relaxed);
    h.consecutive_gateway.store(0, std::memory_order_relaxed);
    detail::notify(listener_, [&] {
      return host_set_event{host_set_event_kind::returned, h.id, ejection_reason::consecutive_failures,
                            std::chrono::nanoseconds{0}, h.multiplier.load(std::memory_order_relaxed)};
    });
  }

  // Called by a pick that found the interval over: the one that moves
  // next_evaluation on owes the evaluation to the judge (itself when
  // `judging` is free); others pick as before.
  void evaluate_if_due(std::int64_t t) noexcept(quiet) {
    detail::host_set_core& c = *core_;
    std::int64_t due = c.next_evaluation.load(std::memory_order_relaxed);
    if (t < due) return;
    if (!c.next_evaluation.compare_exchange_strong(due, t + config_.interval, std::memory_order_relaxed)) return;
    if (due == 0) return;  // the first call starts the first interval
    // Owed to the judge (see judge_outcome); two evaluations owed at once
    // run as one, at the later time.
    std::int64_t owed = c.owed_evaluation.load(std::memory_order_relaxed);
    while (owed < t && !c.owed_evaluation.compare_exchange_weak(owed, t, std::memory_order_relaxed)) {
    }
    c.owed.store(true, std::memory_order_seq_cst);
    if (c.judging.exchange(true, std::memory_order_seq_cst)) return;
    judge_and_release(t);
  }

  // The interval's evaluation, in Envoy's order: returns and multiplier
  // decay, then success-rate and failure-percentage ejections.
  void evaluate(const detail::host_list& list, std::int64_t t) noexcept(quiet) {
    const outlier_detection_options& d = options_.outlier;
    for (const detail::host_entry& e : list.hosts) {
      detail::host_state& h = *e.state;
      h.judged_successes = h.interval_successes.exchange(0, std::memory_order_relaxed);
      h.judged_failures = h.interval_failures.exchange(0, std::memory_order_relaxed);
      if (!h.ejected.load(std::memory_order_relaxed)) {
        const std::uint32_t m = h.multiplier.load(std::memory_order_relaxed);
        if (m > 0) h.multiplier.store(m - 1, std::memory_order_relaxed);
      } else if (t >= h.ejected_until.load(std::memory_order_relaxed)) {
        give_back(h);
      }
    }
    if (d.enforcing_success_rate > 0) {
      const std::uint64_t volume = std::max<std::uint64_t>(1, d.success_rate_request_volume);
      std::uint64_t k = 0;
      double sum = 0;
      double sum_sq = 0;
      for (const detail::host_entry& e : list.hosts) {
        const detail::host_state& h = *e.state;
        const std::uint64_t v = h.judged_successes + h.judged_failures;
        if (v < volume) continue;
        const double rate = 100.0 * static_cast<double>(h.judged_successes) / static_cast<double>(v);
        ++k;
        sum += rate;
        sum_sq += rate * rate;
      }
      if (k > 0 && k >= d.success_rate_minimum_hosts) {
        const double mean = sum / static_cast<double>(k);
        const double var = std::max(0.0, sum_sq / static_cast<double>(k) - mean * mean);
        const double threshold = mean - d.success_rate_stdev_factor * std::sqrt(var);
        for (const detail::host_entry& e : list.hosts) {
          detail::host_state& h = *e.state;
          const std::uint64_t v = h.judged_successes + h.judged_failures;
          if (v < volume || h.ejected.load(std::memory_order_relaxed)) continue;
          const double rate = 100.0 * static_cast<double>(h.judged_successes) / static_cast<double>(v);
          if (rate < threshold && roll(d.enforcing_success_rate)) eject(list, h, ejection_reason::success_rate, t);
        }
      }
    }
    if (d.enforcing_failure_percentage > 0) {
      const std::uint64_t volume = std::max<std::uint64_t>(1, d.failure_percentage_request_volume);
      std::uint64_t k = 0;
      for (const detail::host_entry& e : list.hosts) {
        if (e.state->judged_successes + e.state->judged_failures >= volume) ++k;
      }
      if (k > 0 && k >= d.failure_percentage_minimum_hosts) {
        for (const detail::host_entry& e : list.hosts) {
          detail::host_state& h = *e.state;
          const std::uint64_t v = h.judged_successes + h.judged_failures;
          if (v < volume || h.ejected.load(std::memory_order_relaxed)) continue;
          // failures / v >= threshold %, in integers.
          if (h.judged_failures * 100 >= std::uint64_t{d.failure_percentage_threshold} * v &&
              roll(d.enforcing_failure_percentage)) {
            eject(list, h, ejection_reason::failure_percentage, t);
          }
        }
      }
    }
  }

  host_set_options options_;
  detail::host_set_config config_;
  [[no_unique_address]] Clock clock_;
  [[no_unique_address]] Rng rng_;
  [[no_unique_address]] Listener listener_;
  std::unique_ptr<detail::host_set_core> core_;
};

host_set() -> host_set<>;
host_set(const host_set_options&) -> host_set<>;
template <class C>
  requires clock<C>
host_set(const host_set_options&, C) -> host_set<C>;
template <class C, class R>
host_set(const host_set_options&, C, R) -> host_set<C, R>;
template <class C, class R, class L>
host_set(const host_set_options&, C, R, L) -> host_set<C, R, L>;

}  // namespace armor
