// armor/cache.hpp: a keyed read-through cache with RFC 5861 freshness
// (max_age, stale_while_revalidate, stale_if_error), bounded in entries and
// bytes, whose misses and refreshes go through armor::coalescer. Defines
// armor::cache<Key, T, Clock>, its options, answers and stats.
//
//     #include <armor/asio.hpp>  // for async_execute only
//     // Fresh for 5 min, stale for 30 s more while one refresh runs, 1 h on failure.
//     armor::cache<std::string, std::string> results({.max_age = std::chrono::minutes{5},
//                                                     .stale_while_revalidate = std::chrono::seconds{30},
//                                                     .stale_if_error = std::chrono::hours{1}});
//     std::string search(const std::string& q) {
//         auto answer = results.execute(q, [&] { return github_search(q); });
//         return *answer.value;  // answer.origin: fresh, stale or live
//     }
//     asio::awaitable<std::string> async_search(std::string q) {  // Asio: a fresh hit does not suspend
//         auto fetch = [q] { return async_github_search(q); };  // named: see docs/cache.md#asio
//         auto answer = co_await results.async_execute(q, std::move(fetch));
//         co_return *answer.value;
//     }
//
// Values are shared (std::shared_ptr<const T>), never copied. A hit takes no
// mutex, allocates nothing. A stale entry within stale_while_revalidate is
// answered at once and refreshed once: on the executor given to execute()
// (`post(task)`), by the caller that found it when none is given (no hidden
// thread), or co_spawned by async_execute. Design, CLOCK, costs: docs/cache.md.
#pragma once

#include <armor/clock.hpp>
#include <armor/coalesce.hpp>
#include <armor/detail/cache_table.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/time.hpp>
#include <armor/error.hpp>
#include <armor/result.hpp>
#include <armor/stats.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

namespace armor {

/// How long one entry may be used, counted from when it was stored (RFC 5861).
struct cache_freshness {
  /// Answers without a call while younger than this.
  std::chrono::nanoseconds max_age = std::chrono::seconds{60};
  /// Past max_age, answered stale at once for this long while one refresh runs.
  std::chrono::nanoseconds stale_while_revalidate{0};
  /// Past max_age, answered (stale) for this long instead of a failed call.
  std::chrono::nanoseconds stale_if_error{0};
};

/// The options of armor::cache. An aggregate: `{.max_age = 5min, .max_entries = 10'000}`.
struct cache_options {
  /// Default freshness of an entry (an operation may give its own: cache_item).
  std::chrono::nanoseconds max_age = std::chrono::seconds{60};
  std::chrono::nanoseconds stale_while_revalidate{0};
  std::chrono::nanoseconds stale_if_error{0};
  /// At most this many entries, split evenly over the shards. At least `shards`.
  std::size_t max_entries = 1000;
  /// At most this many bytes, as the size function counts them (by default
  /// sizeof(Key) + sizeof(T) per entry), split evenly over the shards.
  std::size_t max_bytes = std::numeric_limits<std::size_t>::max();
  /// Independently locked tables the keys are spread over (by hash). A
  /// power of two from 1 to 4096. Used by the coalescer of misses too.
  std::size_t shards = 16;
  /// At most this many background refreshes (posted to an executor, or
  /// spawned by the Asio driver) pending or running at once, over all keys.
  /// Past it a stale entry is answered without starting one; a later stale
  /// caller tries again. At least 1.
  std::size_t max_refreshes = 64;
};

/// What lookup() found for a key, at the cache's clock's now.
enum class cache_state : std::uint8_t {
  fresh = 0,           ///< younger than max_age: answer it
  stale = 1,           ///< within stale_while_revalidate: answer it, refresh it
  stale_if_error = 2,  ///< within stale_if_error only: call, answer it if the call fails
  miss = 3,            ///< absent or expired
};

[[nodiscard]] constexpr std::string_view to_string(cache_state s) noexcept {
  switch (s) {
    case cache_state::fresh: return "fresh";
    case cache_state::stale: return "stale";
    case cache_state::stale_if_error: return "stale_if_error";
    case cache_state::miss: return "miss";
  }
  return "unknown";
}

/// Where an answer of execute() came from.
enum class cache_origin : std::uint8_t {
  fresh = 0,  ///< a fresh entry; the operation was not called
  stale = 1,  ///< a stale entry: within stale_while_revalidate, or instead of a failure
  live = 2,   ///< the operation's result (this caller's call, or one it shared)
};

[[nodiscard]] constexpr std::string_view to_string(cache_origin o) noexcept {
  switch (o) {
    case cache_origin::fresh: return "fresh";
    case cache_origin::stale: return "stale";
    case cache_origin::live: return "live";
  }
  return "unknown";
}

/// What lookup() returns: the entry (shared, not copied) and its state.
template <class T>
struct cache_lookup {
  std::shared_ptr<const T> value;  ///< null on a miss
  cache_state state = cache_state::miss;
  std::chrono::nanoseconds age{0};  ///< since it was stored
};

/// What execute() answers: the value (shared, not copied) and its origin.
template <class T>
struct cache_answer {
  std::shared_ptr<const T> value;
  cache_origin origin = cache_origin::live;
  /// Why a stale entry was served instead of the call's result (the
  /// failure's code: circuit_open, operation_failed, ...); empty otherwise.
  std::error_code error;

