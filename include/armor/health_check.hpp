// armor/health_check.hpp: armor::health_checker, active health checks for a
// host set (sans-I/O): it decides when each host is due a probe, turns
// probe results into healthy / unhealthy with two thresholds, and marks
// the host set's hosts (an unhealthy host is not picked). The probe itself
// is yours: the sync driver runs it on your thread, the Asio driver
// (armor::async_health_checks in armor/asio.hpp) as a coroutine with a timeout.
//
//     using namespace std::chrono_literals;
//     armor::host_set<> hosts;
//     hosts.update({{"10.0.0.1:443"}, {"10.0.0.2:443"}});
//     armor::health_checker checker{hosts, {.interval = 5s, .healthy_threshold = 2}};
//     checker.run_due(checker.now(), [](std::string_view id) { return ping(id); });
//
// A host starts unhealthy until one probe passes (or healthy, with
// start_healthy); then unhealthy_threshold failures or time-outs in a row
// make it unhealthy and healthy_threshold passes in a row healthy again.
// Probes are due every interval (unhealthy_interval while unhealthy) plus a
// random jitter. A pass may also end an outlier ejection early
// (end_ejection_on_pass, as Envoy's successful_active_health_check_uneject_host).
// Not a hot path: a mutex guards the checker's state (never held while a
// probe runs); the host set's picks stay lock-free. Defaults beside
// Envoy's, AWS's and Kubernetes': docs/host_sets.md.
#pragma once

#include <armor/backoff.hpp>
#include <armor/clock.hpp>
#include <armor/detail/random.hpp>
#include <armor/error.hpp>
#include <armor/stats.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace armor {

/// What one active probe of a host came to.
enum class probe_result : std::uint8_t {
  passed,     ///< the host answered as a healthy host does
  failed,     ///< it answered badly, or refused the connection
  timed_out,  ///< no answer within the timeout (counts as a failure)
};

/// The enumerator's name: "passed", "failed", "timed_out".
[[nodiscard]] constexpr std::string_view to_string(probe_result r) noexcept {
  switch (r) {
    case probe_result::passed: return "passed";
    case probe_result::failed: return "failed";
    case probe_result::timed_out: return "timed_out";
  }
  return "unknown";
}

/// The options of armor::health_checker (docs/host_sets.md sets them beside
/// Envoy's, AWS's and Kubernetes'). An aggregate: `{.interval = 5s}`.
struct health_check_options {
  /// Time between probes of a healthy host; > 0.
  std::chrono::nanoseconds interval = std::chrono::seconds{30};
  /// Time between probes of an unhealthy host; >= 0 (0: `interval`, as Envoy's unhealthy_interval).
  std::chrono::nanoseconds unhealthy_interval = std::chrono::nanoseconds{0};
  /// A random time in [0, jitter] added to each wait; >= 0 (Envoy's interval_jitter).
  std::chrono::nanoseconds jitter = std::chrono::nanoseconds{0};
  /// How long the Asio driver waits for one probe before it counts as
  /// timed_out; > 0. (The sync driver's check keeps its own time-out.)
  std::chrono::nanoseconds timeout = std::chrono::seconds{10};
  /// Passes in a row that make an unhealthy host healthy; >= 1.
  std::uint32_t healthy_threshold = 3;
  /// Failures or time-outs in a row that make a healthy host unhealthy; >= 1.
  std::uint32_t unhealthy_threshold = 2;
  /// false: a new host is unhealthy until its first probe passes (one pass
  /// suffices for a host never yet judged: Envoy's start-up rule).
  /// true: a new host is healthy until unhealthy_threshold failures.
  bool start_healthy = false;
  /// A pass by a healthy host that the host set has ejected as an outlier
  /// ends the ejection at once (Envoy's successful_active_health_check_uneject_host).
  bool end_ejection_on_pass = true;
};

/// One probe handed out by health_checker::due(): the host to probe. Report
/// its result with health_checker::report().
struct health_probe {
  std::string id;
  std::uint64_t ticket = 0;  ///< tells this probe from later ones of the same id
};

