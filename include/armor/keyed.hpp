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
// from get() pins its instance; a permit taken from it does not). With
// expire_after, a key is forgotten that long after its last use. What P
// must provide, eviction, expiry, stats(), locking and costs:
// docs/token_bucket.md#keyedp-one-instance-per-key. reconfigure(options)
// changes every key's P at run time when P can: docs/reconfiguration.md.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/key_tally.hpp>
#include <armor/detail/keyed_table.hpp>
#include <armor/detail/random.hpp>
#include <armor/detail/short_key.hpp>
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
#include <cstring>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace armor {

/// The options of armor::keyed.
struct keyed_options {
  /// The most keys held at once; >= 1.
  std::size_t max_keys = 100'000;
  /// The number of shards: 0 (the default) picks the largest power of two
  /// not above max_keys / 64 (at least 1, at most 65536); otherwise a power
  /// of two, at most max_keys and 65536.
  std::size_t shards = 0;
  /// Forget a key this long after its last use (its last get() or
  /// admission), even if its instance is not idle: the next use of the key
  /// starts afresh (a session, an HAProxy stick-table entry). An entry is
  /// forgotten no sooner than expire_after after its last use and no later
  /// than 1 ms after that; its memory goes back when its key returns, when
  /// its shard needs room, on evict_idle(), or as inserts sweep past it.
  /// Never while it is in use. 0 (the default): keys do not expire.
  std::chrono::nanoseconds expire_after{0};
  /// In a pipeline, which of the call's keys picks the instance:
  /// call_options::key (the default) or key_source::slot(i) for
  /// call_options::keys[i], so that a per-IP and a per-bucket map share one
  /// pipeline (docs/architecture.md, "Several keys per call"); or
  /// key_source::host(), the host a host set layer outside picked (a
  /// breaker per host: docs/host_sets.md#in-a-pipeline).
  key_source key{};
  /// Keys whose refusals are also counted one by one (for a series per key,
  /// armor_keyed_key_rejected_total): the first this many keys refused have
  /// a count of their own for the life of the map; the refusals of every
  /// later key are counted together under the key "other". 0 (the
  /// default): only the count of all keys together. At most 1024; about 180
  /// to 360 bytes per key, allocated at construction. docs/observability.md.
  std::size_t rejected_keys = 0;
};

/// The counters of an armor::keyed map (keyed::stats()): how many keys it
/// holds and why entries left. Relaxed atomics, read one shard at a time.
struct keyed_stats {
  std::uint64_t keys = 0;          ///< keys held now
  std::uint64_t max_keys = 0;      ///< keyed_options::max_keys
  /// Calls a key's instance refused as a pipeline layer (admit, enqueue),
  /// all keys together; always kept (a refusal is the slow path).
  std::uint64_t rejected = 0;
  std::uint64_t created = 0;       ///< entries created (a key's first use, or its use after it left)
  std::uint64_t expired = 0;       ///< entries forgotten expire_after after their last use
  std::uint64_t evicted_idle = 0;  ///< idle entries evicted to make room or by evict_idle()
  std::uint64_t evicted_lru = 0;   ///< busy entries evicted, least recently used first, to make room
  std::uint64_t erased = 0;        ///< entries removed by erase()

  /// Entries that left, for any reason.
  [[nodiscard]] constexpr std::uint64_t removed() const noexcept {
    return expired + evicted_idle + evicted_lru + erased;
  }

