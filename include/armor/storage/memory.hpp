// armor/storage/memory.hpp: armor::memory_quota_storage, the default
// storage of armor::quota_tracker: lock-free atomics in this process, one
// word per window on one shared cache line.
//
//     armor::quota_tracker quota{{.windows = {armor::quota_window::per_day(50)}}};
//     // is armor::quota_tracker<armor::system_clock, armor::memory_quota_storage>
//
// The counts live as long as the tracker and are not shared with other
// processes (armor/storage/sqlite.hpp keeps them on disk, with the same
// rules). Layout, the all-or-nothing proof and the rolling-window sealing:
// docs/quota_tracker.md, "All or nothing, without a lock".
//
// Thread-safety: every member but the move and bind() may be called
// concurrently. Nothing allocates after bind(); nothing locks.
#pragma once

#include <armor/detail/config.hpp>
#include <armor/detail/quota_calendar.hpp>
#include <armor/storage/quota_storage.hpp>
#include <armor/detail/quota_word.hpp>
#include <armor/error.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>

namespace armor {

/// The default quota storage: counters in this process (see the top of this
/// header). Move-only; moving hands over the counters (not while in use).
class memory_quota_storage {
 public:
  memory_quota_storage() noexcept = default;
  memory_quota_storage(memory_quota_storage&&) noexcept = default;
  memory_quota_storage& operator=(memory_quota_storage&&) noexcept = default;
  memory_quota_storage(const memory_quota_storage&) = delete;
  memory_quota_storage& operator=(const memory_quota_storage&) = delete;
  ~memory_quota_storage() = default;

  /// Allocates the counters, all empty. Called once, by the tracker.
  void bind(std::span<const quota_window_layout> layouts) {
    if (layouts.size() > quota_max_windows) detail::invalid_config("armor::memory_quota_storage: too many windows");
    count_ = layouts.size();
    std::size_t ring = 0;
    for (std::size_t i = 0; i < count_; ++i) {
      windows_[i] = {layouts[i].limit, layouts[i].buckets, ring};
      ring += layouts[i].buckets;
    }
    counters_ = std::make_unique<counter_line>();
    if (ring > 0) {
      ring_ = std::make_unique<std::atomic<std::uint64_t>[]>(ring);
      // Relaxed: the storage is not shared yet; whatever shares it orders this.
      for (std::size_t k = 0; k < ring; ++k) ring_[k].store(detail::quota_empty, std::memory_order_relaxed);
    }
  }

  /// n units in every window, or none (rolled back on a refusal).
  [[nodiscard]] quota_consumption try_consume(const quota_stamp& at, std::int64_t n) noexcept {
    return try_consume_within(at, n, [this](std::size_t i) noexcept { return windows_[i].limit; });
  }

  /// The same, against `limits` (one per window) instead of the limits
  /// bound: how a quota_tracker whose limits change at run time
  /// (quota_tracker::reconfigure) decides with one whole set of them.
  [[nodiscard]] quota_consumption try_consume(const quota_stamp& at, std::int64_t n,
                                              const quota_values& limits) noexcept {
    return try_consume_within(at, n, [&limits](std::size_t i) noexcept { return limits[i]; });
  }

  /// n units in every window, whatever their limits (a settled overrun).
  [[nodiscard]] quota_consumption charge(const quota_stamp& at, std::int64_t n) noexcept {
    quota_consumption r;
    for (std::size_t i = 0; i < count_; ++i) {
      const step s = consume(i, at[i], n, 0, false);
      r.at[i] = s.slice;
      r.used[i] = s.used;
    }
    return r;
  }

 private:
  template <class Limit>
  [[nodiscard]] quota_consumption try_consume_within(const quota_stamp& at, std::int64_t n, Limit limit) noexcept {
    quota_consumption r;  // one object, returned in place on every path
    for (std::size_t i = 0; i < count_; ++i) {
      const step s = consume(i, at[i], n, limit(i), true);
      r.at[i] = s.slice;
      r.used[i] = s.used;
      if (!s.ok) {
        for (std::size_t j = 0; j < i; ++j) give_back(j, r.at[j], n);
        r.status = quota_storage_status::refused;
        r.window = i;
        return r;
      }
    }
    return r;
  }

 public:

  /// Gives back n units to the slices `at`, in each window still counting them.
  void release(const quota_stamp& at, std::int64_t n) noexcept {
    if (n <= 0) return;
    for (std::size_t i = 0; i < count_; ++i) give_back(i, at[i], n);
  }

