// armor/bulkhead.hpp: a concurrency limit. At most N calls inside at once;
// the next one fails fast (errc::bulkhead_full), or waits in line (FIFO) for
// a bounded time. Defines armor::bulkhead<Listener>, its options, permit,
// stats and event.
//
//     using namespace std::chrono_literals;
//     // At most 100 requests to the upstream at once; the 101st gets
//     // bulkhead_full at once (answer 503) instead of queueing without bound.
//     armor::bulkhead upstream_slots{{.max_concurrent = 100, .retry_after_hint = 1s}};
//     auto p = armor::pipeline{armor::deadline{2s}, std::ref(upstream_slots)};
//     auto r = p.try_execute([&](const armor::context& ctx) { return forward(req, ctx.remaining()); });
//     if (!r && r.code() == armor::errc::bulkhead_full) return service_unavailable(*r.retry_after());  // 1 s
//
// Queueing, direct use (try_acquire), the listener, keyed bulkheads, how it
// works and what it costs: docs/policies_order.md#bulkhead.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/detail/bulkhead_state.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/counter_set.hpp>
#include <armor/error.hpp>
#include <armor/listener.hpp>
#include <armor/policy.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

namespace armor {

/// The options of armor::bulkhead. An aggregate:
/// `{.max_concurrent = 100, .max_queue = 10, .max_wait = 200ms}`.
struct bulkhead_options {
  /// Calls inside at once; in [1, 2^31).
  std::uint32_t max_concurrent = 100;
  /// Callers that may wait for a slot at once; 0 (the default) fails fast
  /// with bulkhead_full. In [0, 2^31).
  std::uint32_t max_queue = 0;
  /// How long a queued caller waits at most (its deadline may cut it
  /// shorter); > 0 when max_queue > 0.
  std::chrono::nanoseconds max_wait = std::chrono::seconds{1};
  /// What a refusal says about when to try again: the retry_after() of
  /// try_acquire()'s refusal and of a pipeline's bulkhead_full failure,
  /// which a server sends as Retry-After with its 503. A bulkhead cannot
  /// know when a slot frees, so this is your estimate (about the time a
  /// call holds a slot). 0 (the default): no hint (retry_after() is
  /// nanoseconds::max(), the pipeline's failure has none). >= 0.
  std::chrono::nanoseconds retry_after_hint{0};
};

template <class Listener>
class bulkhead;

/// A bulkhead's receipt: a slot held, or a place in its queue. Move-only.
/// Dropping it gives back what it holds (the slot, or the place: if a slot
/// was handed to the place meanwhile, that slot). Must not outlive its
/// bulkhead.
class bulkhead_permit {
 public:
  bulkhead_permit() noexcept = default;
  bulkhead_permit(bulkhead_permit&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)), waiter_(std::exchange(other.waiter_, nullptr)) {}
  bulkhead_permit& operator=(bulkhead_permit&& other) noexcept {
    if (this != &other) {
      release();
      state_ = std::exchange(other.state_, nullptr);
      waiter_ = std::exchange(other.waiter_, nullptr);
    }
    return *this;
  }
  bulkhead_permit(const bulkhead_permit&) = delete;
  bulkhead_permit& operator=(const bulkhead_permit&) = delete;
  // One test, inlined wherever a permit dies (every admission a driver
  // holds: a settled permit is empty); dropping a permit that still holds
  // something is a call. A full release inline here made GCC keep the
  // admissions' destructors out of line (a call per layer per call).
  ARMOR_ALWAYS_INLINE ~bulkhead_permit() {
    if (state_ != nullptr) drop();
  }

  /// True while it holds a slot or a place in the queue.
  [[nodiscard]] explicit operator bool() const noexcept { return state_ != nullptr; }
  /// True while it holds a place in the queue (not yet a slot).
  [[nodiscard]] bool queued() const noexcept { return waiter_ != nullptr; }

  /// Ends a wait in the queue: true when a slot was handed over (the permit
  /// now holds it), false when not (the permit is empty, the place given
  /// back). For a permit that holds a slot already: true.
  [[nodiscard]] bool leave_queue() noexcept {
    if (state_ == nullptr) return false;
    if (waiter_ == nullptr) return true;
    const bool granted = state_->leave(*std::exchange(waiter_, nullptr));
    if (!granted) state_ = nullptr;
    return granted;
  }

