// armor/quota_tracker.hpp: usage quotas over minutes, hours, days and months,
// in requests, tokens or money; alerts at 80 % and 90 %; the time until the
// reset. Defines armor::quota_tracker<WallClock, Storage, Listener> (all
// defaulted: quota_tracker<> counts in memory, on the system clock), its
// options, decision, permit, event, stats and usage report.
//
//     using namespace std::chrono_literals;
//     // Gemini's free tier: 50 requests a day (resetting at midnight in
//     // UTC-8), and no more than 10 a minute.
//     armor::quota_tracker gemini{{
//         .windows = {armor::quota_window::per_day(50), armor::quota_window::per_minute(10)},
//         .utc_offset = -8h,
//     }};
//     if (auto d = gemini.try_consume(); !d) {
//         std::printf("%s, resets in %llds\n", d.code().message().c_str(),
//                     static_cast<long long>(d.retry_after() / 1s));
//     }
//
// The counts live in a storage: this process (the default), one host
// (armor/storage/sqlite.hpp), many hosts (armor/redis/quota_storage.hpp),
// or your own (armor/storage/quota_storage.hpp). Windows, reservations,
// alerts, spend forecasts, the pipeline protocol, costs and proofs:
// docs/quota_tracker.md; limits changed at run time (reconfigure()):
// docs/reconfiguration.md.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/detail/counter_set.hpp>
#include <armor/detail/quota_calendar.hpp>
#include <armor/detail/quota_word.hpp>
#include <armor/detail/time.hpp>
#include <armor/error.hpp>
#include <armor/listener.hpp>
#include <armor/policy.hpp>
#include <armor/stats.hpp>
#include <armor/storage/memory.hpp>
#include <armor/storage/quota_storage.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace armor {

/// How a quota window cuts time into periods.
enum class quota_window_kind : std::uint8_t {
  fixed,    ///< periods of `length` aligned on local midnight: per minute, per hour, per day
  week,     ///< Monday 00:00 to Monday 00:00, local time
  month,    ///< the 1st 00:00 to the next 1st 00:00, local time (28 to 31 days)
  rolling,  ///< the last `length`, counted in `buckets` buckets (see docs/quota_tracker.md)
  lifetime, ///< never resets: a budget for the tracker's (or a keyed session's) whole life
};

/// The name of a quota_window_kind, as written in the code (`rolling`).
[[nodiscard]] constexpr std::string_view to_string(quota_window_kind k) noexcept {
  switch (k) {
    case quota_window_kind::fixed: return "fixed";
    case quota_window_kind::week: return "week";
    case quota_window_kind::month: return "month";
    case quota_window_kind::rolling: return "rolling";
    case quota_window_kind::lifetime: return "lifetime";
  }
  return "unknown";
}

/// What a tracker's alerts count (quota_tracker_options::alert_basis).
enum class quota_alert_basis : std::uint8_t {
  /// Units used for good: consumed, charged, or committed by a permit. A
  /// reservation's units count once its permit commits them (its real
  /// cost), not while it holds the estimate.
  settled,
  /// Every unit counted, a reservation's from the moment it is made (an
  /// estimate given back later re-arms the thresholds it fell below).
  reserved,
};

/// The name of a quota_alert_basis, as written in the code (`settled`).
[[nodiscard]] constexpr std::string_view to_string(quota_alert_basis b) noexcept {
  switch (b) {
    case quota_alert_basis::settled: return "settled";
    case quota_alert_basis::reserved: return "reserved";
  }
  return "unknown";
}

/// What a quota_tracker_event reports.
enum class quota_alert_kind : std::uint8_t {
  used,      ///< a window's use reached a threshold (quota_tracker_options::alerts)
  forecast,  ///< a window's projected use at its period's end reached quota_tracker_options::forecast_alert
};

/// The name of a quota_alert_kind, as written in the code (`forecast`).
[[nodiscard]] constexpr std::string_view to_string(quota_alert_kind k) noexcept {
  switch (k) {
    case quota_alert_kind::used: return "used";
    case quota_alert_kind::forecast: return "forecast";
  }
  return "unknown";
}

/// The most alert thresholds a tracker can have.
inline constexpr std::size_t quota_max_alerts = 8;
/// The most buckets a rolling window can have.
inline constexpr std::uint32_t quota_max_buckets = 1024;
/// The largest limit a window can have (2^39 - 1 units: $549,755 in micro-dollars).
inline constexpr std::int64_t quota_max_limit = detail::quota_limit_max;

/// One quota: at most `limit` units per period. An aggregate:
/// `{.limit = 5000, .length = 1h}`, or one of the named constructors.
struct quota_window {
  /// Units per period; in [1, quota_max_limit].
  std::int64_t limit = 0;
  /// fixed and rolling: the period (> 0). week, month and lifetime: leave it zero.
  std::chrono::nanoseconds length{};
  quota_window_kind kind = quota_window_kind::fixed;
  /// rolling: how many buckets the window is counted in, in [1, 1024];
  /// `length` must be a whole number of nanoseconds per bucket. A unit stays
  /// counted for between length and length + length / buckets.
  std::uint32_t buckets = 60;

  [[nodiscard]] static quota_window per_minute(std::int64_t limit) noexcept { return {limit, std::chrono::minutes{1}}; }
  [[nodiscard]] static quota_window per_hour(std::int64_t limit) noexcept { return {limit, std::chrono::hours{1}}; }
  [[nodiscard]] static quota_window per_day(std::int64_t limit) noexcept { return {limit, std::chrono::hours{24}}; }
  [[nodiscard]] static quota_window per_week(std::int64_t limit) noexcept {
    return {limit, {}, quota_window_kind::week};
  }
  [[nodiscard]] static quota_window per_month(std::int64_t limit) noexcept {
    return {limit, {}, quota_window_kind::month};
  }
  /// Periods of `length`, aligned on local midnight of 1970-01-01.
  [[nodiscard]] static quota_window fixed(std::int64_t limit, std::chrono::nanoseconds length) noexcept {
    return {limit, length};
  }
  /// A budget that never resets: `limit` units for as long as the counts
  /// live (in keyed, until the key expires: a session's budget).
  [[nodiscard]] static quota_window lifetime(std::int64_t limit) noexcept {
    return {limit, {}, quota_window_kind::lifetime};
  }
  /// The last `length`, counted in `buckets` buckets.
  [[nodiscard]] static quota_window rolling(std::int64_t limit, std::chrono::nanoseconds length,
                                            std::uint32_t buckets = 60) noexcept {
    return {limit, length, quota_window_kind::rolling, buckets};
  }
};

/// The options of armor::quota_tracker. An aggregate:
/// `{.windows = {quota_window::per_day(50)}, .utc_offset = -8h}`.
struct quota_tracker_options {
  /// The windows, 1 to 8; a consumption must fit all of them.
  std::vector<quota_window> windows{};
  /// Where local time, and so every calendar period, begins: a daily window
  /// resets at 00:00 in UTC + utc_offset. Within (-24h, 24h). Fixed: no
  /// daylight saving time. Rolling windows ignore it.
  std::chrono::minutes utc_offset{0};
  /// Alert thresholds, as fractions of each window's limit, each in (0, 1];
  /// at most 8. Each fires once per window period (see quota_tracker_event),
  /// and again after the use fell back below it in that period.
  std::vector<double> alerts{0.8, 0.9, 1.0};
  /// What the alerts count: settled use (the default; a reservation counts
  /// once committed, with its real cost) or every reserved unit.
  quota_alert_basis alert_basis = quota_alert_basis::settled;
  /// A forecast alert, as a fraction of each window's limit in (0, 1]; none
  /// by default. When a fixed, week or month window's projected use at the
  /// end of its period (its alert use so far at the period's average rate:
  /// quota_usage::projected) reaches it, the listener hears an event of
  /// kind quota_alert_kind::forecast, once per window and period. Rolling
  /// and lifetime windows have no period end and are not forecast.
  std::optional<double> forecast_alert{};
  /// The forecast alert waits until this fraction of the period has passed,
  /// in [0, 1): a burst early in a period, extrapolated over all of it,
  /// would otherwise project far more than will be used (a projection made
  /// after a fraction f overstates a burst that is not repeated at most
  /// 1/f times). 0.1 by default: 2.4 h of a day, 3 days of a month.
  double forecast_after = 0.1;
  /// In a pipeline, a refusal whose retry_after is shorter than this is
  /// marked retryable, so an outer backoff may wait for it (within its
  /// max_refusal_wait, max_retry_after and the deadline). 0 (the default):
  /// refusals end the call.
  std::chrono::nanoseconds retryable_within{0};
  /// In a pipeline, which of the call's costs this tracker counts (and
  /// which reported cost settles it): the call's cost (the default),
  /// cost_source::slot(i) for call_options::costs[i], or
  /// cost_source::per_call() to count 1 per call. A request quota and a
  /// dollar budget in one pipeline: `.cost = per_call()` on the first.
  cost_source cost{};
};

/// The options of `armor::keyed<quota_tracker<C, S>>` when S keeps counts
/// outside the process (armor::keyed_quota_storage: SQLite, Redis): every
/// key's tracker gets `quota` and `storage.for_key(key)`, so a key's counts
/// outlive its tracker in the map (restarts, other processes). An aggregate:
/// `{.quota = {.windows = {...}}, .storage = armor::sqlite_quota_storage{{...}}}`.
template <class Storage>
struct keyed_quota_options {
  quota_tracker_options quota{};
  /// The prototype: never bound itself; each key's storage is made from it.
  Storage storage;
};

/// How a tracker answered.
enum class quota_tracker_status : std::uint8_t {
  granted,      ///< the units were counted (or reserved)
  exhausted,    ///< a window has no room now; see retry_after()
  too_large,    ///< more units than a window's limit: can never be granted
  invalid,      ///< a negative number of units
  unavailable,  ///< the storage failed; nothing was counted
};

/// The name of a quota_tracker_status, as written in the code (`too_large`).
[[nodiscard]] constexpr std::string_view to_string(quota_tracker_status s) noexcept {
  switch (s) {
    case quota_tracker_status::granted: return "granted";
    case quota_tracker_status::exhausted: return "exhausted";
    case quota_tracker_status::too_large: return "too_large";
    case quota_tracker_status::invalid: return "invalid";
    case quota_tracker_status::unavailable: return "unavailable";
  }
  return "unknown";
}

/// A tracker's answer (armor::decision_like): to try_consume() with no
/// permit (the units are counted already), to reserve() with the
/// quota_tracker_permit that holds them. A small value; move-only when it
/// holds a permit.
///
///     if (auto d = tokens.reserve(4000)) {
///         d.permit().commit(call_llm().usage.total);  // the real count
///     }                                               // not committed: given back
template <class Permit = no_permit>
class quota_tracker_decision {
 public:
  using permit_type = Permit;

  /// Granted, holding nothing.
  quota_tracker_decision() noexcept = default;

