// armor/storage/memory.hpp: armor::memory_quota_storage, the default
// storage of armor::quota_tracker: lock-free atomics in this process, one
// word per window on one shared cache line, or, for a tracker's fixed
// windows whose limits fit, all their counts in one 16-byte word.
//
//     armor::quota_tracker quota{{.windows = {armor::quota_window::per_day(50)}}};
//     // is armor::quota_tracker<armor::system_clock, armor::memory_quota_storage>
//
// The counts live as long as the tracker and are not shared with other
// processes (armor/storage/sqlite.hpp keeps them on disk, with the same
// rules). Layout, the all-or-nothing proof, the packed counters and the
// rolling-window sealing: docs/quota_tracker.md, "All or nothing, without a
// lock".
//
// Thread-safety: every member but the move and bind() may be called
// concurrently. Nothing allocates after bind(); nothing locks.
#pragma once

#include <armor/detail/config.hpp>
#include <armor/detail/quota_calendar.hpp>
#include <armor/storage/quota_storage.hpp>
#include <armor/detail/quota_word.hpp>
#include <armor/detail/wide_cas.hpp>
#include <armor/error.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <utility>

namespace armor {

namespace detail {

/// Limits laid out for memory_quota_storage::try_fast() (quota_tracker's
/// fast path): packed, per half, the sums over the windows of
/// (cap - limit) << shift and (2^c - first alert) << shift; one fixed
/// window, the limit and first alert themselves.
struct quota_fast_limits {
  std::array<std::uint64_t, 2> room{};
  std::array<std::uint64_t, 2> alert{};
  bool usable = false;
};
enum class quota_fast_result : std::uint8_t { declined, granted, granted_alerting };
struct quota_fast_outcome {
  quota_fast_result result = quota_fast_result::declined;
  std::array<std::uint64_t, 2> word{};  // granted: the counters as written
};

}  // namespace detail

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

  /// Called by quota_tracker after bind(): how each window numbers its
  /// slices. With two to eight windows, none rolling or lifetime, the
  /// shortest at least about 38 s, whose limits fit (see "Packed counters"
  /// in docs/quota_tracker.md), every window's count then
  /// lives in one 16-byte word and a consumption is one compare-and-swap.
  /// Without this call (another owner), the windows keep a word each.
  void bind_calendar(std::span<const detail::quota_cycle> cycles) noexcept {
    packed_ = false;
    if (cycles.size() != count_ || count_ < 2 || !counters_) return;
    // Per window, its shortest and longest slice (a month: 28 to 31 days).
    std::array<std::int64_t, quota_max_windows> shortest{}, longest{};
    for (std::size_t i = 0; i < count_; ++i) {
      if (windows_[i].buckets != 0) return;  // rolling: its buckets need the ring
      const detail::quota_cycle& c = cycles[i];
      switch (c.cut) {
        case detail::quota_cut::fixed:
        case detail::quota_cut::week: shortest[i] = longest[i] = c.step; break;
        case detail::quota_cut::month:
          shortest[i] = 28 * detail::ns_per_day;
          longest[i] = 31 * detail::ns_per_day;
          break;
        // A lifetime window's reader has no slice near the word's epoch to
        // read its tag from (read() would name it from the start of time).
        case detail::quota_cut::lifetime: return;
        case detail::quota_cut::rolling: return;
      }
      if (shortest[i] <= 0) return;
    }
    // The epoch window: the one whose slices are shortest at their longest.
    // No other window's slice is shorter, so a slice of the epoch window
    // holds at most one boundary of each other window.
    std::size_t e = 0;
    for (std::size_t i = 1; i < count_; ++i) {
      if (longest[i] < longest[e]) e = i;
    }
    // The 24-bit epoch tag cannot tell a clock stepped back by d epochs from
    // one idle for 2^24 - d: only pack when 2^23 epochs span ten years or
    // more (an epoch of about 38 s at least), so that no idle gap, held
    // permit or clock jump short of a decade reaches the ambiguity.
    if (shortest[e] < packed_min_epoch) return;
    for (std::size_t i = 0; i < count_; ++i) {
      if (i == e) continue;
      if (shortest[i] < longest[e]) return;
      // A reader names the epoch from the start of its own window's slice
      // (read()): that slice must span well under 2^23 epochs.
      if (longest[i] / longest[e] >= (std::int64_t{1} << 22)) return;
    }
    // The widest field such that every window gets one, none split between the halves.
    unsigned width = packed_first_bits;
    while (width > 9 && packed_first_bits / width + 64 / width < count_) --width;
    const std::size_t in_first = std::min<std::size_t>(packed_first_bits / width, count_);
    if (in_first + 64 / width < count_) return;
    const unsigned count_bits = width - 1;  // and one parity bit
    const std::int64_t cap = (std::int64_t{1} << count_bits) - 1;
    packed_limit_ = cap / 2;  // a count within a limit plus a cost within it never reaches the cap
    for (std::size_t i = 0; i < count_; ++i) {
      if (windows_[i].limit > packed_limit_) return;
    }
    packed_cap_ = cap;
    packed_mask_ = static_cast<std::uint64_t>(cap);
    parity_mask_ = {0, 0};
    count_mask_ = {0, 0};
    unit_ = {0, 0};
    for (std::size_t i = 0; i < count_; ++i) {
      packed_field& f = fields_[i];
      f.half = i < in_first ? 0 : 1;
      f.shift = static_cast<std::uint8_t>((i < in_first ? i : i - in_first) * width);
      f.parity = std::uint64_t{1} << (f.shift + count_bits);
      parity_mask_[f.half] |= f.parity;
      count_mask_[f.half] |= packed_mask_ << f.shift;
      unit_[f.half] |= std::uint64_t{1} << f.shift;
      cycles_[i] = cycles[i];
    }
    epoch_ = e;
    // Relaxed: not shared yet (as in bind()).
    counters_->packed.first.store(0, std::memory_order_relaxed);
    counters_->packed.second.store(0, std::memory_order_relaxed);
    packed_ = true;
  }