  /// Gives back the slot or the place now; the permit is empty afterwards.
  ARMOR_ALWAYS_INLINE void release() noexcept {
    detail::bulkhead_state* s = std::exchange(state_, nullptr);
    if (ARMOR_UNLIKELY(s == nullptr)) return;
    if (ARMOR_UNLIKELY(waiter_ != nullptr)) {
      release_place(*s);
      return;
    }
    s->release();
  }

 private:
  ARMOR_BULKHEAD_NOINLINE void drop() noexcept { release(); }

  // A place in the queue: leaves it, or gives back the slot it was handed.
  ARMOR_BULKHEAD_COLD void release_place(detail::bulkhead_state& s) noexcept {
    if (s.leave(*std::exchange(waiter_, nullptr))) s.release();
  }

  template <class>
  friend class bulkhead;
  explicit bulkhead_permit(detail::bulkhead_state* s, queue_waiter* w = nullptr) noexcept : state_(s), waiter_(w) {}

  detail::bulkhead_state* state_ = nullptr;
  queue_waiter* waiter_ = nullptr;
};

/// A snapshot of a bulkhead: what is inside and waiting now, its limits, and
/// how many calls it refused or lost from its queue. Read with a load of the
/// bulkhead's word, one of its limits and one of each count (not one atomic
/// snapshot); an admission writes nothing for it, a refusal one count.
struct bulkhead_stats {
  std::uint32_t in_use = 0;          ///< calls inside now
  std::uint32_t queued = 0;          ///< callers waiting for a slot now
  std::uint32_t max_concurrent = 0;  ///< the limit on calls inside
  std::uint32_t max_queue = 0;       ///< the limit on callers waiting (0: fail fast)
  std::uint64_t rejected = 0;        ///< calls refused: every slot taken and no room in the queue (always counted)
  std::uint64_t abandoned = 0;       ///< queued callers that left without a slot: max_wait, deadline, cancellation

  /// How fmt prints and Prometheus exports it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    return std::tuple{
        gauge("in_use", &bulkhead_stats::in_use, "armor_bulkhead_in_use", "Calls inside the bulkhead now."),
        gauge("queued", &bulkhead_stats::queued, "armor_bulkhead_queued", "Callers waiting for a bulkhead slot now."),
        gauge("max_concurrent", &bulkhead_stats::max_concurrent, "armor_bulkhead_max_concurrent",
              "The bulkhead's limit on calls inside at once."),
        gauge("max_queue", &bulkhead_stats::max_queue, "armor_bulkhead_max_queue",
              "The bulkhead's limit on callers waiting (0: it fails fast)."),
        counter("rejected", &bulkhead_stats::rejected, "armor_bulkhead_rejected_total",
                "Calls the bulkhead refused: every slot taken and no room in its queue."),
        counter("abandoned", &bulkhead_stats::abandoned, "armor_bulkhead_abandoned_total",
                "Queued callers that left the bulkhead's queue without a slot (max_wait, deadline, cancellation)."),
    };
  }
};

/// What happened, for a bulkhead's listener.
enum class bulkhead_event_kind : std::uint8_t {
  rejected,   ///< a call refused: every slot taken and no queue, or the queue full (or a failed try_acquire)
  queued,     ///< a caller joined the queue: every slot was taken
  abandoned,  ///< a queued caller left without a slot: max_wait, its deadline, cancellation, or its permit dropped
};

/// The enumerator's name: "rejected", "queued", "abandoned".
[[nodiscard]] constexpr std::string_view to_string(bulkhead_event_kind k) noexcept {
  switch (k) {
    case bulkhead_event_kind::rejected: return "rejected";
    case bulkhead_event_kind::queued: return "queued";
    case bulkhead_event_kind::abandoned: return "abandoned";
  }
  return "unknown";
}

/// What a bulkhead's listener hears. `in_use` and `queued` are read just
/// after the event (a caller that abandoned is no longer counted). The
/// bulkhead cannot tell why a queued caller gave up (the driver decides
/// that: the caller sees bulkhead_full after max_wait, deadline_exceeded at
/// its deadline).
struct bulkhead_event {
  bulkhead_event_kind kind = bulkhead_event_kind::rejected;
  std::uint32_t in_use = 0;  ///< calls inside
  std::uint32_t queued = 0;  ///< callers waiting for a slot