  static constexpr auto fields() noexcept {
    constexpr std::string_view removed_total = "armor_keyed_removed_total";
    constexpr std::string_view removed_help = "Entries the keyed map removed, by reason.";
    return std::tuple{
        armor::gauge("keys", &keyed_stats::keys, "armor_keyed_keys", "Keys the keyed map holds now."),
        armor::gauge("max_keys", &keyed_stats::max_keys, "armor_keyed_max_keys", "The most keys the keyed map holds."),
        armor::counter("rejected", &keyed_stats::rejected, "armor_keyed_rejected_total",
                       "Calls refused by their key's policy in a pipeline or given to record_rejection(), all keys together."),
        armor::counter("created", &keyed_stats::created, "armor_keyed_created_total",
                       "Entries the keyed map created (first use of a key, or use after it left)."),
        armor::counter("expired", &keyed_stats::expired, removed_total, removed_help).labelled("reason", "expired"),
        armor::counter("evicted_idle", &keyed_stats::evicted_idle, removed_total, removed_help)
            .labelled("reason", "idle"),
        armor::counter("evicted_lru", &keyed_stats::evicted_lru, removed_total, removed_help)
            .labelled("reason", "lru"),
        armor::counter("erased", &keyed_stats::erased, removed_total, removed_help).labelled("reason", "erased"),
    };
  }
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
struct keyed_options_of {
  using type = typename P::options_type;
};
template <class P>
  requires requires { typename P::keyed_options_type; }
struct keyed_options_of<P> {
  using type = typename P::keyed_options_type;
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
/// key when the instance has a listener, from the options and clock (and
/// the key, if it takes one: a quota tracker whose counts are kept per key)
/// otherwise.
template <class I, class Options, class Clock, class Listener>
concept keyed_buildable =
    (std::is_same_v<Listener, no_listener> && (std::constructible_from<I, const Options&, Clock> ||
                                               std::constructible_from<I, const Options&, Clock, std::string_view>)) ||
    (!std::is_same_v<Listener, no_listener> &&
     std::constructible_from<I, const Options&, Clock, const Listener&, std::string_view>);

template <class P>
struct keyed_clock_of {
  using type = steady_clock;
};
template <class P>
  requires(requires { typename P::wall_clock_type; } && !requires { typename P::clock_type; })
struct keyed_clock_of<P> {  // armor::quota_tracker: its wall clock
  using type = typename P::wall_clock_type;
};
template <class P>
  requires requires { typename P::clock_type; }
struct keyed_clock_of<P> {
  using type = typename P::clock_type;
};

/// Whether P keeps time on its own wall clock, whatever the pipeline's
/// (armor::quota_tracker): keyed then keeps recency on that clock too.
template <class I>
concept keyed_wall_clocked = requires { typename I::wall_clock_type; } && !requires { typename I::clock_type; };

/// keyed<P> names a clock_type (which a pipeline must match) unless P
/// keeps time on its own wall clock: a keyed quota tracker, like a quota
/// tracker, sits in a pipeline of any clock.
template <class I, class Clock>
struct keyed_clock_base {
  using clock_type = Clock;
};
template <class I, class Clock>
  requires keyed_wall_clocked<I>
struct keyed_clock_base<I, Clock> {};

/// What keyed<P>::reconfigure takes and options() returns: the map's
/// options, or, for options that carry more than P's reconfigure() takes
/// (a keyed quota tracker's keyed_quota_options: the tracker options and
/// a storage prototype that cannot be copied), P's own options, read with
/// `keyed_reconfigure_part(const Options&)` and applied to the map's with
/// `keyed_reconfigure(Options&, const P::options_type&)` (which validates,
/// then replaces that part), both found by argument-dependent lookup
/// beside the options' type (armor/quota_tracker.hpp).
template <class Options, class I>
struct keyed_reconfigure_of {
  using type = Options;
  static constexpr bool split = false;
};
template <class Options, class I>
  requires requires { typename I::options_type; } && (!std::is_same_v<typename I::options_type, Options>) &&
           requires(Options& o, const Options& co, const typename I::options_type& next) {
             keyed_reconfigure(o, next);
             { keyed_reconfigure_part(co) } -> std::convertible_to<const typename I::options_type&>;
           }
struct keyed_reconfigure_of<Options, I> {
  using type = typename I::options_type;
  static constexpr bool split = true;
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
template <class P, class Options = typename detail::keyed_options_of<P>::type,
          class Clock = typename detail::keyed_clock_of<P>::type>
class keyed : public detail::keyed_clock_base<typename detail::keyed_instance_of<P>::type, Clock> {
 public:
  /// What is stored per key.
  using instance_type = typename detail::keyed_instance_of<P>::type;
  using options_type = Options;
  /// What reconfigure() takes and options() returns: Options, or for a
  /// keyed quota tracker whose storage is kept per key (keyed_quota_options),
  /// quota_tracker_options (the storage prototype cannot change or be copied).
  using reconfigure_type =
      typename detail::keyed_reconfigure_of<Options, typename detail::keyed_instance_of<P>::type>::type;

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
                "armor::keyed<P>: P must be constructible from (const Options&, Clock[, std::string_view key]), or, when it has a listener, "
                "from (const Options&, Clock, const Listener&, std::string_view key)");
  static_assert(requires(const instance_type& i, timestamp now) {
                  { i.idle(now) } noexcept -> std::same_as<bool>;
                }, "armor::keyed<P>: P must have `bool idle(armor::timestamp) const noexcept`");

 private:
  struct shard;

  // What an entry holds while it is in use.
  struct payload {
    payload(std::string_view k, const Options& options, const Clock& clock, const listener_type& listener)
        : key(k), instance(make_instance(options, clock, listener, std::string_view{key})) {}
    detail::short_key key;  // 16 bytes: up to 15 characters inline
    instance_type instance;
  };

  // One slot of a shard's chunks: a header that lives as long as the chunk
  // (so that a lookup without the lock may read refs of a slot that was
  // freed or reused meanwhile) and the payload, built and destroyed with
  // each entry. 128 bytes for a token bucket (96 bytes).
  struct node {
    // 0: free, being built, or claimed by an evictor (a lookup then takes
    // the lock); otherwise the table's reference + one per pin.
    std::atomic<std::uint32_t> refs{0};
    std::uint32_t hash = 0;                  // low half of the key's hash (the table's)
    std::atomic<std::int64_t> last_used{0};  // ns, to lru_resolution
    alignas(payload) unsigned char storage[sizeof(payload)];

    payload& body() noexcept { return *std::launder(reinterpret_cast<payload*>(storage)); }
    const payload& body() const noexcept { return *std::launder(reinterpret_cast<const payload*>(storage)); }
    [[nodiscard]] std::string_view key_view() const noexcept { return body().key; }
    // A free slot's link (in the payload's place).
    node*& next_free() noexcept { return *std::launder(reinterpret_cast<node**>(storage)); }
  };

 public:
  /// A pinned reference to one key's instance: while it lives the entry is
  /// not evicted, and its memory outlives an erase(). Move-only.
  class handle {
   public:
    handle() noexcept = default;
    handle(handle&& other) noexcept : n_(std::exchange(other.n_, nullptr)), s_(other.s_) {}
    handle& operator=(handle&& other) noexcept {
      if (this != &other) {
        reset();
        n_ = std::exchange(other.n_, nullptr);
        s_ = other.s_;
      }
      return *this;
    }
    handle(const handle&) = delete;
    handle& operator=(const handle&) = delete;
    ~handle() { reset(); }

    [[nodiscard]] explicit operator bool() const noexcept { return n_ != nullptr; }
    [[nodiscard]] instance_type& operator*() const noexcept { return n_->body().instance; }
    [[nodiscard]] instance_type* operator->() const noexcept { return &n_->body().instance; }
    [[nodiscard]] std::string_view key() const noexcept { return n_->key_view(); }

    /// Unpins (the handle becomes empty).
    void reset() noexcept {
      if (node* n = std::exchange(n_, nullptr)) unpin(*s_, n);
    }

