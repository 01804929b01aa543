// armor/keyed.hpp: armor::keyed<P>, one instance of a policy per key (per
// client IP, per user, per route, per upstream), created on first use from
// shared options, in a bounded map; and armor::keyed_options.
//
//     using namespace std::chrono_literals;
//     // 100 requests a second per client IP, bursts of 20; at most 1e6 IPs.
//     armor::keyed<armor::token_bucket<>> per_ip{{.rate = {100, 1s}, .burst = 20},
//                                                {.max_keys = 1'000'000}};
//     // Directly, in a request handler:
//     if (auto d = per_ip.get(client_ip)->try_acquire(); !d) return too_many_requests(d);
//     // Or as a pipeline layer, keyed by call_options::key:
//     auto p = armor::pipeline{std::ref(per_ip)};
//     auto r = p.try_execute(handler, {.key = client_ip});
//
// keyed<P> is itself an armor::policy. P is built as P(options, clock) (with
// a listener: the map's, copied per key) and says when dropping an instance
// changes no decision (`idle(now)`). At most max_keys keys: idle ones are
// evicted first, then the least recently used, never one in use (a handle
// from get() pins its instance; a permit taken from it does not). What P
// must provide, eviction, locking and costs:
// docs/token_bucket.md#keyedp-one-instance-per-key.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/keyed_table.hpp>
#include <armor/detail/random.hpp>
#include <armor/detail/sharded_counter.hpp>
#include <armor/error.hpp>
#include <armor/listener.hpp>
#include <armor/policy.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace armor {

/// A keyed map's own numbers (keyed::stats()), next to each key's: the
/// refusals of every key together, which outlive the keys they came from.
struct keyed_stats {
  std::uint64_t keys = 0;      ///< keys held now
  std::uint64_t max_keys = 0;  ///< the bound on keys held
  std::uint64_t rejected = 0;  ///< calls a key's instance refused as a pipeline layer (admit, enqueue), all keys together
  std::uint64_t evicted = 0;   ///< keys dropped to make room or by evict_idle

  /// How fmt prints and Prometheus exports it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using s = keyed_stats;
    return std::tuple{
        gauge("keys", &s::keys, "armor_keyed_keys", "Keys the keyed map holds now."),
        gauge("max_keys", &s::max_keys, "armor_keyed_max_keys", "The most keys the keyed map holds at once."),
        counter("rejected", &s::rejected, "armor_keyed_rejected_total",
                "Calls refused by their key's policy in a pipeline, all keys together."),
        counter("evicted", &s::evicted, "armor_keyed_evicted_total",
                "Keys the keyed map dropped, to make room or because they were idle."),
    };
  }
};

/// The options of armor::keyed.
struct keyed_options {
  /// The most keys held at once; >= 1.
  std::size_t max_keys = 100'000;
  /// The number of shards: 0 (the default) picks the largest power of two
  /// not above max_keys / 64 (at least 1, at most 65536); otherwise a power
  /// of two, at most max_keys and 65536.
  std::size_t shards = 0;
};

namespace detail {

template <class P>
struct keyed_instance_of {
  using type = P;
};
template <class P>
  requires requires { typename P::keyed_instance; }
struct keyed_instance_of<P> {
  using type = typename P::keyed_instance;
};

template <class P>
struct keyed_listener_of {
  using type = no_listener;
};
template <class P>
  requires requires { typename P::listener_type; }
struct keyed_listener_of<P> {
  using type = typename P::listener_type;
};

/// How keyed builds the instance of a key: with the map's listener and the
/// key when the instance has a listener, from the options and clock alone
/// otherwise.
template <class I, class Options, class Clock, class Listener>
concept keyed_buildable =
    (std::is_same_v<Listener, no_listener> && std::constructible_from<I, const Options&, Clock>) ||
    (!std::is_same_v<Listener, no_listener> &&
     std::constructible_from<I, const Options&, Clock, const Listener&, std::string_view>);

template <class P>
struct keyed_clock_of {
  using type = steady_clock;
};
template <class P>
  requires requires { typename P::clock_type; }
struct keyed_clock_of<P> {
  using type = typename P::clock_type;
};

}  // namespace detail

