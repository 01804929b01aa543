// armor/drain.hpp: armor::drain, graceful shutdown. A layer that counts the
// calls inside it; once start()ed it admits no new call (errc::draining,
// 503) and wait_for() blocks until the calls in flight have ended or a
// deadline passes. Placed outermost, it covers every policy inside it
// (bulkhead, adaptive limit, load shedder). Defines its permit, event and stats.
//
//     using namespace std::chrono_literals;
//     armor::drain<> drain;
//     auto p = armor::pipeline{std::ref(drain), armor::deadline{2s}};
//     auto r = p.try_execute([&] { return handle(request); });  // errc::draining once draining
//     // On SIGTERM (Kubernetes' preStop grace, 15 s here):
//     drain.start();
//     const bool drained = drain.wait_for(15s);  // false: calls still in flight at the deadline
//
// Cost: a load and a fetch_add to admit, a fetch_sub to settle, on one
// word; the mutex is taken only by the drainer and by the last call to end
// while draining. The Asio twin is armor::async_drain in armor/asio.hpp. How it
// works and how it composes: docs/shedding.md#drain.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/detail/config.hpp>
#include <armor/error.hpp>
#include <armor/listener.hpp>
#include <armor/policy.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace armor {

/// What happened, for a drain's listener.
enum class drain_event_kind : std::uint8_t {
  started,  ///< start(): new calls are refused from now on
  drained,  ///< the last call in flight ended while draining (or none was in flight at start())
  resumed,  ///< resume(): new calls are admitted again
  refused,  ///< a call refused with errc::draining
};

/// The enumerator's name: "started", "drained", "resumed", "refused".
[[nodiscard]] constexpr std::string_view to_string(drain_event_kind k) noexcept {
  switch (k) {
    case drain_event_kind::started: return "started";
    case drain_event_kind::drained: return "drained";
    case drain_event_kind::resumed: return "resumed";
    case drain_event_kind::refused: return "refused";
  }
  return "unknown";
}

/// What a drain's listener hears, with the calls in flight just after it.
struct drain_event {
  drain_event_kind kind = drain_event_kind::started;
  std::uint64_t in_flight = 0;

  /// How fmt prints it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using e = drain_event;
    return std::tuple{armor::field("kind", &e::kind), armor::field("in_flight", &e::in_flight)};
  }
};

/// A snapshot of a drain: from one load of its word, and its refusals.
struct drain_stats {
  std::uint64_t in_flight = 0;  ///< calls inside now
  bool draining = false;        ///< whether new calls are refused
  std::uint64_t refused = 0;    ///< calls refused while draining

  /// How fmt prints and Prometheus exports it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using s = drain_stats;
    return std::tuple{
        armor::gauge("in_flight", &s::in_flight, "armor_drain_in_flight", "Calls inside the drain layer now."),
        armor::gauge("draining", &s::draining, "armor_drain_draining",
                     "1 while the drain layer refuses new calls (shutting down), else 0."),
        armor::counter("refused", &s::refused, "armor_drain_refused_total",
                       "Calls the drain layer refused while draining."),
    };
  }
};

namespace detail {

/// What a drain shares with its permits and its waiters; allocated once.
/// The word: bit 63 says draining, the bits below count the calls inside.
class drain_state {
 public:
  static constexpr std::uint64_t flag = std::uint64_t{1} << 63;
  static constexpr std::uint64_t count_of(std::uint64_t w) noexcept { return w & ~flag; }

  using wake_hook = void (*)(void*) noexcept;

  /// Inside (one load and one fetch_add), or refused while draining (one
  /// load: a refusal writes nothing).
  [[nodiscard]] bool enter() noexcept {
    // Relaxed: both the count and the flag live in this word, so its
    // modification order alone decides who is counted before start().
    if (ARMOR_UNLIKELY((word_.load(std::memory_order_relaxed) & flag) != 0)) return false;
    const std::uint64_t w = word_.fetch_add(1, std::memory_order_relaxed);
    if (ARMOR_LIKELY((w & flag) == 0)) return true;
    // start() came between the load and the add: out again, and like any
    // call that leaves, wake the drainers if this was the last one counted
    // (a drainer may have seen this call's count and be waiting on it).
    leave();
    return false;
  }