  const T& operator*() const noexcept { return *value; }
  const T* operator->() const noexcept { return value.get(); }
};

/// What an operation may return to say how its value is cached: its own
/// freshness (from `Cache-Control`, see http::cache_control), or not at all
/// (`store = false`, as for `no-store`).
template <class T>
struct cache_item {
  std::shared_ptr<const T> value;
  std::optional<cache_freshness> freshness;  ///< none: the cache's options
  bool store = true;
};

/// A snapshot of a cache's counters (relaxed loads, each exact, not taken
/// together). Counted by execute(); lookup() counts nothing.
struct cache_stats {
  std::uint64_t hits = 0;              ///< answered from a fresh entry
  std::uint64_t stale_hits = 0;        ///< answered stale within stale_while_revalidate
  std::uint64_t stale_on_error = 0;    ///< answered stale instead of a failure
  std::uint64_t misses = 0;            ///< calls made (or shared) for want of a usable entry
  std::uint64_t refreshes = 0;         ///< refreshes started for stale entries
  std::uint64_t refresh_failures = 0;  ///< refreshes whose call failed (the stale entry stays)
  std::uint64_t refreshes_skipped = 0; ///< stale answers that started no refresh: max_refreshes were running
  std::uint64_t stores = 0;            ///< entries stored (new or replacing)
  std::uint64_t not_stored = 0;        ///< values not stored: store = false, or larger than a shard's bytes
  std::uint64_t evictions = 0;         ///< entries removed to make room (CLOCK)
  std::uint64_t expirations = 0;       ///< expired entries reclaimed
  std::uint64_t entries = 0;           ///< entries held now
  std::uint64_t bytes = 0;             ///< bytes held now, as the size function counts

  /// How fmt prints and Prometheus exports it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    return std::tuple{
        counter("hits", &cache_stats::hits, "armor_cache_hits_total", "Answers from a fresh cache entry."),
        counter("stale_hits", &cache_stats::stale_hits, "armor_cache_stale_hits_total",
                "Answers from a stale entry within stale-while-revalidate."),
        counter("stale_on_error", &cache_stats::stale_on_error, "armor_cache_stale_on_error_total",
                "Answers from a stale entry instead of a failed call (stale-if-error)."),
        counter("misses", &cache_stats::misses, "armor_cache_misses_total",
                "Calls made or shared because no usable entry was there."),
        counter("refreshes", &cache_stats::refreshes, "armor_cache_refreshes_total",
                "Background refreshes started for stale entries."),
        counter("refresh_failures", &cache_stats::refresh_failures, "armor_cache_refresh_failures_total",
                "Refreshes whose call failed; the stale entry was kept."),
        counter("refreshes_skipped", &cache_stats::refreshes_skipped, "armor_cache_refreshes_skipped_total",
                "Stale answers that started no background refresh because max_refreshes were running."),
        counter("stores", &cache_stats::stores, "armor_cache_stores_total", "Entries stored."),
        counter("not_stored", &cache_stats::not_stored, "armor_cache_not_stored_total",
                "Values not stored: no-store, or larger than a shard's byte budget."),
        counter("evictions", &cache_stats::evictions, "armor_cache_evictions_total",
                "Entries evicted to keep the entry and byte limits."),
        counter("expirations", &cache_stats::expirations, "armor_cache_expirations_total",
                "Expired entries reclaimed."),
        gauge("entries", &cache_stats::entries, "armor_cache_entries", "Entries held."),
        gauge("bytes", &cache_stats::bytes, "armor_cache_bytes", "Bytes held, as the size function counts them."),
    };
  }
};

namespace detail {

/// execute() without an executor: the caller refreshes a stale entry itself.
struct cache_no_executor {};

/// The Asio part: declared here, defined in armor/asio.hpp, so this header
/// never includes Asio.
template <class Cache, class F>
struct async_cache;

template <class R>
struct cache_is_result : std::false_type {};
template <class X>
struct cache_is_result<result<X>> : std::true_type {};

}  // namespace detail

/// A keyed read-through cache. See the top of this header and docs/cache.md.
///
/// - `execute(key, op)` / `try_execute(key, op)`: a fresh entry answers
///   without calling `op`; a stale entry within stale_while_revalidate
///   answers at once and starts one refresh (on `executor.post(task)` when
///   an executor is given, else on this caller's thread, which then answers
///   live); otherwise `op` runs through the coalescer (one call per key at a
///   time) and its value is stored when it is a success. When that call
///   fails (an exception, an armor refusal such as circuit_open, or a value
///   a pipeline judged a failure) an entry within stale_if_error answers
///   instead, marked stale, with the failure's code in `error`.
/// - `op` returns T, std::shared_ptr<const T>, cache_item<T>, or
///   armor::result of one of them (a pipeline's try_execute).
/// - Asio: `async_execute` / `async_try_execute` (armor/asio.hpp): the
///   same rules; a hit never suspends, a refresh is co_spawned.
/// - `lookup`, `insert`, `erase`, `clear`, `purge_expired`: the table itself.
///
/// Thread-safe. The cache must outlive the refresh tasks it posts. A
/// value's destructor may run under a shard's mutex (when it is evicted).
template <class Key, class T, class Clock = steady_clock, class Hash = std::hash<Key>,
          class KeyEqual = std::equal_to<Key>>
