// armor/load_shedder.hpp: armor::load_shedder, load shedding by resource
// use and priority. Fed readings (fractions of a limit, 0 to 1) for named
// resources by your own sampler; keeps one level per resource with
// hysteresis (normal, warning, degraded, shedding); refuses new calls of the
// priorities the level (or a mode an operator forced) refuses, with
// errc::overloaded (503). Defines its options, event, stats and enums.
//
//     using namespace std::chrono_literals;
//     armor::load_shedder<> shedder{{.resources = {{.name = "memory"}, {.name = "cpu"}}}};
//     shedder.update(0, 0.97);  // from your sampler's timer: memory at 97 % of its limit
//     auto p = armor::pipeline{std::ref(shedder), armor::deadline{2s}};
//     auto r = p.try_execute([&] { return handle(request); }, {.priority = armor::priority::normal});
//     if (!r && r.code() == armor::errc::overloaded) reply_503(*r.retry_after());
//     if (shedder.level() >= armor::load_level::degraded) skip_optional_work();
//
// Admission is one relaxed load of one word (level, mode and the refused
// priorities packed together): no RMW, no clock, no allocation. Updates
// serialise on a mutex and never touch the call path. The ladder, the
// modes, drain and a container with a memory limit: docs/shedding.md; new
// ladders and refusals at run time (reconfigure()): docs/reconfiguration.md.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/error.hpp>
#include <armor/listener.hpp>
#include <armor/policy.hpp>
#include <armor/stats.hpp>
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
#include <tuple>
#include <utility>
#include <vector>