  /// Window w's counts as of slice i (or the later slice it already holds,
  /// which is returned): one count for a fixed window, N + 1 for a rolling
  /// one, oldest bucket first.
  [[nodiscard]] std::int64_t read(std::size_t w, std::int64_t i, std::span<std::int64_t> out) const noexcept {
    const window& win = windows_[w];
    const std::atomic<std::uint64_t>& word_of = counters_->word[w];
    // Acquire: a rolling window's ring was sealed before its word moved.
    const std::uint64_t word = word_of.load(std::memory_order_acquire);
    const std::int64_t cur = detail::quota_slice(word, i);
    const std::int64_t slice = std::max(cur, i);
    if (win.buckets == 0) {
      if (!out.empty()) out[0] = cur == slice ? detail::quota_used(word) : 0;
      return slice;
    }
    const std::uint32_t n = win.buckets;
    if (out.size() < std::size_t{n} + 1) return slice;
    const std::atomic<std::uint64_t>* ring = &ring_[win.ring];
    std::size_t idx = static_cast<std::size_t>(detail::floor_mod(slice, n));  // ring index of bucket slice - n
    for (std::uint32_t k = 0; k < n; ++k, idx = idx + 1 == n ? 0 : idx + 1) {
      const std::int64_t s = slice - n + k;
      if (s == cur) {
        out[k] = detail::quota_used(word);  // not sealed yet: the word is the truth
      } else {
        const std::uint64_t v = ring[idx].load(std::memory_order_relaxed);  // ordered by the acquire above
        out[k] = detail::quota_holds(v, s) ? detail::quota_used(v) : 0;
      }
    }
    out[n] = cur == slice ? detail::quota_used(word) : 0;
    return slice;
  }

 private:
  struct alignas(detail::cache_line) counter_line {
    std::array<std::atomic<std::uint64_t>, quota_max_windows> word;  // per window: (slice tag, used)
    counter_line() noexcept {
      // Relaxed: not shared yet; whatever shares the storage orders this.
      for (auto& w : word) w.store(detail::quota_empty, std::memory_order_relaxed);
    }
  };
  struct window {
    std::int64_t limit = 0;
    std::uint32_t buckets = 0;  // 0: fixed
    std::size_t ring = 0;       // first sealed bucket in ring_
  };
  struct step {
    bool ok;
    std::int64_t slice;
    std::int64_t used;  // after the step (ok) or as found (refused)
  };

  step consume(std::size_t i, std::int64_t slice_now, std::int64_t n, std::int64_t limit, bool check) noexcept {
    const window& win = windows_[i];
    if (win.buckets != 0) return consume_rolling(i, slice_now, n, limit, check);
    std::atomic<std::uint64_t>& word = counters_->word[i];
    const std::int64_t need = n > 0 ? n : 1;
    // Relaxed: a fixed window is one word; each CAS checks and replaces the
    // latest count in its modification order, which is all the limit needs.
    std::uint64_t w = word.load(std::memory_order_relaxed);
    for (;;) {
      const std::int64_t cur = detail::quota_slice(w, slice_now);
      const bool same = cur >= slice_now;
      const std::int64_t slice = same ? cur : slice_now;
      const std::int64_t used = same ? detail::quota_used(w) : 0;
      if (check && used + need > limit) return {false, slice, used};
      const std::int64_t after = detail::quota_add(used, n);
      if (word.compare_exchange_weak(w, detail::quota_pack(slice, after), std::memory_order_relaxed,
                                     std::memory_order_relaxed)) {
        return {true, slice, after};
      }
    }
  }