class cache {
  using slot = detail::cache_slot<Key, T>;
  using value_ptr = std::shared_ptr<const T>;
  using flights_type = coalescer<Key, value_ptr, Clock, Hash, KeyEqual>;
  using flight_handle = typename flights_type::flight_handle;
  static constexpr std::size_t ways = detail::cache_ways;
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  static constexpr unsigned shard_bits = 12;  // shards <= 4096

  using counter_t = std::atomic<std::uint64_t>;

  struct alignas(detail::cache_line) shard {
    // The hit path's counter, on its own line.
    counter_t hits{0};
    alignas(detail::cache_line) mutable std::mutex mutex;
    std::unique_ptr<std::atomic<std::uint32_t>[]> tags;  // per slot: detail::cache_tag, 0 = empty
    std::unique_ptr<slot[]> slots;
    std::size_t slot_mask = 0;    // slots - 1
    std::size_t bucket_mask = 0;  // buckets - 1
    std::size_t entry_budget = 0;
    std::size_t byte_budget = 0;
    // Under the mutex.
    std::size_t entries = 0;
    std::size_t bytes = 0;
    std::size_t hand = 0;   // CLOCK
    std::size_t sweep = 0;  // expired-entry reclaim cursor
    std::uint64_t generation = 0;  // stamps each store (slot::generation)
    // Counters off the hit path (relaxed: statistics, ordered with nothing).
    counter_t stale_hits{0}, stale_on_error{0}, misses{0}, refreshes{0}, refresh_failures{0},
        refreshes_skipped{0}, stores{0}, not_stored{0}, evictions{0}, expirations{0}, entries_now{0}, bytes_now{0};
  };

  struct probe {
    value_ptr value;
    detail::cache_times times;
    bool claimed = false;  // this caller is to refresh the stale entry
    std::uint64_t generation = 0;  // of the entry read: which store made it
  };
  static constexpr std::int64_t no_claim = std::numeric_limits<std::int64_t>::min();

  // Unpins on every way out (KeyEqual may throw).
  struct pin_guard {
    slot& s;
    ~pin_guard() { s.unpin(); }
  };

 public:
  using key_type = Key;
  using value_type = T;
  using clock_type = Clock;
  /// The size of an entry, counted against max_bytes.
  using size_function = std::size_t (*)(const Key&, const T&);

  /// Throws armor::error(invalid_argument) naming the option when one is
  /// out of range.
  explicit cache(cache_options options = {}, Clock clock = Clock{})
      : cache(options, nullptr, std::move(clock)) {}

  cache(cache_options options, size_function size, Clock clock = Clock{})
      : defaults_(checked(options)), size_(size), max_refreshes_(options.max_refreshes), clock_(clock),
        flights_(coalescer_options{.shards = options.shards}, std::move(clock)),
        shard_mask_(options.shards - 1), shards_(std::make_unique<shard[]>(options.shards)) {
    for (std::size_t i = 0; i < options.shards; ++i) {
      shard& s = shards_[i];
      s.entry_budget = options.max_entries / options.shards + (i < options.max_entries % options.shards ? 1 : 0);
      s.byte_budget = options.max_bytes == std::numeric_limits<std::size_t>::max()
                          ? options.max_bytes
                          : options.max_bytes / options.shards + (i < options.max_bytes % options.shards ? 1 : 0);
      const std::size_t buckets = detail::cache_pow2_at_least((2 * s.entry_budget + ways - 1) / ways);
      s.bucket_mask = buckets - 1;
      s.slot_mask = buckets * ways - 1;
      s.tags = std::make_unique<std::atomic<std::uint32_t>[]>(buckets * ways);
      s.slots = std::make_unique<slot[]>(buckets * ways);
    }
  }

  cache(const cache&) = delete;
  cache& operator=(const cache&) = delete;

  // -- read-through ---------------------------------------------------------

  /// The answer for `key`: from the cache, or from `op` (see the class
  /// comment). A stale entry's refresh runs on this thread.
  ///
  /// `options.timeout` bounds how long this caller waits for a miss that
  /// another caller is filling (as coalescer_call_options says): past it the
  /// caller leaves with errc::deadline_exceeded, or with the stale entry if
  /// stale-if-error still covers it, and the fill goes on for the others.
  template <class F>
  [[nodiscard]] result<cache_answer<T>> try_execute(const Key& key, F&& op, coalescer_call_options options = {}) {
    detail::cache_no_executor none;
    return run(key, std::forward<F>(op), none, options);
  }

  /// As above; a stale entry's refresh is handed to `executor.post(task)`
  /// (`task()` runs the refresh; it is copyable when `op` is) and this call
  /// answers stale at once.
  template <class F, class Executor>
    requires(!std::is_same_v<std::remove_cvref_t<Executor>, coalescer_call_options>)
  [[nodiscard]] result<cache_answer<T>> try_execute(const Key& key, F&& op, Executor&& executor,
                                                    coalescer_call_options options = {}) {
    return run(key, std::forward<F>(op), executor, options);
  }