  [[nodiscard]] constexpr quota_tracker_status status() const noexcept { return status_; }
  /// Whether the units were granted (the same as `explicit operator bool`).
  [[nodiscard]] constexpr bool allowed() const noexcept { return status_ == quota_tracker_status::granted; }
  [[nodiscard]] constexpr explicit operator bool() const noexcept { return allowed(); }

  /// Why the units were refused: empty when granted, else
  /// errc::quota_exhausted, request_too_large, invalid_argument or
  /// storage_unavailable.
  [[nodiscard]] std::error_code code() const noexcept {
    switch (status_) {
      case quota_tracker_status::granted: break;
      case quota_tracker_status::exhausted: return errc::quota_exhausted;
      case quota_tracker_status::too_large: return errc::request_too_large;
      case quota_tracker_status::invalid: return errc::invalid_argument;
      case quota_tracker_status::unavailable: return errc::storage_unavailable;
    }
    return {};
  }
  /// exhausted: the time until the refusing window has room for the
  /// request (its period ends; for a rolling window, enough units expire),
  /// if nobody else consumes meanwhile. nanoseconds::max() for too_large and
  /// invalid (no wait helps). Zero when granted, and when the storage failed
  /// (asking again at once may succeed).
  [[nodiscard]] constexpr std::chrono::nanoseconds retry_after() const noexcept {
    return std::chrono::nanoseconds{retry_after_};
  }

  /// The window that refused (its position in quota_tracker_options::windows):
  /// of the windows without room, the one with the longest wait; 0 when granted.
  [[nodiscard]] constexpr std::size_t window() const noexcept { return window_; }
  /// The refusing window's units used and limit (0 when granted).
  [[nodiscard]] constexpr std::int64_t used() const noexcept { return used_; }
  [[nodiscard]] constexpr std::int64_t limit() const noexcept { return limit_; }

  /// The permit holding the units (reserve() only; empty when refused).
  [[nodiscard]] Permit& permit() & noexcept { return permit_; }
  [[nodiscard]] const Permit& permit() const& noexcept { return permit_; }
  /// By value from a temporary decision, so that
  /// `auto p = bulkhead.try_acquire().permit();` cannot leave a dangling
  /// reference to a permit that was already given back.
  [[nodiscard]] Permit permit() && noexcept(std::is_nothrow_move_constructible_v<Permit>) { return std::move(permit_); }

 private:
  template <class, class, class>
  friend class quota_tracker;
  template <class>
  friend class quota_tracker_decision;

  constexpr quota_tracker_decision(quota_tracker_status s, std::size_t window, std::int64_t used, std::int64_t limit,
                                   std::int64_t retry_after) noexcept
      : status_(s), window_(window), used_(used), limit_(limit), retry_after_(retry_after) {}
  // `d`'s answer, holding `p`.
  quota_tracker_decision(const quota_tracker_decision<>& d, Permit p) noexcept
    requires(!std::is_same_v<Permit, no_permit>)
      : status_(d.status_), window_(d.window_), used_(d.used_), limit_(d.limit_), retry_after_(d.retry_after_),
        permit_(std::move(p)) {}

  quota_tracker_status status_ = quota_tracker_status::granted;
  std::size_t window_ = 0;
  std::int64_t used_ = 0;
  std::int64_t limit_ = 0;
  std::int64_t retry_after_ = 0;
  [[no_unique_address]] Permit permit_{};  // last: measured cheaper for reserve() than first
};

static_assert(decision_like<quota_tracker_decision<>>);

/// One window's state, from quota_tracker::usage(). Its fields() are the
/// per-window gauges (armor/prometheus.hpp adds the `window` label).
struct quota_usage {
  /// Units counted now (may exceed the limit after an overrun).
  std::int64_t used = 0;
  std::int64_t limit = 0;
  /// Fixed windows: the time until the period ends. Rolling windows: the
  /// time until the oldest units counted now expire (zero when none are).
  std::chrono::nanoseconds resets_in{};
  /// The same as a wall time.
  std::chrono::sys_time<std::chrono::nanoseconds> resets_at{};
  /// The time until `used` reaches the limit at the average rate of the
  /// units counted now; zero when it has; none when nothing is used or the
  /// projection lies past the reset (for a rolling window, past its length).
  std::optional<std::chrono::nanoseconds> exhausted_in{};
  /// Fixed, week and month windows: the use projected at the end of the
  /// period at the period's average rate so far, used x period / elapsed
  /// (may exceed the limit: what the rate would spend, not what the quota
  /// allows). None for rolling and lifetime windows.
  std::optional<std::int64_t> projected{};

  [[nodiscard]] constexpr std::int64_t remaining() const noexcept { return used >= limit ? 0 : limit - used; }
  /// used / limit (above 1 after an overrun).
  [[nodiscard]] constexpr double fraction() const noexcept {
    return limit > 0 ? static_cast<double>(used) / static_cast<double>(limit) : 0.0;
  }
  [[nodiscard]] constexpr double percent() const noexcept { return 100.0 * fraction(); }

  static constexpr auto fields() noexcept {
    return std::tuple{
        armor::gauge("used", &quota_usage::used, "armor_quota_used", "Units counted in the quota window now."),
        armor::gauge("limit", &quota_usage::limit, "armor_quota_limit", "Units the quota window allows per period."),
        armor::gauge("resets_in", &quota_usage::resets_in, "armor_quota_reset_seconds",
                     "Seconds until the quota window resets (rolling: until its oldest units expire)."),
        armor::field("exhausted_in", &quota_usage::exhausted_in),
        armor::gauge("projected", &quota_usage::projected, "armor_quota_projected",
                     "Units the quota window is projected to have used when its period ends, at its average rate so "
                     "far (fixed, week and month windows)."),
    };
  }
};

/// What the listener hears when a window's use reaches an alert threshold:
/// once per threshold, window and period (again only after the use fell
/// back below it), on the thread whose consumption or commit reached it.
/// The use is settled use unless quota_tracker_options::alert_basis says
/// `reserved`. A rolling window's "period" for alerts is each span of its
/// length since the Unix epoch. With a storage that keeps alert state
/// (armor::alert_quota_storage: SQLite, Redis), once between every tracker
/// sharing the counts, restarts included.
struct quota_tracker_event {
  std::size_t window = 0;    ///< position in quota_tracker_options::windows
  double threshold = 0;      ///< the fraction reached (0.8 for 80 %; forecast: forecast_alert)
  std::int64_t used = 0;     ///< the use that reached it (settled units, by default)
  std::int64_t limit = 0;
  std::chrono::nanoseconds resets_in{};                         ///< as in quota_usage
  std::chrono::sys_time<std::chrono::nanoseconds> resets_at{};  ///< the same as a wall time
  /// used: the use reached `threshold`; forecast: the projected use did.
  quota_alert_kind kind = quota_alert_kind::used;
  /// forecast: the use projected at the period's end (quota_usage::projected); none otherwise.
  std::optional<std::int64_t> projected{};

  /// How fmt prints it (armor/stats.hpp); resets_at, the same as resets_in, is left out.
  static constexpr auto fields() noexcept {
    using e = quota_tracker_event;
    return std::tuple{armor::field("kind", &e::kind),           armor::field("window", &e::window),
                      armor::field("threshold", &e::threshold), armor::field("used", &e::used),
                      armor::field("limit", &e::limit),         armor::field("projected", &e::projected),
                      armor::field("resets_in", &e::resets_in)};
  }
};

/// A tracker's counters since construction (relaxed atomics, read one by
/// one: under load the fields may be a few events apart). Only refusals and
/// alerts are counted, so a granted consumption writes nothing more than its
/// windows; the units in use are in quota_tracker::usage().
struct quota_tracker_stats {
  std::uint64_t exhausted = 0;    ///< consumptions refused because a window had no room
  std::uint64_t too_large = 0;    ///< consumptions refused as larger than a window's limit
  std::uint64_t invalid = 0;      ///< consumptions refused for a negative number of units
  std::uint64_t unavailable = 0;  ///< consumptions and charges the storage failed to count
  std::uint64_t alerts = 0;       ///< alerts fired (once per threshold, window and period)
  std::uint64_t forecast_alerts = 0;  ///< forecast alerts fired (once per window and period)

  /// Consumptions refused, for any reason.
  [[nodiscard]] constexpr std::uint64_t rejected() const noexcept {
    return exhausted + too_large + invalid + unavailable;
  }

  static constexpr auto fields() noexcept {
    constexpr std::string_view rejected_total = "armor_quota_rejected_total";
    constexpr std::string_view rejected_help = "Consumptions the quota tracker refused, by reason.";
    return std::tuple{
        armor::counter("exhausted", &quota_tracker_stats::exhausted, rejected_total, rejected_help)
            .labelled("reason", "exhausted"),
        armor::counter("too_large", &quota_tracker_stats::too_large, rejected_total, rejected_help)
            .labelled("reason", "too_large"),
        armor::counter("invalid", &quota_tracker_stats::invalid, rejected_total, rejected_help)
            .labelled("reason", "invalid"),
        armor::counter("unavailable", &quota_tracker_stats::unavailable, rejected_total, rejected_help)
            .labelled("reason", "unavailable"),
        armor::counter("alerts", &quota_tracker_stats::alerts, "armor_quota_alerts_total",
                       "Quota alerts fired (once per threshold, window and period)."),
        armor::counter("forecast_alerts", &quota_tracker_stats::forecast_alerts, "armor_quota_forecast_alerts_total",
                       "Quota forecast alerts fired (once per window and period)."),
    };
  }
};

template <class WallClock = system_clock, class Storage = memory_quota_storage, class Listener = no_listener>
class quota_tracker;

/// The units a quota_tracker reserved (reserve(), or admit() in a
/// pipeline): commit() keeps them, commit(actual) replaces the estimate
/// with the real cost, cancel() or dropping it uncommitted gives them back.
/// Move-only; the tracker must outlive it. Not thread-safe itself (one owner
/// at a time), but any number of permits may be used at once.
template <class WallClock = system_clock, class Storage = memory_quota_storage, class Listener = no_listener>
class quota_tracker_permit {
  using tracker_type = quota_tracker<WallClock, Storage, Listener>;

 public:
  quota_tracker_permit() noexcept = default;
  quota_tracker_permit(quota_tracker_permit&& other) noexcept
      : owner_(std::exchange(other.owner_, nullptr)), amount_(other.amount_), at_(other.at_),
        trigger_(other.trigger_), status_(other.status_), pended_(other.pended_) {}
  quota_tracker_permit& operator=(quota_tracker_permit&& other) noexcept {
    if (this != &other) {
      cancel();
      owner_ = std::exchange(other.owner_, nullptr);
      amount_ = other.amount_;
      at_ = other.at_;
      trigger_ = other.trigger_;
      status_ = other.status_;
      pended_ = other.pended_;
    }
    return *this;
  }
  quota_tracker_permit(const quota_tracker_permit&) = delete;
  quota_tracker_permit& operator=(const quota_tracker_permit&) = delete;
  ~quota_tracker_permit() { cancel(); }

