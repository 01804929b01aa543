// armor/coalesce.hpp: request coalescing ("singleflight"). Concurrent calls
// with the same key share one execution of the operation, and every caller
// gets its result: the value, the exception, or the armor failure. A caller
// that comes after the execution ended starts a new one. Defines
// armor::coalescer<Key, T, Clock>, its options and stats.
//
//     // One fetch per user id in flight, however many threads ask at once.
//     armor::coalescer<std::string, std::string> profiles;
//     std::string profile(const std::string& id) {
//         return profiles.execute(id, [&] { return http_get("/users/" + id); });
//     }
//
// Sync: the first caller runs the operation on its own thread; the others
// block until it ends or their own timeout passes (errc::deadline_exceeded:
// they leave, the execution goes on for the rest). Asio (async_execute, in
// armor/asio.hpp): the operation runs as its own coroutine, any waiter may
// be cancelled or time out alone, and the operation is cancelled only when
// every waiter has left. Rules, costs and use with a pipeline or a cache:
// docs/coalescing.md.
#pragma once

#include <armor/clock.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/time.hpp>
#include <armor/error.hpp>
#include <armor/result.hpp>
#include <armor/stats.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace armor {

/// The options of armor::coalescer. An aggregate: `{.shards = 64}`.
struct coalescer_options {
  /// How many independently locked maps the keys are spread over (by hash).
  /// A power of two from 1 to 4096. More shards, less contention between
  /// different keys that start or end flights at the same moment.
  std::size_t shards = 16;
};

/// What a caller of armor::coalescer may ask for itself.
struct coalescer_call_options {
  /// How long this caller waits for a flight run by someone else (or, with
  /// Asio, for any flight). Past it the caller leaves with
  /// errc::deadline_exceeded; the flight goes on for the others.
  /// nanoseconds::max(): until the flight ends. A sync caller that runs the
  /// operation itself cannot leave it: give the operation its own timeout.
  std::chrono::nanoseconds timeout = std::chrono::nanoseconds::max();
};

/// A snapshot of a coalescer's counters (relaxed loads, each exact, not
/// taken together). calls = executions + joined.
struct coalescer_stats {
  std::uint64_t executions = 0;  ///< flights started: operations run
  std::uint64_t joined = 0;      ///< calls that shared a flight already running
  std::uint64_t abandoned = 0;   ///< callers that left before the result (timeout, cancellation)
  std::uint64_t cancelled = 0;   ///< flights cancelled because every waiter had left (Asio)
  std::uint64_t in_flight = 0;   ///< flights running now

  /// How fmt prints and Prometheus exports it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    return std::tuple{
        counter("executions", &coalescer_stats::executions, "armor_coalescer_executions_total",
                "Operations the coalescer ran: one per flight."),
        counter("joined", &coalescer_stats::joined, "armor_coalescer_joined_total",
                "Calls that shared a flight already running instead of running the operation."),
        counter("abandoned", &coalescer_stats::abandoned, "armor_coalescer_abandoned_total",
                "Callers that left a flight before its result (timeout or cancellation)."),
        counter("cancelled", &coalescer_stats::cancelled, "armor_coalescer_cancelled_total",
                "Flights cancelled because every caller waiting for them had left."),
        gauge("in_flight", &coalescer_stats::in_flight, "armor_coalescer_in_flight",
              "Flights running now."),
    };
  }
};

namespace detail {

template <class Clock>
inline constexpr bool coalesce_real_clock_v =
    std::is_same_v<Clock, steady_clock> || std::is_same_v<Clock, system_clock>;

/// An Asio waiter's place in a flight: woken once, when the result is there.
/// The node lives in the waiter's coroutine frame; it is linked and
/// unlinked under the shard's mutex, and wake() is called under it too.
struct coalesce_waiter {
  using wake_fn = void (*)(coalesce_waiter&) noexcept;
  explicit coalesce_waiter(wake_fn fn) noexcept : wake(fn) {}
  coalesce_waiter(const coalesce_waiter&) = delete;
  coalesce_waiter& operator=(const coalesce_waiter&) = delete;
  ~coalesce_waiter() = default;