  /// As try_execute(), but throws instead of returning a failure: the
  /// operation's exception, or armor::error.
  template <class F>
  cache_answer<T> execute(const Key& key, F&& op, coalescer_call_options options = {}) {
    return try_execute(key, std::forward<F>(op), options).value();
  }
  template <class F, class Executor>
    requires(!std::is_same_v<std::remove_cvref_t<Executor>, coalescer_call_options>)
  cache_answer<T> execute(const Key& key, F&& op, Executor&& executor, coalescer_call_options options = {}) {
    return try_execute(key, std::forward<F>(op), std::forward<Executor>(executor), options).value();
  }

  /// Asio: `co_await c.async_try_execute(key, op)`, where `op()` returns
  /// `asio::awaitable<X>` and X is what the sync `op` may return. A fresh
  /// or stale answer returns without suspending; a miss awaits the
  /// coalescer's Asio flight (the caller may be cancelled or time out
  /// alone: `options.timeout`); a stale entry's refresh is co_spawned on
  /// the caller's executor and this call answers stale at once. `key` is
  /// read in place, copied only for a miss or a refresh: co_await the call
  /// in the expression that names the key. Needs `#include <armor/asio.hpp>`.
  template <class F>
  auto async_try_execute(const Key& key, F op, coalescer_call_options options = {}) {
    return detail::async_cache<cache, F>::try_execute(*this, key, std::move(op), options);
  }

  /// Asio: as async_try_execute(), but the answer itself: throws the
  /// operation's exception or armor::error.
  template <class F>
  auto async_execute(const Key& key, F op, coalescer_call_options options = {}) {
    return detail::async_cache<cache, F>::execute(*this, key, std::move(op), options);
  }

  // -- the table --------------------------------------------------------------

  /// The entry for `key` and its state now. No mutex, no allocation (unless
  /// a writer is in the entry's slot at that instant: then under the mutex).
  [[nodiscard]] cache_lookup<T> lookup(const Key& key) const {
    const std::uint64_t h = hash_of(key);
    const std::int64_t now = now_ns();
    probe p = find(shard_of(h), key, h, no_claim);
    cache_lookup<T> out;
    out.state = classify(p, now);
    if (out.state != cache_state::miss) {
      out.age = std::chrono::nanoseconds{now - p.times.stored_at};
      out.value = std::move(p.value);
    }
    return out;
  }

  /// Stores `value` for `key` (replacing any entry), with the options'
  /// freshness or the one given. False when it was not stored (larger than
  /// a shard's share of max_bytes).
  bool insert(const Key& key, value_ptr value, std::optional<cache_freshness> freshness = std::nullopt) {
    const std::uint64_t h = hash_of(key);
    return store(shard_of(h), key, h, std::move(value), freshness ? *freshness : defaults_, now_ns());
  }
  bool insert(const Key& key, T value, std::optional<cache_freshness> freshness = std::nullopt) {
    return insert(key, std::make_shared<const T>(std::move(value)), freshness);
  }

  /// Removes the entry for `key`; whether there was one.
  bool erase(const Key& key) {
    const std::uint64_t h = hash_of(key);
    shard& s = shard_of(h);
    value_ptr old;
    const std::lock_guard lock(s.mutex);
    const std::size_t i = locate(s, key, h);
    if (i == npos) return false;
    remove(s, i, old);
    return true;
  }

  /// Removes every entry.
  void clear() {
    for (std::size_t k = 0; k <= shard_mask_; ++k) {
      shard& s = shards_[k];
      const std::lock_guard lock(s.mutex);
      for (std::size_t i = 0; i <= s.slot_mask; ++i) {
        value_ptr old;
        if (s.slots[i].used) remove(s, i, old);
      }
    }
  }

  /// Reclaims every expired entry now (stores also reclaim a few as they
  /// go); how many.
  std::size_t purge_expired() {
    const std::int64_t now = now_ns();
    std::size_t n = 0;
    for (std::size_t k = 0; k <= shard_mask_; ++k) {
      shard& s = shards_[k];
      const std::lock_guard lock(s.mutex);
      for (std::size_t i = 0; i <= s.slot_mask; ++i) n += reclaim_if_expired(s, i, now) ? 1 : 0;
    }
    return n;
  }

  /// Counters summed over the shards (relaxed loads, no lock).
  [[nodiscard]] cache_stats stats() const noexcept {
    cache_stats st{};
    for (std::size_t k = 0; k <= shard_mask_; ++k) {
      const shard& s = shards_[k];
      constexpr auto r = std::memory_order_relaxed;
      st.hits += s.hits.load(r);
      st.stale_hits += s.stale_hits.load(r);
      st.stale_on_error += s.stale_on_error.load(r);
      st.misses += s.misses.load(r);
      st.refreshes += s.refreshes.load(r);
      st.refresh_failures += s.refresh_failures.load(r);
      st.refreshes_skipped += s.refreshes_skipped.load(r);
      st.stores += s.stores.load(r);
      st.not_stored += s.not_stored.load(r);
      st.evictions += s.evictions.load(r);
      st.expirations += s.expirations.load(r);
      st.entries += s.entries_now.load(r);
      st.bytes += s.bytes_now.load(r);
    }
    return st;
  }