   private:
    friend class keyed;
    handle(node* n, shard& s) noexcept : n_(n), s_(&s) {}
    node* n_ = nullptr;
    shard* s_ = nullptr;  // where the entry's memory goes back
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
    detail::check_key_source(map_options.key, "armor::keyed");
    if (map_options.rejected_keys > detail::key_tally::max_keys) {
      detail::invalid_config("armor::keyed: rejected_keys must be at most 1024 (got " +
                             std::to_string(map_options.rejected_keys) + ")");
    }
    if (map_options.rejected_keys != 0) {
      rejected_by_key_ = std::make_unique<detail::key_tally>(map_options.rejected_keys);
    }
    key_ = map_options.key;
    if (map_options.expire_after.count() < 0) {
      detail::invalid_config("armor::keyed: expire_after must not be negative (got " +
                             std::to_string(map_options.expire_after.count()) + " ns)");
    }
    // Recency is recorded to lru_resolution: waiting that much longer never
    // forgets a key sooner than expire_after after its last use.
    expire_after_ = map_options.expire_after.count() == 0
                        ? 0
                        : detail::saturating_add(map_options.expire_after.count(), lru_resolution);
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
    // Each shard may hold up to twice its even share, so that uneven hashing
    // does not make the map evict before it holds max_keys in all.
    const std::size_t share = (max_keys_ + shards - 1) / shards;
    shard_cap_ = std::min(2 * share, max_keys_);
    directory_ = std::make_unique<std::atomic<std::uintptr_t>[]>(shards);
    auto fresh = std::make_unique<core>(shards);
    for (std::size_t i = 0; i < shards; ++i) {
      fresh->shards[i].table = detail::keyed_table<node>(share);
      fresh->shards[i].owner = fresh.get();
    }
    core_ = fresh.release();
    shards_ = core_->shards.get();
    seed_ = detail::entropy_seed(this);
  }

  /// Not thread-safe: move a map before sharing it.
  keyed(keyed&& other) noexcept
      : options_(std::move(other.options_)),
        clock_(std::move(other.clock_)),
        listener_(std::move(other.listener_)),
        core_(std::exchange(other.core_, nullptr)),
        shards_(std::exchange(other.shards_, nullptr)),
        directory_(std::move(other.directory_)),
        shard_count_(std::exchange(other.shard_count_, 0)),
        shard_shift_(other.shard_shift_),
        max_keys_(other.max_keys_),
        shard_cap_(other.shard_cap_),
        expire_after_(other.expire_after_),
        key_(other.key_),
        seed_(other.seed_),
        count_(other.count_.exchange(0, std::memory_order_relaxed)),
        rejected_(other.rejected_),
        rejected_by_key_(std::move(other.rejected_by_key_)) {}
  keyed& operator=(keyed&&) = delete;
  keyed(const keyed&) = delete;
  keyed& operator=(const keyed&) = delete;

  /// Drops the map's references; entries still pinned by a handle or a
  /// permit live until those are released.
  ~keyed() {
    if (core_ == nullptr) return;
    // Each shard gives back the map's memory when its last entry goes: now,
    // or when the last handle to an entry of it is released.
    core_->holders.fetch_add(shard_count_, std::memory_order_relaxed);
    for (std::size_t i = 0; i < shard_count_; ++i) {
      shard& s = shards_[i];
      for (std::size_t j = 0; j < s.table.slot_count(); ++j) {
        node* n = s.table.slot(j);
        if (n != nullptr && n->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) free_locked(s, n);
      }
      if (s.live.fetch_sub(1, std::memory_order_acq_rel) == 1) retire(s);
    }
    if (core_->holders.fetch_sub(1, std::memory_order_acq_rel) == 1) delete core_;
  }

  /// Policy protocol: the instance for the call's key (ctx.key(), or the one
  /// keyed_options::key selects; created if new) admits.
  /// Throws std::bad_alloc if a new key cannot be stored.
  [[nodiscard]] admission<permit> admit(context& ctx) {
    handle h = acquire(ctx.key(key_), now_of(ctx));
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
    record_rejection(h.key());
    return admission<permit>::reject(inner.code, inner.retry_after, inner.retryable);
  }

  /// Policy protocol, for instances that queue (armor::bulkhead,
  /// armor::adaptive_limit): the instance for ctx.key() puts the driver's
  /// waiter in its queue.
  [[nodiscard]] admission<permit> enqueue(context& ctx, queue_waiter& waiter)
    requires queueing_policy<instance_type>
  {
    handle h = acquire(ctx.key(key_), now_of(ctx));
    auto inner = h->enqueue(ctx, waiter);
    switch (inner.kind) {
      case admission_kind::admitted: return admission<permit>::admit(permit(std::move(h), std::move(inner.permit)));
      case admission_kind::queued:
        return admission<permit>::queued(inner.delay, permit(std::move(h), std::move(inner.permit)), inner.code);
      default: break;
    }
    record_rejection(h.key());
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
  [[nodiscard]] handle get(std::string_view key, timestamp now) { return acquire(key, now); }

  /// The instance for `key` if it exists (an empty handle otherwise).
  [[nodiscard]] handle find(std::string_view key) const noexcept {
    const std::size_t h = hash_of(key);
    shard& s = shard_for(h);
    std::shared_lock lock(s.mutex);
    node* n = s.table.find(key, low(h));
    if (n == nullptr) return {};
    pin(n);
    return handle(n, s);
  }

  /// Removes `key` now (a handle to it stays valid). Returns whether it was there.
  bool erase(std::string_view key) noexcept {
    const std::size_t h = hash_of(key);
    shard& s = shard_for(h);
    const std::unique_lock lock(s.mutex);
    node* n = s.table.find(key, low(h));
    if (n == nullptr) return false;
    drop(s, n, s.erased);  // a handle to it keeps it until released
    return true;
  }

  /// Evicts every idle or expired entry not in use, in every shard.
  /// Returns how many. (Entries are also evicted on demand when a shard is
  /// full; this is for callers that want memory back sooner.)
  std::size_t evict_idle(timestamp now) {
    const std::int64_t t = now.time_since_epoch().count();
    std::size_t evicted = 0;
    std::vector<std::pair<node*, bool>> victims;  // (entry, expired)
    for (std::size_t i = 0; i < shard_count_; ++i) {
      shard& s = shards_[i];
      victims.clear();
      std::unique_lock lock(s.mutex);
      victims.reserve(s.table.size());  // before any entry is claimed: may throw
      for (std::size_t j = 0; j < s.table.slot_count(); ++j) {
        node* n = s.table.slot(j);
        if (n == nullptr || !claim(n)) continue;
        if (expired(n, t)) {
          victims.emplace_back(n, true);
        } else if (n->body().instance.idle(now)) {
          victims.emplace_back(n, false);
        } else {
          unclaim(n);
        }
      }
      for (const auto& [n, old] : victims) drop_claimed(s, n, old ? s.expired : s.evicted_idle);
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
        if (const node* n = s.table.slot(j)) f(n->key_view(), std::as_const(n->body().instance));
      }
    }
  }