  /// One fetch_sub; the last call to leave while draining wakes the drainers.
  void leave() noexcept {
    // Release: a drainer that sees the count reach zero (acquire) sees
    // everything the calls did.
    const std::uint64_t w = word_.fetch_sub(1, std::memory_order_release);
    if (ARMOR_UNLIKELY((w & flag) != 0) && count_of(w) == 1) wake();
  }

  /// Sets the flag; answers the word before.
  std::uint64_t start() noexcept { return word_.fetch_or(flag, std::memory_order_acq_rel); }
  /// Clears the flag; answers whether it was set.
  bool resume() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    told_ = false;
    return (word_.fetch_and(~flag, std::memory_order_acq_rel) & flag) != 0;
  }

  [[nodiscard]] std::uint64_t load() const noexcept { return word_.load(std::memory_order_acquire); }

  /// Blocks until nothing is inside or `until` (a std::chrono::steady_clock
  /// or system_clock time) passes; answers whether nothing is inside.
  template <class TimePoint>
  [[nodiscard]] bool wait_until(TimePoint until) {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_until(lock, until, [&] { return count_of(load()) == 0; });
  }

  /// Registers a waiter woken (under the mutex, once) when the count
  /// reaches zero while draining; answers false, registering nothing, when
  /// nothing is inside already.
  [[nodiscard]] bool add_waiter(queue_waiter& w) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (count_of(load()) == 0) return false;
    w.prev = nullptr;
    w.next = waiters_;
    if (waiters_ != nullptr) waiters_->prev = &w;
    waiters_ = &w;
    return true;
  }

  /// Takes a waiter out if it is still registered.
  void remove_waiter(queue_waiter& w) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (w.granted) return;  // woken: already unlinked
    unlink(w);
  }

  /// Wakes every drainer; tells the hook once per drain (a call refused
  /// while racing start() may call this a second time).
  void wake() noexcept {
    // std::mutex::lock throws only for errors a correct program does not have.
    std::lock_guard<std::mutex> lock(mutex_);
    cv_.notify_all();
    while (queue_waiter* w = waiters_) {
      unlink(*w);
      w->granted = true;
      w->wake();
    }
    if (!told_ && hook_ != nullptr) hook_(hook_self_);
    told_ = true;
  }

  void set_hook(wake_hook hook, void* self) noexcept {
    hook_ = hook;
    hook_self_ = self;
  }

  std::atomic<std::uint64_t> refused{0};

 private:

  void unlink(queue_waiter& w) noexcept {
    if (w.prev != nullptr) w.prev->next = w.next;
    else if (waiters_ == &w) waiters_ = w.next;
    if (w.next != nullptr) w.next->prev = w.prev;
    w.prev = w.next = nullptr;
  }

  alignas(cache_line) std::atomic<std::uint64_t> word_{0};
  alignas(cache_line) std::mutex mutex_;
  std::condition_variable cv_;
  queue_waiter* waiters_ = nullptr;  // under mutex_
  bool told_ = false;  // under mutex_: the hook heard this drain's end
  wake_hook hook_ = nullptr;
  void* hook_self_ = nullptr;
};

}  // namespace detail