  /// The coalescer that runs misses and refreshes (its stats, in_flight).
  [[nodiscard]] const flights_type& flights() const noexcept { return flights_; }
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  template <class, class>
  friend struct detail::async_cache;

  // -- options ----------------------------------------------------------------

  static cache_freshness checked(const cache_options& o) {
    auto nonnegative = [](std::chrono::nanoseconds d, const char* name) {
      if (d < std::chrono::nanoseconds::zero())
        detail::invalid_config(std::string("armor::cache: ") + name + " must not be negative");
    };
    nonnegative(o.max_age, "max_age");
    nonnegative(o.stale_while_revalidate, "stale_while_revalidate");
    nonnegative(o.stale_if_error, "stale_if_error");
    if (o.shards == 0 || o.shards > 4096 || (o.shards & (o.shards - 1)) != 0)
      detail::invalid_config("armor::cache: shards must be a power of two from 1 to 4096, got " +
                             std::to_string(o.shards));
    if (o.max_entries < o.shards)
      detail::invalid_config("armor::cache: max_entries must be at least shards (" + std::to_string(o.shards) +
                             "), got " + std::to_string(o.max_entries));
    if (o.max_entries > (std::size_t{1} << 40U))
      detail::invalid_config("armor::cache: max_entries must be at most 2^40, got " + std::to_string(o.max_entries));
    if (o.max_bytes < o.shards)
      detail::invalid_config("armor::cache: max_bytes must be at least shards (" + std::to_string(o.shards) +
                             "), got " + std::to_string(o.max_bytes));
    if (o.max_refreshes == 0) detail::invalid_config("armor::cache: max_refreshes must be at least 1, got 0");
    return cache_freshness{o.max_age, o.stale_while_revalidate, o.stale_if_error};
  }

  // -- the table --------------------------------------------------------------

  [[nodiscard]] std::int64_t now_ns() const { return to_timestamp(clock_.now()).time_since_epoch().count(); }

  [[nodiscard]] std::uint64_t hash_of(const Key& key) const {
    return detail::cache_mix(static_cast<std::uint64_t>(Hash{}(key)));
  }
  [[nodiscard]] shard& shard_of(std::uint64_t h) const noexcept { return shards_[h & shard_mask_]; }
  [[nodiscard]] static std::size_t base_of(const shard& s, std::uint64_t h) noexcept {
    return static_cast<std::size_t>((h >> shard_bits) & s.bucket_mask) * ways;
  }

  [[nodiscard]] static cache_state classify(const probe& p, std::int64_t now) noexcept {
    if (!p.value) return cache_state::miss;
    if (now < p.times.fresh_until) return cache_state::fresh;
    if (now < p.times.revalidate_until) return cache_state::stale;
    if (now < p.times.error_until) return cache_state::stale_if_error;
    return cache_state::miss;
  }

  // The hit path: no mutex, no allocation. Falls back to the mutex only
  // when a writer holds a slot whose tag matches. With `claim_at`, a caller
  // that finds the entry stale at that instant may claim its refresh.
  probe find(shard& s, const Key& key, std::uint64_t h, std::int64_t claim_at) const {
    const std::size_t base = base_of(s, h);
    const std::uint32_t tag = detail::cache_tag(h);
    bool contended = false;
    for (std::size_t w = 0; w < ways; ++w) {
      // relaxed: the tag is a hint; the pin's acquire orders what is read.
      if (s.tags[base + w].load(std::memory_order_relaxed) != tag) continue;
      slot& sl = s.slots[base + w];
      if (!sl.try_pin()) {
        contended = true;
        continue;
      }
      const pin_guard guard{sl};
      if (sl.used && sl.hash == h && eq_(*sl.key, key)) return read(sl, claim_at);
    }
    if (!contended) return probe{};
    const std::lock_guard lock(s.mutex);
    const std::size_t i = locate(s, key, h);
    return i == npos ? probe{} : read(s.slots[i], claim_at);
  }

  // Pinned or under the mutex.
  static probe read(slot& sl, std::int64_t claim_at) noexcept {
    sl.touch();
    const bool stale = claim_at >= sl.times.fresh_until && claim_at < sl.times.revalidate_until;
    return probe{sl.value, sl.times, stale && sl.claim_refresh(), sl.generation};
  }

  // A claimed refresh that ended without storing: the next stale caller
  // may claim it again (unless the entry was replaced meanwhile: a store's
  // generation, unlike its instant, differs even within one clock tick).
  void unclaim(shard& s, const Key& key, std::uint64_t h, std::uint64_t generation) const {
    const std::lock_guard lock(s.mutex);
    const std::size_t i = locate(s, key, h);
    if (i != npos && s.slots[i].generation == generation)
      s.slots[i].refreshing.store(0, std::memory_order_relaxed);
  }

  std::size_t locate(const shard& s, const Key& key, std::uint64_t h) const {
    const std::size_t base = base_of(s, h);
    for (std::size_t w = 0; w < ways; ++w) {
      const slot& sl = s.slots[base + w];
      if (sl.used && sl.hash == h && eq_(*sl.key, key)) return base + w;
    }
    return npos;
  }

  static void publish_gauges(shard& s) noexcept {
    s.entries_now.store(s.entries, std::memory_order_relaxed);
    s.bytes_now.store(s.bytes, std::memory_order_relaxed);
  }

