// armor/detail/quota_storage.hpp: the interface between armor::quota_tracker
// and the storage that keeps its counters. The names are public (namespace
// armor); they live in this header so that quota_tracker.hpp and every
// backend (armor/storage/memory.hpp, armor/storage/sqlite.hpp) can include
// them without including each other.
//
// A backend keeps, for each window of one tracker, the units used per slice
// (a fixed window's period, a rolling window's bucket). It never reads a
// clock and knows nothing of calendars: the tracker numbers the slices
// (detail/quota_calendar.hpp) and hands the backend, per call, the slice
// each window is in now. The backend performs each transition atomically:
//
//   bind(layouts)          once, at the tracker's construction (may throw)
//   try_consume(at, n)     all windows or none: n units, if every window fits
//   charge(at, n)          n units in every window, without a limit check
//   release(at, n)         gives back n units a consumption put in slices `at`
//   read(w, i, out)        window w's counts, as of slice i
//
// Rules every backend keeps, so that code does not change with the backend:
//
//   - A window never moves back: when a window's counter already holds a
//     later slice than the one asked for (a thread whose clock reading was a
//     little older, or a wall clock that stepped back), the later slice is
//     used. `at` in the answer says which slice each window counted in.
//   - A window fits n units when used + max(n, 1) <= limit: a consumption of
//     zero units (an unknown estimate) needs one unit left.
//   - A rolling window with `buckets` = N counts its current bucket and the
//     N before it.
//   - A release gives back only to the slices named, only while they are
//     still counted, and never below zero.
//   - A refusal writes nothing that outlives the call.
//
// Deadlines. A backend that does I/O (Redis) may also offer try_consume and
// read with a trailing `quota_deadline`: the steady_clock instant by which
// the call must end (a pipeline call's deadline; quota_deadline::max() for
// none). Such a backend meets `deadline_quota_storage`, and quota_tracker's
// admit(ctx) then passes the deadline of a call that has one; a backend that
// runs out of time answers `deadline_exceeded` (nothing counted). The
// overloads are optional: a backend without them (memory, sqlite, any
// custom one) is called exactly as before, and reads no clock for it.
#pragma once

#include <armor/detail/config.hpp>

#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
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

/// When a storage call must end (see "Deadlines" above); max() for never.
using quota_deadline = std::chrono::steady_clock::time_point;

/// A backend's answer to try_consume() or charge().
struct quota_consumption {
  quota_storage_status status = quota_storage_status::consumed;
  std::size_t window = 0;  ///< refused: the first window that had no room
  quota_stamp at{};        ///< consumed: the slice each window counted in; refused: at[window] is its slice
  quota_values used{};     ///< consumed: each window's count after; refused: used[window], its count
                           ///< (refused: the other entries are unspecified)
};

/// The interface of a quota storage backend (see the top of this header).
/// try_consume, charge and read are called concurrently from every thread
/// that uses the tracker; release is noexcept because it runs in
/// destructors. `out` in read() has one element for a fixed window (its
/// count) and N + 1 for a rolling one (oldest bucket first); read returns
/// the slice it read as of, which is `i` or a later one (see above).
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

/// A quota_storage whose try_consume and read also take a quota_deadline
/// (see "Deadlines" at the top of this header).
template <class S>
concept deadline_quota_storage =
    quota_storage<S> && requires(S& s, const S& cs, const quota_stamp& at, std::int64_t n, std::size_t w,
                                 std::span<std::int64_t> out, quota_deadline until) {
      { s.try_consume(at, n, until) } -> std::same_as<quota_consumption>;
      { cs.read(w, n, out, until) } -> std::same_as<std::int64_t>;
    };

namespace detail {

/// The quota_deadline `left` from now (saturating; reads steady_clock).
[[nodiscard]] inline quota_deadline quota_deadline_after(std::chrono::nanoseconds left) noexcept {
  const quota_deadline now = std::chrono::steady_clock::now();
  if (left >= quota_deadline::max() - now) return quota_deadline::max() - quota_deadline::duration{1};
  return now + std::chrono::duration_cast<quota_deadline::duration>(left);
}

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