/// A drain's receipt for one call inside it. Move-only; dropping it (or
/// settling it) ends the call's count. Must not outlive its drain.
class drain_permit {
 public:
  drain_permit() noexcept = default;
  drain_permit(drain_permit&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  drain_permit& operator=(drain_permit&& other) noexcept {
    if (this != &other) {
      release();
      state_ = std::exchange(other.state_, nullptr);
    }
    return *this;
  }
  drain_permit(const drain_permit&) = delete;
  drain_permit& operator=(const drain_permit&) = delete;
  ~drain_permit() { release(); }

  /// True while it counts a call.
  [[nodiscard]] explicit operator bool() const noexcept { return state_ != nullptr; }

  /// Ends the call's count now; the permit is empty afterwards.
  void release() noexcept {
    if (detail::drain_state* s = std::exchange(state_, nullptr)) s->leave();
  }

 private:
  template <class, class>
  friend class drain;
  explicit drain_permit(detail::drain_state* s) noexcept : state_(s) {}

  detail::drain_state* state_ = nullptr;
};

// drain::try_acquire answers armor::decision<drain_permit>.
static_assert(decision_like<decision<drain_permit>>);

/// Graceful shutdown (see the top of this header and
/// docs/shedding.md#drain). An armor::policy; place it outermost.
///
/// `Clock` is what wait_for() waits on: steady_clock (the default) or
/// system_clock block the thread on a condition variable; any other clock
/// (manual_clock in tests) is moved to the deadline with its sleep_until
/// when calls are still in flight, so a test of a drain that times out is
/// instant. The clock is not read on the call path and not declared as
/// `clock_type`: any pipeline may hold a drain. `Listener`
/// (armor::listener_for drain_event) hears start, resume, the drained
/// moment and each refusal; `drained` runs under the drain's mutex, on the
/// thread of the last call to end, so it must not call into the drain.
///
/// Thread-safety: every member may be called concurrently, except the move
/// constructor (move before sharing; share with std::ref; permits stay
/// valid). Construction allocates once; nothing else allocates.
template <class Clock = steady_clock, class Listener = no_listener>
class drain {
  static_assert(armor::clock<Clock>, "armor::drain: Clock must have now() returning its time_point");
  static_assert(listener_for<Listener, drain_event>,
                "armor::drain: Listener must be no_listener or callable as "
                "listener(const armor::drain_event&) noexcept (or std::ref to such a callable)");

  static constexpr bool real_clock = std::is_same_v<Clock, steady_clock> || std::is_same_v<Clock, system_clock>;

 public:
  using permit_type = drain_permit;
  using listener_type = Listener;

  explicit drain(Clock clock = Clock{}, Listener listener = Listener{})
      : clock_(std::move(clock)), listener_(std::move(listener)), state_(std::make_unique<detail::drain_state>()) {
    hook();
  }
  drain(drain&& other) noexcept(std::is_nothrow_move_constructible_v<Clock> &&
                                std::is_nothrow_move_constructible_v<Listener>)
      : clock_(std::move(other.clock_)), listener_(std::move(other.listener_)), state_(std::move(other.state_)) {
    hook();
  }
  drain(const drain&) = delete;
  drain& operator=(const drain&) = delete;
  drain& operator=(drain&&) = delete;
  ~drain() = default;

  // ---------------------------------------------------------------- policy protocol

  /// Counts the call in, or refuses it with errc::draining (not retryable:
  /// this instance is going away; no retry_after).
  [[nodiscard]] ARMOR_ALWAYS_INLINE admission<drain_permit> admit(context&) noexcept {
    if (ARMOR_LIKELY(state_->enter())) return admission<drain_permit>::admit(drain_permit(state_.get()));
    refused();
    return admission<drain_permit>::reject(errc::draining, std::nullopt, false);
  }

  /// Policy protocol: the call is over; its count goes.
  ARMOR_ALWAYS_INLINE void settle(context&, drain_permit&& permit, const verdict&) noexcept { permit.release(); }

  // ---------------------------------------------------------------- standalone use

  /// Counts a call in (the permit ends it when released or dropped), or
  /// refuses with errc::draining and retry_after() nanoseconds::max().
  [[nodiscard]] decision<drain_permit> try_acquire() noexcept {
    if (state_->enter()) return decision<drain_permit>::granted(drain_permit(state_.get()));
    refused();
    return decision<drain_permit>::refused(errc::draining, std::chrono::nanoseconds::max());
  }

  // ---------------------------------------------------------------- draining