/// What armor::keyed needs of the policy it stores per key.
template <class I, class Options, class Clock>
concept keyable_policy = policy<I> &&
                         detail::keyed_buildable<I, Options, Clock, typename detail::keyed_listener_of<I>::type> &&
                         requires(const I& i, timestamp now) {
                           { i.idle(now) } noexcept -> std::same_as<bool>;
                         };

/// One P per key, created on first use from shared options (see the top of
/// this header). Thread-safe; move it only before sharing it.
template <class P, class Options = typename P::options_type, class Clock = typename detail::keyed_clock_of<P>::type>
class keyed {
 public:
  /// What is stored per key.
  using instance_type = typename detail::keyed_instance_of<P>::type;
  using options_type = Options;
  using clock_type = Clock;

  /// The listener every key's instance gets a copy of (no_listener when P has none).
  using listener_type = typename detail::keyed_listener_of<instance_type>::type;

  static_assert(policy<instance_type>, "armor::keyed<P>: P must be an armor::policy (admit and settle)");
  static_assert(std::is_same_v<typename detail::keyed_listener_of<P>::type, no_listener> ||
                    !std::is_same_v<listener_type, no_listener>,
                "armor::keyed<P>: P has a listener, but the instance stored per key (P::keyed_instance) takes none, "
                "so the listener would never be called; use P without a listener in keyed");
  static_assert(std::is_same_v<listener_type, no_listener> || std::is_copy_constructible_v<listener_type>,
                "armor::keyed<P>: P's listener must be copyable: every key's instance gets a copy (give the map "
                "std::ref(listener) to share one listener object)");
  static_assert(detail::keyed_buildable<instance_type, Options, Clock, listener_type>,
                "armor::keyed<P>: P must be constructible from (const Options&, Clock), or, when it has a listener, "
                "from (const Options&, Clock, const Listener&, std::string_view key)");
  static_assert(requires(const instance_type& i, timestamp now) {
                  { i.idle(now) } noexcept -> std::same_as<bool>;
                }, "armor::keyed<P>: P must have `bool idle(armor::timestamp) const noexcept`");

 private:
  struct node {
    node(std::string_view k, std::uint32_t h, const Options& options, const Clock& clock,
         const listener_type& listener)
        : hash(h), key(k), instance(make_instance(options, clock, listener, key)) {}
    std::atomic<std::uint32_t> refs{1};      // the table's reference + one per pin
    std::uint32_t hash;                      // low half of the key's hash (the table's)
    std::atomic<std::int64_t> last_used{0};  // ns, to lru_resolution
    std::string key;
    instance_type instance;
  };

 public:
  /// A pinned reference to one key's instance: while it lives the entry is
  /// not evicted, and its memory outlives an erase(). Move-only.
  class handle {
   public:
    handle() noexcept = default;
    handle(handle&& other) noexcept : n_(std::exchange(other.n_, nullptr)) {}
    handle& operator=(handle&& other) noexcept {
      if (this != &other) {
        reset();
        n_ = std::exchange(other.n_, nullptr);
      }
      return *this;
    }
    handle(const handle&) = delete;
    handle& operator=(const handle&) = delete;
    ~handle() { reset(); }

    [[nodiscard]] explicit operator bool() const noexcept { return n_ != nullptr; }
    [[nodiscard]] instance_type& operator*() const noexcept { return n_->instance; }
    [[nodiscard]] instance_type* operator->() const noexcept { return &n_->instance; }
    [[nodiscard]] std::string_view key() const noexcept { return n_->key; }

    /// Unpins (the handle becomes empty).
    void reset() noexcept {
      if (node* n = std::exchange(n_, nullptr)) unpin(n);
    }

   private:
    friend class keyed;
    explicit handle(node* n) noexcept : n_(n) {}
    node* n_ = nullptr;
  };