  /// Counts a refusal of `key` decided outside a pipeline (a request
  /// handler's `get(ip)->try_acquire()` that failed) as admit() counts its
  /// own: in keyed_stats::rejected and, with keyed_options::rejected_keys,
  /// per key. Lock-free, allocates nothing; a thread-sharded counter for
  /// the total, one relaxed addition for the key.
  void record_rejection(std::string_view key) noexcept {
    rejected_.add();
    if (rejected_by_key_) rejected_by_key_->add(key, hash_of(key));
  }

  /// Calls `f(std::string_view key, std::uint64_t refusals)` for every key
  /// with a refusal count of its own (keyed_options::rejected_keys), in the
  /// order of their first refusal; the keys stay after they leave the map.
  /// Takes no lock; allocates nothing.
  template <class F>
    requires std::invocable<F&, std::string_view, std::uint64_t>
  void for_each_rejected(F&& f) const {
    if (rejected_by_key_) rejected_by_key_->for_each(f);
  }

  /// Refusals of the keys without a count of their own (0 when
  /// keyed_options::rejected_keys is 0).
  [[nodiscard]] std::uint64_t rejected_other() const noexcept {
    return rejected_by_key_ ? rejected_by_key_->other() : 0;
  }

  /// keyed_options::rejected_keys.
  [[nodiscard]] std::size_t rejected_keys() const noexcept {
    return rejected_by_key_ ? rejected_by_key_->capacity() : 0;
  }

  /// Keys held now (exact when no other thread is inserting or evicting).
  [[nodiscard]] std::size_t size() const noexcept { return count_.load(std::memory_order_relaxed); }

  [[nodiscard]] std::size_t max_keys() const noexcept { return max_keys_; }
  /// keyed_options::expire_after (0: keys do not expire).
  [[nodiscard]] std::chrono::nanoseconds expire_after() const noexcept {
    return std::chrono::nanoseconds{expire_after_ == 0 ? 0 : expire_after_ - lru_resolution};
  }

  /// The map's counters (see keyed_stats). Reads no lock. The refusals are
  /// those of the pipeline path (admit, enqueue): a refusal from
  /// get(key)->try_acquire() is the instance's own business (its stats, with
  /// count_calls where it has that). They are counted on a thread-sharded
  /// counter, so a flood of refusals from many threads does not meet on one
  /// cache line.
  [[nodiscard]] keyed_stats stats() const noexcept {
    keyed_stats st;
    st.keys = size();
    st.max_keys = max_keys_;
    st.rejected = rejected_.load();
    for (std::size_t i = 0; i < shard_count_; ++i) {
      const shard& s = shards_[i];
      st.created += s.created.load(std::memory_order_relaxed);
      st.expired += s.expired.load(std::memory_order_relaxed);
      st.evicted_idle += s.evicted_idle.load(std::memory_order_relaxed);
      st.evicted_lru += s.evicted_lru.load(std::memory_order_relaxed);
      st.erased += s.erased.load(std::memory_order_relaxed);
    }
    return st;
  }
  [[nodiscard]] std::size_t shard_count() const noexcept { return shard_count_; }
  /// keyed_options::key: which of a call's keys this map uses in a pipeline.
  [[nodiscard]] key_source key() const noexcept { return key_; }
  /// The options new keys are built with: those given at construction, or
  /// to the last reconfigure() (a copy, under the map's options mutex). For
  /// a keyed quota tracker whose storage is kept per key, the tracker
  /// options (keyed_quota_options::quota: the storage is not copied).
  [[nodiscard]] reconfigure_type options() const {
    const std::shared_lock lock(options_mutex_);
    if constexpr (detail::keyed_reconfigure_of<Options, instance_type>::split) {
      return keyed_reconfigure_part(options_);
    } else {
      return options_;
    }
  }