  // ---- quota_tracker's fast path (not API)
  //
  // A consumption whose windows are all still in the slices of the last
  // one, with room and below their first alert, is checked against limits
  // laid out beforehand as the counters are, and counted in one CAS. Every
  // other case is declined with nothing written, and goes the general way.

  using fast_limits = detail::quota_fast_limits;
  using fast_result = detail::quota_fast_result;
  using fast_outcome = detail::quota_fast_outcome;

  /// `limits` and `first_alert` (units; max(): none) laid out for try_fast().
  [[nodiscard]] fast_limits fast_limits_of(const quota_values& limits, const quota_values& first_alert) const noexcept {
    fast_limits f;
    if (packed_) {
      for (std::size_t i = 0; i < count_; ++i) {
        if (limits[i] > packed_limit_) return f;
        const std::int64_t a = std::min(first_alert[i], packed_cap_ + 1);  // beyond the cap: never reached
        f.room[fields_[i].half] += static_cast<std::uint64_t>(packed_cap_ - limits[i]) << fields_[i].shift;
        f.alert[fields_[i].half] += static_cast<std::uint64_t>(packed_cap_ + 1 - a) << fields_[i].shift;
      }
      f.usable = true;
    } else if (count_ == 1 && windows_[0].buckets == 0) {
      f.room[0] = static_cast<std::uint64_t>(limits[0]);
      f.alert[0] = static_cast<std::uint64_t>(first_alert[0]);
      f.usable = true;
    }
    return f;
  }