  // Under the mutex: empties slot i. Its value moves to `old`, released by
  // the caller after the slot is unlocked.
  static void remove(shard& s, std::size_t i, value_ptr& old) noexcept {
    slot& sl = s.slots[i];
    sl.lock_for_write();
    s.tags[i].store(0, std::memory_order_relaxed);
    sl.used = false;
    sl.key.reset();
    old = std::move(sl.value);
    s.entries -= 1;
    s.bytes -= sl.bytes;
    sl.bytes = 0;
    sl.unlock_for_write();
    publish_gauges(s);
  }

  static void bump(counter_t& c) noexcept { c.fetch_add(1, std::memory_order_relaxed); }

  static bool reclaim_if_expired(shard& s, std::size_t i, std::int64_t now) noexcept {
    if (!s.slots[i].used || now < s.slots[i].times.expires()) return false;
    value_ptr old;
    remove(s, i, old);
    bump(s.expirations);
    return true;
  }

  [[nodiscard]] static detail::cache_times times_for(const cache_freshness& f, std::int64_t now) noexcept {
    auto ns = [](std::chrono::nanoseconds d) { return std::max<std::int64_t>(d.count(), 0); };
    detail::cache_times t;
    t.stored_at = now;
    t.fresh_until = detail::saturating_add(now, ns(f.max_age));
    t.revalidate_until = detail::saturating_add(t.fresh_until, ns(f.stale_while_revalidate));
    t.error_until = detail::saturating_add(t.fresh_until, ns(f.stale_if_error));
    return t;
  }

  // The slow path: stores under the shard's mutex. Picks the key's own
  // slot, else a free way of its bucket, else an expired one, else CLOCK's
  // victim within the bucket; then evicts by CLOCK over the whole shard
  // until the shard is within its entry and byte budgets.
  bool store(shard& s, const Key& key, std::uint64_t h, value_ptr value, const cache_freshness& f,
             std::int64_t now) {
    const std::size_t bytes = value ? (size_ != nullptr ? size_(key, *value) : sizeof(Key) + sizeof(T)) : 0;
    value_ptr old;  // released after the lock, declared before it
    value_ptr evicted;
    const std::lock_guard lock(s.mutex);
    std::size_t i = locate(s, key, h);
    if (!value || bytes > s.byte_budget) {
      if (i != npos) remove(s, i, old);  // the newer value supersedes it
      bump(s.not_stored);
      return false;
    }
    if (i == npos) i = free_way(s, h, now, evicted);
    slot& sl = s.slots[i];
    sl.lock_for_write();
    if (!sl.used) {
      try {
        sl.key.emplace(key);
      } catch (...) {
        sl.unlock_for_write();
        throw;
      }
      sl.used = true;
      sl.hash = h;
      s.entries += 1;
    } else {
      s.bytes -= sl.bytes;
    }
    old = std::exchange(sl.value, std::move(value));
    sl.times = times_for(f, now);
    sl.generation = ++s.generation;
    sl.bytes = bytes;
    s.bytes += bytes;
    sl.referenced.store(0, std::memory_order_relaxed);
    sl.refreshing.store(0, std::memory_order_relaxed);
    s.tags[i].store(detail::cache_tag(h), std::memory_order_relaxed);
    sl.unlock_for_write();
    bump(s.stores);
    while (s.entries > s.entry_budget || s.bytes > s.byte_budget) {
      value_ptr gone;
      evict_one(s, i, now, gone);
    }
    // Reclaim a few expired entries per store, so that dead ones do not
    // wait for eviction pressure.
    for (std::size_t k = 0; k < ways; ++k) {
      s.sweep = (s.sweep + 1) & s.slot_mask;
      if (s.sweep != i) (void)reclaim_if_expired(s, s.sweep, now);
    }
    publish_gauges(s);
    return true;
  }

  // Under the mutex: a way of h's bucket to store into (emptied if need be).
  std::size_t free_way(shard& s, std::uint64_t h, std::int64_t now, value_ptr& evicted) {
    const std::size_t base = base_of(s, h);
    for (std::size_t w = 0; w < ways; ++w)
      if (!s.slots[base + w].used) return base + w;
    for (std::size_t w = 0; w < ways; ++w)
      if (reclaim_if_expired(s, base + w, now)) return base + w;
    // Second chance within the bucket: the first way not referenced since
    // the last sweep; the sweep clears the bits it passes.
    std::size_t victim = base;
    for (std::size_t w = 0; w < ways; ++w) {
      slot& sl = s.slots[base + w];
      if (sl.referenced.load(std::memory_order_relaxed) == 0) {
        victim = base + w;
        break;
      }
      sl.referenced.store(0, std::memory_order_relaxed);
    }
    remove(s, victim, evicted);
    bump(s.evictions);
    return victim;
  }