  wake_fn wake;
  coalesce_waiter* prev = nullptr;
  coalesce_waiter* next = nullptr;
};

/// One execution shared by its callers. Every member but `outcome` is
/// guarded by the mutex of the shard that holds the flight; `outcome` is
/// written once, before `done` is set under that mutex, and read only
/// after `done` was seen under it.
template <class T>
struct coalesce_flight {
  using cancel_fn = void (*)(const std::shared_ptr<coalesce_flight>&) noexcept;

  std::condition_variable cv;        // sync waiters, with the shard's mutex
  coalesce_waiter* head = nullptr;   // Asio waiters
  std::size_t waiters = 0;           // callers still waiting (a sync leader counts)
  bool done = false;                 // outcome is set
  bool detached = false;             // taken out of the map before the end (every waiter left)
  const void* key = nullptr;         // the map node's key, while in the map
  cancel_fn cancel = nullptr;        // set by the Asio driver: cancels the operation
  std::optional<result<T>> outcome;

  void link(coalesce_waiter& w) noexcept {
    w.prev = nullptr;
    w.next = head;
    if (head != nullptr) head->prev = &w;
    head = &w;
  }
  void unlink(coalesce_waiter& w) noexcept {
    if (w.prev != nullptr) w.prev->next = w.next;
    else head = w.next;
    if (w.next != nullptr) w.next->prev = w.prev;
    w.prev = w.next = nullptr;
  }
};

/// The result the operation's return value or exception amounts to: a
/// value (or a result<T> as given), an armor::error as its code with the
/// exception kept as the cause, any other exception as operation_failed.
template <class T, class F>
result<T> coalesce_capture(F& op) noexcept {
  try {
    using R = std::remove_cvref_t<std::invoke_result_t<F&>>;
    if constexpr (std::is_same_v<R, result<T>>) {
      return std::invoke(op);
    } else if constexpr (std::is_void_v<T>) {
      static_assert(std::is_void_v<R>, "armor::coalescer<Key, void>: the operation must return void");
      std::invoke(op);
      return result<T>(std::in_place);
    } else {
      static_assert(std::is_convertible_v<R, T>,
                    "armor::coalescer<Key, T>: the operation must return T or armor::result<T>");
      return result<T>(std::in_place, std::invoke(op));
    }
  } catch (const error& e) {
    return failure{e.code(), e.retry_after(), std::current_exception()};
  } catch (...) {
    return failure{errc::operation_failed, std::nullopt, std::current_exception()};
  }
}

/// The Asio part: declared here, defined in armor/asio.hpp, so this header
/// never includes Asio.
template <class Coalescer, class F>
struct async_coalesce;

}  // namespace detail

/// Request coalescing: concurrent calls with the same key share one
/// execution of the operation; every caller receives its result.
///
/// - `execute(key, op)` returns the value or throws (the operation's own
///   exception, or armor::error); `try_execute(key, op)` returns
///   armor::result<T> and never throws for armor's reasons. The operation
///   returns T, or armor::result<T> (a pipeline's try_execute), which is
///   shared as it is.
/// - Sync: the caller that finds no flight for its key runs `op` on its own
///   thread; callers that find one block until it ends, or until their own
///   `timeout` passes. The key leaves the map only when the execution
///   ends, so no second execution starts while one runs (the bug of Go
///   ports that let a leaving waiter remove the key).
/// - Asio: `async_execute` / `async_try_execute` (armor/asio.hpp).
/// - `try_begin(key)`: start a flight without waiting for it (a cache's
///   background refresh), or learn that one is running.
///
/// Every caller gets its own copy of the value: make T cheap to copy
/// (`std::shared_ptr<const Body>`) when it is large. An exception is
/// shared: every caller rethrows the same exception object.
///
/// Thread-safe: every member may be called concurrently. The coalescer
/// must outlive its flights (an Asio flight ends after the last caller
/// left, once its operation has seen the cancellation).
///
/// Cost: a call takes its shard's mutex twice (find or insert; publish or
/// leave). This is the miss path of a cache, never its hit path. A flight
/// allocates its map node and its shared state (two allocations, plus the
/// key's own if copying it allocates); a sync caller that joins allocates
/// nothing; with a single caller the value is not copied.
template <class Key, class T, class Clock = steady_clock, class Hash = std::hash<Key>,
          class KeyEqual = std::equal_to<Key>>