  /// How fmt prints it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using e = bulkhead_event;
    return std::tuple{armor::field("kind", &e::kind), armor::field("in_use", &e::in_use),
                      armor::field("queued", &e::queued)};
  }
};

// bulkhead::try_acquire answers armor::decision<bulkhead_permit>.
static_assert(decision_like<decision<bulkhead_permit>>);

/// A concurrency limit, and an armor::policy that may queue (see
/// docs/policies_order.md#bulkhead).
///
/// `Listener` (armor/listener.hpp) hears every refusal and every queue
/// event as a bulkhead_event: no_listener (the default: nothing is called,
/// nothing is stored) or a callable `void(const bulkhead_event&) noexcept`,
/// or std::ref to one. It runs on the thread of the caller the event is
/// about, outside the bulkhead's lock; it may read stats() but must not call
/// into the queue. Admissions are not reported.
///
/// Thread-safety: every member may be called concurrently, except moving
/// the bulkhead (move it before sharing it; share it with std::ref). Cost:
/// a call that finds a free slot is one load and one CAS to enter and one
/// fetch_sub to leave, plus one load of the limits (on a line of their
/// own); a refusal reads the same and writes only its counter; only
/// callers that queue, and a leaving call that finds someone queued, take
/// a lock. No allocation, no clock read.
///
/// Constructors throw armor::error(invalid_argument), naming the option,
/// for max_concurrent outside [1, 2^31), max_queue of 2^31 or more, a
/// negative max_wait, or a zero max_wait with a queue.
template <class Listener = no_listener>
class bulkhead {
  static_assert(listener_for<Listener, bulkhead_event>,
                "armor::bulkhead: Listener must be no_listener or callable as "
                "listener(const armor::bulkhead_event&) noexcept (or std::ref to such a callable)");

 public:
  using permit_type = bulkhead_permit;
  using options_type = bulkhead_options;  ///< for armor::keyed<armor::bulkhead<>>
  /// What armor::keyed stores per key: the same bulkhead, without a
  /// listener (armor::keyed refuses a bulkhead that has one).
  using keyed_instance = bulkhead<no_listener>;
  using listener_type = Listener;

  /// `listener` hears every refusal and every queue event (see bulkhead_event).
  explicit bulkhead(const bulkhead_options& options = {}, Listener listener = Listener{})
      : state_(limits_of(options)), retry_after_(options.retry_after_hint.count()), listener_(std::move(listener)) {
    hook();
  }

  /// For armor::keyed: a bulkhead reads no clock, so it ignores the one given.
  template <clock C>
  bulkhead(const bulkhead_options& options, const C&) : bulkhead(options) {}

  /// Moves the counts (and the listener). Not thread-safe: move a bulkhead
  /// before sharing it (nobody may be queued).
  bulkhead(bulkhead&& other) noexcept
      : state_(other.state_),
        retry_after_(other.retry_after_),
        listener_(std::move(other.listener_)),
        counts_(other.counts_) {
    hook();
  }
  bulkhead(const bulkhead&) = delete;
  bulkhead& operator=(const bulkhead&) = delete;
  bulkhead& operator=(bulkhead&&) = delete;
  ~bulkhead() = default;

  /// Takes a slot if one is free (and nobody is queued): granted, the
  /// permit holding the slot; or refused with bulkhead_full, a refusal the
  /// listener hears. Never waits. A refusal's retry_after() is the
  /// options' retry_after_hint, or nanoseconds::max() without one: a
  /// bulkhead cannot know when a holder will leave.
  [[nodiscard]] decision<bulkhead_permit> try_acquire() noexcept {
    if (state_.try_enter(state_.admit_config().max_inside)) return decision<bulkhead_permit>::granted(bulkhead_permit(&state_));
    refused();
    const std::int64_t hint_ns = retry_after_.load();
    return decision<bulkhead_permit>::refused(
        errc::bulkhead_full, hint_ns > 0 ? std::chrono::nanoseconds{hint_ns} : std::chrono::nanoseconds::max());
  }