/// One host as health_checker::hosts() reports it.
struct health_check_status {
  std::string id;
  bool healthy = false;
  bool judged = false;               ///< false until a first verdict (start-up)
  bool probing = false;              ///< a probe is out and not yet reported
  std::uint32_t passes = 0;          ///< passes in a row
  std::uint32_t failures = 0;        ///< failures and time-outs in a row
  timestamp next_probe{};            ///< when the next probe is due
};

/// A snapshot of a health checker: its hosts now and its counts since construction.
struct health_check_stats {
  std::uint64_t hosts = 0;             ///< hosts it checks
  std::uint64_t unhealthy = 0;         ///< of those, unhealthy now
  std::uint64_t probes = 0;            ///< probe results reported
  std::uint64_t passed = 0;            ///< of those, passed
  std::uint64_t failed = 0;            ///< failed
  std::uint64_t timed_out = 0;         ///< timed out
  std::uint64_t turned_healthy = 0;    ///< times a host became healthy
  std::uint64_t turned_unhealthy = 0;  ///< times a host became unhealthy

  /// How fmt prints and Prometheus exports it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using s = health_check_stats;
    return std::tuple{
        gauge("hosts", &s::hosts, "armor_health_check_hosts", "Hosts the health checker checks."),
        gauge("unhealthy", &s::unhealthy, "armor_health_check_unhealthy_hosts",
              "Hosts failing active health checks now."),
        counter("probes", &s::probes, "armor_health_check_probes_total", "Probe results reported."),
        counter("passed", &s::passed, "armor_health_check_passed_total", "Probes that passed."),
        counter("failed", &s::failed, "armor_health_check_failed_total", "Probes that failed."),
        counter("timed_out", &s::timed_out, "armor_health_check_timed_out_total", "Probes that timed out."),
        counter("turned_healthy", &s::turned_healthy, "armor_health_check_turned_healthy_total",
                "Times a host became healthy."),
        counter("turned_unhealthy", &s::turned_unhealthy, "armor_health_check_turned_unhealthy_total",
                "Times a host became unhealthy."),
    };
  }
};

namespace detail {

[[noreturn]] inline void health_check_refuse(const std::string& what) {
  invalid_config("armor::health_checker: " + what);
}

inline void health_check_validate(const health_check_options& o) {
  if (o.interval.count() <= 0) {
    health_check_refuse("interval must be positive (got " + std::to_string(o.interval.count()) + " ns)");
  }
  if (o.unhealthy_interval.count() < 0) {
    health_check_refuse("unhealthy_interval must be >= 0 (got " + std::to_string(o.unhealthy_interval.count()) +
                        " ns)");
  }
  if (o.jitter.count() < 0) {
    health_check_refuse("jitter must be >= 0 (got " + std::to_string(o.jitter.count()) + " ns)");
  }
  if (o.timeout.count() <= 0) {
    health_check_refuse("timeout must be positive (got " + std::to_string(o.timeout.count()) + " ns)");
  }
  if (o.healthy_threshold == 0) health_check_refuse("healthy_threshold must be >= 1 (got 0)");
  if (o.unhealthy_threshold == 0) health_check_refuse("unhealthy_threshold must be >= 1 (got 0)");
}

struct health_check_host {
  std::string id;
  bool healthy = false;
  bool judged = false;
  std::uint64_t probing = 0;  // the ticket of the probe out, or 0
  std::uint32_t passes = 0;
  std::uint32_t failures = 0;
  std::int64_t due = 0;
};

template <class R>
[[nodiscard]] constexpr probe_result as_probe_result(R r) noexcept {
  if constexpr (std::is_same_v<R, probe_result>) {
    return r;
  } else {
    return static_cast<bool>(r) ? probe_result::passed : probe_result::failed;
  }
}

}  // namespace detail

/// Active health checks for a host set (see the top of this header).
///
/// `HostSet` is an armor::host_set (anything with hosts(), clock() and
/// set_active_health()); it must outlive the checker. `Rng` (an
/// armor::random_source) draws the jitter. Every member may be called from
/// any thread; a mutex guards the checker's state, held for a pass over
/// the hosts and while it marks them in the host set, never while a probe
/// runs. (The host set's listener, which a mark may run, must not call the
/// checker.)
template <class HostSet, class Rng = thread_rng>
class health_checker {
  static_assert(random_source<Rng>, "armor::health_checker: Rng must be an armor::random_source");

 public:
  using host_set_type = HostSet;