namespace armor {

/// How loaded a resource (or the whole service: the highest of its
/// resources) is. Ordered: compare with `>=`.
enum class load_level : std::uint8_t {
  normal,    ///< below every threshold
  warning,   ///< 80 % by default: worth a log line, nothing refused
  degraded,  ///< 90 % by default: turn optional work off (read level()); sheddable calls refused
  shedding,  ///< 95 % by default: normal and sheddable calls refused, critical ones pass
};

/// The enumerator's name: "normal", "warning", "degraded", "shedding".
[[nodiscard]] constexpr std::string_view to_string(load_level l) noexcept {
  switch (l) {
    case load_level::normal: return "normal";
    case load_level::warning: return "warning";
    case load_level::degraded: return "degraded";
    case load_level::shedding: return "shedding";
  }
  return "unknown";
}

/// A mode an operator forces, whatever the readings say (set_mode()).
enum class load_mode : std::uint8_t {
  automatic,    ///< the readings decide (the default)
  read_only,    ///< the application serves cached data only; it reads mode() (refuses nothing by default)
  maintenance,  ///< refuses normal and sheddable calls by default, as shedding does
};

/// The enumerator's name: "automatic", "read_only", "maintenance".
[[nodiscard]] constexpr std::string_view to_string(load_mode m) noexcept {
  switch (m) {
    case load_mode::automatic: return "automatic";
    case load_mode::read_only: return "read_only";
    case load_mode::maintenance: return "maintenance";
  }
  return "unknown";
}

/// Which priorities a level or a mode refuses, from the least important up.
enum class load_refusal : std::uint8_t {
  none,       ///< refuses nothing
  sheddable,  ///< refuses sheddable calls
  normal,     ///< refuses normal and sheddable calls; critical ones pass
  all,        ///< refuses every call, critical ones too
};

/// The enumerator's name: "none", "sheddable", "normal", "all".
[[nodiscard]] constexpr std::string_view to_string(load_refusal r) noexcept {
  switch (r) {
    case load_refusal::none: return "none";
    case load_refusal::sheddable: return "sheddable";
    case load_refusal::normal: return "normal";
    case load_refusal::all: return "all";
  }
  return "unknown";
}

/// One level's thresholds: a resource enters the level when its reading is
/// at or above `enter`, and stays in it while the reading is at or above
/// `exit` (so a reading hovering at `enter` does not flap). Both in [0, 1],
/// exit <= enter.
struct load_threshold {
  double enter = 1.0;
  double exit = 1.0;
};

/// The thresholds of one resource. The default is the ladder of issue 19:
/// warning at 80 %, degraded at 90 %, shedding at 95 %, everything refused
/// by a level ends below 80 %. The warning level itself ends below 75 %:
/// with enter == exit a reading hovering at 80 % would warn every sample.
/// Enters strictly increase with the level, exits never decrease.
struct load_ladder {
  load_threshold warning{0.80, 0.75};
  load_threshold degraded{0.90, 0.80};
  load_threshold shedding{0.95, 0.80};
};

/// A resource the shedder is fed readings for, in the order of update(i, ...).
struct load_resource {
  /// Its name (unique, not empty): "memory", "cpu", "fds", "connections"...
  std::string name;
  /// Its thresholds.
  load_ladder ladder{};
};

/// What each level and each forced mode refuses.
struct load_refusals {
  load_refusal warning = load_refusal::none;
  load_refusal degraded = load_refusal::sheddable;
  load_refusal shedding = load_refusal::normal;
  load_refusal read_only = load_refusal::none;
  load_refusal maintenance = load_refusal::normal;
};

/// The options of armor::load_shedder. An aggregate:
/// `{.resources = {{.name = "memory"}, {.name = "cpu"}}, .retry_after_hint = 2s}`.
struct load_shedder_options {
  /// The resources, named at construction (update() takes their index or
  /// name). None (the default) leaves only the forced modes.
  std::vector<load_resource> resources{};
  /// What each level and mode refuses; each level at least what the one
  /// below it refuses.
  load_refusals refuses{};
  /// What a refusal says about when to try again (Retry-After with the
  /// 503): about your sampler's period plus the time the load takes to
  /// fall. 0: no hint (retry_after() is nanoseconds::max()). >= 0; 1 s by default.
  std::chrono::nanoseconds retry_after_hint = std::chrono::seconds{1};
  /// Count refusals in stats() (one relaxed add per refusal, on a shared
  /// line). Off by default: a refusal then writes nothing.
  bool count_calls = false;
};

/// What a load shedder's listener hears.
enum class load_shedder_event_kind : std::uint8_t {
  level_changed,  ///< the overall level moved (once per crossing: the 80 % warning is one)
  mode_changed,   ///< an operator forced a mode (set_mode())
  refused,        ///< a call refused with errc::overloaded
};

/// The enumerator's name: "level_changed", "mode_changed", "refused".
[[nodiscard]] constexpr std::string_view to_string(load_shedder_event_kind k) noexcept {
  switch (k) {
    case load_shedder_event_kind::level_changed: return "level_changed";
    case load_shedder_event_kind::mode_changed: return "mode_changed";
    case load_shedder_event_kind::refused: return "refused";
  }
  return "unknown";
}

/// What a load shedder's listener hears. `from` and `to` are the overall
/// level before and after (equal unless level_changed); `resource` and
/// `reading` the update that moved it (level_changed only; valid during
/// the call); `priority` the refused call's (refused only).
struct load_shedder_event {
  load_shedder_event_kind kind = load_shedder_event_kind::level_changed;
  load_level from = load_level::normal;
  load_level to = load_level::normal;
  load_mode mode = load_mode::automatic;
  std::string_view resource{};
  double reading = 0;
  armor::priority priority = armor::priority::normal;

  /// How fmt prints it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using e = load_shedder_event;
    return std::tuple{armor::field("kind", &e::kind),         armor::field("from", &e::from),
                      armor::field("to", &e::to),             armor::field("mode", &e::mode),
                      armor::field("resource", &e::resource), armor::field("reading", &e::reading),
                      armor::field("priority", &e::priority)};
  }
};

/// A snapshot of a load shedder: its level and mode from one load of its
/// word, and its counters (relaxed loads).
struct load_shedder_stats {
  load_level level = load_level::normal;  ///< the overall level now
  load_mode mode = load_mode::automatic;  ///< the forced mode now
  std::uint64_t level_changes = 0;        ///< times the overall level moved
  std::uint64_t ignored_readings = 0;     ///< readings refused: NaN, outside [0, 1], unknown resource
  bool counting = false;                  ///< whether `refused` is kept (count_calls)
  std::uint64_t refused = 0;              ///< calls refused (count_calls only)