class coalescer {
  using flight = detail::coalesce_flight<T>;
  using flight_ptr = std::shared_ptr<flight>;

  // One lock and one map per shard, each on its own cache lines. The
  // counters are written under the lock and read without it (relaxed:
  // they are statistics, ordered with nothing).
  struct alignas(detail::cache_line) shard {
    mutable std::mutex mutex;
    std::unordered_map<Key, flight_ptr, Hash, KeyEqual> flights;
    std::atomic<std::uint64_t> executions{0};
    std::atomic<std::uint64_t> joined{0};
    std::atomic<std::uint64_t> abandoned{0};
    std::atomic<std::uint64_t> cancelled{0};
    std::atomic<std::uint64_t> in_flight{0};

    void bump(std::atomic<std::uint64_t>& c, std::int64_t by = 1) noexcept {
      c.store(c.load(std::memory_order_relaxed) + static_cast<std::uint64_t>(by), std::memory_order_relaxed);
    }
  };

 public:
  using key_type = Key;
  using value_type = T;
  using clock_type = Clock;

  /// Throws armor::error(invalid_argument) when `shards` is not a power of
  /// two from 1 to 4096.
  explicit coalescer(coalescer_options options = {}, Clock clock = Clock{})
      : clock_(std::move(clock)), mask_(checked_shards(options.shards) - 1),
        shards_(std::make_unique<shard[]>(options.shards)) {}

  coalescer(const coalescer&) = delete;
  coalescer& operator=(const coalescer&) = delete;

  /// Runs `op`, or shares the flight running for `key`; its result.
  template <class F>
  [[nodiscard]] result<T> try_execute(const Key& key, F&& op, coalescer_call_options options = {}) {
    shard& s = shard_for(key);
    std::unique_lock lock(s.mutex);
    auto [f, leader] = join_or_start(s, key, [] { return std::make_shared<flight>(); });
    if (!leader) return wait(s, lock, f, deadline_after(options.timeout));
    lock.unlock();
    result<T> r = detail::coalesce_capture<T>(op);
    publish(s, f, r, true);
    return r;
  }

  /// As try_execute(), but returns the value itself: throws the operation's
  /// exception, or armor::error (deadline_exceeded for a caller that gave
  /// up, or the code of the result<T> the operation returned).
  template <class F>
  T execute(const Key& key, F&& op, coalescer_call_options options = {}) {
    if constexpr (std::is_void_v<T>) {
      try_execute(key, std::forward<F>(op), options).value();
    } else {
      return try_execute(key, std::forward<F>(op), options).value();
    }
  }

  /// Asio: `co_await c.async_try_execute(key, op)`, where `op()` returns
  /// `asio::awaitable<T>` (or `asio::awaitable<armor::result<T>>`). The
  /// operation runs as its own coroutine on a strand of the first caller's
  /// executor; each caller awaits it and may be cancelled (its coroutine's
  /// cancellation slot: errc::cancelled) or time out (errc::deadline_exceeded)
  /// alone; the operation is cancelled when the last caller leaves. Needs
  /// `#include <armor/asio.hpp>`.
  template <class F>
  auto async_try_execute(Key key, F op, coalescer_call_options options = {}) {
    return detail::async_coalesce<coalescer, F>::try_execute(*this, std::move(key), std::move(op), options);
  }

  /// Asio: `co_await c.async_execute(key, op)`, the value or the exception.
  template <class F>
  auto async_execute(Key key, F op, coalescer_call_options options = {}) {
    return detail::async_coalesce<coalescer, F>::execute(*this, std::move(key), std::move(op), options);
  }