  /// Reconfigures every key's instance, and the options new keys are built
  /// with, when P has reconfigure(const Options&) (docs/reconfiguration.md).
  /// Validated first, all or nothing: a scratch instance built with the
  /// current options is reconfigured with `options`, so a value P's
  /// reconfigure() refuses (a bad one, or a change of an option fixed at
  /// construction) throws its armor::error(invalid_argument), naming it,
  /// and nothing changes. Then the options for new keys are replaced, and
  /// every key held gets `options` through its own reconfigure() (with its
  /// shard's lock held shared: lookups go on; inserts and evictions in that
  /// shard wait for the shard's turn). A key created meanwhile is built
  /// with the new options. What each instance keeps is P's rule (its
  /// counts, its window, its learned limit). Reconfigure calls on one map
  /// run one at a time. Allocates (the scratch instance, the copy).
  ///
  /// A keyed quota tracker whose storage is kept per key (its options are
  /// keyed_quota_options: SQLite, Redis, any_quota_storage) takes the
  /// tracker options alone (reconfigure_type): they are checked by
  /// quota_tracker::check_reconfigure and the storage prototype's
  /// takes_limits() instead of a scratch tracker (no storage is opened),
  /// then every key's tracker and every key made later get them; the
  /// storage prototype stays. Each key keeps the usage its storage holds
  /// (in the file, in Redis) and the new limits apply to it.
  void reconfigure(const reconfigure_type& options)
    requires requires(instance_type& i, const reconfigure_type& o) { i.reconfigure(o); }
  {
    const std::lock_guard writer(reconfigure_mutex_);
    {
      const std::unique_lock lock(options_mutex_);
      if constexpr (detail::keyed_reconfigure_of<Options, instance_type>::split) {
        keyed_reconfigure(options_, options);  // throws, naming the option, before anything changed
      } else {
        instance_type scratch = make_instance(options_, clock_, listener_, std::string_view{});
        scratch.reconfigure(options);  // throws, naming the option, before anything changed
        options_ = options;
      }
    }
    for (std::size_t i = 0; i < shard_count_; ++i) {
      shard& s = shards_[i];
      std::shared_lock lock(s.mutex);
      for (std::size_t j = 0; j < s.table.slot_count(); ++j) {
        if (node* n = s.table.slot(j)) n->body().instance.reconfigure(options);
      }
    }
  }
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
  // Each insert also looks at this many slots past the shard's hand and
  // drops the expired entries there, so memory comes back without a sweep.
  static constexpr std::size_t sweep_per_insert = 2;
  // A full map whose inserting shard has no idle entry looks at up to this
  // many slots of other shards for idle or expired entries before evicting
  // a busy entry.
  static constexpr std::size_t reclaim_budget = 2048;

  struct core;

  // One shard: its lock and its table's one word share the first cache
  // line; a lookup of a key held reads neither (see acquire()). The rest is
  // read and written by inserts and evictions.
  struct alignas(64) shard {
    mutable std::shared_mutex mutex;
    detail::keyed_table<node> table;
    std::size_t hand = 0;  // where the next eviction scan starts
    // Counters (keyed_stats): written with the shard held exclusively,
    // read by stats() without it.
    std::atomic<std::uint64_t> created{0};
    std::atomic<std::uint64_t> expired{0};
    std::atomic<std::uint64_t> evicted_idle{0};
    std::atomic<std::uint64_t> evicted_lru{0};
    std::atomic<std::uint64_t> erased{0};
    // The entries' memory: the free nodes (with the shard held
    // exclusively; a few, the rest go to the map's pool), and the nodes of
    // entries whose last handle was released after they left the table
    // (pushed without the lock, taken back by the next insert).
    node* free = nullptr;
    std::size_t free_count = 0;
    std::atomic<node*> returned{nullptr};
    // Entries alive (in the table or held by a handle) + 1 while the map
    // lives: the shard gives up its hold on the map's memory at 0.
    std::atomic<std::size_t> live{1};
    core* owner = nullptr;
  };

  // The shards and the entries' memory, which outlive the map while a handle
  // holds an entry. Nodes are carved from chunks that go back only with the
  // core, so a lookup may read the header of any node the map ever had; free
  // nodes beyond a few per shard wait in a pool shared by the shards (so
  // that keys moving between shards do not make each keep its high-water
  // mark). The pool's mutex is taken only by an insert that finds its shard
  // without a free node, and by a free that leaves it with too many.
  struct core {
    explicit core(std::size_t n) : shards(std::make_unique<shard[]>(n)) {}
    core(const core&) = delete;
    core& operator=(const core&) = delete;
    ~core() {
      for (void* c = chunks; c != nullptr;) {
        void* prev = nullptr;
        std::memcpy(&prev, static_cast<unsigned char*>(c) + chunk_slots * sizeof(node), sizeof(void*));
        delete_chunk(c);
        c = prev;
      }
    }
    // 1 for the map + 1 per shard not yet retired once the map is destroyed.
    std::atomic<std::size_t> holders{1};
    std::unique_ptr<shard[]> shards;
    std::mutex pool_mutex;
    node* pool = nullptr;   // under pool_mutex
    void* chunks = nullptr;  // under pool_mutex; each chunk's last word links to the previous one
  };

  // Nodes are allocated this many at a time: with 128-byte nodes, glibc's
  // 16 bytes per allocation (the chunk's link fits in them) cost 4 bytes a
  // node. (Aligning chunks to cache lines would cost more: glibc keeps up to
  // the alignment again in use.) A shard keeps up to twice this many free
  // nodes before it gives some to the pool.
  static constexpr std::size_t chunk_slots = 4;
  static constexpr std::size_t chunk_bytes = chunk_slots * sizeof(node) + sizeof(void*);
  static void* new_chunk() {
    if constexpr (alignof(node) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
      return ::operator new(chunk_bytes, std::align_val_t{alignof(node)});
    } else {
      return ::operator new(chunk_bytes);
    }
  }
  static void delete_chunk(void* chunk) noexcept {
    if constexpr (alignof(node) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
      ::operator delete(chunk, std::align_val_t{alignof(node)});
    } else {
      ::operator delete(chunk);
    }
  }