  /// How fmt prints and Prometheus exports it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using s = load_shedder_stats;
    return std::tuple{
        armor::gauge("level", &s::level, "armor_load_shedder_level",
                     "The load shedder's level: 0 normal, 1 warning, 2 degraded, 3 shedding."),
        armor::gauge("mode", &s::mode, "armor_load_shedder_mode",
                     "The load shedder's forced mode: 0 automatic, 1 read_only, 2 maintenance."),
        armor::counter("level_changes", &s::level_changes, "armor_load_shedder_level_changes_total",
                       "Times the load shedder's level moved."),
        armor::counter("ignored_readings", &s::ignored_readings, "armor_load_shedder_ignored_readings_total",
                       "Readings the load shedder ignored: NaN, outside 0 to 1, or for an unknown resource."),
        armor::counter("refused", &s::refused, "armor_load_shedder_refused_total",
                       "Calls the load shedder refused (count_calls only).")
            .when_counting(),
    };
  }
};

// load_shedder::try_acquire answers armor::decision<>.
static_assert(decision_like<decision<>>);

namespace detail {

// The shedder's word: bits 0-2 the refused priorities (bit p for priority
// p), bits 8-15 the level, bits 16-23 the mode. Admission reads it once.
inline constexpr std::uint64_t shed_refused_mask = 0x7;

[[nodiscard]] constexpr std::uint64_t shed_mask(load_refusal r) noexcept {
  switch (r) {
    case load_refusal::none: return 0;
    case load_refusal::sheddable: return 0b100;
    case load_refusal::normal: return 0b110;
    case load_refusal::all: return 0b111;
  }
  return 0b111;
}

[[nodiscard]] constexpr std::uint64_t shed_word(load_level level, load_mode mode, std::uint64_t refused) noexcept {
  return refused | (std::uint64_t{static_cast<std::uint8_t>(level)} << 8) |
         (std::uint64_t{static_cast<std::uint8_t>(mode)} << 16);
}

[[nodiscard]] constexpr load_level shed_level_of(std::uint64_t w) noexcept {
  return static_cast<load_level>((w >> 8) & 0xff);
}
[[nodiscard]] constexpr load_mode shed_mode_of(std::uint64_t w) noexcept {
  return static_cast<load_mode>((w >> 16) & 0xff);
}
[[nodiscard]] constexpr bool shed_refuses(std::uint64_t w, priority p) noexcept {
  const unsigned bit = std::min(static_cast<unsigned>(p), 2u);
  return ((w >> bit) & 1u) != 0;
}

/// The level a resource at `current` moves to on `reading`: the highest
/// level whose enter it reaches, or the highest level up to `current` whose
/// exit it still reaches, whichever is higher. Pure.
[[nodiscard]] constexpr load_level shed_next(const load_ladder& l, load_level current, double reading) noexcept {
  const std::array<load_threshold, 3> t{l.warning, l.degraded, l.shedding};
  unsigned entered = 0;
  unsigned held = 0;
  const unsigned cur = static_cast<unsigned>(current);
  for (unsigned k = 1; k <= 3; ++k) {
    if (reading >= t[k - 1].enter) entered = k;
    if (k <= cur && reading >= t[k - 1].exit) held = k;
  }
  return static_cast<load_level>(std::max(entered, held));
}

[[noreturn]] inline void shed_refuse(const std::string& what) { invalid_config("armor::load_shedder: " + what); }

inline void shed_check_threshold(const std::string& where, const load_threshold& t) {
  const auto in_unit = [](double v) { return std::isfinite(v) && v >= 0.0 && v <= 1.0; };
  if (!in_unit(t.enter)) shed_refuse(where + ".enter must be within [0, 1] (got " + std::to_string(t.enter) + ")");
  if (!in_unit(t.exit)) shed_refuse(where + ".exit must be within [0, 1] (got " + std::to_string(t.exit) + ")");
  if (t.exit > t.enter) {
    shed_refuse(where + ".exit must not be above its enter (got exit " + std::to_string(t.exit) + ", enter " +
                std::to_string(t.enter) + ")");
  }
}

inline void shed_check(const load_shedder_options& o) {
  for (std::size_t i = 0; i < o.resources.size(); ++i) {
    const load_resource& r = o.resources[i];
    const std::string at = "resources[" + std::to_string(i) + "]";
    if (r.name.empty()) shed_refuse(at + ".name must not be empty");
    for (std::size_t j = 0; j < i; ++j) {
      if (o.resources[j].name == r.name) {
        shed_refuse(at + ".name '" + r.name + "' is a duplicate of resources[" + std::to_string(j) + "].name");
      }
    }
    const std::array<std::pair<const char*, load_threshold>, 3> t{
        {{"warning", r.ladder.warning}, {"degraded", r.ladder.degraded}, {"shedding", r.ladder.shedding}}};
    for (const auto& [name, th] : t) shed_check_threshold(at + ".ladder." + name, th);
    for (std::size_t k = 1; k < t.size(); ++k) {
      const std::string here = at + ".ladder." + t[k].first;
      const std::string below = at + ".ladder." + t[k - 1].first;
      if (!(t[k].second.enter > t[k - 1].second.enter)) {
        shed_refuse(here + ".enter must be above " + below + ".enter (levels are ordered; got " +
                    std::to_string(t[k].second.enter) + " after " + std::to_string(t[k - 1].second.enter) + ")");
      }
      if (t[k].second.exit < t[k - 1].second.exit) {
        shed_refuse(here + ".exit must not be below " + below + ".exit (levels must not overlap; got " +
                    std::to_string(t[k].second.exit) + " after " + std::to_string(t[k - 1].second.exit) + ")");
      }
    }
  }
  const auto valid = [](load_refusal r) { return static_cast<std::uint8_t>(r) <= static_cast<std::uint8_t>(load_refusal::all); };
  const std::array<std::pair<const char*, load_refusal>, 5> rs{{{"warning", o.refuses.warning},
                                                                {"degraded", o.refuses.degraded},
                                                                {"shedding", o.refuses.shedding},
                                                                {"read_only", o.refuses.read_only},
                                                                {"maintenance", o.refuses.maintenance}}};
  for (const auto& [name, r] : rs) {
    if (!valid(r)) shed_refuse(std::string("refuses.") + name + " is not a load_refusal");
  }
  if (o.refuses.degraded < o.refuses.warning) shed_refuse("refuses.degraded must refuse at least what refuses.warning does");
  if (o.refuses.shedding < o.refuses.degraded) shed_refuse("refuses.shedding must refuse at least what refuses.degraded does");
  if (o.retry_after_hint.count() < 0) {
    shed_refuse("retry_after_hint must not be negative (got " + std::to_string(o.retry_after_hint.count()) + " ns)");
  }
}

/// One resource's latest reading and level; written under the shedder's
/// mutex, read by anyone (relaxed: each is a value of its own).
struct shed_resource {
  std::string name;
  load_ladder ladder{};
  std::atomic<double> reading{std::numeric_limits<double>::quiet_NaN()};
  std::atomic<load_level> level{load_level::normal};
};

/// What a load shedder keeps off its call path; allocated once.
struct shed_state {
  explicit shed_state(const load_shedder_options& o)
      : count(o.resources.size()), resources(new shed_resource[count]), refuses(o.refuses) {
    for (std::size_t i = 0; i < count; ++i) {
      resources[i].name = o.resources[i].name;
      resources[i].ladder = o.resources[i].ladder;
    }
  }