  /// The units reserved (the estimate).
  [[nodiscard]] std::int64_t amount() const noexcept { return amount_; }
  /// True until committed or cancelled.
  [[nodiscard]] bool pending() const noexcept { return owner_ != nullptr; }

  /// Keeps the estimate as the cost.
  void commit() noexcept {
    if (tracker_type* t = std::exchange(owner_, nullptr)) t->keep(amount_, trigger_, pended_);
  }
  /// Replaces the estimate with the real cost: a smaller cost gives the
  /// difference back (to the periods the estimate was counted in, while
  /// they last); a larger one counts the difference now, without a limit
  /// check (the units were spent: the window may go above its limit and
  /// refuse until it resets). A negative cost counts as zero. Returns
  /// granted, or unavailable if the storage failed to count an overrun; for
  /// a permit that was not pending, the status it was made with (granted,
  /// or the refusal of the decision it came from).
  quota_tracker_status commit(std::int64_t actual) noexcept(tracker_type::quiet) {
    tracker_type* t = std::exchange(owner_, nullptr);
    if (t == nullptr) return status_;
    return t->settle_permit(at_, amount_, actual < 0 ? 0 : actual, trigger_, pended_);
  }
  /// Gives every unit back (while their periods last).
  void cancel() noexcept {
    if (tracker_type* t = std::exchange(owner_, nullptr)) t->give_back(at_, amount_, pended_);
  }

 private:
  friend tracker_type;
  quota_tracker_permit(tracker_type* owner, std::int64_t amount, const quota_stamp& at, quota_tracker_status s,
                       std::int64_t trigger = 0, bool pended = false) noexcept
      : owner_(owner), amount_(amount), at_(at), trigger_(trigger), status_(s), pended_(pended) {}

  tracker_type* owner_ = nullptr;
  std::int64_t amount_ = 0;
  quota_stamp at_{};
  // Settled alerts: a commit of this many units or more may reach a threshold (re-read then).
  std::int64_t trigger_ = 0;
  quota_tracker_status status_ = quota_tracker_status::granted;
  bool pended_ = false;  // the units are in the tracker's pending count (settled alerts)
};