  // Under the mutex: CLOCK over the shard's slots, never `keep`. Expired
  // entries go first as the hand meets them; a referenced entry loses its
  // bit and is passed over once. After one full turn (readers may set the
  // bits again as fast as the hand clears them) the bits are ignored, so
  // the hand goes round at most twice.
  static void evict_one(shard& s, std::size_t keep, std::int64_t now, value_ptr& gone) noexcept {
    for (std::size_t step = 0;; ++step) {
      const std::size_t i = s.hand;
      s.hand = (s.hand + 1) & s.slot_mask;
      slot& sl = s.slots[i];
      if (!sl.used || i == keep) continue;
      if (now >= sl.times.expires()) {
        remove(s, i, gone);
        bump(s.expirations);
        return;
      }
      if (step <= s.slot_mask && sl.referenced.load(std::memory_order_relaxed) != 0) {
        sl.referenced.store(0, std::memory_order_relaxed);
        continue;
      }
      remove(s, i, gone);
      bump(s.evictions);
      return;
    }
  }

  // -- read-through -----------------------------------------------------------

  template <class V>
  static cache_item<T> item_of(V&& v) {
    using R = std::remove_cvref_t<V>;
    if constexpr (std::is_same_v<R, cache_item<T>>) {
      return std::forward<V>(v);
    } else if constexpr (std::is_same_v<R, value_ptr> || std::is_same_v<R, std::shared_ptr<T>>) {
      return cache_item<T>{value_ptr(std::forward<V>(v)), std::nullopt, true};
    } else {
      static_assert(std::is_convertible_v<V&&, T>,
                    "armor::cache<Key, T>: the operation must return T, std::shared_ptr<const T>, "
                    "armor::cache_item<T>, or armor::result of one of them");
      return cache_item<T>{std::make_shared<const T>(std::forward<V>(v)), std::nullopt, true};
    }
  }

  // Runs in a flight of the coalescer: calls `op` and stores its value when
  // it is a success. An entry stored fresh since the caller looked (by a
  // flight that just ended) answers instead of a second call. `stored` tells
  // whether this call stored a value (a refresh that did not must unclaim).
  template <class F>
  result<value_ptr> fill(shard& s, const Key& key, std::uint64_t h, F& op, bool& stored) {
    stored = false;
    if (value_ptr v = fresh_entry(s, key, h)) return v;
    return keep(s, key, h, std::invoke(op), stored);
  }

  // Under the shard's mutex: the entry for `key` if it is fresh now (one
  // stored by a flight that ended since the caller looked), else null.
  value_ptr fresh_entry(shard& s, const Key& key, std::uint64_t h) const {
    const std::lock_guard lock(s.mutex);
    const std::size_t i = locate(s, key, h);
    if (i != npos && now_ns() < s.slots[i].times.fresh_until) return s.slots[i].value;
    return nullptr;
  }

  // What the operation returned (R: what fill() accepts), stored when it is
  // a success and wanted; the flight's result.
  template <class R>
  result<value_ptr> keep(shard& s, const Key& key, std::uint64_t h, R&& returned, bool& stored) {
    cache_item<T> item;
    if constexpr (detail::cache_is_result<std::remove_cvref_t<R>>::value) {
      if (!returned.has_value()) return returned.error();
      item = item_of(std::move(*returned));
      if (!returned.ok()) return result<value_ptr>(detail::judged_failure, std::move(item.value));
    } else {
      item = item_of(std::forward<R>(returned));
    }
    if (item.store) {
      stored = store(s, key, h, item.value, item.freshness ? *item.freshness : defaults_, now_ns());
    } else {
      bump(s.not_stored);
    }
    return std::move(item.value);
  }

  // Takes one of max_refreshes for a background refresh; false when all
  // are taken. A refresh_state gives it back when it goes.
  bool reserve_refresh() noexcept {
    if (refreshes_running_.fetch_add(1, std::memory_order_relaxed) < max_refreshes_) return true;
    refreshes_running_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }

  // A background refresh, as posted to the user's executor (or spawned by
  // the Asio driver). Holds one of max_refreshes (taken by the caller with
  // reserve_refresh()) until it goes. The task is copyable when the
  // operation is; runs the flight once however often it is called, and
  // ends it (errc::cancelled) if it is dropped without running.
  struct refresh_state {
    cache* self;
    Key key;
    std::uint64_t h;
    std::uint64_t generation;  // of the stale entry
    std::optional<flight_handle> handle;
    // Set by the one copy of the task that runs (an executor may run two
    // copies at once): only that one touches `handle`.
    std::atomic<bool> taken{false};

    refresh_state(cache* c, const Key& k, std::uint64_t hash, std::uint64_t gen, flight_handle&& fh)
        : self(c), key(k), h(hash), generation(gen), handle(std::move(fh)) {}
    refresh_state(const refresh_state&) = delete;
    refresh_state& operator=(const refresh_state&) = delete;
    ~refresh_state() {
      if (handle) {
        handle.reset();  // never run: ends the flight (errc::cancelled)
        try {
          self->unclaim(self->shard_of(h), key, h, generation);
        } catch (...) {  // KeyEqual or the mutex threw: the claim stays until the entry is replaced
        }
      }
      self->refreshes_running_.fetch_sub(1, std::memory_order_relaxed);
    }
  };