  /// Counts n (0 < n <= every limit) in every window if each is in its
  /// slice of `at` already and has room; declines, writing nothing,
  /// otherwise. granted_alerting: some window's count reached its first alert.
  [[nodiscard]] fast_outcome try_fast(const quota_stamp& at, std::int64_t n, const fast_limits& fl) noexcept {
    fast_outcome o;
    if (!packed_) {
      std::atomic<std::uint64_t>& word = counters_->word[0];
      std::uint64_t w = word.load(std::memory_order_relaxed);  // relaxed: as in consume()
      for (;;) {
        if (!detail::quota_holds(w, at[0])) return o;
        const auto used = static_cast<std::uint64_t>(detail::quota_used(w));
        if (used + static_cast<std::uint64_t>(n) > fl.room[0]) return o;
        if (word.compare_exchange_weak(w, w + static_cast<std::uint64_t>(n), std::memory_order_relaxed,
                                       std::memory_order_relaxed)) {
          o.word[0] = w + static_cast<std::uint64_t>(n);
          o.result = used + static_cast<std::uint64_t>(n) >= fl.alert[0] ? fast_result::granted_alerting
                                                                            : fast_result::granted;
          return o;
        }
      }
    }
    std::array<std::uint64_t, 2> p{0, 0};
    for (std::size_t i = 0; i < count_; ++i) {
      if ((static_cast<std::uint64_t>(at[i]) & 1) != 0) p[fields_[i].half] |= fields_[i].parity;
    }
    const auto u = static_cast<std::uint64_t>(n);
    std::array<std::uint64_t, 2> v = packed_load();
    for (;;) {
      if ((v[0] & (packed_live | packed_moved)) != packed_live || !holds_all(v, at, p)) return o;
      // As in packed_consume(): a carry into a parity bit is a window without room.
      if ((((v[0] & count_mask_[0]) + fl.room[0] + u * unit_[0]) & parity_mask_[0]) != 0 ||
          (((v[1] & count_mask_[1]) + fl.room[1] + u * unit_[1]) & parity_mask_[1]) != 0) {
        return o;
      }
      const std::uint64_t next0 = v[0] + u * unit_[0];
      const std::uint64_t next1 = v[1] + u * unit_[1];
      if (counters_->packed.compare_exchange_update(v[0], v[1], next0, next1)) {
        o.word = {next0, next1};
        // A count at or past its first alert carries into its parity bit.
        const bool alerting = (((next0 & count_mask_[0]) + fl.alert[0]) & parity_mask_[0]) != 0 ||
                              (((next1 & count_mask_[1]) + fl.alert[1]) & parity_mask_[1]) != 0;
        o.result = alerting ? fast_result::granted_alerting : fast_result::granted;
        return o;
      }
    }
  }

  /// What try_fast() counted, as try_consume() reports it.
  [[nodiscard]] quota_consumption fast_consumption(const quota_stamp& at, const fast_outcome& o) const noexcept {
    quota_consumption r;
    for (std::size_t i = 0; i < count_; ++i) {
      r.at[i] = at[i];
      r.used[i] = packed_ ? field_used(o.word, i) : detail::quota_used(o.word[0]);
    }
    return r;
  }

  /// Whether the counts share one 16-byte word now (bind_calendar(); a
  /// limit or an overrun too large for it moves them to a word per window
  /// for good).
  [[nodiscard]] bool packed() const noexcept {
    return packed_ && (counters_->packed.first.load(std::memory_order_acquire) & packed_moved) == 0;
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
    if (packed_ && packed_consume(at, n, [](std::size_t) noexcept { return std::int64_t{0}; }, false, r)) return r;
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
    if (packed_ && packed_consume(at, n, limit, true, r)) return r;
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
    if (packed_ && packed_release(at, n)) return;
    for (std::size_t i = 0; i < count_; ++i) give_back(i, at[i], n);
  }