namespace detail {

/// Appends a duration as whole units, largest first: 1h30m, 90s -> 1m30s,
/// 1500ms -> 1s500ms, 0 -> 0s.
inline void append_compact_duration(std::string& out, std::chrono::nanoseconds d) {
  std::int64_t ns = d.count();
  if (ns <= 0) {
    out += ns == 0 ? "0s" : "negative";
    return;
  }
  constexpr std::pair<std::int64_t, const char*> units[] = {
      {3'600'000'000'000, "h"}, {60'000'000'000, "m"}, {1'000'000'000, "s"},
      {1'000'000, "ms"},        {1'000, "us"},         {1, "ns"}};
  for (const auto& [size, name] : units) {
    if (ns >= size) {
      out += std::to_string(ns / size);
      out += name;
      ns %= size;
    }
  }
}

/// The name metrics give window `w` of `windows` (quota_tracker::window_name).
inline std::string quota_window_name(const std::vector<quota_window>& windows, std::size_t w) {
  const auto base = [](const quota_window& q) {
    using namespace std::chrono;
    std::string name;
    switch (q.kind) {
      case quota_window_kind::week: return std::string("week");
      case quota_window_kind::month: return std::string("month");
      case quota_window_kind::lifetime: return std::string("lifetime");
      case quota_window_kind::fixed:
        if (q.length == minutes{1}) return std::string("minute");
        if (q.length == hours{1}) return std::string("hour");
        if (q.length == hours{24}) return std::string("day");
        name = "fixed_";
        break;
      case quota_window_kind::rolling:
        name = "rolling_";
        break;
    }
    append_compact_duration(name, q.length);
    return name;
  };
  std::string name = base(windows[w]);
  for (std::size_t i = 0; i < w; ++i) {
    if (base(windows[i]) == name) {
      name += '_';
      name += std::to_string(w);
      break;
    }
  }
  return name;
}


/// The counters of quota_tracker_stats.
enum class quota_counter : std::uint8_t { exhausted, too_large, invalid, unavailable, alerts, forecasts, count };

/// A tracker's counters, on a cache line of their own (refusals and alerts
/// write them; grants do not).
struct alignas(cache_line) quota_counters {
  counter_set<quota_counter> c;
};

// An alert cell: (period, highest threshold fired in it) in one word.
//   bits 63..8  the period, modulo 2^56     bits 7..0  thresholds fired (a count)
// A cell that has never fired holds level alert_unused (any period).
inline constexpr std::uint64_t alert_period_mask = (std::uint64_t{1} << 56) - 1;
inline constexpr std::uint64_t alert_unused = 0xff;

[[nodiscard]] constexpr std::uint64_t alert_pack(std::int64_t period, std::size_t level) noexcept {
  return ((static_cast<std::uint64_t>(period) & alert_period_mask) << 8) | static_cast<std::uint64_t>(level);
}

/// period - (the cell's period), as a signed distance (cells are never 2^55 periods apart).
[[nodiscard]] constexpr std::int64_t alert_distance(std::uint64_t cell, std::int64_t period) noexcept {
  std::uint64_t d = (static_cast<std::uint64_t>(period) - (cell >> 8)) & alert_period_mask;
  if (d >= (alert_period_mask >> 1) + 1) d |= ~alert_period_mask;
  return static_cast<std::int64_t>(d);
}

/// The use at the end of a period of `length` ns projected from `used` in
/// its first `elapsed` ns, at the same rate: used x length / elapsed,
/// saturating (and used, unchanged, at or past the end; with no time
/// elapsed, the most there is unless nothing is used).
[[nodiscard]] constexpr std::int64_t quota_projection(std::int64_t used, std::int64_t elapsed,
                                                      std::int64_t length) noexcept {
  if (used <= 0 || elapsed >= length) return used;
  if (elapsed <= 0) return std::numeric_limits<std::int64_t>::max();
  const quota_int128 p = static_cast<quota_int128>(used) * length / elapsed;
  return p > std::numeric_limits<std::int64_t>::max() ? std::numeric_limits<std::int64_t>::max()
                                                      : static_cast<std::int64_t>(p);
}

/// The units a settled-alert tracker's uncommitted permits hold, on a cache
/// line of its own: every reservation and its commit write it.
struct alignas(cache_line) quota_pending {
  std::atomic<std::int64_t> units{0};
};

/// Refuses a change of limits a storage cannot apply: an any_quota_storage
/// whose storage inside takes no limits per call (its takes_limits()).
/// Storages without takes_limits() take them (the tracker's reconfigure()
/// requires the overloads at compile time).
template <class S>
void check_storage_takes_limits(const S& storage, const char* who) {
  if constexpr (requires {
                  { storage.takes_limits() } noexcept -> std::same_as<bool>;
                }) {
    if (!storage.takes_limits()) {
      invalid_config(std::string(who) +
                     ": storage: the storage inside any_quota_storage takes no limits per call (memory, SQLite and "
                     "Redis do), so its limits cannot change at run time; build a new tracker to change them");
    }
  } else {
    (void)storage, (void)who;
  }
}

}  // namespace detail

/// Usage quotas (see the top of this header and docs/quota_tracker.md).
/// Thread-safety: every member may be called concurrently, except moving
/// the tracker (move it before sharing; share it with std::ref); permits
/// must not outlive it. With the memory backend nothing allocates or locks
/// per call. Construction throws armor::error(invalid_argument) naming a bad
/// option.
template <class WallClock, class Storage, class Listener>
class quota_tracker {
  static_assert(armor::clock<WallClock>, "armor::quota_tracker: WallClock must have now() returning its time_point");
  static_assert(quota_storage<Storage>, "armor::quota_tracker: Storage must meet armor::quota_storage");
  static_assert(listener_for<Listener, quota_tracker_event>,
                "armor::quota_tracker: Listener must be no_listener or callable as "
                "listener(const armor::quota_tracker_event&) noexcept");

  static constexpr bool quiet =
      noexcept(std::declval<const WallClock&>().now()) &&
      noexcept(std::declval<Storage&>().try_consume(std::declval<const quota_stamp&>(), std::int64_t{})) &&
      noexcept(std::declval<Storage&>().charge(std::declval<const quota_stamp&>(), std::int64_t{})) &&
      detail::quiet_deadline_storage<Storage>();

  friend class quota_tracker_permit<WallClock, Storage, Listener>;

  static constexpr bool memory_backend = std::is_same_v<Storage, memory_quota_storage>;
  struct no_fast_limits {
    bool usable = false;
  };
  using fast_limits_type = std::conditional_t<memory_backend, memory_quota_storage::fast_limits, no_fast_limits>;

 public:
  /// The clock the tracker reads (armor::keyed builds each key's tracker
  /// with it). Not named clock_type: the tracker sits in a pipeline of any clock.
  using wall_clock_type = WallClock;
  using storage_type = Storage;
  using listener_type = Listener;
  using options_type = quota_tracker_options;
  /// What armor::keyed holds to build each key's tracker: the options, and
  /// with a keyed_quota_storage the storage to make each key's from.
  using keyed_options_type =
      std::conditional_t<keyed_quota_storage<Storage>, keyed_quota_options<Storage>, quota_tracker_options>;
  using stats_type = quota_tracker_stats;
  using event_type = quota_tracker_event;
  /// What reserve() and admit() hand out.
  using permit_type = quota_tracker_permit<WallClock, Storage, Listener>;

  /// Validates the options (throws armor::error(invalid_argument) naming a
  /// bad one) and binds the storage (which may throw, e.g.
  /// armor::error(storage_unavailable) for a database it cannot open).
  explicit quota_tracker(quota_tracker_options options, WallClock clock = WallClock{}, Storage storage = Storage{},
                         Listener listener = Listener{})
      : options_(checked(std::move(options))),
        limits_(limits_of(options_)),
        built_(limits_of(options_)),
        clock_(std::move(clock)),
        storage_(std::move(storage)),
        listener_(std::move(listener)) {
    count_ = options_.windows.size();
    for (std::size_t i = 0; i < count_; ++i) names_.push_back(detail::quota_window_name(options_.windows, i));
    std::vector<double> thresholds = options_.alerts;
    std::sort(thresholds.begin(), thresholds.end());
    thresholds.erase(std::unique(thresholds.begin(), thresholds.end()), thresholds.end());
    alert_count_ = thresholds.size();
    std::copy(thresholds.begin(), thresholds.end(), thresholds_.begin());
    if (alert_count_ > 0) {
      alert_rows_ = std::make_unique<alert_table>();
      alert_rows_->rows.reserve(count_);
      for (std::size_t i = 0; i < count_; ++i) alert_rows_->rows.emplace_back(alert_row_of(options_.windows[i].limit));
    }

    const std::int64_t offset = detail::to_ns(options_.utc_offset);
    std::vector<quota_window_layout> layouts;
    for (std::size_t i = 0; i < count_; ++i) {
      const quota_window& w = options_.windows[i];
      window_state& s = windows_[i];
      switch (w.kind) {
        case quota_window_kind::fixed: s.cycle = {detail::quota_cut::fixed, w.length.count(), offset}; break;
        case quota_window_kind::week:
          s.cycle = {detail::quota_cut::week, detail::ns_per_week, offset - detail::first_monday_ns};
          break;
        case quota_window_kind::month: s.cycle = {detail::quota_cut::month, 0, offset}; break;
        case quota_window_kind::lifetime: s.cycle = {detail::quota_cut::lifetime, 0, 0}; break;
        case quota_window_kind::rolling:
          s.cycle = {detail::quota_cut::rolling, w.length.count() / w.buckets, 0};
          s.buckets = w.buckets;
          break;
      }
      layouts.push_back({w.limit, s.buckets, window_key(w, options_.utc_offset)});
    }
    storage_.bind(layouts);
    if constexpr (requires(std::span<const detail::quota_cycle> c) { storage_.bind_calendar(c); }) {
      // The memory backend packs the counts of several fixed windows into one word.
      std::array<detail::quota_cycle, quota_max_windows> cycles{};
      for (std::size_t i = 0; i < count_; ++i) cycles[i] = windows_[i].cycle;
      storage_.bind_calendar(std::span<const detail::quota_cycle>(cycles.data(), count_));
    }
    counters_ = std::make_unique<detail::quota_counters>();
    alerts_ = std::make_unique<std::atomic<std::uint64_t>[]>(count_);
    // Relaxed: not shared yet; whatever shares the tracker orders this.
    for (std::size_t i = 0; i < count_; ++i) alerts_[i].store(detail::alert_unused, std::memory_order_relaxed);
    if (options_.forecast_alert) {
      forecast_ = *options_.forecast_alert;
      forecast_gate_ = forecast_ * options_.forecast_after;
      forecasts_ = std::make_unique<std::atomic<std::uint64_t>[]>(count_);
      // Relaxed: as the alert cells above.
      for (std::size_t i = 0; i < count_; ++i) forecasts_[i].store(detail::alert_unused, std::memory_order_relaxed);
    }
    if ((alert_count_ > 0 || forecasts_) && options_.alert_basis == quota_alert_basis::settled) {
      pending_ = std::make_unique<detail::quota_pending>();
    }
    if constexpr (memory_backend) {
      // Forecasts look at every consumption: none of theirs is fast.
      if (!forecasts_) fast_ = storage_.fast_limits_of(built_.limit, built_.first_alert);
      fast_max_cost_ = *std::min_element(built_.limit.begin(), built_.limit.begin() + static_cast<std::ptrdiff_t>(count_));
    }
  }

  /// For armor::keyed with a keyed_quota_storage: the tracker of `key`,
  /// counting in `options.storage.for_key(key)`.
  quota_tracker(const keyed_quota_options<Storage>& options, WallClock clock, std::string_view key)
    requires keyed_quota_storage<Storage>
      : quota_tracker(options.quota, std::move(clock), options.storage.for_key(key)) {}

  /// Takes over the state (not while `other` is in use).
  quota_tracker(quota_tracker&&) noexcept(std::is_nothrow_move_constructible_v<WallClock> &&
                                          std::is_nothrow_move_constructible_v<Storage> &&
                                          std::is_nothrow_move_constructible_v<Listener>) = default;
  quota_tracker(const quota_tracker&) = delete;
  quota_tracker& operator=(const quota_tracker&) = delete;
  quota_tracker& operator=(quota_tracker&&) = delete;
  ~quota_tracker() = default;

  /// Counts `cost` units in every window now, or none.
  [[nodiscard]] quota_tracker_decision<> try_consume(std::int64_t cost = 1) noexcept(quiet) {
    if constexpr (memory_backend) {
      if (fast_.usable && cost > 0 && cost <= fast_max_cost_ && !reconfigured_.load()) return consume_fast(cost);
    }
    return with_limits([&](const limits& l) { return consume(l, cost, now_ns()).decision; });
  }

  /// Reserves `estimate` units in every window now, or none: a granted
  /// decision holds them in its permit(). Commit the permit with the real
  /// cost when it is known; dropping it uncommitted gives the units back.
  [[nodiscard]] quota_tracker_decision<permit_type> reserve(std::int64_t estimate) noexcept(quiet) {
    return with_limits([&](const limits& l) -> quota_tracker_decision<permit_type> {
      const consume_result o = consume(l, estimate, now_ns(), quota_deadline::max(), true);
      return {o.decision, permit_of(o, estimate)};
    });
  }

  /// Counts `units` in every window now, whatever their limits: units spent
  /// without asking (or a committed overrun). Alerts fire as for any
  /// consumption. Returns granted, invalid (negative) or unavailable.
  quota_tracker_status charge(std::int64_t units) noexcept(quiet) {
    if (units < 0) return quota_tracker_status::invalid;
    if (units == 0) return quota_tracker_status::granted;
    return charge_now(units, 0, false);
  }

  /// Window w's state now. Throws armor::error(invalid_argument) for a
  /// window that does not exist; a durable storage may throw
  /// armor::error(storage_unavailable).
  [[nodiscard]] quota_usage usage(std::size_t w) const {
    if (w >= count_) {
      detail::invalid_config("armor::quota_tracker::usage: no window " + std::to_string(w) + " (the tracker has " +
                             std::to_string(count_) + ")");
    }
    const std::int64_t t = now_ns();
    const window_state& s = windows_[w];
    bucket_buffer buf;
    const std::span<std::int64_t> out(buf.data(), std::size_t{s.buckets} + 1);
    std::fill(out.begin(), out.end(), std::int64_t{0});
    const std::int64_t slice = storage_.read(w, s.cycle.index(t), out);
    quota_usage u;
    u.limit = limits_.load().limit[w];
    std::int64_t since = 0;  // when the units counted now began to be counted
    std::int64_t horizon = 0;
    if (s.buckets == 0) {
      u.used = out[0];
      since = s.cycle.start(slice);
      horizon = s.cycle.end(slice);
      u.resets_at = to_sys(horizon);
    } else {
      std::int64_t oldest = slice + 1;
      for (std::uint32_t k = 0; k <= s.buckets; ++k) {
        u.used = detail::quota_add(u.used, out[k]);
        if (out[k] > 0 && oldest > slice) oldest = slice - s.buckets + k;
      }
      since = oldest <= slice ? s.cycle.start(oldest) : t;
      u.resets_at = to_sys(oldest <= slice ? s.cycle.start(oldest + s.buckets + 1) : t);
      horizon = detail::saturating_add(t, detail::saturating_mul(s.cycle.step, s.buckets));
    }
    u.resets_in = s.cycle.cut == detail::quota_cut::lifetime
                      ? std::chrono::nanoseconds::max()  // never
                      : std::chrono::nanoseconds{std::max<std::int64_t>(u.resets_at.time_since_epoch().count() - t, 0)};
    if (s.buckets == 0 && s.cycle.cut != detail::quota_cut::lifetime) {
      u.projected = detail::quota_projection(u.used, t - since, horizon - since);
    }
    if (u.used >= u.limit) {
      u.exhausted_in = std::chrono::nanoseconds::zero();
    } else if (u.used > 0 && t > since && s.cycle.cut != detail::quota_cut::lifetime) {
      const auto projected = static_cast<detail::quota_int128>(u.limit - u.used) * (t - since) / u.used;
      if (projected < static_cast<detail::quota_int128>(horizon) - t) {
        u.exhausted_in = std::chrono::nanoseconds{static_cast<std::int64_t>(projected)};
      }
    }
    return u;
  }

  /// The counters of refusals and alerts (see quota_tracker_stats).
  [[nodiscard]] quota_tracker_stats stats() const noexcept {
    const detail::counter_set<detail::quota_counter>& c = counters_->c;
    quota_tracker_stats s;
    s.exhausted = c.load(detail::quota_counter::exhausted);
    s.too_large = c.load(detail::quota_counter::too_large);
    s.invalid = c.load(detail::quota_counter::invalid);
    s.unavailable = c.load(detail::quota_counter::unavailable);
    s.alerts = c.load(detail::quota_counter::alerts);
    s.forecast_alerts = c.load(detail::quota_counter::forecasts);
    return s;
  }

  /// The number of windows.
  [[nodiscard]] std::size_t window_count() const noexcept { return count_; }
  /// Window `w`'s name, as metrics label it: "minute", "hour", "day" (fixed
  /// windows of those lengths), "week", "month", "fixed_<length>" or
  /// "rolling_<length>" (length as 90s, 1h30m, 250ms), with "_<w>" added
  /// when an earlier window has the same name.
  [[nodiscard]] std::string_view window_name(std::size_t w) const noexcept { return names_[w]; }
  /// The options in force: as given, with the limits and retryable_within
  /// of the last reconfigure() (a copy: it allocates).
  [[nodiscard]] quota_tracker_options options() const {
    quota_tracker_options o = options_;
    const limits l = limits_.load();
    for (std::size_t i = 0; i < count_; ++i) o.windows[i].limit = l.limit[i];
    o.retryable_within = std::chrono::nanoseconds{l.retryable_within};
    return o;
  }

  /// Changes the limits at run time (docs/reconfiguration.md). `options` is
  /// validated as by the constructor; only each window's `limit` and
  /// `retryable_within` may differ from the tracker's: the number of
  /// windows, their kind, length and buckets, utc_offset, alerts,
  /// alert_basis and cost are fixed at construction (they shape the counts
  /// and the alerts' state). Throws armor::error(invalid_argument) naming
  /// the option; the old limits then stay. The units already counted are
  /// kept, and each decision from the next one on compares them with the
  /// new limits, all windows' read together (never some old, some new): a
  /// lowered limit that finds more used than it allows refuses until the
  /// window frees enough, and usage() reports used above limit. Alerts are
  /// fractions of the new limits from the next consumption; those already
  /// fired in the current period stay fired. Available with a storage that
  /// takes the limits per call (memory_quota_storage, sqlite_quota_storage,
  /// redis_quota_storage: there, no lease while the limits differ from
  /// those built with; any_quota_storage holding one of those: with any
  /// other storage inside it refuses, naming the storage). The stored
  /// counts of a durable storage are kept as they are (the file and Redis
  /// keep counts, not limits). Thread-safe and lock-free for the calls;
  /// allocates nothing (beyond the message of a refusal).
  void reconfigure(const quota_tracker_options& options)
    requires(detail::limits_quota_storage<Storage> || detail::limits_deadline_quota_storage<Storage>)
  {
    check_reconfigure(options_, options);
    detail::check_storage_takes_limits(storage_, "armor::quota_tracker::reconfigure");
    if (!alert_rows_) {
      limits_.store(limits_of(options));
      reconfigured_.store(true);
      return;
    }
    // One reconfigure() at a time, so that the rows end with the limits of
    // the same call as the cell (a row that does not match is recomputed
    // per call: correct, but slow).
    while (alert_rows_->writing.exchange(true, std::memory_order_acquire)) std::this_thread::yield();
    limits_.store(limits_of(options));
    reconfigured_.store(true);
    for (std::size_t i = 0; i < count_; ++i) alert_rows_->rows[i].store(alert_row_of(options.windows[i].limit));
    alert_rows_->writing.store(false, std::memory_order_release);
  }
  /// What reconfigure() checks, without a tracker: throws
  /// armor::error(invalid_argument), naming the option, when `next` is
  /// invalid or changes an option fixed at construction of a tracker built
  /// with `current` (armor::keyed checks a new configuration with it before
  /// it reconfigures any key). Allocates nothing when it passes.
  static void check_reconfigure(const quota_tracker_options& current, const quota_tracker_options& next) {
    constexpr const char* who = "armor::quota_tracker::reconfigure";
    check(next);
    if (next.windows.size() != current.windows.size()) detail::fixed_at_construction(who, "the number of windows");
    for (std::size_t i = 0; i < current.windows.size(); ++i) {
      const quota_window& a = next.windows[i];
      const quota_window& b = current.windows[i];
      if (a.kind != b.kind || a.length != b.length || a.buckets != b.buckets) {
        detail::fixed_at_construction(who, window_field(i).c_str());
      }
    }
    if (next.utc_offset != current.utc_offset) detail::fixed_at_construction(who, "utc_offset");
    if (next.alerts != current.alerts) detail::fixed_at_construction(who, "alerts");
    if (next.alert_basis != current.alert_basis) detail::fixed_at_construction(who, "alert_basis");
    if (next.forecast_alert != current.forecast_alert) detail::fixed_at_construction(who, "forecast_alert");
    if (next.forecast_after != current.forecast_after) detail::fixed_at_construction(who, "forecast_after");
    if (!(next.cost == current.cost)) detail::fixed_at_construction(who, "cost");
  }

  /// The wall clock the tracker reads.
  [[nodiscard]] const WallClock& clock() const noexcept { return clock_; }
  /// The storage backend (e.g. to flush a batched sqlite storage).
  [[nodiscard]] Storage& storage() noexcept { return storage_; }
  [[nodiscard]] const Storage& storage() const noexcept { return storage_; }

  /// For armor::keyed: no window counts a unit now (reading the tracker's
  /// own wall clock; `now` is the map's time, used only for recency), so a
  /// fresh tracker would decide the same. False if the storage cannot say.
  /// A permit from a tracker inside keyed must not outlive its entry: take
  /// it through the pipeline (keyed's permit pins the entry) or keep the
  /// handle from get() while the permit lives.
  [[nodiscard]] bool idle(timestamp now) const noexcept {
    (void)now;
    std::int64_t t = 0;
    if (!now_quietly(t)) return false;
    for (std::size_t w = 0; w < count_; ++w) {
      const window_state& s = windows_[w];
      bucket_buffer buf;
      const std::span<std::int64_t> out(buf.data(), std::size_t{s.buckets} + 1);
      std::fill(out.begin(), out.end(), std::int64_t{0});
      std::int64_t slice = 0;
      if (!read_quietly(w, s.cycle.index(t), out, slice)) return false;
      for (const std::int64_t u : out) {
        if (u != 0) return false;
      }
    }
    return true;
  }

  /// Policy protocol: reserves ctx.cost(options().cost) units now (reading
  /// the wall clock, not ctx.now()), or rejects (docs/quota_tracker.md). A
  /// storage that meets deadline_quota_storage (Redis) is given the call's
  /// deadline: if it passes before the storage answers, the call is
  /// rejected with errc::deadline_exceeded (retryable, as the drivers'
  /// own deadline refusals), whatever the storage's failure mode.
  [[nodiscard]] admission<permit_type> admit(context& ctx) noexcept(quiet) {
    const std::int64_t cost = ctx.cost(options_.cost);
    return with_limits([&](const limits& l) { return admit_within(l, cost, ctx); });
  }

  /// Policy protocol: commits the reported cost when the operation
  /// reported one for this tracker's cost source; otherwise gives the units
  /// back if the attempt never ran (an inner layer rejected it) and keeps
  /// them if it did.
  void settle(context& ctx, permit_type p, const verdict& v) noexcept(quiet) {
    if (const std::optional<std::int64_t> actual = ctx.reported_cost(options_.cost)) {
      (void)p.commit(*actual);
    } else if (v.kind == outcome::rejected) {
      p.cancel();
    } else {
      p.commit();
    }
  }

 private:
  struct window_state {
    detail::quota_cycle cycle{};
    std::uint32_t buckets = 0;  // 0: fixed period
  };
  // What reconfigure() changes, read whole once per decision
  // (detail::config_cell: 17 words).
  struct limits {
    quota_values limit{};        // per window
    quota_values first_alert{};  // per window: the units of the lowest alert threshold (max: no alerts)
    std::int64_t retryable_within = 0;
  };

  // Calls f with the limits of one decision: those built with (no copy)
  // until the first reconfigure(), then a whole reading of limits_.
  template <class F>
  decltype(auto) with_limits(F&& f) const noexcept(noexcept(f(std::declval<const limits&>()))) {
    if (ARMOR_LIKELY(!reconfigured_.load())) return f(built_);
    const limits l = limits_.load();
    return f(l);
  }

  [[nodiscard]] static limits limits_of(const quota_tracker_options& o) noexcept {
    limits l;
    const double lowest = o.alerts.empty() ? 0.0 : *std::min_element(o.alerts.begin(), o.alerts.end());
    for (std::size_t i = 0; i < o.windows.size(); ++i) {
      l.limit[i] = o.windows[i].limit;
      l.first_alert[i] =
          o.alerts.empty() ? std::numeric_limits<std::int64_t>::max() : threshold_units(lowest, o.windows[i].limit);
    }
    l.retryable_within = o.retryable_within.count();
    return l;
  }

  // The units of each alert threshold (thresholds_) at one limit, computed
  // when the limits are set (construction, reconfigure()): the per-call
  // checks are integer compares.
  struct alert_row {
    std::int64_t limit = 0;  // the limit the units are of
    std::array<std::int64_t, quota_max_alerts> units{};
  };
  // Per window, its alert_row (config_cell: read whole), and the claim that
  // keeps reconfigure() calls from interleaving their rows.
  struct alert_table {
    std::atomic<bool> writing{false};
    std::vector<detail::config_cell<alert_row>> rows;
  };

  [[nodiscard]] alert_row alert_row_of(std::int64_t limit) const noexcept {
    alert_row r;
    r.limit = limit;
    for (std::size_t k = 0; k < alert_count_; ++k) r.units[k] = threshold_units(thresholds_[k], limit);
    return r;
  }

  // The units of window w's alert thresholds under `l` (alert_count_ > 0).
  // A row written for other limits (a reconfigure() between the decision's
  // reading of `l` and this one) is recomputed for l's: a decision's
  // thresholds are always those of the limits it decides with.
  [[nodiscard]] alert_row alert_units(const limits& l, std::size_t w) const noexcept {
    const alert_row r = alert_rows_->rows[w].load();
    if (ARMOR_LIKELY(r.limit == l.limit[w])) return r;
    return alert_row_of(l.limit[w]);
  }

  [[nodiscard]] static std::string window_field(std::size_t i) {
    std::string f("windows[");
    f.append(std::to_string(i)).append("] kind, length or buckets");
    return f;
  }
  struct consume_result {
    quota_tracker_decision<> decision;
    quota_stamp at;
    std::int64_t trigger = 0;  // for the permit (see quota_tracker_permit::trigger_)
    bool late = false;         // unavailable because the deadline passed first
    bool pended = false;       // for the permit
  };
  // What after_consumption() tells a reservation's permit.
  struct alert_outlook {
    std::int64_t trigger = std::numeric_limits<std::int64_t>::max();
    bool pended = false;
  };

  // The deadline a deadline_quota_storage gets for this call; reads a clock
  // only for such a storage and a call with a deadline.
  [[nodiscard]] static quota_deadline deadline_of(const context& ctx) noexcept {
    if constexpr (deadline_quota_storage<Storage>) {
      return detail::quota_deadline_after(ctx.remaining());  // max(): none, no clock read
    } else {
      (void)ctx;
      return quota_deadline::max();
    }
  }

  // The permit holding what `o` granted (empty, with the refusal, if not).
  [[nodiscard]] permit_type permit_of(const consume_result& o, std::int64_t amount) noexcept {
    if (!o.decision) return permit_type(nullptr, 0, {}, o.decision.status());
    return permit_type(this, amount, o.at, quota_tracker_status::granted, o.trigger, o.pended);
  }

  quota_consumption storage_try_consume(const quota_stamp& at, std::int64_t cost, quota_deadline until,
                                        const limits& l) noexcept(quiet) {
    if constexpr (detail::limits_deadline_quota_storage<Storage>) {
      return storage_.try_consume(at, cost, until, l.limit);
    } else if constexpr (detail::limits_quota_storage<Storage>) {
      (void)until;
      return storage_.try_consume(at, cost, l.limit);
    } else if constexpr (deadline_quota_storage<Storage>) {
      (void)l;
      return storage_.try_consume(at, cost, until);
    } else {
      (void)until;
      (void)l;
      return storage_.try_consume(at, cost);
    }
  }

  using bucket_buffer = std::array<std::int64_t, quota_max_buckets + 1>;

  [[nodiscard]] std::int64_t now_ns() const noexcept(noexcept(std::declval<const WallClock&>().now())) {
    return detail::to_ns(clock_.now().time_since_epoch());
  }

  [[nodiscard]] quota_stamp stamp(std::int64_t t) const noexcept {
    quota_stamp s{};
    for (std::size_t i = 0; i < count_; ++i) s[i] = windows_[i].cycle.index(t);
    return s;
  }

  [[nodiscard]] static std::chrono::sys_time<std::chrono::nanoseconds> to_sys(std::int64_t t) noexcept {
    return std::chrono::sys_time<std::chrono::nanoseconds>{std::chrono::nanoseconds{t}};
  }

  // Counts `cost` units now in every window, or none; `reserving`: they
  // are a reservation, held by a permit (settled alerts leave them out).
  consume_result consume(const limits& l, std::int64_t cost, std::int64_t t,
                         quota_deadline until = quota_deadline::max(), bool reserving = false) noexcept(quiet) {
    if (cost < 0) [[unlikely]] {
      counters_->c.add(detail::quota_counter::invalid);
      return {quota_tracker_decision<>(quota_tracker_status::invalid, 0, 0, 0, detail::ns_max), {}};
    }
    for (std::size_t i = 0; i < count_; ++i) {
      if (cost > l.limit[i]) [[unlikely]] {
        counters_->c.add(detail::quota_counter::too_large);
        return {quota_tracker_decision<>(quota_tracker_status::too_large, i, 0, l.limit[i], detail::ns_max),
                {}};
      }
    }
    const quota_consumption c = storage_try_consume(stamp(t), cost, until, l);
    if (c.status == quota_storage_status::consumed) [[likely]] {
      const alert_outlook a = after_consumption(l, c, t, until, reserving ? cost : 0);
      // Named, not `return {decision, c.at}`: GCC 12 zero-fills the whole
      // result (rep stos, 112 bytes) for the braced form.
      consume_result r;
      r.at = c.at;
      r.trigger = a.trigger;
      r.pended = a.pended;
      return r;
    }
    if (c.status == quota_storage_status::unavailable || c.status == quota_storage_status::deadline_exceeded) {
      counters_->c.add(detail::quota_counter::unavailable);
      consume_result r{quota_tracker_decision<>(quota_tracker_status::unavailable, 0, 0, 0, 0), {}};
      r.late = c.status == quota_storage_status::deadline_exceeded;
      return r;
    }
    after_refusal(l, c, t, until);
    // Of the windows that are full now, report the one with the longest
    // wait: retrying before it has room is pointless.
    std::size_t worst = c.window;
    std::int64_t used = c.used[c.window];
    std::int64_t wait = -1;
    for (std::size_t i = 0; i < count_; ++i) {
      std::int64_t u = 0;
      const std::int64_t wi = wait_for(l, i, cost, t, u, until);
      if (wi > wait) {
        worst = i;
        used = u;
        wait = wi;
      }
    }
    if (wait < 0) {  // room again already (a release in between)
      worst = c.window;
      used = c.used[c.window];
      wait = 0;
    }
    counters_->c.add(detail::quota_counter::exhausted);
    return {quota_tracker_decision<>(quota_tracker_status::exhausted, worst, used, l.limit[worst], wait), {}};
  }

  // try_consume() on the memory backend, with the limits built with: one
  // CAS when every window is in the slice of the last consumption, has room
  // and is below its first alert; else the general way, at the same time.
  [[nodiscard]] quota_tracker_decision<> consume_fast(std::int64_t cost) noexcept(quiet) {
    const std::int64_t t = now_ns();
    const quota_stamp at = stamp(t);
    const auto o = storage_.try_fast(at, cost, fast_);
    using result = memory_quota_storage::fast_result;
    if (o.result == result::granted) [[likely]] return {};
    if (o.result == result::granted_alerting) {
      (void)after_consumption(built_, storage_.fast_consumption(at, o), t, quota_deadline::max(), 0);
      return {};
    }
    return with_limits([&](const limits& l) { return consume(l, cost, t).decision; });
  }

  // admit() with the limits of this decision.
  [[nodiscard]] admission<permit_type> admit_within(const limits& l, std::int64_t cost,
                                                    const context& ctx) noexcept(quiet) {
    const consume_result o = consume(l, cost, now_ns(), deadline_of(ctx), true);
    if (o.late) [[unlikely]] {
      return admission<permit_type>::reject(errc::deadline_exceeded, std::nullopt, true);
    }
    const quota_tracker_decision<>& d = o.decision;
    switch (d.status()) {
      case quota_tracker_status::granted: return admission<permit_type>::admit(permit_of(o, cost));
      case quota_tracker_status::exhausted:
        return admission<permit_type>::reject(errc::quota_exhausted, d.retry_after(),
                                              d.retry_after().count() < l.retryable_within);
      case quota_tracker_status::unavailable:
        return admission<permit_type>::reject(errc::storage_unavailable, std::nullopt, true);
      default: break;
    }
    return admission<permit_type>::reject(d.code(), std::nullopt, false);
  }

  // How long until window w has room for `cost` (-1: it has room now), if
  // nobody else consumes meanwhile; `used` is set to its count.
  [[nodiscard]] std::int64_t wait_for(const limits& l, std::size_t w, std::int64_t cost, std::int64_t t,
                                      std::int64_t& used,
                                      quota_deadline until) const noexcept(quiet) {
    const window_state& s = windows_[w];
    bucket_buffer buf;
    const std::span<std::int64_t> out(buf.data(), std::size_t{s.buckets} + 1);
    std::fill(out.begin(), out.end(), std::int64_t{0});
    std::int64_t slice = 0;
    used = 0;
    if (!read_quietly(w, s.cycle.index(t), out, slice, until)) return -1;  // unknown: say nothing
    for (const std::int64_t u : out) used = detail::quota_add(used, u);
    const std::int64_t excess = used + std::max<std::int64_t>(cost, 1) - l.limit[w];  // units that must go first
    if (excess <= 0) return -1;
    if (s.cycle.cut == detail::quota_cut::lifetime) return detail::ns_max;  // no wait helps
    if (s.buckets == 0) return std::max<std::int64_t>(detail::saturating_sub(s.cycle.end(slice), t), 0);
    std::int64_t freed = 0;
    for (std::uint32_t k = 0; k < s.buckets; ++k) {
      freed = detail::quota_add(freed, out[k]);
      // Bucket slice - buckets + k stops counting when bucket slice + k + 1 begins.
      if (freed >= excess) return std::max<std::int64_t>(detail::saturating_sub(s.cycle.start(slice + k + 1), t), 0);
    }
    return std::max<std::int64_t>(detail::saturating_sub(s.cycle.start(slice + s.buckets + 1), t), 0);
  }

  // ---- alerts (docs/quota_tracker.md, "Alerts")
  //
  // Per window, the tracker keeps an alert cell, (period, thresholds fired);
  // with settled alerts, one pending count: the units its uncommitted
  // permits hold, which every window counts (all or none). The alert use is
  // a window's count minus the pending units (settled) or the count itself
  // (reserved). Units of a permit reserved in a period that has ended are
  // no longer in the window's count but still pending: the use is then
  // underestimated (an alert late, never early) until the permit ends, and
  // the count never goes negative (a permit takes away exactly what it
  // added).
  //
  // A consumption raises a cell to the thresholds its use reaches. Only a
  // re-read after a permit gave units back lowers it (re-arms), and only
  // with reserved alerts: it reads the cell before the count, so the count
  // holds the units of every raise it could undo (a consumption's own count
  // may be older than a raise). Settled use read from two words (count,
  // pending) may be off for an instant while another thread reserves or
  // gives back, so it only raises; within a period it never falls in this
  // tracker anyway (units given back were never settled).

  [[nodiscard]] std::int64_t alert_period(std::size_t w, std::int64_t slice) const noexcept {
    const window_state& s = windows_[w];
    return s.buckets == 0 ? slice : detail::floor_div(slice, s.buckets);
  }

  // How many thresholds `use` reaches in window w.
  [[nodiscard]] std::size_t reached(const limits& l, std::size_t w, std::int64_t use) const noexcept {
    if (alert_count_ == 0 || use < l.first_alert[w]) return 0;
    return reached(alert_units(l, w), use);
  }
  // The same with window w's thresholds in units at hand.
  [[nodiscard]] std::size_t reached(const alert_row& r, std::int64_t use) const noexcept {
    std::size_t level = 0;
    while (level < alert_count_ && use >= r.units[level]) ++level;
    return level;
  }

  // After a consumption counted `c` (of which `reserved` units are a
  // reservation): records the reservation as pending, raises each window's
  // alerts to its alert use, and tells the permit when a commit may reach
  // the next threshold: when its cost and everything else counted now (the
  // other permits' units as if they settle too) reach it. A commit of fewer
  // units cannot reach it unless units are counted after this reservation;
  // the next consumption, granted or refused, reports the crossing then.
  alert_outlook after_consumption(const limits& l, const quota_consumption& c, std::int64_t t,
                                  quota_deadline until, std::int64_t reserved) noexcept {
    alert_outlook o;
    if (alert_count_ == 0 && !forecasts_) return o;
    // A degraded storage answer (Redis fail_open, fallback_local) counts
    // nothing shared and reports no use: no pending units, no alerts.
    o.pended = pending_ && reserved > 0 && c.used[0] >= reserved;
    // Relaxed: an estimate subtracted from the counts, never a decision; the
    // RMWs keep the sum exact.
    std::int64_t held = o.pended ? pending_->units.fetch_add(reserved, std::memory_order_relaxed) + reserved : -1;
    for (std::size_t i = 0; i < count_; ++i) {
      std::int64_t use = c.used[i];
      if (pending_ && (held >= 0 || use >= l.first_alert[i])) {
        if (held < 0) held = pending_->units.load(std::memory_order_relaxed);
        use -= std::min(use, held);
      }
      const std::int64_t others = c.used[i] - reserved;  // for the trigger
      if (ARMOR_LIKELY(use < l.first_alert[i])) {
        o.trigger = std::min(o.trigger, l.first_alert[i] - others);
        continue;
      }
      const alert_row r = alert_units(l, i);  // once per window: raise() and the trigger
      const std::size_t fired = raise(l, i, r, c.at[i], use, t, until);
      if (fired < alert_count_) o.trigger = std::min(o.trigger, r.units[fired] - others);
    }
    if (forecasts_) [[unlikely]] forecast(l, c, t, 0, count_);
    return o;
  }

  // ---- forecast alerts (docs/quota_tracker.md, "Forecasts")
  //
  // Per window, a cell (period, 1 once the forecast alert fired in it),
  // packed as the alert cells. A projection grows only with use (time
  // alone lowers it), so checking after each consumption finds every
  // crossing; a commit's units are seen by the next consumption.

  // After a consumption counted `c` at t (its own reservation, if any, is
  // pending already): fires the forecast alert of each fixed, week or month
  // window whose alert use projects to forecast_alert at its period's end.
  // Checks windows [first, last) (after a refusal: the refusing one only).
  void forecast(const limits& l, const quota_consumption& c, std::int64_t t, std::size_t first,
                std::size_t last) noexcept {
    std::int64_t held = -1;
    for (std::size_t i = first; i < last; ++i) {
      const window_state& s = windows_[i];
      if (s.buckets != 0 || s.cycle.cut == detail::quota_cut::lifetime) continue;
      std::int64_t use = c.used[i];
      // After forecast_after of the period the projection is at most
      // use / forecast_after: below the gate it cannot reach the alert.
      if (ARMOR_LIKELY(static_cast<double>(use) < forecast_gate_ * static_cast<double>(l.limit[i]))) continue;
      std::atomic<std::uint64_t>& cell = forecasts_[i];
      const std::int64_t period = c.at[i];
      // Relaxed: as the alert cells (the CAS alone decides who fires).
      std::uint64_t cur = cell.load(std::memory_order_relaxed);
      if ((cur & 0xff) != detail::alert_unused && detail::alert_distance(cur, period) <= 0) continue;
      if (pending_) {
        // Relaxed: as in after_consumption().
        if (held < 0) held = pending_->units.load(std::memory_order_relaxed);
        use -= std::min(use, held);
      }
      const std::int64_t start = s.cycle.start(period);
      const std::int64_t length = s.cycle.end(period) - start;
      const std::int64_t elapsed = t - start;
      if (static_cast<double>(elapsed) < options_.forecast_after * static_cast<double>(length)) continue;
      const std::int64_t projected = detail::quota_projection(use, elapsed, length);
      if (!reaches(projected, forecast_, l.limit[i])) continue;
      for (;;) {
        if ((cur & 0xff) != detail::alert_unused && detail::alert_distance(cur, period) <= 0) break;
        if (cell.compare_exchange_weak(cur, detail::alert_pack(period, 1), std::memory_order_relaxed,
                                       std::memory_order_relaxed)) {
          counters_->c.add(detail::quota_counter::forecasts);
          if constexpr (detail::listens<Listener>) {
            const std::int64_t end = detail::saturating_add(start, length);
            detail::notify(listener_, [&] {
              quota_tracker_event e{i, forecast_, use, l.limit[i], std::chrono::nanoseconds{end - t}, to_sys(end)};
              e.kind = quota_alert_kind::forecast;
              e.projected = projected;
              return e;
            });
          }
          break;
        }
      }
    }
  }

  // After a refusal: the refusing window's count may have reached a
  // threshold no consumption reported (a commit's crossing, see
  // after_consumption()); a full window refuses every later consumption,
  // so this is where its 100 % is heard. Writes nothing unless it fires.
  void after_refusal(const limits& l, const quota_consumption& c, std::int64_t t, quota_deadline until) noexcept {
    // Its forecast too: a commit's units may have made the crossing, and a
    // full window grants nothing that would check it later.
    if (forecasts_) [[unlikely]] forecast(l, c, t, c.window, c.window + 1);
    if (alert_count_ == 0) return;
    const std::size_t w = c.window;
    std::int64_t use = c.used[w];
    if (ARMOR_LIKELY(use < l.first_alert[w])) return;
    if (pending_) use -= std::min(use, pending_->units.load(std::memory_order_relaxed));
    if (use >= l.first_alert[w]) (void)raise(l, w, alert_units(l, w), c.at[w], use, t, until);
  }

  // Raises window w's cell to the thresholds `use` reaches in the period of
  // `slice`, firing those this thread moved it past. Returns the thresholds
  // fired in that period now (alert_count_ if a later period began). `r`:
  // window w's thresholds in units under `l` (alert_units()).
  std::size_t raise(const limits& l, std::size_t w, const alert_row& r, std::int64_t slice, std::int64_t use,
                    std::int64_t t, quota_deadline until) noexcept {
    const std::size_t level = reached(r, use);
    const std::int64_t period = alert_period(w, slice);
    std::atomic<std::uint64_t>& cell = alerts_[w];
    // Relaxed: the cell is a standalone number; the CAS alone decides which
    // thread moves it past a threshold, and that thread alone fires it.
    std::uint64_t cur = cell.load(std::memory_order_relaxed);
    std::size_t fired = 0;
    for (;;) {
      const bool unused = (cur & 0xff) == detail::alert_unused;
      const std::int64_t d = unused ? 1 : detail::alert_distance(cur, period);
      if (d < 0) return alert_count_;  // the cell is in a later period already: this one is over
      fired = d == 0 ? static_cast<std::size_t>(cur & 0xff) : 0;
      if (fired >= level) return fired;
      // Release: a re-read that acquires this cell and then reads the
      // counts sees the units that raised it (see recheck()).
      if (cell.compare_exchange_weak(cur, detail::alert_pack(period, level), std::memory_order_release,
                                     std::memory_order_relaxed)) {
        break;
      }
    }
    if constexpr (alert_quota_storage<Storage>) {
      // Another tracker sharing the storage (another process, or this one
      // before a restart) may have fired some already.
      fired = std::max(fired, std::min(storage_.claim_alerts(w, period, level), level));
    }
    if (fired >= level) return level;
    counters_->c.add(detail::quota_counter::alerts, level - fired);
    if constexpr (detail::listens<Listener>) {
      const std::chrono::nanoseconds resets_in = alert_resets_in(w, slice, t, until);
      for (std::size_t k = fired; k < level; ++k) {
        detail::notify(listener_, [&] {
          return quota_tracker_event{w, thresholds_[k], use, l.limit[w], resets_in,
                                     to_sys(detail::saturating_add(t, resets_in.count()))};
        });
      }
    }
    return level;
  }

  // Re-reads window w at time t and moves its alerts to what its use
  // reaches now: up, firing, or (reserved alerts) down, re-arming the
  // thresholds it fell below. Runs after a permit commits or gives units back.
  void recheck(const limits& l, std::size_t w, std::int64_t t) noexcept {
    const window_state& s = windows_[w];
    std::atomic<std::uint64_t>& cell = alerts_[w];
    // Acquire, before the counts are read: they then hold the units of the
    // consumption that raised the cell to what is read here.
    const std::uint64_t cur = cell.load(std::memory_order_acquire);
    // Settled alerts: the pending units, read before the counts.
    const std::int64_t held = pending_ ? pending_->units.load(std::memory_order_acquire) : 0;
    bucket_buffer buf;
    const std::span<std::int64_t> out(buf.data(), std::size_t{s.buckets} + 1);
    std::fill(out.begin(), out.end(), std::int64_t{0});
    std::int64_t slice = 0;
    if (!read_quietly(w, s.cycle.index(t), out, slice)) return;
    const std::int64_t period = alert_period(w, slice);
    std::int64_t use = 0;
    for (const std::int64_t u : out) use = detail::quota_add(use, u);
    use -= std::min(use, held);
    const std::size_t level = reached(l, w, use);
    const bool unused = (cur & 0xff) == detail::alert_unused;
    const std::int64_t d = unused ? 1 : detail::alert_distance(cur, period);
    if (d < 0) return;
    const std::size_t fired = d == 0 ? static_cast<std::size_t>(cur & 0xff) : 0;
    if (level > fired) {
      (void)raise(l, w, alert_units(l, w), slice, use, t, quota_deadline::max());
    } else if (level < fired && options_.alert_basis == quota_alert_basis::reserved) {
      // One attempt: if the cell moved since it was read, whoever moved it
      // saw counts at least as recent as these.
      std::uint64_t expected = cur;
      if (cell.compare_exchange_strong(expected, detail::alert_pack(period, level), std::memory_order_release,
                                       std::memory_order_relaxed)) {
        if constexpr (alert_quota_storage<Storage>) storage_.rearm_alerts(w, period, level);
      }
    }
  }

  // Re-reads every window (settled alerts, after a commit that may reach a threshold).
  void recheck_all() noexcept {
    std::int64_t t = 0;
    if (!now_quietly(t)) return;
    const limits l = limits_.load();
    for (std::size_t i = 0; i < count_; ++i) recheck(l, i, t);
  }

  // Reserved alerts, after units were given back: re-reads the windows
  // whose thresholds fired in the periods the units were counted in.
  void rearm_after_release(const quota_stamp& at) noexcept {
    if (alert_count_ == 0) return;
    std::int64_t t = 0;
    bool have_time = false;
    for (std::size_t i = 0; i < count_; ++i) {
      const std::uint64_t cur = alerts_[i].load(std::memory_order_relaxed);
      if ((cur & 0xff) == detail::alert_unused || (cur & 0xff) == 0 ||
          detail::alert_distance(cur, alert_period(i, at[i])) != 0) {
        continue;
      }
      if (!have_time && !(have_time = now_quietly(t))) return;
      recheck(limits_.load(), i, t);
    }
  }

  // Settled alerts: a permit's units leave the pending count.
  void unpend(std::int64_t n) noexcept {
    if (n > 0) pending_->units.fetch_sub(n, std::memory_order_relaxed);  // relaxed: see after_consumption()
  }

  bool now_quietly(std::int64_t& t) const noexcept {
    if constexpr (noexcept(std::declval<const WallClock&>().now())) {
      t = now_ns();
      return true;
    } else {
      try {
        t = now_ns();
        return true;
      } catch (...) {
        return false;
      }
    }
  }

  // ---- permits

  // Counts `units` now, whatever the limits; with `pended`, a permit's
  // `amount` units leave the pending count after the count grew (a reader
  // in between underestimates the use, never overestimates it).
  quota_tracker_status charge_now(std::int64_t units, std::int64_t amount, bool pended) noexcept(quiet) {
    const std::int64_t t = now_ns();
    const quota_consumption c = storage_.charge(stamp(t), units);
    if (pended) unpend(amount);
    if (c.status != quota_storage_status::consumed) {
      counters_->c.add(detail::quota_counter::unavailable);
      return quota_tracker_status::unavailable;
    }
    (void)after_consumption(limits_.load(), c, t, quota_deadline::max(), 0);
    return quota_tracker_status::granted;
  }

  // quota_tracker_permit::commit(): the estimate is the cost.
  void keep(std::int64_t amount, std::int64_t trigger, bool pended) noexcept {
    if (!pended) return;
    unpend(amount);
    if (amount >= trigger) recheck_all();
  }

  // quota_tracker_permit::commit(actual).
  quota_tracker_status settle_permit(const quota_stamp& at, std::int64_t amount, std::int64_t actual,
                                     std::int64_t trigger, bool pended) noexcept(quiet) {
    if (actual > amount) return charge_now(actual - amount, amount, pended);
    // Given back before the pending units leave: a reader in between
    // underestimates the use, never overestimates it.
    if (actual < amount) storage_.release(at, amount - actual);
    if (pended) {
      unpend(amount);
      if (actual > 0 && actual >= trigger) recheck_all();
    } else if (actual < amount && options_.alert_basis == quota_alert_basis::reserved) {
      rearm_after_release(at);
    }
    return quota_tracker_status::granted;
  }

  // quota_tracker_permit::cancel().
  void give_back(const quota_stamp& at, std::int64_t amount, bool pended) noexcept {
    storage_.release(at, amount);
    if (pended) {
      unpend(amount);
    } else if (options_.alert_basis == quota_alert_basis::reserved) {
      rearm_after_release(at);
    }
  }

  [[nodiscard]] std::chrono::nanoseconds alert_resets_in(std::size_t w, std::int64_t slice, std::int64_t t,
                                                         quota_deadline until) const noexcept {
    const window_state& s = windows_[w];
    if (s.buckets == 0) return std::chrono::nanoseconds{std::max<std::int64_t>(s.cycle.end(slice) - t, 0)};
    bucket_buffer buf;
    const std::span<std::int64_t> out(buf.data(), std::size_t{s.buckets} + 1);
    std::fill(out.begin(), out.end(), std::int64_t{0});
    std::int64_t now_slice = 0;
    if (!read_quietly(w, slice, out, now_slice, until)) return std::chrono::nanoseconds::zero();
    for (std::uint32_t k = 0; k <= s.buckets; ++k) {
      if (out[k] > 0) {
        return std::chrono::nanoseconds{
            std::max<std::int64_t>(s.cycle.start(now_slice + k + 1) - t, 0)};
      }
    }
    return std::chrono::nanoseconds::zero();
  }

  // Reads window w's counts; false when the storage failed to (a durable
  // storage's read may throw; the paths that call this must not).
  // A deadline_quota_storage reads by `until`.
  bool read_quietly(std::size_t w, std::int64_t i, std::span<std::int64_t> out, std::int64_t& slice,
                    quota_deadline until = quota_deadline::max()) const noexcept {
    const auto read = [&] {
      if constexpr (deadline_quota_storage<Storage>) {
        return storage_.read(w, i, out, until);
      } else {
        (void)until;
        return storage_.read(w, i, out);
      }
    };
    if constexpr (detail::nothrow_quota_read<Storage>()) {
      slice = read();
      return true;
    } else {
      try {
        slice = read();
        return true;
      } catch (...) {
        return false;
      }
    }
  }

  // units >= threshold_units(fraction, limit), without its rounding calls
  // (nearbyint saves and restores the floating-point environment: tens of
  // nanoseconds): an integer reaches ceil(x), or x's nearest integer when x
  // lies within the same tolerance of it, exactly when it reaches x less
  // that tolerance.
  [[nodiscard]] static bool reaches(std::int64_t units, double fraction, std::int64_t limit) noexcept {
    const double x = fraction * static_cast<double>(limit);
    return static_cast<double>(units) >= x - 1e-9 * std::max(x, 1.0) && units >= 1;
  }

  // ceil(fraction * limit), without a rounding error making 0.8 * 50 into 41.
  [[nodiscard]] static std::int64_t threshold_units(double fraction, std::int64_t limit) noexcept {
    const long double exact = static_cast<long double>(fraction) * static_cast<long double>(limit);
    const long double nearest = std::nearbyint(exact);
    const long double units =
        std::fabs(exact - nearest) <= 1e-9L * std::max<long double>(exact, 1.0L) ? nearest : std::ceil(exact);
    return std::max<std::int64_t>(static_cast<std::int64_t>(units), 1);
  }

  // Built by appending: GCC 12 warns (-Wrestrict, a false positive, GCC
  // bug 105329) about `"literal" + std::string` in optimised builds.
  [[nodiscard]] static std::string window_key(const quota_window& w, std::chrono::minutes offset) {
    std::string at(offset.count() >= 0 ? "+" : "");
    at.append(std::to_string(offset.count())).append("min");
    std::string key;
    switch (w.kind) {
      case quota_window_kind::fixed:
        return key.append("fixed/").append(std::to_string(w.length.count())).append("ns/").append(at);
      case quota_window_kind::week: return key.append("week/").append(at);
      case quota_window_kind::month: return key.append("month/").append(at);
      case quota_window_kind::lifetime: return key.append("lifetime");
      case quota_window_kind::rolling: break;
    }
    return key.append("rolling/")
        .append(std::to_string(w.length.count()))
        .append("ns/")
        .append(std::to_string(w.buckets));
  }

  static quota_tracker_options checked(quota_tracker_options o) {
    check(o);
    return o;
  }

  static void check(const quota_tracker_options& o) {
    const auto fail = [](const std::string& what) { detail::invalid_config("armor::quota_tracker: " + what); };
    if (o.windows.empty()) fail("at least one window is required (quota_tracker_options::windows is empty)");
    if (o.windows.size() > quota_max_windows) {
      fail("at most " + std::to_string(quota_max_windows) + " windows (got " + std::to_string(o.windows.size()) + ")");
    }
    if (o.utc_offset <= -std::chrono::hours{24} || o.utc_offset >= std::chrono::hours{24}) {
      fail("utc_offset must be within (-24h, 24h) (got " + std::to_string(o.utc_offset.count()) + " min)");
    }
    for (std::size_t i = 0; i < o.windows.size(); ++i) {
      const quota_window& w = o.windows[i];
      // Built only to name a bad option: a check that passes allocates nothing
      // (quota_tracker::reconfigure).
      const auto name_of = [i] { return std::string("windows[").append(std::to_string(i)).append("]"); };
      if (w.limit < 1) fail(name_of() + ".limit must be at least 1 (got " + std::to_string(w.limit) + ")");
      if (w.limit > quota_max_limit) {
        fail(name_of() + ".limit must be at most " + std::to_string(quota_max_limit) + " (got " +
             std::to_string(w.limit) +
             ")");
      }
      const auto length_of = [&w] { return std::to_string(w.length.count()) + " ns"; };
      switch (w.kind) {
        case quota_window_kind::fixed:
          if (w.length.count() <= 0) fail(name_of() + ".length must be positive (got " + length_of() + ")");
          break;
        case quota_window_kind::week:
        case quota_window_kind::month:
          if (w.length.count() != 0) {
            fail(name_of() + ".length must be left zero for a week or month window (got " + length_of() +
                 "): the calendar sets it");
          }
          break;
        case quota_window_kind::lifetime:
          if (w.length.count() != 0) {
            fail(name_of() + ".length must be left zero for a lifetime window (got " + length_of() +
                 "): it never resets");
          }
          break;
        case quota_window_kind::rolling:
          if (w.length.count() <= 0) fail(name_of() + ".length must be positive (got " + length_of() + ")");
          if (w.buckets < 1 || w.buckets > quota_max_buckets) {
            fail(name_of() + ".buckets must be within [1, " + std::to_string(quota_max_buckets) + "] (got " +
                 std::to_string(w.buckets) + ")");
          }
          if (w.length.count() % w.buckets != 0) {
            fail(name_of() + ".length (" + length_of() +
                 ") must be a whole number of nanoseconds per bucket (buckets = " +
                 std::to_string(w.buckets) + ")");
          }
          break;
        default:
          fail(name_of() + ".kind is not a quota_window_kind value");
      }
    }
    if (o.alerts.size() > quota_max_alerts) {
      fail("at most " + std::to_string(quota_max_alerts) + " alert thresholds (got " + std::to_string(o.alerts.size()) +
           ")");
    }
    for (std::size_t k = 0; k < o.alerts.size(); ++k) {
      const double a = o.alerts[k];
      if (!(a > 0.0 && a <= 1.0)) {
        fail("alerts[" + std::to_string(k) + "] must be within (0, 1] (got " + std::to_string(a) + ")");
      }
    }
    if (o.alert_basis != quota_alert_basis::settled && o.alert_basis != quota_alert_basis::reserved) {
      fail("alert_basis is not a quota_alert_basis value (got " +
           std::to_string(static_cast<unsigned>(o.alert_basis)) + ")");
    }
    if (o.retryable_within.count() < 0) {
      fail("retryable_within must not be negative (got " + std::to_string(o.retryable_within.count()) + " ns)");
    }
    if (o.forecast_alert && !(*o.forecast_alert > 0.0 && *o.forecast_alert <= 1.0)) {
      fail("forecast_alert must be within (0, 1] (got " + std::to_string(*o.forecast_alert) + ")");
    }
    if (!(o.forecast_after >= 0.0 && o.forecast_after < 1.0)) {
      fail("forecast_after must be within [0, 1) (got " + std::to_string(o.forecast_after) + ")");
    }
    detail::check_cost_source(o.cost, "armor::quota_tracker");
  }

  // Read-only after construction.
  quota_tracker_options options_;
  // Written only by reconfigure().
  detail::config_cell<limits> limits_;
  // The limits built with, and whether reconfigure() ever replaced them
  // (until it does, a decision reads them in place, not a copy of limits_).
  limits built_;
  detail::config_cell<bool> reconfigured_{false};
  // The memory backend's fast path (try_consume()): built_ laid out as its
  // counters, and the largest cost it takes (the smallest limit).
  fast_limits_type fast_{};
  std::int64_t fast_max_cost_ = 0;
  std::array<window_state, quota_max_windows> windows_{};
  std::size_t count_ = 0;
  std::vector<std::string> names_;  // window_name(i)
  std::array<double, quota_max_alerts> thresholds_{};
  std::size_t alert_count_ = 0;
  // Per window, the units of each alert threshold (none without alerts).
  // Written only by the constructor and reconfigure().
  std::unique_ptr<alert_table> alert_rows_;
  [[no_unique_address]] WallClock clock_;
  // Written by calls (its own cache lines, in the backend).
  Storage storage_;
  [[no_unique_address]] Listener listener_;
  // Per window: (period, thresholds fired). Written once per threshold and
  // period (and when a threshold re-arms).
  std::unique_ptr<std::atomic<std::uint64_t>[]> alerts_;
  // The units held by uncommitted permits. Settled alerts only; written by
  // every reservation and its commit or cancel.
  std::unique_ptr<detail::quota_pending> pending_;
  // Refusals and alerts (stats()). Written only by refusals and alerts.
  std::unique_ptr<detail::quota_counters> counters_;
  // Forecast alerts (none without forecast_alert): per window, (period,
  // fired), written once per period; the alert and its gate (alert x
  // forecast_after), fixed at construction.
  std::unique_ptr<std::atomic<std::uint64_t>[]> forecasts_;
  double forecast_ = 0;
  double forecast_gate_ = 0;
};

/// For armor::keyed<quota_tracker<C, S>> whose storage is kept per key
/// (its options are keyed_quota_options<S>): keyed::reconfigure(next), with
/// the tracker options alone, finds this by argument-dependent lookup. It
/// checks `next` against `options.quota` as quota_tracker::reconfigure
/// does, and that the prototype storage takes limits per call (throwing
/// armor::error(invalid_argument) naming the option, and changing nothing),
/// then replaces `options.quota`. The storage prototype stays: the storage
/// is fixed for the map's life (each key's counts stay where they are).
template <class Storage>
void keyed_reconfigure(keyed_quota_options<Storage>& options, const quota_tracker_options& next)
  requires(detail::limits_quota_storage<Storage> || detail::limits_deadline_quota_storage<Storage>)
{
  quota_tracker<system_clock, Storage>::check_reconfigure(options.quota, next);
  detail::check_storage_takes_limits(options.storage, "armor::keyed<quota_tracker>::reconfigure");
  options.quota = next;
}
/// For armor::keyed: the part of keyed_quota_options that keyed::options()
/// returns and keyed_reconfigure() changes.
template <class Storage>
[[nodiscard]] const quota_tracker_options& keyed_reconfigure_part(
    const keyed_quota_options<Storage>& options) noexcept {
  return options.quota;
}

quota_tracker(quota_tracker_options) -> quota_tracker<>;
template <class C>
quota_tracker(quota_tracker_options, C) -> quota_tracker<C>;
template <class C, class S>
quota_tracker(quota_tracker_options, C, S) -> quota_tracker<C, S>;
template <class C, class S, class L>
quota_tracker(quota_tracker_options, C, S, L) -> quota_tracker<C, S, L>;

}  // namespace armor