  /// A flight started with try_begin(): the right, and the duty, to run the
  /// operation for its key. Callers that come meanwhile join it. Move-only;
  /// dropped without run(), it ends the flight with errc::cancelled.
  class flight_handle {
   public:
    flight_handle(flight_handle&& o) noexcept
        : owner_(std::exchange(o.owner_, nullptr)), s_(o.s_), f_(std::move(o.f_)) {}
    flight_handle& operator=(flight_handle&&) = delete;
    flight_handle(const flight_handle&) = delete;
    flight_handle& operator=(const flight_handle&) = delete;
    ~flight_handle() {
      if (owner_ != nullptr) {
        result<T> r = failure{errc::cancelled, std::nullopt, nullptr};
        publish(*s_, f_, r, true);
      }
    }

    /// Runs `op` on this thread and hands its result to every caller
    /// waiting; returns it too. Call once.
    template <class F>
    result<T> run(F&& op) {
      result<T> r = detail::coalesce_capture<T>(op);
      owner_ = nullptr;
      publish(*s_, f_, r, true);
      return r;
    }

   private:
    friend class coalescer;
    flight_handle(coalescer* owner, shard* s, flight_ptr f) noexcept
        : owner_(owner), s_(s), f_(std::move(f)) {}
    coalescer* owner_;
    shard* s_ = nullptr;
    flight_ptr f_;
  };

  /// Starts a flight for `key` unless one is running: a handle to run it
  /// (on this thread, or moved to a thread or executor of yours), or
  /// nothing when a flight is already running. Nobody waits here.
  [[nodiscard]] std::optional<flight_handle> try_begin(const Key& key) {
    shard& s = shard_for(key);
    std::unique_lock lock(s.mutex);
    if (s.flights.find(key) != s.flights.end()) return std::nullopt;
    auto [f, leader] = join_or_start(s, key, [] { return std::make_shared<flight>(); });
    (void)leader;
    return flight_handle(this, &s, std::move(f));
  }

  /// True when a flight for `key` is running (a snapshot).
  [[nodiscard]] bool in_flight(const Key& key) const {
    const shard& s = shard_for(key);
    const std::lock_guard lock(s.mutex);
    return s.flights.find(key) != s.flights.end();
  }

  /// Counters summed over the shards (relaxed loads, no lock).
  [[nodiscard]] coalescer_stats stats() const noexcept {
    coalescer_stats st{};
    for (std::size_t i = 0; i <= mask_; ++i) {
      const shard& s = shards_[i];
      st.executions += s.executions.load(std::memory_order_relaxed);
      st.joined += s.joined.load(std::memory_order_relaxed);
      st.abandoned += s.abandoned.load(std::memory_order_relaxed);
      st.cancelled += s.cancelled.load(std::memory_order_relaxed);
      st.in_flight += s.in_flight.load(std::memory_order_relaxed);
    }
    return st;
  }

  /// The clock the callers' timeouts are measured with.
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  template <class, class>
  friend struct detail::async_coalesce;

  static std::size_t checked_shards(std::size_t n) {
    if (n == 0 || n > 4096 || (n & (n - 1)) != 0)
      detail::invalid_config("armor::coalescer: shards must be a power of two from 1 to 4096, got " +
                             std::to_string(n));
    return n;
  }

  [[nodiscard]] std::size_t index_of(const Key& key) const {
    // std::hash of an integer is often the integer: mix the bits so that
    // keys 0, 16, 32, ... do not all land in one shard.
    auto h = static_cast<std::uint64_t>(Hash{}(key));
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return static_cast<std::size_t>(h) & mask_;
  }
  [[nodiscard]] shard& shard_for(const Key& key) { return shards_[index_of(key)]; }
  [[nodiscard]] const shard& shard_for(const Key& key) const { return shards_[index_of(key)]; }

  [[nodiscard]] timestamp deadline_after(std::chrono::nanoseconds timeout) const {
    if (timeout == std::chrono::nanoseconds::max()) return timestamp::max();
    const auto now = to_timestamp(clock_.now()).time_since_epoch().count();
    return timestamp{std::chrono::nanoseconds{detail::saturating_add(now, std::max<std::int64_t>(timeout.count(), 0))}};
  }