  // For the caller that claimed a stale entry's refresh: the flight to run
  // it in, or nothing, the claim given back, when a flight for the key runs
  // already (a miss's: it will store) or, for a `background` refresh, when
  // max_refreshes are pending or running. A background refresh holds its
  // reservation until its refresh_state goes.
  std::optional<flight_handle> begin_refresh(shard& s, const Key& key, std::uint64_t h, std::uint64_t generation,
                                             bool background) {
    if (background && !reserve_refresh()) {
      unclaim(s, key, h, generation);
      bump(s.refreshes_skipped);
      return std::nullopt;
    }
    auto begin = [&]() -> std::optional<flight_handle> {
      try {
        return flights_.try_begin(key);
      } catch (...) {
        if (background) refreshes_running_.fetch_sub(1, std::memory_order_relaxed);
        unclaim(s, key, h, generation);
        throw;
      }
    };
    std::optional<flight_handle> handle = begin();
    if (!handle) {
      if (background) refreshes_running_.fetch_sub(1, std::memory_order_relaxed);
      unclaim(s, key, h, generation);
      return std::nullopt;
    }
    bump(s.refreshes);
    return handle;
  }

  // The state of a refresh for which reserve_refresh() succeeded: gives
  // the reservation back if it cannot be made.
  std::shared_ptr<refresh_state> make_refresh(const Key& key, std::uint64_t h, std::uint64_t generation,
                                              flight_handle&& handle) {
    try {
      return std::make_shared<refresh_state>(this, key, h, generation, std::move(handle));
    } catch (...) {
      refreshes_running_.fetch_sub(1, std::memory_order_relaxed);
      unclaim(shard_of(h), key, h, generation);
      throw;
    }
  }

  template <class Op>
  struct refresh_task {
    std::shared_ptr<refresh_state> state;
    Op op;

    void operator()() {
      refresh_state& st = *state;
      if (st.taken.exchange(true, std::memory_order_acq_rel)) return;
      std::optional<flight_handle> mine = std::exchange(st.handle, std::nullopt);
      if (!mine) return;
      cache& c = *st.self;
      shard& s = c.shard_of(st.h);
      bool stored = false;
      result<value_ptr> r = mine->run([&] { return c.fill(s, st.key, st.h, op, stored); });
      if (!r.ok()) bump(s.refresh_failures);
      // A refresh that stored nothing (a failure, no-store, a value over the
      // byte budget) leaves the entry to the next stale caller.
      if (!stored) c.unclaim(s, st.key, st.h, st.generation);
    }
  };

  template <class F, class Executor>
  result<cache_answer<T>> run(const Key& key, F&& op, Executor& executor, coalescer_call_options options) {
    const std::uint64_t h = hash_of(key);
    shard& s = shard_of(h);
    const std::int64_t now = now_ns();
    probe p = find(s, key, h, now);
    const cache_state state = classify(p, now);
    if (state == cache_state::fresh) {
      bump(s.hits);
      return cache_answer<T>{std::move(p.value), cache_origin::fresh, {}};
    }
    if (state == cache_state::stale) {
      bump(s.stale_hits);
      // Only the caller that claimed the refresh asks the coalescer; the
      // others answer without a lock.
      if (!p.claimed) return cache_answer<T>{std::move(p.value), cache_origin::stale, {}};
      constexpr bool inline_refresh = std::is_same_v<std::remove_cvref_t<Executor>, detail::cache_no_executor>;
      std::optional<flight_handle> handle = begin_refresh(s, key, h, p.generation, !inline_refresh);
      if (!handle) return cache_answer<T>{std::move(p.value), cache_origin::stale, {}};
      if constexpr (inline_refresh) {
        bool stored = false;
        result<value_ptr> r = handle->run([&] { return fill(s, key, h, op, stored); });
        if (!stored) unclaim(s, key, h, p.generation);
        if (r.ok()) return cache_answer<T>{std::move(*r), cache_origin::live, {}};
        bump(s.refresh_failures);
        return cache_answer<T>{std::move(p.value), cache_origin::stale, failure_code(r)};
      } else {
        using task = refresh_task<std::decay_t<F>>;
        executor.post(task{make_refresh(key, h, p.generation, std::move(*handle)),
                           std::decay_t<F>(std::forward<F>(op))});
        return cache_answer<T>{std::move(p.value), cache_origin::stale, {}};
      }
    }
    bump(s.misses);
    bool stored = false;
    result<value_ptr> r = flights_.try_execute(key, [&] { return fill(s, key, h, op, stored); }, options);
    if (r.ok()) return cache_answer<T>{std::move(*r), cache_origin::live, {}};
    if (p.value && now_ns() < p.times.error_until) {
      bump(s.stale_on_error);
      return cache_answer<T>{std::move(p.value), cache_origin::stale, failure_code(r)};
    }
    if (r.has_value()) return result<cache_answer<T>>(detail::judged_failure, cache_answer<T>{std::move(*r), cache_origin::live, {}});
    return r.error();
  }

  static std::error_code failure_code(const result<value_ptr>& r) noexcept {
    return r.has_value() ? std::error_code(errc::operation_failed) : r.code();
  }

  cache_freshness defaults_;
  size_function size_;
  std::size_t max_refreshes_;
  // Background refreshes pending or running (refresh_state objects alive).
  std::atomic<std::size_t> refreshes_running_{0};
  [[no_unique_address]] Clock clock_;
  [[no_unique_address]] KeyEqual eq_{};
  flights_type flights_;
  std::size_t shard_mask_;
  std::unique_ptr<shard[]> shards_;
};

}  // namespace armor