  /// Throws armor::error(errc::invalid_argument) naming a bad option.
  explicit health_checker(HostSet& hosts, const health_check_options& options = {}, Rng rng = Rng{})
      : hosts_(hosts), options_((detail::health_check_validate(options), options)), rng_(std::move(rng)) {}

  health_checker(const health_checker&) = delete;
  health_checker& operator=(const health_checker&) = delete;

  /// Now, on the host set's clock.
  [[nodiscard]] timestamp now() const { return to_timestamp(hosts_.clock().now()); }

  /// The probes due at `now`, each host's marked as out (not due again until
  /// reported). Reads the host set's list first: a host new to it is due
  /// at once (and, without start_healthy, marked unhealthy in the host
  /// set); a host no longer listed is forgotten. Allocates.
  [[nodiscard]] std::vector<health_probe> due(timestamp now) {
    const std::int64_t t = now.time_since_epoch().count();
    std::vector<health_probe> out;
    const auto listed = hosts_.hosts(now);
    // Marks the host set should carry and does not: a new host (unhealthy
    // unless start_healthy), or a host removed and listed again between two
    // calls here (the host set then made it a fresh, unmarked state).
    {
      const std::scoped_lock lock(mutex_);  // held while marking: marks land in the order decided
      std::vector<detail::health_check_host> next;
      next.reserve(listed.size());
      for (const auto& h : listed) {
        auto it = std::find_if(state_.begin(), state_.end(), [&](const auto& s) { return s.id == h.id; });
        if (it != state_.end()) {
          if (h.failing_active_check == it->healthy) hosts_.set_active_health(h.id, it->healthy);
          next.push_back(std::move(*it));
        } else {
          detail::health_check_host fresh;
          fresh.id = h.id;
          fresh.healthy = options_.start_healthy;
          fresh.due = t;
          if (h.failing_active_check == fresh.healthy) hosts_.set_active_health(h.id, fresh.healthy);
          next.push_back(std::move(fresh));
        }
      }
      state_ = std::move(next);
      for (detail::health_check_host& h : state_) {
        if (h.probing != 0 || h.due > t) continue;
        h.probing = ++tickets_;
        out.push_back({h.id, h.probing});
      }
    }
    return out;
  }

  /// Applies a probe's result at `now`: the thresholds, the host set's
  /// mark, and when the host is next due. A probe of a host forgotten since
  /// (or reported twice) is ignored; returns whether it counted.
  bool report(const health_probe& probe, probe_result result, timestamp now) {
    const std::int64_t t = now.time_since_epoch().count();
    int turn = 0;  // +1 healthy, -1 unhealthy
    {
      const std::scoped_lock lock(mutex_);
      auto it = std::find_if(state_.begin(), state_.end(), [&](const auto& s) { return s.id == probe.id; });
      if (it == state_.end() || probe.ticket == 0 || it->probing != probe.ticket) return false;
      detail::health_check_host& h = *it;
      h.probing = 0;
      ++probes_;
      if (result == probe_result::passed) {
        ++passed_;
        h.failures = 0;
        h.passes = h.passes < std::numeric_limits<std::uint32_t>::max() ? h.passes + 1 : h.passes;
        if (!h.healthy && (!h.judged || h.passes >= options_.healthy_threshold)) {
          h.healthy = true;
          turn = 1;
        }
      } else {
        ++(result == probe_result::failed ? failed_ : timed_out_);
        h.passes = 0;
        h.failures = h.failures < std::numeric_limits<std::uint32_t>::max() ? h.failures + 1 : h.failures;
        if (h.healthy && h.failures >= options_.unhealthy_threshold) {
          h.healthy = false;
          turn = -1;
        }
      }
      h.judged = h.judged || turn != 0 || h.failures >= options_.unhealthy_threshold;
      if (turn > 0) ++turned_healthy_;
      if (turn < 0) ++turned_unhealthy_;
      std::int64_t wait = h.healthy || options_.unhealthy_interval.count() == 0 ? options_.interval.count()
                                                                                   : options_.unhealthy_interval.count();
      wait = detail::saturating_add(wait, jitter());
      h.due = detail::saturating_add(t, wait);
      // Every report restates the mark (a host listed again may have lost it).
      hosts_.set_active_health(h.id, h.healthy,
                               h.healthy && result == probe_result::passed && options_.end_ejection_on_pass);
    }
    return true;
  }