  /// The permit of one admission: the pinned entry and its instance's permit.
  class permit {
   public:
    permit() noexcept = default;
    permit(permit&& other) noexcept = default;
    permit& operator=(permit&& other) noexcept {
      if (this != &other) {
        release();
        entry_ = std::move(other.entry_);
        inner_ = std::move(other.inner_);
      }
      return *this;
    }
    permit(const permit&) = delete;
    permit& operator=(const permit&) = delete;
    /// For instances that queue: ends the wait (see armor::queue_waiter).
    [[nodiscard]] bool leave_queue() noexcept
      requires queueing_policy<instance_type>
    {
      return inner_.leave_queue();
    }
    // Members are destroyed in reverse order: the instance's permit first,
    // while its entry is still pinned.
    ~permit() = default;

   private:
    friend class keyed;
    permit(handle entry, typename instance_type::permit_type inner) noexcept
        : entry_(std::move(entry)), inner_(std::move(inner)) {}
    void release() noexcept {
      { [[maybe_unused]] auto dropped = std::move(inner_); }
      entry_.reset();
    }
    handle entry_;
    typename instance_type::permit_type inner_{};
  };
  using permit_type = permit;

  /// Forwarded from P, so a keyed breaker still times its calls.
  static constexpr bool needs_completion_time = detail::needs_completion_time<instance_type>();

  /// A map that creates each key's instance from `options` (validated now:
  /// throws what P's constructor throws for bad options), `clock` and, when
  /// P has a listener, a copy of `listener`. Throws
  /// armor::error(invalid_argument) for bad keyed_options.
  explicit keyed(Options options, const keyed_options& map_options = {}, Clock clock = Clock{},
                 listener_type listener = listener_type{})
      : options_(std::move(options)), clock_(std::move(clock)), listener_(std::move(listener)) {
    (void)make_instance(options_, clock_, listener_, std::string_view{});  // validates the options
    if (map_options.max_keys < 1) detail::invalid_config("armor::keyed: max_keys must be at least 1");
    std::size_t shards = map_options.shards;
    if (shards == 0) {
      shards = std::bit_floor(std::max<std::size_t>(map_options.max_keys / target_per_shard, 1));
      shards = std::min(shards, max_shards);
    } else if (!std::has_single_bit(shards) || shards > max_shards || shards > map_options.max_keys) {
      detail::invalid_config("armor::keyed: shards must be a power of two no larger than max_keys and 65536 (got " +
                             std::to_string(shards) + ")");
    }
    max_keys_ = map_options.max_keys;
    shard_count_ = shards;
    shard_shift_ = shards == 1 ? 0 : 64 - std::countr_zero(shards);
    shards_ = std::make_unique<shard[]>(shards);
    // Each shard may hold up to twice its even share, so that uneven hashing
    // does not make the map evict before it holds max_keys in all.
    const std::size_t share = (max_keys_ + shards - 1) / shards;
    shard_cap_ = std::min(2 * share, max_keys_);
    for (std::size_t i = 0; i < shards; ++i) shards_[i].table = detail::keyed_table<node>(share);
    seed_ = detail::entropy_seed(this);
  }

  /// Not thread-safe: move a map before sharing it.
  keyed(keyed&& other) noexcept
      : options_(std::move(other.options_)),
        clock_(std::move(other.clock_)),
        listener_(std::move(other.listener_)),
        shards_(std::move(other.shards_)),
        shard_count_(std::exchange(other.shard_count_, 0)),
        shard_shift_(other.shard_shift_),
        max_keys_(other.max_keys_),
        shard_cap_(other.shard_cap_),
        seed_(other.seed_),
        count_(other.count_.exchange(0, std::memory_order_relaxed)),
        evicted_(other.evicted_.load(std::memory_order_relaxed)),
        rejected_(other.rejected_) {}
  keyed& operator=(keyed&&) = delete;
  keyed(const keyed&) = delete;
  keyed& operator=(const keyed&) = delete;

