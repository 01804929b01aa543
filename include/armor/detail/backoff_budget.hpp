// armor/detail/backoff_budget.hpp: the shared state of a backoff policy: its
// retry budget (gRPC-style retry throttling) and its event counters.
// Not API: armor::backoff, armor::retry_budget and armor::backoff_stats are
// the public face (docs/backoff.md, "The retry budget").
//
// The budget is a token count, kept in thousandths of a token so that a
// ratio such as 0.1 is exact integer arithmetic:
//
//   - an attempt that fails retryably (failure or timeout) takes one token,
//     never going below zero;
//   - an attempt that succeeds gives back `token_ratio` tokens, never going
//     above `max_tokens`;
//   - a retry is allowed only while more than half of `max_tokens` is left.
//
// So a service whose upstream fails more than about ratio / (1 + ratio) of
// attempts (9 % for the default 0.1) stops retrying altogether and offers the
// upstream only first attempts, until successes refill the bucket. No clock
// is read, and a healthy service (bucket full) only ever reads the atomic.
//
// Memory orders: every access is relaxed. The token count and the counters
// are standalone numbers; no other memory is published or consumed through
// them, so only the atomicity of each read-modify-write matters.
#pragma once

#include <armor/detail/config.hpp>
#include <armor/detail/counter_set.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace armor::detail {

/// Thousandths of a token per token.
inline constexpr std::int64_t milli_tokens = 1000;

/// A budget's validated configuration, in milli-tokens. Read-only after
/// construction; `max == 0` means "no budget".
struct retry_budget_config {
  std::int64_t max = 0;        ///< the bucket's size (and its starting level)
  std::int64_t refill = 0;     ///< given back per successful attempt
  std::int64_t threshold = 0;  ///< retries are allowed while the level is above this

  [[nodiscard]] constexpr bool enabled() const noexcept { return max > 0; }
};

/// The events a backoff policy counts (see armor::backoff_stats).
enum class backoff_counter : std::uint8_t {
  calls,
  retries,
  successes_after_retry,
  exhausted,
  budget_refusals,
  deadline_stops,
  non_retryable,
  refusal_stops,
  count
};

/// Everything a backoff policy writes, on one cache line of its own so that
/// the read-only configuration next to it is never invalidated by a write,
/// and so that a failing call dirties one line, not several. (72 bytes: on
/// 64-byte-line targets the last counter, refusal_stops, spills onto a
/// second line; a refusal drains no token, so it still writes one line.)
/// Every member is a standalone number accessed relaxed (see the top of
/// this file).
struct alignas(cache_line) backoff_shared {
  std::atomic<std::int64_t> tokens{0};     ///< the budget's level, in milli-tokens
  counter_set<backoff_counter> counters;  ///< the event counts

  backoff_shared() noexcept = default;
  /// Takes over `other`'s values. Not atomic as a whole: only for building a
  /// policy (a move), never while other threads use either object.
  backoff_shared(const backoff_shared& other) noexcept
      // Relaxed: construction happens before the object is shared; whatever
      // publishes the new object (thread start, a mutex) orders this store.
      : tokens(other.tokens.load(std::memory_order_relaxed)), counters(other.counters) {}
  backoff_shared& operator=(const backoff_shared&) = delete;
  ~backoff_shared() = default;
};

/// A retryable failure takes one token (not below zero). Returns the level
/// after this failure, on which the retry decision is made.
inline std::int64_t budget_drain(std::atomic<std::int64_t>& tokens) noexcept {
  // Relaxed: the level is a standalone number; the CAS makes each take atomic.
  std::int64_t cur = tokens.load(std::memory_order_relaxed);
  std::int64_t next = 0;
  do {
    if (cur <= 0) return 0;  // empty: nothing to write
    next = std::max<std::int64_t>(cur - milli_tokens, 0);
  } while (!tokens.compare_exchange_weak(cur, next, std::memory_order_relaxed, std::memory_order_relaxed));
  return next;
}

/// A success gives back `refill` (not above `max`). A full bucket, the
/// healthy steady state, is only read, never written, so callers that share
/// the policy do not fight over its cache line.
inline void budget_refill(std::atomic<std::int64_t>& tokens, const retry_budget_config& c) noexcept {
  // Relaxed: as in budget_drain.
  std::int64_t cur = tokens.load(std::memory_order_relaxed);
  while (cur < c.max &&
         !tokens.compare_exchange_weak(cur, std::min(cur + c.refill, c.max), std::memory_order_relaxed,
                                       std::memory_order_relaxed)) {
  }
}

}  // namespace armor::detail