  // With the shard held exclusively: a free node (refs 0) for a new entry,
  // from the shard's free list, the returned nodes, the map's pool, or a new
  // chunk. Throws std::bad_alloc.
  static node* take_node(shard& s) {
    if (s.free == nullptr) {
      s.free = s.returned.exchange(nullptr, std::memory_order_acquire);
      for (node* n = s.free; n != nullptr; n = n->next_free()) ++s.free_count;
    }
    if (s.free == nullptr) {
      core& c = *s.owner;
      const std::lock_guard lock(c.pool_mutex);
      for (std::size_t i = 0; i < chunk_slots && c.pool != nullptr; ++i) {
        node* n = c.pool;
        c.pool = n->next_free();
        n->next_free() = s.free;
        s.free = n;
        ++s.free_count;
      }
      if (s.free == nullptr) {
        void* chunk = new_chunk();
        auto* bytes = static_cast<unsigned char*>(chunk);
        std::memcpy(bytes + chunk_slots * sizeof(node), &c.chunks, sizeof(void*));
        c.chunks = chunk;
        for (std::size_t i = chunk_slots; i-- > 0;) {
          node* n = ::new (static_cast<void*>(bytes + i * sizeof(node))) node;
          n->next_free() = s.free;
          s.free = n;
        }
        s.free_count = chunk_slots;
      }
    }
    node* n = s.free;
    s.free = n->next_free();
    --s.free_count;
    return n;
  }
  // With the shard held exclusively: gives back a node take_node() gave
  // (refs 0, payload destroyed or never built).
  static void put_node(shard& s, node* n) noexcept {
    n->next_free() = s.free;
    s.free = n;
    if (++s.free_count <= 2 * chunk_slots) return;
    core& c = *s.owner;
    const std::lock_guard lock(c.pool_mutex);  // std::mutex::lock does not throw here in practice
    for (std::size_t i = 0; i < chunk_slots; ++i) {
      node* m = s.free;
      s.free = m->next_free();
      m->next_free() = c.pool;
      c.pool = m;
    }
    s.free_count -= chunk_slots;
  }

  // The entry's last reference went (refs is 0), with the shard held
  // exclusively (or in the destructor, which alone uses the free list then).
  static void free_locked(shard& s, node* n) noexcept {
    n->body().~payload();
    put_node(s, n);
    s.live.fetch_sub(1, std::memory_order_relaxed);  // the map's 1 keeps it above 0
  }
  // The entry's last reference went with a handle, after the entry left the
  // table; the map may be gone.
  static void free_unlocked(shard& s, node* n) noexcept {
    n->body().~payload();
    n->next_free() = s.returned.load(std::memory_order_relaxed);
    // Release: the link (and the destroyed payload) before the node's reuse.
    while (!s.returned.compare_exchange_weak(n->next_free(), n, std::memory_order_release,
                                             std::memory_order_relaxed)) {
    }
    // acq_rel: every entry's destruction happens before the core goes.
    if (s.live.fetch_sub(1, std::memory_order_acq_rel) == 1) retire(s);
  }
  // The map is gone and the shard holds no entry: it lets go of the core,
  // which goes (with every chunk) when the last shard does.
  static void retire(shard& s) noexcept {
    core* owner = s.owner;
    if (owner->holders.fetch_sub(1, std::memory_order_acq_rel) == 1) delete owner;
  }