  /// Drops the map's references; entries still pinned by a handle or a
  /// permit live until those are released.
  ~keyed() {
    if (!shards_) return;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      const auto& t = shards_[i].table;
      for (std::size_t j = 0; j < t.slot_count(); ++j) {
        if (node* n = t.slot(j)) unpin(n);
      }
    }
  }

  /// Policy protocol: the instance for ctx.key() (created if new) admits.
  /// Throws std::bad_alloc if a new key cannot be stored.
  [[nodiscard]] admission<permit> admit(context& ctx) {
    handle h(acquire(ctx.key(), ctx.now()));
    auto inner = h->admit(ctx);
    switch (inner.kind) {
      case admission_kind::admitted: return admission<permit>::admit(permit(std::move(h), std::move(inner.permit)));
      case admission_kind::wait:
        return admission<permit>::wait(inner.delay, permit(std::move(h), std::move(inner.permit)));
      case admission_kind::queue:
        if constexpr (queueing_policy<instance_type>) return admission<permit>::queue(inner.code);
        break;
      case admission_kind::queued:
      case admission_kind::rejected: break;
    }
    rejected_.add();
    return admission<permit>::reject(inner.code, inner.retry_after, inner.retryable);
  }

  /// Policy protocol, for instances that queue (armor::bulkhead,
  /// armor::adaptive_limit): the instance for ctx.key() puts the driver's
  /// waiter in its queue.
  [[nodiscard]] admission<permit> enqueue(context& ctx, queue_waiter& waiter)
    requires queueing_policy<instance_type>
  {
    handle h(acquire(ctx.key(), ctx.now()));
    auto inner = h->enqueue(ctx, waiter);
    switch (inner.kind) {
      case admission_kind::admitted: return admission<permit>::admit(permit(std::move(h), std::move(inner.permit)));
      case admission_kind::queued:
        return admission<permit>::queued(inner.delay, permit(std::move(h), std::move(inner.permit)), inner.code);
      default: break;
    }
    rejected_.add();
    return admission<permit>::reject(inner.code, inner.retry_after, inner.retryable);
  }

  /// Policy protocol: the instance that admitted settles.
  void settle(context& ctx, permit p, const verdict& v) {
    if (p.entry_) p.entry_->settle(ctx, std::move(p.inner_), v);
  }

  /// The instance for `key`, created if new (reads the clock for the
  /// eviction and recency bookkeeping). Throws std::bad_alloc.
  [[nodiscard]] handle get(std::string_view key) { return get(key, to_timestamp(clock_.now())); }

  /// The instance for `key`, created if new, as of `now`.
  [[nodiscard]] handle get(std::string_view key, timestamp now) { return handle(acquire(key, now)); }

  /// The instance for `key` if it exists (an empty handle otherwise).
  [[nodiscard]] handle find(std::string_view key) const noexcept {
    const std::size_t h = hash_of(key);
    shard& s = shard_for(h);
    std::shared_lock lock(s.mutex);
    node* n = s.table.find(key, low(h));
    if (n == nullptr) return {};
    pin(n);
    return handle(n);
  }

  /// Removes `key` now (a handle to it stays valid). Returns whether it was there.
  bool erase(std::string_view key) noexcept {
    const std::size_t h = hash_of(key);
    shard& s = shard_for(h);
    node* n = nullptr;
    {
      std::unique_lock lock(s.mutex);
      n = s.table.find(key, low(h));
      if (n == nullptr) return false;
      s.table.erase(n);
      count_.fetch_sub(1, std::memory_order_relaxed);
    }
    unpin(n);
    return true;
  }

  /// Evicts every idle entry not in use, in every shard. Returns how many.
  /// (Entries are also evicted on demand when a shard is full; this is for
  /// callers that want memory back sooner.)
  std::size_t evict_idle(timestamp now) {
    std::size_t evicted = 0;
    std::vector<node*> victims;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      shard& s = shards_[i];
      victims.clear();
      std::unique_lock lock(s.mutex);
      for (std::size_t j = 0; j < s.table.slot_count(); ++j) {
        node* n = s.table.slot(j);
        if (n != nullptr && evictable(n) && n->instance.idle(now)) victims.push_back(n);
      }
      for (node* n : victims) drop(s, n);
      evicted += victims.size();
    }
    return evicted;
  }
  /// evict_idle at the clock's now.
  std::size_t evict_idle() { return evict_idle(to_timestamp(clock_.now())); }

  /// Calls `f(std::string_view key, const instance_type& instance)` for every
  /// key held, one shard at a time, with that shard's lock held shared: keys
  /// of that shard cannot be inserted or evicted meanwhile (lookups of
  /// existing keys go on), so no key is visited twice, and a key present for
  /// the whole visit is visited once. For exporting metrics: `f` should be
  /// quick, must not insert into, erase from or evict this map, and must not
  /// keep the references past its return. Allocates nothing.
  template <class F>
    requires std::invocable<F&, std::string_view, const instance_type&>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < shard_count_; ++i) {
      const shard& s = shards_[i];
      std::shared_lock lock(s.mutex);
      for (std::size_t j = 0; j < s.table.slot_count(); ++j) {
        if (const node* n = s.table.slot(j)) f(std::string_view{n->key}, std::as_const(n->instance));
      }
    }
  }

  /// Keys held now (exact when no other thread is inserting or evicting).
  [[nodiscard]] std::size_t size() const noexcept { return count_.load(std::memory_order_relaxed); }

  /// The map's own numbers: keys held, the bound, refusals of every key
  /// together and evictions. The refusals are those of the pipeline path
  /// (admit, enqueue): a refusal from get(key)->try_acquire() is the
  /// instance's own business (its stats, with count_calls where it has
  /// that). Counted on a thread-sharded counter, so a flood of refusals from
  /// many threads does not meet on one cache line.
  [[nodiscard]] keyed_stats stats() const noexcept {
    return {count_.load(std::memory_order_relaxed), max_keys_, rejected_.load(),
            evicted_.load(std::memory_order_relaxed)};
  }

  [[nodiscard]] std::size_t max_keys() const noexcept { return max_keys_; }
  [[nodiscard]] std::size_t shard_count() const noexcept { return shard_count_; }
  [[nodiscard]] const Options& options() const noexcept { return options_; }
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  static constexpr std::size_t target_per_shard = 64;
  static constexpr std::size_t max_shards = 65536;
  // A full shard looks at this many slots for a victim: all of them in a
  // shard sized by default (its share is under 128 keys, its cap twice
  // that, so its table never needs more than 512 slots). The candidates sit
  // on the stack (12 KB at most).
  static constexpr std::size_t scan_window = 512;
  // Recency is recorded to this resolution, so a hot key is written at most
  // this often (a lookup otherwise only reads the entry).
  static constexpr std::int64_t lru_resolution = 1'000'000;  // 1 ms

  struct alignas(detail::cache_line) shard {
    mutable std::shared_mutex mutex;
    detail::keyed_table<node> table;
    std::size_t hand = 0;  // where the next eviction scan starts
  };

  static instance_type make_instance(const Options& options, const Clock& clock, const listener_type& listener,
                                     std::string_view key) {
    if constexpr (std::is_same_v<listener_type, no_listener>) {
      (void)listener;
      (void)key;
      return instance_type(options, clock);
    } else {
      return instance_type(options, clock, listener, key);
    }
  }

  static void pin(node* n) noexcept {
    // Relaxed: taken under the shard lock while the table holds a reference,
    // so the node cannot be freed meanwhile; the lock orders it against the
    // evictor's check.
    n->refs.fetch_add(1, std::memory_order_relaxed);
  }
  static void unpin(node* n) noexcept {
    // acq_rel: the last holder's writes to the instance happen before the delete.
    if (n->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete n;
  }
  // Only the table holds it. Acquire pairs with unpin's release, so the
  // idle check sees everything the last user did to the instance.
  static bool evictable(const node* n) noexcept { return n->refs.load(std::memory_order_acquire) == 1; }

  [[nodiscard]] std::size_t hash_of(std::string_view key) const noexcept {
    return static_cast<std::size_t>(detail::splitmix64_mix(std::hash<std::string_view>{}(key) ^ seed_));
  }
  static constexpr std::uint32_t low(std::size_t h) noexcept { return static_cast<std::uint32_t>(h); }
  [[nodiscard]] shard& shard_for(std::size_t h) const noexcept {
    return shards_[shard_shift_ == 0 ? 0 : static_cast<std::size_t>(static_cast<std::uint64_t>(h) >> shard_shift_)];
  }

  static void touch(node* n, std::int64_t now) noexcept {
    // Relaxed: recency is a hint for eviction, never a correctness condition.
    if (now - n->last_used.load(std::memory_order_relaxed) >= lru_resolution) {
      n->last_used.store(now, std::memory_order_relaxed);
    }
  }

  // Finds or creates the entry for `key` and pins it.
  node* acquire(std::string_view key, timestamp at) {
    const std::int64_t now = at.time_since_epoch().count();
    const std::size_t h = hash_of(key);
    shard& s = shard_for(h);
    node* n = nullptr;
    {
      std::shared_lock lock(s.mutex);
      n = s.table.find(key, low(h));
      if (n != nullptr) pin(n);
    }
    if (n != nullptr) {
      touch(n, now);
      return n;
    }
    std::unique_lock lock(s.mutex);
    n = s.table.find(key, low(h));
    if (n != nullptr) {
      pin(n);
      lock.unlock();
      touch(n, now);
      return n;
    }
    if (full(s)) make_room(s, at);
    auto fresh = std::make_unique<node>(key, low(h), options_, clock_, listener_);
    fresh->last_used.store(now, std::memory_order_relaxed);
    s.table.insert(fresh.get());
    count_.fetch_add(1, std::memory_order_relaxed);
    n = fresh.release();
    pin(n);
    return n;
  }

  // With the shard held exclusively: evicts every idle entry among the
  // slots scanned, then, while the shard is still full (or over its share),
  // the least recently used entries not in use.
  void make_room(shard& s, timestamp now) noexcept {
    const std::size_t slots = s.table.slot_count();
    if (slots == 0) return;
    const std::size_t window = std::min(slots, scan_window);
    node* idle[scan_window];
    std::size_t idle_count = 0;
    std::pair<std::int64_t, node*> busy[scan_window];  // (last used, entry)
    std::size_t busy_count = 0;
    std::size_t i = s.hand & (slots - 1);
    for (std::size_t k = 0; k < window; ++k, i = (i + 1) & (slots - 1)) {
      node* n = s.table.slot(i);
      if (n == nullptr || !evictable(n)) continue;
      if (n->instance.idle(now)) {
        idle[idle_count++] = n;
      } else {
        // Stable while we hold the shard: only pinned entries are touched.
        busy[busy_count++] = {n->last_used.load(std::memory_order_relaxed), n};
      }
    }
    s.hand = i;
    for (std::size_t k = 0; k < idle_count; ++k) drop(s, idle[k]);
    const std::size_t size = s.table.size();
    const std::size_t total = count_.load(std::memory_order_relaxed);
    std::size_t excess = std::max(size >= shard_cap_ ? size - shard_cap_ + 1 : 0,
                                  total >= max_keys_ ? total - max_keys_ + 1 : 0);
    excess = std::min(excess, busy_count);
    if (excess == 0) return;
    std::partial_sort(busy, busy + excess, busy + busy_count,
                      [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::size_t k = 0; k < excess; ++k) drop(s, busy[k].second);
  }

  // Removes an entry nobody else holds (with the shard held exclusively).
  void drop(shard& s, node* n) noexcept {
    s.table.erase(n);
    count_.fetch_sub(1, std::memory_order_relaxed);
    evicted_.fetch_add(1, std::memory_order_relaxed);  // a tally beside count_, on the same slow path
    unpin(n);  // the last reference: frees it
  }

  // With the shard held: no room for another key, in the map or in this
  // shard. Relaxed: the count is a bound, not a synchronisation point;
  // inserts racing in other shards can overshoot it by one each.
  [[nodiscard]] bool full(const shard& s) const noexcept {
    return s.table.size() >= shard_cap_ || count_.load(std::memory_order_relaxed) >= max_keys_;
  }

  Options options_;
  [[no_unique_address]] Clock clock_;
  [[no_unique_address]] listener_type listener_;
  std::unique_ptr<shard[]> shards_;
  std::size_t shard_count_ = 0;
  int shard_shift_ = 0;
  std::size_t max_keys_ = 0;
  std::size_t shard_cap_ = 0;
  std::uint64_t seed_ = 0;
  // Keys in the map. Written on insert and eviction only, never by a
  // lookup; on its own cache line so that it does not slow the shards.
  alignas(detail::cache_line) std::atomic<std::size_t> count_{0};
  std::atomic<std::uint64_t> evicted_{0};
  detail::sharded_counter<> rejected_{};
};

}  // namespace armor