  // Under the shard's lock: the flight running for `key` (joined) or a new
  // one made by `make` (true: the caller leads it). Either way the caller
  // is counted as one of its waiters.
  template <class Make>
  std::pair<flight_ptr, bool> join_or_start(shard& s, const Key& key, Make make) {
    auto it = s.flights.find(key);
    if (it != s.flights.end()) {
      ++it->second->waiters;
      s.bump(s.joined);
      return {it->second, false};
    }
    flight_ptr f = make();
    auto [node, inserted] = s.flights.emplace(key, f);
    (void)inserted;
    f->key = &node->first;  // node keys stay put across rehashing
    f->waiters = 1;
    s.bump(s.executions);
    s.bump(s.in_flight);
    return {std::move(f), true};
  }

  // Under the shard's lock: takes a flight out of the map, unless it left
  // already (it was abandoned, and the key may hold a newer flight now).
  static void detach(shard& s, flight& f) {
    if (f.detached) return;
    f.detached = true;
    auto it = s.flights.find(*static_cast<const Key*>(f.key));
    if (it != s.flights.end() && it->second.get() == &f) s.flights.erase(it);
    f.key = nullptr;
  }

  // The flight's result, handed to every caller still waiting. The leader
  // keeps `r`; the flight stores a copy only if someone else is waiting.
  // `leader_counted`: the publisher is one of the waiters (a sync leader, a
  // flight_handle), not an Asio operation. Takes the lock.
  static void publish(shard& s, const flight_ptr& f, const result<T>& r, bool leader_counted) noexcept {
    std::unique_lock lock(s.mutex);
    s.bump(s.in_flight, -1);
    if (f->waiters <= (leader_counted ? 1U : 0U)) {
      // Alone: nobody to copy the result for. Anyone who joins from now on
      // starts a new flight.
      f->done = true;
      f->waiters = 0;
      detach(s, *f);
      return;
    }
    lock.unlock();
    try {
      f->outcome.emplace(r);  // read by waiters only after they see `done` under the lock
    } catch (...) {
      // Copying the value threw: the waiters get that exception instead.
      f->outcome.emplace(failure{errc::operation_failed, std::nullopt, std::current_exception()});
    }
    lock.lock();
    finish(s, *f);
  }

  // Under the lock: marks the flight done, takes it out of the map, wakes
  // every waiter.
  static void finish(shard& s, flight& f) noexcept {
    f.done = true;
    detach(s, f);
    for (detail::coalesce_waiter* w = std::exchange(f.head, nullptr); w != nullptr;) {
      detail::coalesce_waiter* next = w->next;
      w->prev = w->next = nullptr;
      w->wake(*w);
      w = next;
    }
    f.cv.notify_all();
  }

  // Under the lock: a waiter leaves before the result. The last one to
  // leave takes the flight out of the map (a new caller starts afresh) and
  // asks the Asio driver to cancel the operation; returns whether it did.
  static bool leave(shard& s, const flight_ptr& f) noexcept {
    s.bump(s.abandoned);
    if (--f->waiters > 0 || f->done) return false;
    detach(s, *f);
    if (f->cancel == nullptr) return false;
    s.bump(s.cancelled);
    return true;
  }

  // A sync caller that joined: waits for the result or its deadline. Over
  // a clock it cannot block on (manual_clock) it moves the clock to its
  // deadline instead, as the pipeline's driver does.
  result<T> wait(shard& s, std::unique_lock<std::mutex>& lock, const flight_ptr& f, timestamp deadline) {
    if (deadline == timestamp::max()) {
      f->cv.wait(lock, [&] { return f->done; });
    } else if constexpr (detail::coalesce_real_clock_v<Clock>) {
      f->cv.wait_until(lock, from_timestamp<Clock>(deadline), [&] { return f->done; });
    } else {
      if (!f->done) {
        lock.unlock();
        clock_.sleep_until(from_timestamp<Clock>(deadline));
        lock.lock();
      }
    }
    if (!f->done) {
      const bool cancel = leave(s, f);
      lock.unlock();
      if (cancel) f->cancel(f);
      return failure{errc::deadline_exceeded, std::nullopt, nullptr};
    }
    lock.unlock();
    return *f->outcome;
  }

  [[no_unique_address]] Clock clock_;
  std::size_t mask_;
  std::unique_ptr<shard[]> shards_;
};

}  // namespace armor