  /// Gives back a probe that will not be reported (its driver stopped): the
  /// host is due again as it was. Returns whether it was out.
  bool abandon(const health_probe& probe) {
    const std::scoped_lock lock(mutex_);
    auto it = std::find_if(state_.begin(), state_.end(), [&](const auto& s) { return s.id == probe.id; });
    if (it == state_.end() || probe.ticket == 0 || it->probing != probe.ticket) return false;
    it->probing = 0;
    return true;
  }

  /// The sync driver: runs the probes due at `now` one after another on this
  /// thread, `check(std::string_view id)` returning probe_result or bool
  /// (true: passed); a check that throws counts as failed. Results are
  /// reported at `now` (the next probe is due an interval after it).
  /// Returns the number of probes run.
  template <class Check>
  std::size_t run_due(timestamp now, Check&& check) {
    const std::vector<health_probe> probes = due(now);
    for (const health_probe& p : probes) {
      probe_result r = probe_result::failed;
      try {
        r = detail::as_probe_result(std::invoke(check, std::string_view{p.id}));
      } catch (...) {
        r = probe_result::failed;
      }
      report(p, r, now);
    }
    return probes.size();
  }

  /// When the earliest probe is due (a driver sleeps until then); max() if
  /// every host's probe is out or no host is known yet.
  [[nodiscard]] timestamp next_due() const {
    const std::scoped_lock lock(mutex_);
    std::int64_t t = std::numeric_limits<std::int64_t>::max();
    for (const detail::health_check_host& h : state_) {
      if (h.probing == 0) t = std::min(t, h.due);
    }
    return timestamp{std::chrono::nanoseconds{t}};
  }

  /// Each host's state. Allocates.
  [[nodiscard]] std::vector<health_check_status> hosts() const {
    const std::scoped_lock lock(mutex_);
    std::vector<health_check_status> out;
    out.reserve(state_.size());
    for (const detail::health_check_host& h : state_) {
      out.push_back({h.id, h.healthy, h.judged, h.probing != 0, h.passes, h.failures,
                     timestamp{std::chrono::nanoseconds{h.due}}});
    }
    return out;
  }

  /// A snapshot of the counts.
  [[nodiscard]] health_check_stats stats() const {
    const std::scoped_lock lock(mutex_);
    health_check_stats s;
    s.hosts = state_.size();
    for (const detail::health_check_host& h : state_) s.unhealthy += h.healthy ? 0 : 1;
    s.probes = probes_;
    s.passed = passed_;
    s.failed = failed_;
    s.timed_out = timed_out_;
    s.turned_healthy = turned_healthy_;
    s.turned_unhealthy = turned_unhealthy_;
    return s;
  }

  /// The options given at construction.
  [[nodiscard]] const health_check_options& options() const noexcept { return options_; }
  /// The host set it marks.
  [[nodiscard]] HostSet& host_set() const noexcept { return hosts_; }

 private:
  // Under mutex_: a draw in [0, jitter].
  [[nodiscard]] std::int64_t jitter() {
    const std::int64_t j = options_.jitter.count();
    if (j == 0) return 0;
    const double u = detail::unit_interval(static_cast<std::uint64_t>(std::invoke(rng_)));
    const auto v = static_cast<std::int64_t>(u * (static_cast<double>(j) + 1.0));
    return std::min(v, j);
  }

  HostSet& hosts_;
  health_check_options options_;
  Rng rng_;
  mutable std::mutex mutex_;
  std::vector<detail::health_check_host> state_;
  std::uint64_t tickets_ = 0;
  std::uint64_t probes_ = 0;
  std::uint64_t passed_ = 0;
  std::uint64_t failed_ = 0;
  std::uint64_t timed_out_ = 0;
  std::uint64_t turned_healthy_ = 0;
  std::uint64_t turned_unhealthy_ = 0;
};

template <class HostSet>
health_checker(HostSet&) -> health_checker<HostSet>;
template <class HostSet>
health_checker(HostSet&, const health_check_options&) -> health_checker<HostSet>;
template <class HostSet, class Rng>
health_checker(HostSet&, const health_check_options&, Rng) -> health_checker<HostSet, Rng>;

}  // namespace armor
