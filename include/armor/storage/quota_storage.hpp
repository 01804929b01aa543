// armor/storage/quota_storage.hpp: the interface between armor::quota_tracker
// and the storage that keeps its counts: the concept armor::quota_storage
// (and armor::deadline_quota_storage for backends that do I/O) and the
// types a backend author implements it with. The backends armor ships:
// armor/storage/memory.hpp (the default), armor/storage/sqlite.hpp,
// armor/redis/quota_storage.hpp.
//
// A backend performs each transition atomically; the tracker does the
// calendar and hands it, per call, the slice each window is in now:
//
//     struct my_storage {
//         void bind(std::span<const armor::quota_window_layout> windows);   // once; may throw
//         armor::quota_consumption try_consume(const armor::quota_stamp& at, std::int64_t n);  // all or none
//         armor::quota_consumption charge(const armor::quota_stamp& at, std::int64_t n);       // no limit check
//         void release(const armor::quota_stamp& at, std::int64_t n) noexcept;                // give back
//         std::int64_t read(std::size_t w, std::int64_t i, std::span<std::int64_t> out) const;
//     };
//     static_assert(armor::quota_storage<my_storage>);
//
// A backend shared by processes may also keep which alerts fired
// (armor::alert_quota_storage: claim_alerts, rearm_alerts). The rules every
// backend keeps: docs/quota_tracker.md, "Writing a storage backend".
#pragma once

#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace armor {

/// The most windows one quota tracker can have.
inline constexpr std::size_t quota_max_windows = 8;

/// One number per window of a tracker: a slice index per window (a
/// `quota_stamp`), or units per window.
using quota_values = std::array<std::int64_t, quota_max_windows>;
/// Per window, the slice (period or bucket) a consumption is counted in.
using quota_stamp = quota_values;

/// A window as a storage backend sees it.
struct quota_window_layout {
  std::int64_t limit = 0;    ///< units per window
  std::uint32_t buckets = 0; ///< 0: a fixed period; N: a rolling window over the current bucket and N before it
  /// Names the window's slicing (kind, length, UTC offset, buckets), not its
  /// limit: a durable backend keeps a window's counts under this key, so a
  /// changed limit keeps what was used and a changed slicing starts afresh.
  std::string key;
};

/// What a backend did with a consumption or a charge.
enum class quota_storage_status : std::uint8_t {
  consumed,     ///< every window counted the units
  refused,      ///< some window had no room; nothing was counted
  unavailable,  ///< the storage failed (locked, I/O error); nothing was counted
  deadline_exceeded,  ///< the caller's quota_deadline passed first; nothing was counted
};

/// The name of a quota_storage_status, as written in the code (`refused`).
[[nodiscard]] constexpr std::string_view to_string(quota_storage_status s) noexcept {
  switch (s) {
    case quota_storage_status::consumed: return "consumed";
    case quota_storage_status::refused: return "refused";
    case quota_storage_status::unavailable: return "unavailable";
    case quota_storage_status::deadline_exceeded: return "deadline_exceeded";
  }
  return "unknown";
}

/// When a storage call must end: a steady_clock instant; max() for never
/// (see deadline_quota_storage).
using quota_deadline = std::chrono::steady_clock::time_point;

/// A backend's answer to try_consume() or charge().
struct quota_consumption {
  quota_storage_status status = quota_storage_status::consumed;
  std::size_t window = 0;  ///< refused: the first window that had no room
  quota_stamp at{};        ///< consumed: the slice each window counted in; refused: at[window] is its slice
  quota_values used{};     ///< consumed: each window's count after; refused: used[window], its count
                           ///< (refused: the other entries are unspecified)
};

/// The interface of a quota storage backend (see the top of this header;
/// its rules: docs/quota_tracker.md). try_consume, charge and read are
/// called concurrently from every thread that uses the tracker; release is
/// noexcept because it runs in destructors. `out` in read() has one
/// element for a fixed window (its count) and N + 1 for a rolling one
/// (oldest bucket first); read returns the slice it read as of, which is
/// `i` or a later one (a window never moves back).
template <class S>
concept quota_storage =
    std::move_constructible<S> &&
    requires(S& s, const S& cs, std::span<const quota_window_layout> layouts, const quota_stamp& at, std::int64_t n,
             std::size_t w, std::span<std::int64_t> out) {
      s.bind(layouts);
      { s.try_consume(at, n) } -> std::same_as<quota_consumption>;
      { s.charge(at, n) } -> std::same_as<quota_consumption>;
      { s.release(at, n) } noexcept;
      { cs.read(w, n, out) } -> std::same_as<std::int64_t>;
    };