  /// Policy protocol: a slot now; or, when every slot is taken, bulkhead_full
  /// (no queue) or an invitation to queue (the driver then calls enqueue()).
  [[nodiscard]] ARMOR_ALWAYS_INLINE admission<bulkhead_permit> admit(context&) noexcept {
    const auto l = state_.admit_config();  // one reading per decision (reconfigure())
    if (ARMOR_LIKELY(state_.try_enter(l.max_inside))) return admission<bulkhead_permit>::admit(bulkhead_permit(&state_));
    if (l.max_queue == 0) {
      refused();
      return admission<bulkhead_permit>::reject(errc::bulkhead_full, hint(), true);
    }
    auto a = admission<bulkhead_permit>::queue(errc::bulkhead_full);
    a.retry_after = hint();  // for a driver that cannot queue
    return a;
  }

  /// Policy protocol (queueing): puts the driver's waiter in line. Answers
  /// admitted (a slot came free), rejected (the queue is full:
  /// bulkhead_full), or queued for at most max_wait (the permit holds the
  /// place; see queue_waiter).
  [[nodiscard]] admission<bulkhead_permit> enqueue(context&, queue_waiter& waiter) noexcept {
    limits l;  // the limits join() decided with
    switch (state_.join(waiter, l)) {
      case detail::bulkhead_state::join_result::entered:
        return admission<bulkhead_permit>::admit(bulkhead_permit(&state_));
      case detail::bulkhead_state::join_result::queued: {
        notify(bulkhead_event_kind::queued);
        auto a = admission<bulkhead_permit>::queued(std::chrono::nanoseconds{l.max_wait_ns},
                                                    bulkhead_permit(&state_, &waiter), errc::bulkhead_full);
        a.retry_after = hint();  // for a wait that ends unserved after max_wait
        return a;
      }
      case detail::bulkhead_state::join_result::full: break;
    }
    refused();
    return admission<bulkhead_permit>::reject(errc::bulkhead_full, hint(), true);
  }

  /// Policy protocol: the call is over; its slot goes back (to the head of
  /// the queue, if someone waits).
  ARMOR_ALWAYS_INLINE void settle(context&, bulkhead_permit&& permit, const verdict&) noexcept { permit.release(); }

  /// Calls inside now.
  [[nodiscard]] std::uint32_t in_use() const noexcept { return detail::bulkhead_state::inside(state_.load()); }
  /// Callers waiting in the queue now.
  [[nodiscard]] std::uint32_t queued() const noexcept { return detail::bulkhead_state::queued(state_.load()); }
  /// Slots free now (0 while anyone waits).
  [[nodiscard]] std::uint32_t available() const noexcept {
    const std::uint64_t w = state_.load();
    const std::uint32_t max = state_.admit_config().max_inside;
    const std::uint32_t inside = detail::bulkhead_state::inside(w);
    if (detail::bulkhead_state::queued(w) != 0 || inside >= max) return 0;
    return max - inside;
  }
  [[nodiscard]] std::uint32_t max_concurrent() const noexcept { return state_.admit_config().max_inside; }
  [[nodiscard]] std::uint32_t max_queue() const noexcept { return state_.admit_config().max_queue; }
  [[nodiscard]] std::chrono::nanoseconds max_wait() const noexcept {
    return std::chrono::nanoseconds{state_.config().max_wait_ns};
  }
  /// The options' retry_after_hint (zero: none).
  [[nodiscard]] std::chrono::nanoseconds retry_after_hint() const noexcept {
    return std::chrono::nanoseconds{retry_after_.load()};
  }

  /// Changes max_concurrent, max_queue, max_wait and retry_after_hint at run
  /// time (docs/reconfiguration.md). `options` is validated as by the
  /// constructor; a bad one throws armor::error(invalid_argument) naming the
  /// option and the old limits stay. The next decision uses the new limits
  /// whole. A raised max_concurrent hands its new slots to queued callers at
  /// once; a lowered one lets the calls inside finish and admits nobody until
  /// fewer than the new maximum are inside. A lowered max_queue turns nobody
  /// already queued away; a changed max_wait applies to callers that queue
  /// from now on. retry_after_hint, which decides nothing, is kept apart from
  /// the limits: a refusal under way may carry the old hint with the new
  /// limits. Thread-safe; takes the queue's lock (decisions without a queue
  /// never wait for it).
  void reconfigure(const bulkhead_options& options) {
    const limits l = limits_of(options);
    retry_after_.store(options.retry_after_hint.count());
    state_.reconfigure(l);
  }