  std::size_t count;
  std::unique_ptr<shed_resource[]> resources;
  std::mutex writer;  // serialises update() and set_mode(): they are rare and must publish in order
  load_mode mode = load_mode::automatic;  // under `writer`
  load_refusals refuses;                  // under `writer` (reconfigure())
  std::atomic<std::uint64_t> level_changes{0};
  std::atomic<std::uint64_t> ignored{0};
  alignas(cache_line) std::atomic<std::uint64_t> refused{0};  // count_calls only: keep it off the writers' line
};

}  // namespace detail

/// Load shedding by resource use and priority (see the top of this header
/// and docs/shedding.md). An armor::policy with no permit.
///
/// `Clock` is never read: a shedder decides from its readings, not the
/// time; it is a parameter so that every policy has the same shape (and is
/// not declared as `clock_type`: any pipeline may hold a shedder).
/// `Listener` (armor::listener_for load_shedder_event) hears level changes,
/// mode changes and refusals; it hears level and mode changes under the
/// writers' mutex, in order, so it must not call update() or set_mode().
///
/// Thread-safety: every member may be called concurrently, except the move
/// constructor (move before sharing; share with std::ref). Cost: admit() and
/// try_acquire() are one relaxed load and a test (a refusal also builds the
/// event for a listener, and counts with count_calls); update() and
/// set_mode() lock a mutex no call takes and store the word once when the
/// level or mode moves. Nothing allocates after construction.
///
/// reconfigure() changes the ladders, the refusals and the hint at run time
/// (docs/reconfiguration.md).
///
/// Construction throws armor::error(errc::invalid_argument) naming the
/// option: a threshold outside [0, 1] or NaN, an exit above its enter,
/// levels out of order or overlapping, an empty or duplicate resource name,
/// refusals that shrink as the level rises, a negative retry_after_hint.
template <class Clock = steady_clock, class Listener = no_listener>
class load_shedder {
  static_assert(armor::clock<Clock>, "armor::load_shedder: Clock must have now() returning its time_point");
  static_assert(listener_for<Listener, load_shedder_event>,
                "armor::load_shedder: Listener must be no_listener or callable as "
                "listener(const armor::load_shedder_event&) noexcept (or std::ref to such a callable)");