/// A quota_storage whose try_consume and read also take a quota_deadline,
/// the steady_clock instant by which the call must end: quota_tracker's
/// admit(ctx) then passes the deadline of a call that has one (max() for a
/// call without), and a backend that runs out of time answers
/// deadline_exceeded, nothing counted. Optional: a backend without these
/// overloads is called without a deadline and no clock is read for it.
template <class S>
concept deadline_quota_storage =
    quota_storage<S> && requires(S& s, const S& cs, const quota_stamp& at, std::int64_t n, std::size_t w,
                                 std::span<std::int64_t> out, quota_deadline until) {
      { s.try_consume(at, n, until) } -> std::same_as<quota_consumption>;
      { cs.read(w, n, out, until) } -> std::same_as<std::int64_t>;
    };

/// A quota_storage that can make the storage of one key of an
/// armor::keyed map of trackers (`keyed<quota_tracker<C, S>>`):
/// `s.for_key(key)` is a new, unbound storage of the same kind and place
/// whose counts are kept apart under that key (SQLite and Redis: under the
/// tracker name + "/" + key), so that a key's counts outlive its tracker in
/// the map. Called once per key the map creates, never per call.
template <class S>
concept keyed_quota_storage = quota_storage<S> && requires(const S& s, std::string_view key) {
  { s.for_key(key) } -> std::same_as<S>;
};

/// A quota_storage that keeps the alert state of its windows, so that
/// trackers in several processes (or one restarted) sharing its counts fire
/// each alert threshold once per period between them. Optional: without
/// these members each tracker keeps its alert state in its own memory (the
/// memory backend needs nothing more: its counts die with its tracker).
///
///   claim_alerts(w, period, fired)  records that the lowest `fired`
///       thresholds of window w have fired in `period` (a number the tracker
///       gives: a fixed window's period, a rolling window's span of its
///       length) and returns how many had been recorded for that period
///       before (0 when the record is of an earlier period, or there is
///       none; `fired` or more when it is of a later period). The caller
///       fires the thresholds from that count up to `fired`. One atomic
///       step: two callers never both see a threshold as new. A backend
///       that cannot answer (I/O error) returns 0: an alert said twice is
///       better than one never said.
///   rearm_alerts(w, period, fired)  lowers the record of `period` to
///       `fired` thresholds if it holds more (use fell back below them).
///
/// Both run only when a threshold is crossed (or re-armed), never per call.
template <class S>
concept alert_quota_storage =
    quota_storage<S> && requires(S& s, std::size_t w, std::int64_t period, std::size_t fired) {
      { s.claim_alerts(w, period, fired) } noexcept -> std::same_as<std::size_t>;
      { s.rearm_alerts(w, period, fired) } noexcept;
    };

namespace detail {

/// The quota_deadline of a call with `left` to go (a context's remaining()).
/// nanoseconds::max() means no deadline: quota_deadline::max(), and no
/// clock is read. Any other `left` is a deadline, now + left (in the past
/// when `left` is negative), saturating at quota_deadline::max() - 1ns so
/// that a far deadline is never mistaken for none.
[[nodiscard]] inline quota_deadline quota_deadline_after(std::chrono::nanoseconds left) noexcept {
  if (left == std::chrono::nanoseconds::max()) return quota_deadline::max();
  const quota_deadline now = std::chrono::steady_clock::now();
  if (left >= quota_deadline::max() - now) return quota_deadline::max() - quota_deadline::duration{1};
  return now + std::chrono::duration_cast<quota_deadline::duration>(left);
}

/// A storage that takes the limits per call, `try_consume(at, n, limits)`,
/// noexcept (memory_quota_storage, sqlite_quota_storage): with
/// limits_deadline_quota_storage, what quota_tracker::reconfigure needs,
/// so that one decision checks every window against one set of limits.
template <class S>
concept limits_quota_storage = requires(S& s, const quota_stamp& at, std::int64_t n, const quota_values& limits) {
  { s.try_consume(at, n, limits) } noexcept -> std::same_as<quota_consumption>;
};

/// The same for a deadline_quota_storage, `try_consume(at, n, until, limits)`
/// (redis_quota_storage).
template <class S>
concept limits_deadline_quota_storage =
    requires(S& s, const quota_stamp& at, std::int64_t n, quota_deadline until, const quota_values& limits) {
      { s.try_consume(at, n, until, limits) } noexcept -> std::same_as<quota_consumption>;
    };

/// Whether the deadline overload of try_consume (if any) is noexcept.
template <class S>
[[nodiscard]] consteval bool quiet_deadline_storage() {
  if constexpr (deadline_quota_storage<S>) {
    return noexcept(std::declval<S&>().try_consume(std::declval<const quota_stamp&>(), std::int64_t{},
                                                   quota_deadline{}));
  } else {
    return true;
  }
}

/// Whether the read quota_tracker calls (with a deadline if it can) is noexcept.
template <class S>
[[nodiscard]] consteval bool nothrow_quota_read() {
  if constexpr (deadline_quota_storage<S>) {
    return noexcept(std::declval<const S&>().read(std::size_t{}, std::int64_t{}, std::span<std::int64_t>{},
                                                  quota_deadline{}));
  } else {
    return noexcept(std::declval<const S&>().read(std::size_t{}, std::int64_t{}, std::span<std::int64_t>{}));
  }
}

}  // namespace detail
}  // namespace armor
