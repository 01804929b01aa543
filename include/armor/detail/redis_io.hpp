// armor/detail/redis_io.hpp: the pieces of a Redis call that no user names
// (deadlines as instants, replies, arguments on the stack, timed locks, the
// lease), shared by armor/redis/connection.hpp and the Redis backends.
#pragma once

#include <armor/detail/redis_scripts.hpp>
#include <armor/detail/wide_cas.hpp>

#include <hiredis/hiredis.h>

#include <sys/time.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>

namespace armor::detail {

/// Why a call got no answer.
enum class redis_status : std::uint8_t { ok, breaker_open, pool_busy, failed, deadline };

/// When a call must end: a steady_clock instant (the same type as
/// armor::quota_deadline); redis_no_deadline for none.
using redis_deadline = std::chrono::steady_clock::time_point;
inline constexpr redis_deadline redis_no_deadline = redis_deadline::max();

/// The deadline of a call with `left` to go (a context's remaining()).
/// nanoseconds::max() means no deadline, as everywhere in armor: it gives
/// redis_no_deadline and reads no clock. Any other value is a deadline,
/// saturated just below redis_no_deadline (so a huge `left` stays one).
[[nodiscard]] inline redis_deadline redis_until(std::chrono::nanoseconds left) noexcept {
  if (left == std::chrono::nanoseconds::max()) return redis_no_deadline;
  const auto now = std::chrono::steady_clock::now();
  const auto room = redis_no_deadline - now;  // saturate rather than overflow
  if (left >= room) return redis_no_deadline - redis_deadline::duration{1};
  return now + std::chrono::duration_cast<redis_deadline::duration>(left);
}

struct redis_reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using redis_reply_ptr = std::unique_ptr<redisReply, redis_reply_deleter>;

/// A script's answer: the reply (an array or integer), or why there is none.
struct redis_answer {
  redis_status status = redis_status::failed;
  redis_reply_ptr reply;
  [[nodiscard]] explicit operator bool() const noexcept { return status == redis_status::ok; }
};

/// An integer reply's value; 0 for anything else.
[[nodiscard]] inline std::int64_t redis_integer(const redisReply* r) noexcept {
  return r != nullptr && r->type == REDIS_REPLY_INTEGER ? static_cast<std::int64_t>(r->integer) : 0;
}

/// The body of a script, prelude included.
[[nodiscard]] inline const std::string& redis_script_body(redis_script id) {
  static const std::array<std::string, static_cast<std::size_t>(redis_script::count)> bodies = [] {
    std::array<std::string, static_cast<std::size_t>(redis_script::count)> b;
    const auto with_prelude = [](std::string_view s) {
      std::string out(redis_lua_prelude);
      out += s;
      return out;
    };
    b[static_cast<std::size_t>(redis_script::quota_consume)] = with_prelude(redis_lua_quota_consume);
    b[static_cast<std::size_t>(redis_script::quota_release)] = with_prelude(redis_lua_quota_release);
    b[static_cast<std::size_t>(redis_script::quota_read)] = with_prelude(redis_lua_quota_read);
    b[static_cast<std::size_t>(redis_script::quota_alert)] = with_prelude(redis_lua_quota_alert);
    const auto bucket = [&](std::string_view s) { return with_prelude(std::string(redis_lua_bucket_prelude) += s); };
    b[static_cast<std::size_t>(redis_script::bucket_acquire)] = bucket(redis_lua_bucket_acquire);
    b[static_cast<std::size_t>(redis_script::bucket_return)] = bucket(redis_lua_bucket_return);
    b[static_cast<std::size_t>(redis_script::bucket_configure)] = bucket(redis_lua_bucket_configure);
    b[static_cast<std::size_t>(redis_script::breaker_sync)] = with_prelude(redis_lua_breaker_sync);
    const auto window = [&](std::string_view s) { return with_prelude(std::string(redis_lua_window_prelude) += s); };
    b[static_cast<std::size_t>(redis_script::window_fixed)] = window(redis_lua_window_fixed);
    b[static_cast<std::size_t>(redis_script::window_exact)] = window(redis_lua_window_exact);
    b[static_cast<std::size_t>(redis_script::window_approx)] = window(redis_lua_window_approx);
    return b;
  }();
  return bodies[static_cast<std::size_t>(id)];
}

/// Formats integers into one stack buffer and hands out views of them.
class redis_args {
 public:
  static constexpr std::size_t max_args = 96;