 public:
  using permit_type = no_permit;
  using options_type = load_shedder_options;
  using listener_type = Listener;

  explicit load_shedder(const load_shedder_options& options = {}, Clock clock = Clock{}, Listener listener = Listener{})
      : word_(initial_word(options)),
        hint_(options.retry_after_hint.count()),
        count_calls_(options.count_calls),
        options_(options),
        clock_(std::move(clock)),
        listener_(std::move(listener)),
        state_(std::make_unique<detail::shed_state>(options)) {}

  /// Moves the state (and the listener). Not thread-safe: move a shedder
  /// before sharing it.
  load_shedder(load_shedder&& other) noexcept
      : word_(other.word_.load(std::memory_order_relaxed)),
        hint_(other.hint_.load(std::memory_order_relaxed)),
        count_calls_(other.count_calls_),
        options_(std::move(other.options_)),
        clock_(std::move(other.clock_)),
        listener_(std::move(other.listener_)),
        state_(std::move(other.state_)) {}
  load_shedder(const load_shedder&) = delete;
  load_shedder& operator=(const load_shedder&) = delete;
  load_shedder& operator=(load_shedder&&) = delete;
  ~load_shedder() = default;

  // ---------------------------------------------------------------- policy protocol

  /// Admits the call unless the level or the forced mode refuses its
  /// priority (ctx.priority(), from call_options::priority): then
  /// errc::overloaded, retryable, retry_after the options' hint.
  [[nodiscard]] ARMOR_ALWAYS_INLINE admission<> admit(context& ctx) noexcept {
    // Relaxed: the word is a value of its own; nothing else is published with it.
    const std::uint64_t w = word_.load(std::memory_order_relaxed);
    if (ARMOR_LIKELY((w & detail::shed_refused_mask) == 0) || !detail::shed_refuses(w, ctx.priority())) {
      return admission<>::admit();
    }
    refused(w, ctx.priority());
    return admission<>::reject(errc::overloaded, hint(), true);
  }