  /// Stops admitting: every later call is refused with errc::draining.
  /// Idempotent. Tells the listener `started` (the first time), and
  /// `drained` at once when nothing is in flight.
  void start() noexcept {
    const std::uint64_t before = state_->start();
    if ((before & detail::drain_state::flag) != 0) return;
    const std::uint64_t inside = detail::drain_state::count_of(before);
    detail::notify(listener_, [&] { return drain_event{drain_event_kind::started, inside}; });
    if (inside == 0) state_->wake();  // tells the listener `drained`
  }

  /// Admits again (a shutdown called off). Waiters keep waiting for the
  /// calls in flight.
  void resume() noexcept {
    if (state_->resume()) {
      detail::notify(listener_, [&] { return drain_event{drain_event_kind::resumed, in_flight()}; });
    }
  }

  /// Waits until no call is in flight, at most `timeout`; answers whether
  /// none is. Does not start() the drain: call that first (otherwise new
  /// calls keep coming and the wait may never end early). Blocks the thread
  /// (see the class comment for manual_clock).
  [[nodiscard]] bool wait_for(std::chrono::nanoseconds timeout) {
    if (detail::drain_state::count_of(state_->load()) == 0) return true;
    if (timeout <= std::chrono::nanoseconds::zero()) return false;
    if constexpr (real_clock) {
      return state_->wait_until(std::chrono::steady_clock::now() +
                                std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
    } else {
      const timestamp now = to_timestamp(clock_.now());
      const timestamp until{std::chrono::nanoseconds{
          detail::saturating_add(now.time_since_epoch().count(), timeout.count())}};
      clock_.sleep_until(from_timestamp<Clock>(until));
      return detail::drain_state::count_of(state_->load()) == 0;
    }
  }

  /// wait_for() until a time of the drain's clock.
  [[nodiscard]] bool wait_until(typename Clock::time_point until) {
    return wait_for(std::chrono::duration_cast<std::chrono::nanoseconds>(until - clock_.now()));
  }

  // ---------------------------------------------------------------- observation

  /// Calls in flight now.
  [[nodiscard]] std::uint64_t in_flight() const noexcept { return detail::drain_state::count_of(state_->load()); }
  /// Whether new calls are refused now (for a readiness probe).
  [[nodiscard]] bool draining() const noexcept { return (state_->load() & detail::drain_state::flag) != 0; }
  /// Whether draining and nothing is in flight.
  [[nodiscard]] bool drained() const noexcept { return state_->load() == detail::drain_state::flag; }

  /// In flight and draining from one load; the refusals.
  [[nodiscard]] drain_stats stats() const noexcept {
    const std::uint64_t w = state_->load();
    return {detail::drain_state::count_of(w), (w & detail::drain_state::flag) != 0,
            state_->refused.load(std::memory_order_relaxed)};
  }

  /// The clock wait_for() waits on.
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }
  /// The listener.
  [[nodiscard]] const Listener& listener() const noexcept { return listener_; }

  /// For the Asio driver (armor::async_drain): registers `w` to be woken
  /// when the last call ends while draining; false when none is in flight.
  [[nodiscard]] bool add_waiter(queue_waiter& w) { return state_->add_waiter(w); }
  /// Takes `w` out again (after its wake-up or its deadline).
  void remove_waiter(queue_waiter& w) { state_->remove_waiter(w); }

 private:
  void hook() noexcept {
    if constexpr (detail::listens<Listener>) state_->set_hook(&on_drained, this);
  }

  static void on_drained(void* self) noexcept {
    auto& d = *static_cast<drain*>(self);
    detail::notify(d.listener_, [] { return drain_event{drain_event_kind::drained, 0}; });
  }

  void refused() noexcept {
    // Counted always: a refusal happens only while shutting down.
    state_->refused.fetch_add(1, std::memory_order_relaxed);
    detail::notify(listener_, [&] { return drain_event{drain_event_kind::refused, in_flight()}; });
  }

  [[no_unique_address]] Clock clock_;
  [[no_unique_address]] Listener listener_;
  std::unique_ptr<detail::drain_state> state_;
};

drain() -> drain<>;
template <class C>
  requires clock<C>
drain(C) -> drain<C>;
template <class C, class L>
drain(C, L) -> drain<C, L>;

}  // namespace armor