  void add(std::string_view s) noexcept {
    if (count_ < max_args) views_[count_++] = s;
    else overflow_ = true;
  }
  void add(std::int64_t v) noexcept {
    char* at = buf_.data() + used_;
    const auto [end, ec] = std::to_chars(at, buf_.data() + buf_.size(), v);
    if (ec != std::errc{}) {
      overflow_ = true;
      return;
    }
    used_ = static_cast<std::size_t>(end - buf_.data());
    add(std::string_view(at, static_cast<std::size_t>(end - at)));
  }
  void add_flag(bool flag) noexcept { add(flag ? std::string_view("1") : std::string_view("0")); }
  [[nodiscard]] std::span<const std::string_view> views() const noexcept { return {views_.data(), count_}; }
  [[nodiscard]] bool overflow() const noexcept { return overflow_; }

 private:
  std::array<char, max_args * 21> buf_;
  std::array<std::string_view, max_args> views_;
  std::size_t used_ = 0;
  std::size_t count_ = 0;
  bool overflow_ = false;
};

/// Locks `m` if it frees up within `limit`. Polls try_lock() with short
/// sleeps rather than std::timed_mutex::try_lock_for, which ThreadSanitizer
/// (GCC 12) cannot follow (pthread_mutex_clocklock is not intercepted). Off
/// the hot path: only a call that finds every connection busy waits here.
[[nodiscard]] inline bool redis_lock_within(std::mutex& m, std::chrono::nanoseconds limit) noexcept {
  if (m.try_lock()) return true;
  if (limit <= std::chrono::nanoseconds::zero()) return false;
  const auto until = std::chrono::steady_clock::now() + limit;
  auto pause = std::chrono::microseconds{20};
  while (std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(pause);
    if (m.try_lock()) return true;
    pause = std::min(pause * 2, std::chrono::microseconds{1000});
  }
  return false;
}

/// The shorter of `limit` and the time left until `until` (zero or less:
/// none left); `cut` says whether the deadline was the shorter.
[[nodiscard]] inline std::chrono::nanoseconds redis_limit(std::chrono::nanoseconds limit, redis_deadline until,
                                                          bool& cut) noexcept {
  cut = false;
  if (until == redis_no_deadline) return limit;
  const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(until - std::chrono::steady_clock::now());
  if (left < limit) {
    cut = true;
    return left;
  }
  return limit;
}

/// Locks `m` if it frees up within `limit` and before `until`; `cut` says
/// whether the deadline ended the wait (or left none).
[[nodiscard]] inline bool redis_lock_until(std::mutex& m, std::chrono::nanoseconds limit, redis_deadline until,
                                           bool& cut) noexcept {
  cut = false;
  if (until == redis_no_deadline) return redis_lock_within(m, limit);
  if (m.try_lock()) return true;
  return redis_lock_within(m, redis_limit(limit, until, cut));
}

/// A positive duration as a timeval, rounded up to whole microseconds (a
/// timeout never ends before the instant it stands for).
[[nodiscard]] inline timeval redis_timeval(std::chrono::nanoseconds d) noexcept {
  const auto us = std::chrono::ceil<std::chrono::microseconds>(std::max(d, std::chrono::nanoseconds{1})).count();
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(us / 1'000'000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>(us % 1'000'000);
  return tv;
}

/// The lease of a Redis backend: a generation and the units left, each 64
/// bits, changed together by one 16-byte compare-and-swap (wide_cas.hpp).
/// A slot is written only under the refill lock, for a generation not yet
/// published; a taker's compare-and-swap fails unless the generation it read
/// the slot for is still current (a slot is rewritten only for generation +
/// 2). The generation never wraps, so a taker descheduled across any number
/// of refills cannot succeed on a slot rewritten meanwhile (with the 24-bit
/// generation this replaces, 2^24 refills brought the same word back).
class redis_lease {
 public:
  /// One reading: the generation (its low bit names the slot) and the units.
  struct view {
    std::uint64_t gen = 0;
    std::uint64_t units = 0;
    [[nodiscard]] std::size_t slot() const noexcept { return static_cast<std::size_t>(gen & 1U); }
  };

  /// Acquire: the slot written before the generation was published is
  /// visible. The two halves are read one at a time: a torn reading only
  /// makes the next take() fail and read again.
  [[nodiscard]] view load() const noexcept {
    return {pair_.first.load(std::memory_order_acquire), pair_.second.load(std::memory_order_acquire)};
  }

  /// Takes n units if the lease is still exactly `v`; on failure `v` holds
  /// the lease as the compare-and-swap found it (never torn).
  bool take(view& v, std::uint64_t n) noexcept {
    return pair_.compare_exchange_update(v.gen, v.units, v.gen, v.units - n);
  }

  /// Sets the units to zero, keeping the generation; returns what it held.
  view empty() noexcept {
    view v = load();
    while (!pair_.compare_exchange_update(v.gen, v.units, v.gen, 0)) {
    }
    return v;
  }

  /// The generation the next publish() uses. Under the refill lock.
  [[nodiscard]] std::uint64_t next_gen() const noexcept { return pair_.first.load(std::memory_order_relaxed) + 1; }

  /// Publishes a new generation with its units (its slot written before).
  /// Under the refill lock; takers may still change the units of the old
  /// generation meanwhile, hence the loop.
  void publish(std::uint64_t gen, std::uint64_t units) noexcept {
    view v = load();
    while (!pair_.compare_exchange_update(v.gen, v.units, gen, units)) {
    }
  }

  [[nodiscard]] std::uint64_t units() const noexcept { return pair_.second.load(std::memory_order_relaxed); }

 private:
  mutable atomic_pair pair_;  // first: generation, second: units left
};

}  // namespace armor::detail

namespace armor::detail {

/// Redis Cluster's hash slots: 16384, each served by one primary.
inline constexpr std::size_t redis_slot_count = 16384;

/// CRC16 as Redis Cluster computes it (XMODEM: polynomial 0x1021, initial
/// value 0, no reflection), one table lookup per byte.
inline constexpr std::array<std::uint16_t, 256> redis_crc16_table = [] {
  std::array<std::uint16_t, 256> t{};
  for (std::size_t i = 0; i < t.size(); ++i) {
    auto c = static_cast<std::uint16_t>(i << 8);
    for (int b = 0; b < 8; ++b) {
      c = (c & 0x8000U) != 0 ? static_cast<std::uint16_t>((c << 1) ^ 0x1021U) : static_cast<std::uint16_t>(c << 1);
    }
    t[i] = c;
  }
  return t;
}();

[[nodiscard]] constexpr std::uint16_t redis_crc16(std::string_view s) noexcept {
  std::uint16_t crc = 0;
  for (const char ch : s) {
    const auto byte = static_cast<std::uint8_t>(ch);
    crc = static_cast<std::uint16_t>((crc << 8) ^ redis_crc16_table[((crc >> 8) ^ byte) & 0xFFU]);
  }
  return crc;
}

/// The hash slot of `key`: CRC16 of its hash tag (what lies between the
/// first '{' and the first '}' after it, when that is not empty), or of the
/// whole key, modulo 16384.
[[nodiscard]] constexpr std::uint16_t redis_key_slot(std::string_view key) noexcept {
  const std::size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const std::size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
  }
  return static_cast<std::uint16_t>(redis_crc16(key) & (redis_slot_count - 1));
}

}  // namespace armor::detail