  /// In use, queued and the limits, from one reading of the state; the
  /// refusal counters (always kept: they are written on refusals only).
  [[nodiscard]] bulkhead_stats stats() const noexcept {
    const std::uint64_t w = state_.load();
    const auto l = state_.admit_config();
    return {detail::bulkhead_state::inside(w), detail::bulkhead_state::queued(w), l.max_inside,
            l.max_queue, counts_.load(tally::rejected), counts_.load(tally::abandoned)};
  }

  /// For armor::keyed: true when nobody is inside or waiting, so a fresh
  /// bulkhead would decide exactly the same.
  [[nodiscard]] bool idle(timestamp) const noexcept { return state_.load() == 0; }

  /// The listener.
  [[nodiscard]] const Listener& listener() const noexcept { return listener_; }

 private:
  using limits = detail::bulkhead_state::limits;

  // Points the state's abandon hook at this bulkhead: it counts the waiter
  // that left unserved and tells the listener (a slow path: the caller
  // waited and gave up).
  void hook() noexcept { state_.set_abandon_hook(&on_abandon, this); }

  static void on_abandon(void* self, std::uint64_t word) noexcept {
    auto& b = *static_cast<bulkhead*>(self);
    b.counts_.add(tally::abandoned);
    b.tell(bulkhead_event_kind::abandoned, word);
  }

  // A refusal: counted (off the state word's cache line, see counts_), and
  // told to the listener.
  ARMOR_ALWAYS_INLINE void refused() noexcept {
    counts_.add(tally::rejected);
    notify(bulkhead_event_kind::rejected);
  }

  // Tells the listener (if any) about an event, with the counts read now.
  ARMOR_ALWAYS_INLINE void notify(bulkhead_event_kind kind) noexcept {
    detail::notify(listener_, [&] { return event(kind, state_.load()); });
  }

  void tell(bulkhead_event_kind kind, std::uint64_t word) noexcept {
    detail::notify(listener_, [&] { return event(kind, word); });
  }

  static bulkhead_event event(bulkhead_event_kind kind, std::uint64_t word) noexcept {
    return {kind, detail::bulkhead_state::inside(word), detail::bulkhead_state::queued(word)};
  }

  static const bulkhead_options& checked(const bulkhead_options& o) {
    constexpr std::uint32_t limit = std::uint32_t{1} << 31;
    if (o.max_concurrent < 1 || o.max_concurrent >= limit) {
      detail::invalid_config("armor::bulkhead: max_concurrent must be in [1, 2^31) (got " +
                             std::to_string(o.max_concurrent) + ")");
    }
    if (o.max_queue >= limit) {
      detail::invalid_config("armor::bulkhead: max_queue must be below 2^31 (got " + std::to_string(o.max_queue) + ")");
    }
    if (o.max_wait.count() < 0) {
      detail::invalid_config("armor::bulkhead: max_wait must not be negative (got " +
                             std::to_string(o.max_wait.count()) + " ns)");
    }
    if (o.max_queue > 0 && o.max_wait.count() == 0) {
      detail::invalid_config("armor::bulkhead: max_wait must be positive when max_queue > 0");
    }
    if (o.retry_after_hint.count() < 0) {
      detail::invalid_config("armor::bulkhead: retry_after_hint must not be negative (got " +
                             std::to_string(o.retry_after_hint.count()) + " ns)");
    }
    return o;
  }

  static limits limits_of(const bulkhead_options& options) {
    const bulkhead_options& o = checked(options);
    return {o.max_concurrent, o.max_queue, o.max_wait.count()};
  }

  // A refusal's retry_after: the hint, if there is one.
  [[nodiscard]] std::optional<std::chrono::nanoseconds> hint() const noexcept {
    const std::int64_t ns = retry_after_.load();
    if (ns > 0) return std::chrono::nanoseconds{ns};
    return std::nullopt;
  }

  detail::bulkhead_state state_;
  detail::config_cell<std::int64_t> retry_after_;  // ns; 0: none
  [[no_unique_address]] Listener listener_;
  // The refusal counters sit after the options, in the line after the
  // cache-line-aligned state (that line held only padding before), so the
  // counters neither grow a bulkhead nor share the state word's line.
  using tally = detail::bulkhead_tally;
  detail::counter_set<tally> counts_{};
};

template <class L>
  requires(!clock<L>)
bulkhead(const bulkhead_options&, L) -> bulkhead<L>;

}  // namespace armor