  /// Window w's counts as of slice i (or the later slice it already holds,
  /// which is returned): one count for a fixed window, N + 1 for a rolling
  /// one, oldest bucket first.
  [[nodiscard]] std::int64_t read(std::size_t w, std::int64_t i, std::span<std::int64_t> out) const noexcept {
    if (packed_) {
      std::int64_t slice = 0;
      if (packed_read(w, i, out, slice)) return slice;
    }
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
    detail::atomic_pair packed;  // every window's count, when packed_ (see "Packed counters" below)
    std::atomic<bool> moved{false};  // packed_: the counts are in `word`, copied from the frozen pair
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

  // ---- Packed counters
  //
  // With bind_calendar(), two to eight windows, none rolling or lifetime,
  // the epoch window's slices 38 s or more (packed_min_epoch), share one
  // 16-byte word (detail::atomic_pair):
  //
  //   first   bits 63..40  the epoch window's slice, modulo 2^24 (quota_word.hpp's tag)
  //           bit 39       live: written at least once (0: every count is empty)
  //           bit 38       moved: the counts now live in a word per window, for good
  //           bits 37..0   fields
  //   second  bits 63..0   fields
  //
  // A field is one window's count (c bits) under one parity bit: the low bit
  // of the window's slice. The epoch window is the one whose slices are
  // shortest at their longest; every other window's slices are at least
  // that long, so one epoch slice holds at most one of its boundaries, and
  // the epoch plus the parity name each window's slice exactly: within epoch
  // E, window i is in slice index_i(start of E) or the next one. A consumer
  // whose stamp has the word's epoch and every window's parity (all but
  // the first call of each slice) reads the counts as they are; any other
  // computes each window's slice from the epoch (decode()).
  //
  // Counts hold up to 2^c - 1 and limits up to half that, as in a word per
  // window (quota_word.hpp): a count within its limit plus a cost within it
  // never saturates. A limit (reconfigure()) or an overrun (charge()) that
  // would not fit sets `moved`; whoever sees it copies each window's
  // (slice, count) from the frozen word into its own word, if still empty
  // (every helper computes the same values), and goes on there.
  //
  // The halves are read one at a time (first, second, first again, until
  // the first is unchanged); a grant is one 16-byte CAS of the pair as read,
  // so it fails on a torn reading; a refusal is decided on counts that were
  // each the window's count at one instant.

  static constexpr unsigned packed_first_bits = 38;
  static constexpr std::uint64_t packed_live = std::uint64_t{1} << 39;
  static constexpr std::uint64_t packed_moved = std::uint64_t{1} << 38;
  // The shortest epoch window slice packed: 2^23 of them span ten years (37.6 s).
  static constexpr std::int64_t packed_min_epoch =
      (3653 * detail::ns_per_day + (std::int64_t{1} << 23) - 1) >> 23;

  struct packed_field {
    std::uint8_t half = 0;   // 0: first, 1: second
    std::uint8_t shift = 0;  // of the count
    std::uint64_t parity = 0;  // the parity bit, in place
  };
  struct packed_view {
    std::int64_t epoch = 0;
    std::array<std::int64_t, quota_max_windows> slice{};
    std::array<std::int64_t, quota_max_windows> used{};
  };

  [[nodiscard]] std::int64_t field_used(const std::array<std::uint64_t, 2>& v, std::size_t i) const noexcept {
    const packed_field& f = fields_[i];
    return static_cast<std::int64_t>((v[f.half] >> f.shift) & packed_mask_);
  }

  // The pair, read whole (see above).
  [[nodiscard]] std::array<std::uint64_t, 2> packed_load() const noexcept {
    const detail::atomic_pair& p = counters_->packed;
    std::uint64_t f = p.first.load(std::memory_order_acquire);
    for (;;) {
      const std::uint64_t s = p.second.load(std::memory_order_acquire);
      const std::uint64_t again = p.first.load(std::memory_order_acquire);
      if (again == f) return {f, s};
      f = again;
    }
  }

  // The epoch tag read as the slice nearest `ref`: up to `ahead` slices
  // later, else earlier (quota_slice()'s rule, with its own reach).
  [[nodiscard]] static std::int64_t epoch_near(std::uint64_t first, std::int64_t ref, std::int64_t ahead) noexcept {
    constexpr std::int64_t span = std::int64_t{1} << detail::quota_tag_bits;
    const std::uint64_t tag = first >> detail::quota_used_bits;
    const auto d =
        static_cast<std::int64_t>((tag - static_cast<std::uint64_t>(ref)) & detail::quota_tag_mask);
    return d <= ahead ? ref + d : ref - (span - d);
  }

  // Each window's slice and count in a live word whose epoch is `epoch`.
  [[nodiscard]] packed_view decode(const std::array<std::uint64_t, 2>& v, std::int64_t epoch) const noexcept {
    packed_view r;
    r.epoch = epoch;
    const detail::quota_cycle& ce = cycles_[epoch_];
    const std::int64_t from = ce.start(epoch);
    const std::int64_t to = ce.end(epoch);
    for (std::size_t i = 0; i < count_; ++i) {
      r.used[i] = field_used(v, i);
      const detail::quota_cycle& c = cycles_[i];
      if (i == epoch_) {
        r.slice[i] = epoch;
        continue;
      }
      const std::int64_t lo = c.index(from);
      const bool odd = (v[fields_[i].half] & fields_[i].parity) != 0;
      r.slice[i] = ((static_cast<std::uint64_t>(lo) & 1) != 0) == odd ? lo : c.index(to > from ? to - 1 : to);
    }
    return r;
  }

  // The pair holding `view` (live, not moved).
  [[nodiscard]] std::array<std::uint64_t, 2> encode(const packed_view& view) const noexcept {
    std::array<std::uint64_t, 2> v{
        ((static_cast<std::uint64_t>(view.epoch) & detail::quota_tag_mask) << detail::quota_used_bits) | packed_live,
        0};
    for (std::size_t i = 0; i < count_; ++i) {
      const packed_field& f = fields_[i];
      v[f.half] |= static_cast<std::uint64_t>(view.used[i]) << f.shift;
      if ((static_cast<std::uint64_t>(view.slice[i]) & 1) != 0) v[f.half] |= f.parity;
    }
    return v;
  }

  // The parity bits a word in the slices `at` has.
  [[nodiscard]] std::array<std::uint64_t, 2> parities(const quota_stamp& at) const noexcept {
    std::array<std::uint64_t, 2> p{0, 0};
    for (std::size_t i = 0; i < count_; ++i) {
      if ((static_cast<std::uint64_t>(at[i]) & 1) != 0) p[fields_[i].half] |= fields_[i].parity;
    }
    return p;
  }

  // Whether the live word `v` is in the slices `at` (whose parities are `p`).
  [[nodiscard]] bool holds_all(const std::array<std::uint64_t, 2>& v, const quota_stamp& at,
                               const std::array<std::uint64_t, 2>& p) const noexcept {
    return (v[0] >> detail::quota_used_bits) == (static_cast<std::uint64_t>(at[epoch_]) & detail::quota_tag_mask) &&
           (v[0] & parity_mask_[0]) == p[0] && (v[1] & parity_mask_[1]) == p[1];
  }

  // Counts `n` in every window (check: within `limit`), or refuses; false
  // when the counts have moved (the caller goes on with a word per window).
  //
  // The common case, every window still in its slice, checks all windows
  // at once: each field plus its headroom complement (cap - limit) plus
  // `need` carries into the field's parity bit exactly when the window has
  // no room (with the parity bits cleared first; no sum reaches the next
  // field, as count, need and cap - limit are each at most the cap).
  template <class Limit>
  bool packed_consume(const quota_stamp& at, std::int64_t n, Limit limit, bool check,
                      quota_consumption& r) noexcept {
    const std::int64_t need = n > 0 ? n : 1;
    // Per half: sum over windows of (cap - limit) << shift, and the parities of `at`.
    std::array<std::uint64_t, 2> room{0, 0};
    std::array<std::uint64_t, 2> p{0, 0};
    bool small = need <= packed_limit_;  // and within every limit: no sum passes its parity bit
    for (std::size_t i = 0; i < count_; ++i) {
      const packed_field& f = fields_[i];
      if (check) {
        const std::int64_t l = limit(i);
        if (l > packed_limit_) [[unlikely]] {
          move_out(at[epoch_]);
          return false;
        }
        small = small && need <= l;
        room[f.half] += static_cast<std::uint64_t>(packed_cap_ - l) << f.shift;
      }
      if ((static_cast<std::uint64_t>(at[i]) & 1) != 0) p[f.half] |= f.parity;
    }
    if (!small) [[unlikely]] return packed_consume_slow(at, n, limit, check, r);
    detail::atomic_pair& pair = counters_->packed;
    std::array<std::uint64_t, 2> v = packed_load();
    for (;;) {
      if ((v[0] & (packed_live | packed_moved)) != packed_live || !holds_all(v, at, p)) [[unlikely]] {
        return packed_consume_slow(at, n, limit, check, r);
      }
      const std::uint64_t over0 =
          ((v[0] & count_mask_[0]) + room[0] + static_cast<std::uint64_t>(need) * unit_[0]) & parity_mask_[0];
      const std::uint64_t over1 =
          ((v[1] & count_mask_[1]) + room[1] + static_cast<std::uint64_t>(need) * unit_[1]) & parity_mask_[1];
      if ((over0 | over1) != 0) [[unlikely]] {
        if (!check) return packed_consume_slow(at, n, limit, check, r);  // beyond a field: moves
        const std::array<std::uint64_t, 2> over{over0, over1};
        std::size_t i = 0;
        while (i + 1 < count_ && (over[fields_[i].half] & fields_[i].parity) == 0) ++i;
        r.status = quota_storage_status::refused;
        r.window = i;
        r.at[i] = at[i];
        r.used[i] = field_used(v, i);
        return true;
      }
      const std::uint64_t add0 = static_cast<std::uint64_t>(n) * unit_[0];
      const std::uint64_t add1 = static_cast<std::uint64_t>(n) * unit_[1];
      if (pair.compare_exchange_update(v[0], v[1], v[0] + add0, v[1] + add1)) {
        for (std::size_t i = 0; i < count_; ++i) {
          r.at[i] = at[i];
          r.used[i] = field_used(v, i) + n;
        }
        return true;
      }
    }
  }

  // The rest: a new slice in some window, the first call, a moved pair, a
  // cost beyond the packed limits, an overrun beyond a field.
  template <class Limit>
  [[gnu::noinline]] bool packed_consume_slow(const quota_stamp& at, std::int64_t n, Limit limit, bool check,
                                          quota_consumption& r) noexcept {
    detail::atomic_pair& pair = counters_->packed;
    const std::int64_t need = n > 0 ? n : 1;
    const std::array<std::uint64_t, 2> p = parities(at);
    std::array<std::uint64_t, 2> v = packed_load();
    for (;;) {
      if ((v[0] & packed_moved) != 0) [[unlikely]] {
        help_move(v, at[epoch_]);
        return false;
      }
      packed_view view;
      if ((v[0] & packed_live) == 0) {
        view.epoch = at[epoch_];
        for (std::size_t i = 0; i < count_; ++i) view.slice[i] = at[i];
      } else if (holds_all(v, at, p)) {
        view.epoch = at[epoch_];
        for (std::size_t i = 0; i < count_; ++i) {
          view.slice[i] = at[i];
          view.used[i] = field_used(v, i);
        }
      } else {
        // Each window keeps its slice if it is this one or later, else
        // starts this one at zero. A later epoch (a thread whose clock read
        // later) keeps every slice: each is then at or after this one. An
        // epoch more than quota_skew_max ahead is a clock stepped back: a
        // word per window decides that per window (the longer ones keep
        // their later period), which one epoch cannot say, so the counts
        // move there.
        const std::int64_t epoch = epoch_near(v[0], at[epoch_], std::int64_t{1} << 23);
        if (epoch - at[epoch_] > detail::quota_skew_max) [[unlikely]] {
          move_out(at[epoch_]);
          return false;
        }
        view = decode(v, epoch);
        view.epoch = std::max(view.epoch, at[epoch_]);
        for (std::size_t i = 0; i < count_; ++i) {
          if (view.slice[i] < at[i]) {
            view.slice[i] = at[i];
            view.used[i] = 0;
          }
        }
      }
      for (std::size_t i = 0; i < count_; ++i) {
        const std::int64_t used = view.used[i];
        if (check && used + need > limit(i)) {
          r.status = quota_storage_status::refused;
          r.window = i;
          r.at[i] = view.slice[i];
          r.used[i] = used;
          return true;
        }
        if (n > packed_cap_ - used) {  // an overrun (or a cost) beyond the field
          move_out(at[epoch_]);
          return false;
        }
        view.used[i] = used + n;
        r.at[i] = view.slice[i];
        r.used[i] = view.used[i];
      }
      const std::array<std::uint64_t, 2> next = encode(view);
      if (pair.compare_exchange_update(v[0], v[1], next[0], next[1])) return true;
    }
  }

  // Gives n back to each window still in its slice of `at`; false when the
  // counts have moved.
  bool packed_release(const quota_stamp& at, std::int64_t n) noexcept {
    detail::atomic_pair& pair = counters_->packed;
    const std::array<std::uint64_t, 2> p = parities(at);
    std::array<std::uint64_t, 2> v = packed_load();
    for (;;) {
      if ((v[0] & packed_moved) != 0) {
        help_move(v, at[epoch_]);
        return false;
      }
      if ((v[0] & packed_live) == 0) return true;
      packed_view view;
      if (holds_all(v, at, p)) {
        view.epoch = at[epoch_];
        for (std::size_t i = 0; i < count_; ++i) {
          view.slice[i] = at[i];
          view.used[i] = field_used(v, i);
        }
      } else {
        // The permit may be old: the word's epoch is read as at most 2^23
        // epochs after the permit's.
        view = decode(v, epoch_near(v[0], at[epoch_], std::int64_t{1} << 23));
      }
      bool any = false;
      for (std::size_t i = 0; i < count_; ++i) {
        if (view.slice[i] != at[i] || view.used[i] == 0) continue;
        view.used[i] = view.used[i] > n ? view.used[i] - n : 0;
        any = true;
      }
      if (!any) return true;
      const std::array<std::uint64_t, 2> next = encode(view);
      if (pair.compare_exchange_update(v[0], v[1], next[0], next[1])) return true;
    }
  }

  // read() of window w as of its slice i; false when the counts have moved.
  bool packed_read(std::size_t w, std::int64_t i, std::span<std::int64_t> out, std::int64_t& slice) const noexcept {
    const std::array<std::uint64_t, 2> v = packed_load();
    // The epoch of the start of slice i: the word's is read as at most 2^23 epochs after it.
    const std::int64_t ref = cycles_[epoch_].index(cycles_[w].start(i));
    if ((v[0] & packed_moved) != 0) {
      help_move(v, ref);
      return false;
    }
    std::int64_t cur = i - 1;  // empty: an earlier slice
    std::int64_t used = 0;
    if ((v[0] & packed_live) != 0) {
      const packed_view view = decode(v, epoch_near(v[0], ref, std::int64_t{1} << 23));
      cur = view.slice[w];
      used = view.used[w];
      // As a word per window reads it: more than quota_skew_max slices
      // ahead is an earlier slice (a clock stepped back that far).
      if (cur - i > detail::quota_skew_max) cur = i - 1;
    }
    slice = std::max(cur, i);
    if (!out.empty()) out[0] = cur == slice ? used : 0;
    return true;
  }

  // Sets `moved` (the counts leave the pair for good) and copies them out.
  void move_out(std::int64_t ref) noexcept {
    detail::atomic_pair& pair = counters_->packed;
    std::array<std::uint64_t, 2> v = packed_load();
    while ((v[0] & packed_moved) == 0) {
      if (pair.compare_exchange_update(v[0], v[1], v[0] | packed_moved, v[1])) {
        v[0] |= packed_moved;
        break;
      }
    }
    help_move(v, ref);
  }

  // Copies each window's (slice, count) from the frozen pair `v` into its
  // own word, unless some thread did already (all copy the same values).
  // Const: it writes only the counters (read() helps too).
  void help_move(const std::array<std::uint64_t, 2>& v, std::int64_t ref) const noexcept {
    counter_line& line = *counters_;
    // Acquire: the copies of whoever set it are visible.
    if (line.moved.load(std::memory_order_acquire)) return;
    if ((v[0] & packed_live) != 0) {  // else nothing was counted: the words stay empty
      const packed_view view = decode(v, epoch_near(v[0], ref, std::int64_t{1} << 23));
      for (std::size_t i = 0; i < count_; ++i) {
        std::uint64_t expected = detail::quota_empty;
        // Relaxed: a fixed window's word stands alone (see consume()); the
        // flag below publishes the copy.
        (void)line.word[i].compare_exchange_strong(expected, detail::quota_pack(view.slice[i], view.used[i]),
                                                   std::memory_order_relaxed, std::memory_order_relaxed);
      }
    }
    line.moved.store(true, std::memory_order_release);
  }

  std::array<window, quota_max_windows> windows_{};
  std::size_t count_ = 0;
  // Packed counters (bind_calendar()); read-only after it.
  bool packed_ = false;
  std::size_t epoch_ = 0;
  std::int64_t packed_limit_ = 0;
  std::int64_t packed_cap_ = 0;
  std::uint64_t packed_mask_ = 0;
  std::array<std::uint64_t, 2> parity_mask_{};
  std::array<std::uint64_t, 2> count_mask_{};  // the count bits of every field
  std::array<std::uint64_t, 2> unit_{};        // 1 in every field
  std::array<packed_field, quota_max_windows> fields_{};
  std::array<detail::quota_cycle, quota_max_windows> cycles_{};
  std::unique_ptr<counter_line> counters_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> ring_;
};

static_assert(quota_storage<memory_quota_storage>);

}  // namespace armor