  /// Policy protocol: nothing to record (a shedder holds nothing per call).
  ARMOR_ALWAYS_INLINE void settle(context&, no_permit, const verdict&) noexcept {}

  // ---------------------------------------------------------------- standalone use

  /// Would a call of priority `p` be admitted now? Granted, or refused with
  /// errc::overloaded and retry_after() the options' hint
  /// (nanoseconds::max() without one). The listener hears a refusal.
  [[nodiscard]] decision<> try_acquire(armor::priority p = armor::priority::normal) noexcept {
    const std::uint64_t w = word_.load(std::memory_order_relaxed);
    if (ARMOR_LIKELY((w & detail::shed_refused_mask) == 0) || !detail::shed_refuses(w, p)) return decision<>::granted();
    refused(w, p);
    return decision<>::refused(errc::overloaded, hint().value_or(std::chrono::nanoseconds::max()));
  }

  // ---------------------------------------------------------------- readings and modes

  /// Feeds resource `index` (its place in options().resources) a reading,
  /// a fraction of its limit in [0, 1]; moves its level and, when the
  /// highest level of all resources moves, the shedder's. Answers whether
  /// the reading was taken: a NaN, a value outside [0, 1] or an unknown
  /// index is ignored (counted in stats().ignored_readings), never acted on.
  bool update(std::size_t index, double reading) noexcept {
    detail::shed_state& s = *state_;
    if (index >= s.count || !(reading >= 0.0 && reading <= 1.0)) {
      s.ignored.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    std::lock_guard<std::mutex> lock(s.writer);
    detail::shed_resource& r = s.resources[index];
    r.reading.store(reading, std::memory_order_relaxed);
    const load_level now = detail::shed_next(r.ladder, r.level.load(std::memory_order_relaxed), reading);
    r.level.store(now, std::memory_order_relaxed);
    load_level top = load_level::normal;
    for (std::size_t i = 0; i < s.count; ++i) top = std::max(top, s.resources[i].level.load(std::memory_order_relaxed));
    const std::uint64_t before = word_.load(std::memory_order_relaxed);
    const load_level was = detail::shed_level_of(before);
    if (top != was) {
      word_.store(make_word(top, s.mode), std::memory_order_relaxed);
      s.level_changes.fetch_add(1, std::memory_order_relaxed);
      detail::notify(listener_, [&] {
        return load_shedder_event{load_shedder_event_kind::level_changed, was, top, s.mode, r.name, reading,
                                  armor::priority::normal};
      });
    }
    return true;
  }

  /// update() by the resource's name (a linear search of the names: cheap
  /// for the handful a service measures). An unknown name is ignored and
  /// counted.
  bool update(std::string_view name, double reading) noexcept {
    return update(index_of(name).value_or(state_->count), reading);
  }

  /// The index of the resource named `name`, if there is one.
  [[nodiscard]] std::optional<std::size_t> index_of(std::string_view name) const noexcept {
    for (std::size_t i = 0; i < state_->count; ++i) {
      if (state_->resources[i].name == name) return i;
    }
    return std::nullopt;
  }

  /// Forces a mode (load_mode::automatic gives the readings back the say).
  /// Takes effect for the next admission; the listener hears mode_changed.
  void set_mode(load_mode mode) noexcept {
    detail::shed_state& s = *state_;
    std::lock_guard<std::mutex> lock(s.writer);
    if (mode == s.mode) return;
    s.mode = mode;
    const std::uint64_t before = word_.load(std::memory_order_relaxed);
    const load_level level = detail::shed_level_of(before);
    word_.store(make_word(level, mode), std::memory_order_relaxed);
    detail::notify(listener_, [&] {
      return load_shedder_event{load_shedder_event_kind::mode_changed, level, level, mode, {}, 0.0,
                                armor::priority::normal};
    });
  }

  // ---------------------------------------------------------------- observation

  /// The overall level now (the highest of the resources' levels). Read it
  /// to turn optional work off: `if (s.level() >= load_level::degraded)`.
  [[nodiscard]] load_level level() const noexcept {
    return detail::shed_level_of(word_.load(std::memory_order_relaxed));
  }
  /// The forced mode now.
  [[nodiscard]] load_mode mode() const noexcept { return detail::shed_mode_of(word_.load(std::memory_order_relaxed)); }
  /// Whether a call of priority `p` would be admitted now (a readiness
  /// probe asks for priority::normal). Tells no listener.
  [[nodiscard]] bool admits(armor::priority p = armor::priority::normal) const noexcept {
    return !detail::shed_refuses(word_.load(std::memory_order_relaxed), p);
  }

  /// The number of resources.
  [[nodiscard]] std::size_t resources() const noexcept { return state_->count; }
  /// Resource `index`'s name.
  [[nodiscard]] std::string_view resource_name(std::size_t index) const noexcept {
    return index < state_->count ? std::string_view(state_->resources[index].name) : std::string_view{};
  }
  /// Resource `index`'s latest reading taken (NaN before the first).
  [[nodiscard]] double reading(std::size_t index) const noexcept {
    return index < state_->count ? state_->resources[index].reading.load(std::memory_order_relaxed)
                                 : std::numeric_limits<double>::quiet_NaN();
  }
  /// Resource `index`'s own level.
  [[nodiscard]] load_level resource_level(std::size_t index) const noexcept {
    return index < state_->count ? state_->resources[index].level.load(std::memory_order_relaxed)
                                 : load_level::normal;
  }

  /// Level and mode from one load of the word; counters read one by one.
  [[nodiscard]] load_shedder_stats stats() const noexcept {
    const std::uint64_t w = word_.load(std::memory_order_relaxed);
    load_shedder_stats s;
    s.level = detail::shed_level_of(w);
    s.mode = detail::shed_mode_of(w);
    s.level_changes = state_->level_changes.load(std::memory_order_relaxed);
    s.ignored_readings = state_->ignored.load(std::memory_order_relaxed);
    s.counting = count_calls_;
    s.refused = state_->refused.load(std::memory_order_relaxed);
    return s;
  }

  /// The options in force: those given at construction, or to the last
  /// reconfigure() (a copy, taken under the writers' mutex: it allocates).
  [[nodiscard]] load_shedder_options options() const {
    std::lock_guard<std::mutex> lock(state_->writer);
    return options_;
  }

  /// Changes the thresholds, the refusals and the hint at run time
  /// (docs/reconfiguration.md). `options` is validated as by the
  /// constructor; the resources (their number and names) and count_calls
  /// are fixed at construction and must equal the shedder's. Every ladder,
  /// every refusal and retry_after_hint may change. Throws
  /// armor::error(invalid_argument) naming the option; the old ones then
  /// stay. Under the writers' mutex (as update()): each resource's level is
  /// moved at once to what the new ladder makes of its latest reading
  /// (from its current level, with the new hysteresis), and the shedder's
  /// level and refused priorities are published in one store, so the next
  /// admission decides by the new refusals whole; the listener hears a
  /// level change (with no resource named) if the level moved. The hint
  /// is stored apart: a refusal made during reconfigure() may carry the
  /// old hint. Calls never wait; validation builds strings (allocates).
  void reconfigure(const load_shedder_options& options) {
    constexpr const char* who = "armor::load_shedder::reconfigure";
    detail::shed_check(options);
    detail::shed_state& s = *state_;
    if (options.resources.size() != s.count) detail::fixed_at_construction(who, "resources (their number)");
    for (std::size_t i = 0; i < s.count; ++i) {
      if (options.resources[i].name != s.resources[i].name) detail::fixed_at_construction(who, "resources' names");
    }
    if (options.count_calls != count_calls_) detail::fixed_at_construction(who, "count_calls");
    std::lock_guard<std::mutex> lock(s.writer);
    s.refuses = options.refuses;
    load_level top = load_level::normal;
    for (std::size_t i = 0; i < s.count; ++i) {
      detail::shed_resource& r = s.resources[i];
      r.ladder = options.resources[i].ladder;
      options_.resources[i].ladder = r.ladder;
      const double reading = r.reading.load(std::memory_order_relaxed);
      if (!std::isnan(reading)) {  // a reading was taken
        r.level.store(detail::shed_next(r.ladder, r.level.load(std::memory_order_relaxed), reading),
                      std::memory_order_relaxed);
      }
      top = std::max(top, r.level.load(std::memory_order_relaxed));
    }
    options_.refuses = options.refuses;
    options_.retry_after_hint = options.retry_after_hint;
    hint_.store(options.retry_after_hint.count(), std::memory_order_relaxed);
    const load_level was = detail::shed_level_of(word_.load(std::memory_order_relaxed));
    word_.store(make_word(top, s.mode), std::memory_order_relaxed);
    if (top != was) {
      s.level_changes.fetch_add(1, std::memory_order_relaxed);
      detail::notify(listener_, [&] {
        return load_shedder_event{load_shedder_event_kind::level_changed, was, top, s.mode, {}, 0.0,
                                  armor::priority::normal};
      });
    }
  }
  /// The clock (never read by the shedder).
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }
  /// The listener.
  [[nodiscard]] const Listener& listener() const noexcept { return listener_; }