  // With the shard held exclusively (the only writer): relaxed load + store.
  static void bump(std::atomic<std::uint64_t>& c) noexcept {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  // Not used for expire_after: forgotten. Relaxed: see touch().
  [[nodiscard]] bool expired(const node* n, std::int64_t now) const noexcept {
    return expire_after_ != 0 && now - n->last_used.load(std::memory_order_relaxed) >= expire_after_;
  }

  // The time recency and expiry are kept in: the pipeline's (ctx.now()),
  // except for a P on its own wall clock (a quota tracker), whose map reads
  // that clock, so that get() and admit() agree.
  [[nodiscard]] timestamp now_of(const context& ctx) const noexcept(noexcept(std::declval<const Clock&>().now())) {
    if constexpr (detail::keyed_wall_clocked<instance_type>) {
      return to_timestamp(clock_.now());
    } else {
      return ctx.now();
    }
  }

  static instance_type make_instance(const Options& options, const Clock& clock, const listener_type& listener,
                                     std::string_view key) {
    if constexpr (std::is_same_v<listener_type, no_listener> &&
                  std::constructible_from<instance_type, const Options&, Clock, std::string_view>) {
      (void)listener;
      return instance_type(options, clock, key);
    } else if constexpr (std::is_same_v<listener_type, no_listener>) {
      (void)listener;
      (void)key;
      return instance_type(options, clock);
    } else {
      return instance_type(options, clock, listener, key);
    }
  }

  static void pin(node* n) noexcept {
    // Relaxed: taken under the shard lock while the table holds a reference
    // (claims are made and undone under the exclusive lock), so refs is not
    // 0 and the entry cannot be freed meanwhile.
    n->refs.fetch_add(1, std::memory_order_relaxed);
  }
  // Without the lock: pins the entry unless refs is 0 (free, being built,
  // or claimed by an evictor). Acquire: pairs with the release that
  // published the entry (refs 0 -> 1) and with earlier unpins.
  static bool try_pin(node* n) noexcept {
    std::uint32_t r = n->refs.load(std::memory_order_relaxed);
    do {
      if (r == 0) return false;
    } while (!n->refs.compare_exchange_weak(r, r + 1, std::memory_order_acquire, std::memory_order_relaxed));
    return true;
  }
  // With the shard held exclusively: takes an entry only the table holds
  // (refs 1 -> 0), so that no lookup can pin it until unclaim() or its
  // removal. Acquire: the eviction checks see everything its last user did.
  static bool claim(node* n) noexcept {
    std::uint32_t one = 1;
    return n->refs.compare_exchange_strong(one, 0, std::memory_order_acquire, std::memory_order_relaxed);
  }
  static void unclaim(node* n) noexcept { n->refs.store(1, std::memory_order_release); }
  static void unpin(shard& s, node* n) noexcept {
    // acq_rel: the last holder's writes to the instance happen before the
    // destruction. The last holder is a handle only after the entry left
    // the table.
    if (n->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) free_unlocked(s, n);
  }

  [[nodiscard]] std::size_t hash_of(std::string_view key) const noexcept {
    return static_cast<std::size_t>(detail::splitmix64_mix(std::hash<std::string_view>{}(key) ^ seed_));
  }
  static constexpr std::uint32_t low(std::size_t h) noexcept { return static_cast<std::uint32_t>(h); }
  [[nodiscard]] std::size_t shard_index(std::size_t h) const noexcept {
    return shard_shift_ == 0 ? 0 : static_cast<std::size_t>(static_cast<std::uint64_t>(h) >> shard_shift_);
  }
  [[nodiscard]] shard& shard_for(std::size_t h) const noexcept { return shards_[shard_index(h)]; }

  static void touch(node* n, std::int64_t now) noexcept {
    // Relaxed: recency is a hint for eviction, never a correctness condition.
    if (now - n->last_used.load(std::memory_order_relaxed) >= lru_resolution) {
      n->last_used.store(now, std::memory_order_relaxed);
    }
  }

  // Finds or creates the entry for `key` and pins it.
  handle acquire(std::string_view key, timestamp at) {
    const std::int64_t now = at.time_since_epoch().count();
    const std::size_t h = hash_of(key);
    const std::size_t index = shard_index(h);
    shard& s = shards_[index];
    // A key held: found and pinned without the shard's lock, through the
    // directory (8 bytes a shard, so it stays in cache): one cache miss for
    // the slot, one for the entry, two atomic operations (pin, unpin).
    node* n = detail::keyed_table<node>::find_pinned(
        directory_[index].load(std::memory_order_acquire), key, low(h), [](node* x) { return try_pin(x); },
        // An entry pinned that holds another key may have moved to another
        // shard through the shared pool meanwhile: released to the shard of
        // the key it holds (pinned, so its key is alive), whose count of
        // live entries it is in if this is the last reference.
        [this](node* x) { unpin(shard_for(hash_of(x->key_view())), x); });
    if (n != nullptr) {
      if (!expired(n, now)) {
        touch(n, now);
        return handle(n, s);
      }
      unpin(s, n);  // an expired entry is replaced below, with the shard held exclusively
    }
    std::unique_lock lock(s.mutex);
    n = s.table.find(key, low(h));
    if (n != nullptr) {
      if (!expired(n, now) || !claim(n)) {  // in use by another caller: not expired
        pin(n);
        lock.unlock();
        touch(n, now);
        return handle(n, s);
      }
      drop_claimed(s, n, s.expired);  // its key starts afresh
    }
    if (full(s)) make_room(s, at);
    n = take_node(s);
    try {
      // Shared: inserts in other shards build theirs at the same time;
      // reconfigure() takes it exclusively to replace the options.
      std::shared_lock options_lock(options_mutex_);
      ::new (static_cast<void*>(n->storage)) payload(key, options_, clock_, listener_);
    } catch (...) {
      put_node(s, n);
      throw;
    }
    n->hash = low(h);
    n->last_used.store(now, std::memory_order_relaxed);
    s.live.fetch_add(1, std::memory_order_relaxed);
    sweep(s, now);
    // Its count stays 0 until the insert has succeeded: a lookup holding
    // this entry from a slot of its earlier life cannot pin it meanwhile,
    // so a throwing insert frees an entry nobody holds.
    try {
      s.table.insert(n);
    } catch (...) {
      free_locked(s, n);
      throw;
    }
    // The table's reference and ours. Release: a lookup that pins it sees
    // the payload; one that loaded the new slot before this store fails to
    // pin and takes the lock, which this insert holds.
    n->refs.store(2, std::memory_order_release);
    // Release: a lookup that loads the word sees the array's contents.
    directory_[index].store(s.table.word(), std::memory_order_release);
    count_.fetch_add(1, std::memory_order_relaxed);
    bump(s.created);
    return handle(n, s);
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
    // Every candidate is claimed (no lookup can pin it) until it is dropped
    // or, at the end, given back.
    for (std::size_t k = 0; k < window; ++k, i = (i + 1) & (slots - 1)) {
      node* n = s.table.slot(i);
      if (n == nullptr || !claim(n)) continue;
      if (expired(n, now.time_since_epoch().count()) || n->body().instance.idle(now)) {
        idle[idle_count++] = n;
      } else {
        // Stable while claimed: only pinned entries are touched.
        busy[busy_count++] = {n->last_used.load(std::memory_order_relaxed), n};
      }
    }
    s.hand = i;
    for (std::size_t k = 0; k < idle_count; ++k) {
      drop_claimed(s, idle[k], expired(idle[k], now.time_since_epoch().count()) ? s.expired : s.evicted_idle);
    }
    const std::size_t size = s.table.size();
    std::size_t total = count_.load(std::memory_order_relaxed);
    if (size < shard_cap_ && total >= max_keys_) {
      // The map is full but this shard is not: other shards' idle or
      // expired entries go before a busy entry of this one.
      (void)reclaim_elsewhere(s, now, total - max_keys_ + 1);
      total = count_.load(std::memory_order_relaxed);
    }
    std::size_t excess = std::max(size >= shard_cap_ ? size - shard_cap_ + 1 : 0,
                                  total >= max_keys_ ? total - max_keys_ + 1 : 0);
    excess = std::min(excess, busy_count);
    if (excess != 0) {
      std::partial_sort(busy, busy + excess, busy + busy_count,
                        [](const auto& a, const auto& b) { return a.first < b.first; });
    }
    for (std::size_t k = 0; k < excess; ++k) drop_claimed(s, busy[k].second, s.evicted_lru);
    for (std::size_t k = excess; k < busy_count; ++k) unclaim(busy[k].second);
  }

  // With `self` held exclusively: drops up to `want` idle or expired
  // entries of other shards, looking at up to reclaim_budget slots, from
  // where the last such search stopped (shards found with nothing to drop
  // are passed over until the cursor comes round again). Each shard is
  // taken only if its lock is free at once, so two shards doing this never
  // wait for each other. Returns how many it dropped.
  std::size_t reclaim_elsewhere(shard& self, timestamp now, std::size_t want) noexcept {
    const std::int64_t t = now.time_since_epoch().count();
    const std::size_t me = static_cast<std::size_t>(&self - shards_);
    const std::size_t mask = shard_count_ - 1;
    // Relaxed: a hint of where to look, shared by every shard.
    std::size_t at = reclaim_hand_.load(std::memory_order_relaxed) & mask;
    std::size_t budget = reclaim_budget;
    std::size_t got = 0;
    for (std::size_t k = 0; k < shard_count_ && got < want && budget > 0; ++k, at = (at + 1) & mask) {
      if (at == me) continue;
      shard& o = shards_[at];
      std::unique_lock lock(o.mutex, std::try_to_lock);
      if (!lock.owns_lock()) continue;
      const std::size_t slots = o.table.slot_count();
      const std::size_t look = std::min({slots, scan_window, budget});
      budget -= look;
      node* victims[scan_window];
      std::size_t count = 0;
      std::size_t i = slots == 0 ? 0 : o.hand & (slots - 1);
      for (std::size_t j = 0; j < look && got + count < want; ++j, i = (i + 1) & (slots - 1)) {
        node* n = o.table.slot(i);
        if (n == nullptr || !claim(n)) continue;
        if (expired(n, t) || n->body().instance.idle(now)) {
          victims[count++] = n;
        } else {
          unclaim(n);
        }
      }
      if (slots != 0) o.hand = i;
      for (std::size_t j = 0; j < count; ++j) {
        drop_claimed(o, victims[j], expired(victims[j], t) ? o.expired : o.evicted_idle);
      }
      got += count;
      if (got >= want) break;  // this shard may have more: start here next time
    }
    reclaim_hand_.store(at, std::memory_order_relaxed);
    return got;
  }

  // With the shard held exclusively, before an insert: drops the expired
  // entries among the next sweep_per_insert slots.
  void sweep(shard& s, std::int64_t now) noexcept {
    if (expire_after_ == 0) return;
    const std::size_t slots = s.table.slot_count();
    if (slots == 0) return;
    std::size_t i = s.hand & (slots - 1);
    for (std::size_t k = 0; k < std::min(sweep_per_insert, slots); ++k, i = (i + 1) & (slots - 1)) {
      node* n = s.table.slot(i);
      if (n == nullptr || !expired(n, now) || !claim(n)) continue;
      // Claimed after the check: a lookup may have touched it in between.
      if (expired(n, now)) {
        drop_claimed(s, n, s.expired);
      } else {
        unclaim(n);
      }
    }
    s.hand = i;
  }

  // Removes a claimed entry (with the shard held exclusively), counting
  // why in `reason`.
  void drop_claimed(shard& s, node* n, std::atomic<std::uint64_t>& reason) noexcept {
    s.table.erase(n);
    count_.fetch_sub(1, std::memory_order_relaxed);
    bump(reason);
    free_locked(s, n);
  }
  // Removes an entry that may be in use (erase()): the table's reference
  // goes; the last handle frees it.
  void drop(shard& s, node* n, std::atomic<std::uint64_t>& reason) noexcept {
    s.table.erase(n);
    count_.fetch_sub(1, std::memory_order_relaxed);
    bump(reason);
    if (n->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) free_locked(s, n);
  }

  // With the shard held: no room for another key, in the map or in this
  // shard. Relaxed: the count is a bound, not a synchronisation point;
  // inserts racing in other shards can overshoot it by one each.
  [[nodiscard]] bool full(const shard& s) const noexcept {
    return s.table.size() >= shard_cap_ || count_.load(std::memory_order_relaxed) >= max_keys_;
  }

  Options options_;  // under options_mutex_ once shared: what new keys are built with
  mutable std::shared_mutex options_mutex_;
  std::mutex reconfigure_mutex_;  // one reconfigure() at a time
  [[no_unique_address]] Clock clock_;
  [[no_unique_address]] listener_type listener_;
  core* core_ = nullptr;     // owned: see ~keyed()
  shard* shards_ = nullptr;  // core_->shards
  // Each shard's table word, apart from the shards (8 bytes a shard, so it
  // stays in cache), read by acquire()'s lookup without the lock. Release
  // (after a growth) and acquire (the lookup): the new array's contents.
  std::unique_ptr<std::atomic<std::uintptr_t>[]> directory_;
  std::size_t shard_count_ = 0;
  int shard_shift_ = 0;
  std::size_t max_keys_ = 0;
  std::size_t shard_cap_ = 0;
  std::int64_t expire_after_ = 0;  // ns, lru_resolution added; 0: never
  key_source key_{};                // which of a call's keys admit() uses
  std::uint64_t seed_ = 0;
  // Keys in the map. Written on insert and eviction only, never by a
  // lookup; on its own cache line so that it does not slow the shards.
  alignas(detail::cache_line) std::atomic<std::size_t> count_{0};
  detail::sharded_counter<> rejected_{};
  // Refusals per key (keyed_options::rejected_keys); null when that is 0,
  // so that a map without it carries one word, not the tally's counters.
  std::unique_ptr<detail::key_tally> rejected_by_key_;
  // Where the next search of other shards for room starts (reclaim_elsewhere).
  std::atomic<std::size_t> reclaim_hand_{0};
};

}  // namespace armor