  // Out of line: the sum of the buckets makes it large, and keeping it apart
  // lets the fixed-window step above inline into try_consume.
  step consume_rolling(std::size_t i, std::int64_t slice_now, std::int64_t n, std::int64_t limit,
                       bool check) noexcept {
    const window& win = windows_[i];
    std::atomic<std::uint64_t>& word = counters_->word[i];
    const std::int64_t need = n > 0 ? n : 1;
    const std::uint32_t nb = win.buckets;
    std::atomic<std::uint64_t>* ring = &ring_[win.ring];
    // Acquire: sees every bucket sealed before the word reached its bucket.
    std::uint64_t w = word.load(std::memory_order_acquire);
    for (;;) {
      const std::int64_t cur = detail::quota_slice(w, slice_now);
      std::int64_t slice = cur;
      std::int64_t in_current = detail::quota_used(w);
      if (cur < slice_now) {
        slice = slice_now;
        in_current = 0;
        if (slice_now - cur <= nb) seal(ring, nb, cur, detail::quota_used(w));
      }
      const std::int64_t past = sealed_sum(ring, nb, slice);
      const std::int64_t used = detail::quota_add(past, in_current);
      if (check && used + need > limit) return {false, slice, used};
      const std::int64_t after = detail::quota_add(in_current, n);
      // Release: publishes the seal above to whoever acquires the new word.
      if (word.compare_exchange_weak(w, detail::quota_pack(slice, after), std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
        return {true, slice, detail::quota_add(past, after)};
      }
    }
  }

  void give_back(std::size_t i, std::int64_t slice, std::int64_t n) noexcept {
    if (n <= 0) return;
    const window& win = windows_[i];
    std::atomic<std::uint64_t>& word = counters_->word[i];
    // Acquire (rolling): if the word has left `slice`, its seal is visible.
    std::uint64_t w = word.load(std::memory_order_acquire);
    for (;;) {
      if (!detail::quota_holds(w, slice)) break;
      const std::int64_t used = detail::quota_used(w);
      if (used == 0) return;
      // Relaxed would do for a fixed window; a rolling window's word keeps
      // its release sequence through any RMW, so this orders nothing new.
      if (word.compare_exchange_weak(w, detail::quota_pack(slice, used > n ? used - n : 0),
                                       std::memory_order_acq_rel, std::memory_order_acquire)) {
        return;
      }
    }
    const std::int64_t cur = detail::quota_slice(w, slice);
    // A fixed window's period is over, or the bucket has left the window:
    // those units no longer count anyway.
    if (win.buckets == 0 || cur < slice || cur - slice > win.buckets) return;
    const auto idx = static_cast<std::size_t>(detail::floor_mod(slice, win.buckets));
    std::atomic<std::uint64_t>& sealed = ring_[win.ring + idx];
    std::uint64_t v = sealed.load(std::memory_order_relaxed);  // the CAS below reads the latest value anyway
    for (;;) {
      if (!detail::quota_holds(v, slice)) return;
      const std::int64_t used = detail::quota_used(v);
      if (used == 0) return;
      if (sealed.compare_exchange_weak(v, detail::quota_pack(slice, used > n ? used - n : 0),
                                       std::memory_order_relaxed, std::memory_order_relaxed)) {
        return;
      }
    }
  }

  // Records bucket s's final count u in the ring, unless a count at least as
  // large (or a later bucket) is there already.
  static void seal(std::atomic<std::uint64_t>* ring, std::uint32_t nb, std::int64_t s, std::int64_t u) noexcept {
    std::atomic<std::uint64_t>& slot = ring[static_cast<std::size_t>(detail::floor_mod(s, nb))];
    // Acquire/release: a sealer that finds another's seal and returns still
    // publishes it through its own release CAS on the word.
    std::uint64_t v = slot.load(std::memory_order_acquire);
    for (;;) {
      const std::int64_t held = detail::quota_slice(v, s);
      if (held > s || (held == s && detail::quota_used(v) >= u)) return;
      if (slot.compare_exchange_weak(v, detail::quota_pack(s, u), std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
        return;
      }
    }
  }

  // The units in buckets slice - nb .. slice - 1.
  static std::int64_t sealed_sum(const std::atomic<std::uint64_t>* ring, std::uint32_t nb,
                                 std::int64_t slice) noexcept {
    std::int64_t sum = 0;
    std::size_t idx = static_cast<std::size_t>(detail::floor_mod(slice, nb));  // ring index of bucket slice - nb
    for (std::uint32_t k = 0; k < nb; ++k, idx = idx + 1 == nb ? 0 : idx + 1) {
      const std::int64_t s = slice - nb + k;
      // Relaxed: ordered by the acquire load of the word (see consume()).
      const std::uint64_t v = ring[idx].load(std::memory_order_relaxed);
      if (detail::quota_holds(v, s)) sum = detail::quota_add(sum, detail::quota_used(v));
    }
    return sum;
  }

  std::array<window, quota_max_windows> windows_{};
  std::size_t count_ = 0;
  std::unique_ptr<counter_line> counters_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> ring_;
};

static_assert(quota_storage<memory_quota_storage>);

}  // namespace armor