 private:
  static std::uint64_t initial_word(const load_shedder_options& o) {
    detail::shed_check(o);
    return detail::shed_word(load_level::normal, load_mode::automatic, 0);
  }

  // The word for a level and a mode: what either refuses, whichever refuses more.
  [[nodiscard]] std::uint64_t make_word(load_level level, load_mode mode) const noexcept {
    const load_refusals& r = state_->refuses;  // under the writers' mutex
    load_refusal by_level = load_refusal::none;
    switch (level) {
      case load_level::normal: break;
      case load_level::warning: by_level = r.warning; break;
      case load_level::degraded: by_level = r.degraded; break;
      case load_level::shedding: by_level = r.shedding; break;
    }
    load_refusal by_mode = load_refusal::none;
    switch (mode) {
      case load_mode::automatic: break;
      case load_mode::read_only: by_mode = r.read_only; break;
      case load_mode::maintenance: by_mode = r.maintenance; break;
    }
    return detail::shed_word(level, mode, detail::shed_mask(std::max(by_level, by_mode)));
  }

  [[nodiscard]] std::optional<std::chrono::nanoseconds> hint() const noexcept {
    // Relaxed: a value of its own (see reconfigure()).
    const std::int64_t h = hint_.load(std::memory_order_relaxed);
    if (h > 0) return std::chrono::nanoseconds{h};
    return std::nullopt;
  }

  // The refusal's bookkeeping, off the admitted path.
  void refused(std::uint64_t w, armor::priority p) noexcept {
    if (count_calls_) state_->refused.fetch_add(1, std::memory_order_relaxed);
    detail::notify(listener_, [&] {
      const load_level l = detail::shed_level_of(w);
      return load_shedder_event{load_shedder_event_kind::refused, l, l, detail::shed_mode_of(w), {}, 0.0, p};
    });
  }

  // Read by every admission, written by update() and set_mode() only: its
  // own cache line, so the writes of a neighbouring policy do not evict it.
  alignas(detail::cache_line) std::atomic<std::uint64_t> word_;
  std::atomic<std::int64_t> hint_;  // retry_after_hint in ns; written by reconfigure() only
  bool count_calls_;                // fixed at construction
  load_shedder_options options_;    // under state_->writer once shared (reconfigure(), options())
  [[no_unique_address]] Clock clock_;
  [[no_unique_address]] Listener listener_;
  std::unique_ptr<detail::shed_state> state_;
};

load_shedder() -> load_shedder<>;
load_shedder(const load_shedder_options&) -> load_shedder<>;
template <class C>
  requires clock<C>
load_shedder(const load_shedder_options&, C) -> load_shedder<C>;
template <class C, class L>
load_shedder(const load_shedder_options&, C, L) -> load_shedder<C, L>;

}  // namespace armor
