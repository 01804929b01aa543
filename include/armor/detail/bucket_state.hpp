// armor/detail/bucket_state.hpp: the lock-free GCRA state behind
// armor::token_bucket. Not API: anything here may change without notice.
//
// Representation (docs/token_bucket.md has the long version)
// -----------------------------------------------------------
// A rate of `count` tokens per `period` nanoseconds is reduced by their gcd
// to c tokens per p ns. The state measures time in *ticks* of 1/c ns, so the
// emission interval T = p/c ns is exactly p ticks and the burst tolerance is
// tau = burst * p ticks: every quantity GCRA needs is an integer, nothing is
// rounded, and the k-th token after an instant t0 is due exactly at the
// first whole nanosecond >= t0 + k*p/c. Over any run the bucket admits
// exactly burst + floor(rate * t) tokens, as the real-number definition
// (golang.org/x/time/rate) does.
//
// Ticks overflow int64 after 2^63/c ns, so the state is relative to a *base*
// time (ns) kept beside the rate in a config slot, and it is re-based when
// time has moved far from it. The hot state is a pair of 64-bit atomics:
//
//     value       TAT, the theoretical arrival time, in ticks since the
//                 current slot's base (signed, kept within 2^59), in one
//                 of two encodings, below
//     generation  which config is current: slot (generation & 1); 64 bits,
//                 it only grows and never wraps
//
// A config slot holds {c, p, burst, base}. Changing the rate (or the base)
// writes the slot the state does not use, then moves the state to it with
// one 16-byte CAS of the pair (detail/wide_cas.hpp) that also converts the
// TAT and bumps the generation. Writers of slots (rate changes, re-basing)
// take a small claim flag among themselves; reads and grants never touch it.
//
// Two modes: narrow, then wide (one way)
// --------------------------------------
// Narrow: while the bucket is as it was built (its rate never changed, never
// re-based: for most rates, years), the value word holds TAT + 2^61, a
// *narrow* word (>= 2^60), the generation is 0 and slot 0 holds the
// config. A grant is one 8-byte CAS of the value word alone; a denial loads
// slot 0 and the value word and writes nothing.
//
// Wide: the first slot writer *widens* the state, with one 8-byte CAS of
// the value word from TAT + 2^61 to TAT (same TAT, generation 0, slot 0),
// and then works as above. From then on every change of the value word is
// a 16-byte CAS of the pair that checks the generation, and a denial
// re-reads the generation after reading the slot (seqlock-style).
//
// Why no decision mixes configs (the ABA argument)
// ------------------------------------------------
// 1. A narrow word never comes back. Wide values lie in [-2^58, 2^59),
//    narrow words in [2^61 - 2^58, 2^61 + 2^59): disjoint. After the
//    widening CAS, a narrow CAS (its expected value is a narrow word) fails;
//    wide CASes write wide values; widening acts only on a narrow word. By
//    induction the value word is wide forever after, however long a caller
//    was preempted. So a narrow CAS that succeeds happened before the
//    widening, while the config was the one the bucket was built with, and
//    that is the config the caller used (2): no old-rate/new-TAT mix.
// 2. A narrow caller loads slot 0 *before* the value word (acquire loads,
//    in that order). Slot 0 is rewritten only for generation 2, which a
//    writer publishes after widening. If any of the caller's slot loads saw
//    such a rewrite, it synchronises with that writer, the widening happens
//    before the caller's load of the value word, and the caller sees a wide
//    value and does not take the narrow path. So a caller that sees a narrow
//    word read the construction-time slot 0, untorn, with no re-check; its
//    denial is linearised at that load.
// 3. Wide: a generation that never wraps makes a stale caller's 16-byte CAS
//    fail for certain (a slot is rewritten only two generations later, and
//    the CAS compares the generation it read); a denial re-checks it.
// 4. A wide CAS during the narrow mode fails (its expected value is wide).
#pragma once

#include <armor/context.hpp>
#include <armor/detail/time.hpp>
#include <armor/detail/wide_cas.hpp>

#include <atomic>
#include <cstdint>
#include <thread>
#include <utility>

namespace armor::detail {

__extension__ typedef __int128 bucket_int128;

/// A rate limit as the state uses it: `count` tokens every `period` ns, in
/// lowest terms, and the burst. One tick is 1/count ns; one token is
/// `period` ticks.
struct bucket_config {
  std::int64_t count = 1;   ///< c
  std::int64_t period = 1;  ///< p, ticks per token (and ns per c tokens)
  std::int64_t burst = 1;   ///< b, tokens

  /// The burst tolerance, in ticks. Fits: validated against bucket_max_span.
  [[nodiscard]] constexpr std::int64_t tau() const noexcept { return burst * period; }
  friend constexpr bool operator==(const bucket_config&, const bucket_config&) = default;
};

/// The oldest time the state represents, in ticks from the base. An older
/// TAT means "full" for every time the state can be asked about.
inline constexpr std::int64_t bucket_floor = -(std::int64_t{1} << 58);
/// From here on (ticks from the base to now) a caller tries to re-base.
inline constexpr std::int64_t bucket_soft_limit = std::int64_t{1} << 57;
/// Past here the state must be re-based before it is used.
inline constexpr std::int64_t bucket_hard_limit = std::int64_t{1} << 58;
/// The most ticks a TAT may lie ahead of now: tau plus the longest wait.
/// With the hard limit this keeps every TAT below 2^58 + 2^57 < 2^59.
inline constexpr std::int64_t bucket_max_span = std::int64_t{1} << 57;
/// A narrow value word is the TAT plus this (see the top of this header).
inline constexpr std::int64_t bucket_narrow_offset = std::int64_t{1} << 61;
/// Every narrow word is at least this; every wide value is below it.
inline constexpr std::int64_t bucket_narrow_min = std::int64_t{1} << 60;
static_assert(bucket_floor + bucket_narrow_offset >= bucket_narrow_min, "narrow words stay narrow");
static_assert(bucket_hard_limit + bucket_max_span < bucket_narrow_min, "wide values stay below narrow words");
static_assert((std::int64_t{1} << 59) + bucket_narrow_offset > 0, "narrow words do not overflow");

/// What one acquire came to.
enum class bucket_outcome : std::uint8_t { granted, denied, too_large };

/// A state a grant wrote: the value word as stored (a narrow word, or the
/// TAT) and the generation it belongs to (0 for a narrow word).
struct bucket_word {
  std::int64_t value = 0;
  std::uint64_t generation = 0;
  friend constexpr bool operator==(const bucket_word&, const bucket_word&) = default;
};

struct bucket_result {
  bucket_outcome outcome = bucket_outcome::denied;
  bucket_config config{};
  std::int64_t n = 0;     ///< tokens asked for
  std::int64_t debt = 0;  ///< ticks until full: after a grant, or as found by a denial (>= 0)
  std::int64_t late = 0;  ///< ticks until the n tokens are due: > 0 for a reservation or a denial
  bucket_word word{};     ///< the state a grant wrote (for giving it back)
};

/// A reading of the state without changing it.
struct bucket_snapshot {
  bucket_config config{};
  std::int64_t debt = 0;  ///< ticks until full (>= 0)
};

/// ceil(a / b) for a >= 0, b > 0.
[[nodiscard]] constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) noexcept {
  return a / b + (a % b != 0 ? 1 : 0);
}

class alignas(16) bucket_state {
 public:
  /// A full bucket with `config`, based at `now` (ns). `max_wait` (ns) and
  /// `cost` are only kept for the owner (see max_wait() and cost()).
  bucket_state(const bucket_config& config, std::int64_t now, std::int64_t max_wait = 0,
               cost_source cost = {}) noexcept
      : max_wait_(max_wait), cost_(cost) {
    write_slot(0, config, now);
    store({bucket_floor + bucket_narrow_offset, 0});  // narrow: see the top of this header
  }

  /// A snapshot of another state (for moving a bucket before it is shared).
  bucket_state(const bucket_state& other) noexcept : max_wait_(other.max_wait_), cost_(other.cost_) {
    const view v = other.read();
    write_slot(v.generation, v.slot.config, v.slot.base);
    store({static_cast<std::int64_t>(v.raw), v.generation});
    modified_.store(other.modified(), std::memory_order_relaxed);
  }
  bucket_state& operator=(const bucket_state&) = delete;

  /// Takes n tokens at `now` if they are there; if not, and they will be
  /// within `wait_limit` ns (< 0: no waiting), reserves them (the TAT moves
  /// now, so later callers queue behind). A denial writes nothing.
  ///
  /// The common case (a narrow state, now near the base, n within the
  /// burst, no waiting) is this small inline loop around one 8-byte CAS; a
  /// wide state takes acquire_wide(), everything else acquire_general().
  [[nodiscard]] bucket_result acquire(std::int64_t n, std::int64_t now, std::int64_t wait_limit) noexcept {
    if (wait_limit >= 0) [[unlikely]] return acquire_general(n, now, wait_limit);
    // Slot 0, then the value word: if the word is narrow, these are the
    // fields the bucket was built with (point 2 at the top).
    const slot_values s = read_slot(0);
    std::uint64_t raw = pair_.first.load(std::memory_order_acquire);
    if (!is_narrow(raw)) [[unlikely]] return acquire_wide(n, now);
    std::int64_t d = 0;
    std::int64_t nt = 0;
    if (__builtin_sub_overflow(now, s.base, &d) || __builtin_mul_overflow(d, s.config.count, &nt) ||
        nt > bucket_soft_limit || nt < bucket_floor || n > s.config.burst) [[unlikely]] {
      return acquire_general(n, now, wait_limit);
    }
    // Untorn and validated at construction: tau <= bucket_max_span, and
    // with n <= burst nothing below overflows.
    const std::int64_t tau = s.config.burst * s.config.period;
    const std::int64_t cost = n * s.config.period;
    bucket_result r;
    r.config = s.config;
    r.n = n;
    for (;;) {
      const std::int64_t v = decode(raw);
      const std::int64_t start = v > nt ? v : nt;
      const std::int64_t end = start + cost;
      r.late = end - nt - tau;
      if (r.late > 0 || n == 0) {
        r.outcome = r.late > 0 ? bucket_outcome::denied : bucket_outcome::granted;
        r.debt = start - nt;
        if (n == 0) r.word = {static_cast<std::int64_t>(raw), 0};
        return r;
      }
      const std::uint64_t next = encode(end);
      if (pair_.first.compare_exchange_weak(raw, next, std::memory_order_acq_rel, std::memory_order_acquire))
          [[likely]] {
        r.outcome = bucket_outcome::granted;
        r.debt = end - nt;
        r.word = {static_cast<std::int64_t>(next), 0};
        return r;
      }
      // Still narrow: still the same config, so only the TAT is new.
      if (!is_narrow(raw)) [[unlikely]] return acquire_wide(n, now);
    }
  }

  /// acquire() without waiting, for a wide state: near the base and within
  /// the burst here, everything else in acquire_general().
  bucket_result acquire_wide(std::int64_t n, std::int64_t now) noexcept {
    for (;;) {
      const bucket_word w = load();
      const slot_values s = read_slot(w.generation);
      std::int64_t d = 0;
      std::int64_t nt = 0;
      if (__builtin_sub_overflow(now, s.base, &d) || __builtin_mul_overflow(d, s.config.count, &nt) ||
          nt > bucket_soft_limit || nt < bucket_floor || n > s.config.burst) [[unlikely]] {
        return acquire_general(n, now, -1);
      }
      // A consistent config has tau <= bucket_max_span (validated when it
      // was made), so with n <= burst nothing below overflows. Fields torn
      // by a slot rewrite need not: such a reading cannot stand anyway (its
      // generation has moved on), so start over.
      std::int64_t tau = 0;
      if (__builtin_mul_overflow(s.config.burst, s.config.period, &tau) || tau > bucket_max_span) [[unlikely]] {
        continue;
      }
      const std::int64_t cost = n * s.config.period;
      bucket_result r;
      r.config = s.config;
      r.n = n;
      const std::int64_t start = w.value > nt ? w.value : nt;
      const std::int64_t end = start + cost;
      r.late = end - nt - tau;
      if (r.late > 0 || n == 0) {
        if (!unchanged(w.generation)) continue;
        r.outcome = r.late > 0 ? bucket_outcome::denied : bucket_outcome::granted;
        r.debt = start - nt;
        if (n == 0) r.word = w;
        return r;
      }
      const bucket_word next{end, w.generation};
      if (exchange(w, next)) {
        r.outcome = bucket_outcome::granted;
        r.debt = end - nt;
        r.word = next;
        return r;
      }
    }
  }

  /// acquire() for every case: re-basing, requests above the burst,
  /// reservations; narrow or wide.
  [[gnu::noinline]] bucket_result acquire_general(std::int64_t n, std::int64_t now, std::int64_t wait_limit) noexcept {
    for (;;) {
      const view w = read();
      const slot_values& s = w.slot;
      std::int64_t nt = 0;
      const span where = ticks_since(now, s.base, s.config.count, nt);
      if (where != span::near) [[unlikely]] {
        if (where == span::far) {
          rebase(now, true);
          continue;
        }
        if (rebase(now, false)) continue;  // else someone else is re-basing: the old base still serves
      }
      bucket_result r;
      r.config = s.config;
      r.n = n;
      const std::int64_t v = w.value;
      if (n > s.config.burst) [[unlikely]] {
        if (!stands(w)) continue;
        r.outcome = bucket_outcome::too_large;
        r.debt = v > nt ? v - nt : 0;
        return r;
      }
      std::int64_t tau = 0;
      if (__builtin_mul_overflow(s.config.burst, s.config.period, &tau) || tau > bucket_max_span) [[unlikely]] {
        continue;  // torn fields (see acquire)
      }
      const std::int64_t cost = n * s.config.period;
      const std::int64_t start = v > nt ? v : nt;
      const std::int64_t end = start + cost;  // n <= burst: fits (tau <= max span)
      r.late = end - nt - tau;
      if (r.late > 0) {
        // Not there yet: deny, or reserve if the wait is allowed.
        std::int64_t limit = -1;
        if (wait_limit >= 0) {
          limit = saturating_mul(wait_limit, s.config.count);
          if (limit > bucket_max_span - tau) limit = bucket_max_span - tau;
        }
        if (r.late > limit) {
          // Read, decide, return: the decision stands if the generation did
          // not change while the slot was read (a re-base or rate change).
          if (!stands(w)) continue;
          r.outcome = bucket_outcome::denied;
          r.debt = start - nt;
          return r;
        }
      }
      r.outcome = bucket_outcome::granted;
      if (n == 0) {
        // Zero tokens follow the rule of try_acquire(0): at once unless the
        // bucket is below zero (reservations owed), else after the wait until
        // it is back at zero, which `late` holds (x/time/rate's ReserveN(t, 0)
        // waits as long). Nothing is taken either way.
        if (!stands(w)) continue;
        r.debt = start - nt;
        if (r.late < 0) r.late = 0;
        r.word = {static_cast<std::int64_t>(w.raw), w.generation};
        return r;
      }
      if (commit(w, end, r.word)) {
        r.debt = end - nt;
        return r;
      }
    }
  }

  /// Gives back `amount` ticks a grant took, if the state is still exactly
  /// what that grant wrote (nothing was granted or reserved after it, no
  /// rate change, no re-base): the state becomes what it would be had the
  /// grant never happened. Otherwise gives nothing back and returns false.
  bool give_back(const bucket_word& word, std::int64_t amount) noexcept {
    if (is_narrow(static_cast<std::uint64_t>(word.value))) {
      // Narrow words never come back once widened: a rate change or re-base
      // since the grant makes this fail.
      std::uint64_t expected = static_cast<std::uint64_t>(word.value);
      return pair_.first.compare_exchange_strong(expected, static_cast<std::uint64_t>(word.value - amount),
                                                 std::memory_order_acq_rel, std::memory_order_relaxed);
    }
    return exchange(word, {word.value - amount, word.generation});
  }

  /// The state at `now`, unchanged.
  [[nodiscard]] bucket_snapshot peek(std::int64_t now) const noexcept {
    for (;;) {
      const view w = read();
      if (!stands(w)) continue;
      const bucket_int128 nt = clamped_ticks(now, w.slot);
      const bucket_int128 debt = static_cast<bucket_int128>(w.value) - nt;
      return {w.slot.config, debt > 0 ? static_cast<std::int64_t>(debt) : 0};
    }
  }

  /// The current config.
  [[nodiscard]] bucket_config config() const noexcept {
    for (;;) {
      const view w = read();
      if (stands(w)) return w.slot.config;
    }
  }

  /// The longest wait the owner grants, in ns: fixed at construction. Kept
  /// here because it fits in the padding the 16-byte alignment leaves.
  [[nodiscard]] std::int64_t max_wait() const noexcept { return max_wait_; }
  /// Which of a call's costs the owner charges in a pipeline; in the padding too.
  [[nodiscard]] cost_source cost() const noexcept { return cost_; }

  /// True once reconfigure() has changed the config (re-basing does not count).
  /// Relaxed: a hint for armor::keyed's eviction, read after the entry's
  /// reference count has ordered everything its last user did.
  [[nodiscard]] bool modified() const noexcept { return modified_.load(std::memory_order_relaxed); }

  /// Switches to `next` at `now`, keeping the number of tokens (as
  /// golang.org/x/time/rate's SetLimit/SetBurst do): tokens at the old rate
  /// are converted to time at the new one. Tokens above the new burst are
  /// dropped (the bucket is full); a fraction of a token that the new tick
  /// cannot express is rounded towards fewer tokens (less than 1/period of
  /// a token). Returns false if `next` is the current config (nothing to do).
  bool reconfigure(const bucket_config& next, std::int64_t now) noexcept {
    return update([&](const bucket_config&) { return next; }, [now] { return now; });
  }

  /// reconfigure() to `make_next(current config)`, the reading and the
  /// change together under the writers' claim (so two changes of different
  /// fields cannot undo each other). If make_next throws, nothing changes.
  ///
  /// The change takes effect at `now_fn()`, called after each reading of
  /// the state: with a clock, that time is no earlier than the stamp of any
  /// call whose grant the reading includes, and a grant after the reading
  /// makes the CAS fail and the time be read again. Converting at a time
  /// before a grant's own stamp would let the new rate refill, backwards, a
  /// stretch the old rate already paid out.
  template <class F, class Now>
  bool update(F&& make_next, Now&& now_fn) noexcept(noexcept(make_next(std::declval<const bucket_config&>())) &&
                                                     noexcept(now_fn())) {
    claim_guard guard(claim_);
    // Only claim holders write slots, and only the next generation's: the
    // current slot holds still while the claim is held.
    const bucket_config current = read_slot(pair_.second.load(std::memory_order_acquire)).config;
    const bucket_config next = make_next(current);
    if (next == current) return false;  // nothing to do: a narrow state stays narrow
    widen();
    for (;;) {
      const bucket_word w = load();
      const slot_values s = read_slot(w.generation);
      if (s.config == next) return false;
      const std::int64_t now = now_fn();
      const bucket_int128 nt = clamped_ticks(now, s);
      bucket_int128 debt = static_cast<bucket_int128>(w.value) - nt;  // old ticks
      if (debt < 0) debt = 0;
      // tokens = b1 - debt / p1  ->  new debt = (b2 - tokens) * p2 ticks of the new size.
      const bucket_int128 scaled = debt * next.period;
      bucket_int128 converted = scaled / s.config.period + (scaled % s.config.period != 0 ? 1 : 0);
      converted += static_cast<bucket_int128>(next.burst - s.config.burst) * next.period;
      std::int64_t value = 0;  // the new base is now: a TAT of 0 is "full at now"
      if (converted > bucket_hard_limit) {
        value = bucket_hard_limit;  // more debt than the state holds: keep the most it can
      } else if (converted > 0) {
        value = static_cast<std::int64_t>(converted);
      }
      // The slot of the next generation is read by nobody whose decision
      // can stand: a reader of it holds generation - 1 or older.
      write_slot(w.generation + 1, next, now);
      if (exchange(w, {value, w.generation + 1})) {
        modified_.store(true, std::memory_order_relaxed);
        return true;
      }
    }
  }

 private:
  struct slot {
    std::atomic<std::int64_t> count{1};
    std::atomic<std::int64_t> period{1};
    std::atomic<std::int64_t> burst{1};
    std::atomic<std::int64_t> base{0};
  };
  struct slot_values {
    bucket_config config;
    std::int64_t base;
  };

  // One reading of the whole state, narrow or wide.
  struct view {
    std::int64_t value;        // the TAT
    std::uint64_t raw;         // the value word as stored
    std::uint64_t generation;  // 0 for a narrow word
    bool narrow;
    slot_values slot;          // the config and base the TAT is measured in
  };

  enum class span : std::uint8_t { near, soft, far };

  [[nodiscard]] static constexpr bool is_narrow(std::uint64_t raw) noexcept {
    return static_cast<std::int64_t>(raw) >= bucket_narrow_min;
  }
  [[nodiscard]] static constexpr std::int64_t decode(std::uint64_t narrow_word) noexcept {
    return static_cast<std::int64_t>(narrow_word) - bucket_narrow_offset;
  }
  [[nodiscard]] static constexpr std::uint64_t encode(std::int64_t tat) noexcept {
    return static_cast<std::uint64_t>(tat + bucket_narrow_offset);
  }

  // The generation, its slot, then the value word. A narrow word means the
  // generation read was 0 and the slot is the construction-time slot 0
  // (point 2 at the top): the reading is consistent as it is. A wide one
  // belongs to the generation read or a later one: the caller's CAS, or
  // stands(), tells which.
  [[nodiscard]] view read() const noexcept {
    const std::uint64_t g = pair_.second.load(std::memory_order_acquire);
    const slot_values s = read_slot(g);
    const std::uint64_t raw = pair_.first.load(std::memory_order_acquire);
    if (is_narrow(raw)) return {decode(raw), raw, 0, true, s};
    return {static_cast<std::int64_t>(raw), raw, g, false, s};
  }

  // Whether a decision made from `w` without writing stands: always for a
  // narrow reading (linearised at its load of the value word), for a wide
  // one if the generation did not move while the slot was read.
  [[nodiscard]] bool stands(const view& w) const noexcept { return w.narrow || unchanged(w.generation); }

  // Moves the state from `w` to the TAT `value` in the same config: one
  // 8-byte CAS of a narrow word, or one 16-byte CAS of a wide pair. On
  // success `written` is what the state now holds (for give_back()).
  bool commit(const view& w, std::int64_t value, bucket_word& written) noexcept {
    if (w.narrow) {
      std::uint64_t expected = w.raw;
      const std::uint64_t next = encode(value);
      if (!pair_.first.compare_exchange_strong(expected, next, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        return false;
      }
      written = {static_cast<std::int64_t>(next), 0};
      return true;
    }
    const bucket_word next{value, w.generation};
    if (!exchange({w.value, w.generation}, next)) return false;
    written = next;
    return true;
  }

  // Leaves the narrow mode for good (slot writers only, with the claim
  // held, before they write a slot): the same TAT, as a wide value of
  // generation 0, whose slot 0 already holds the config.
  void widen() noexcept {
    std::uint64_t raw = pair_.first.load(std::memory_order_acquire);
    while (is_narrow(raw) && !pair_.first.compare_exchange_weak(raw, static_cast<std::uint64_t>(decode(raw)),
                                                                std::memory_order_acq_rel, std::memory_order_acquire)) {
    }
  }

  // Test and test-and-set: a busy claim is only read, not written.
  static bool try_take(std::atomic<std::uint32_t>& c) noexcept {
    return c.load(std::memory_order_relaxed) == 0 && c.exchange(1, std::memory_order_acquire) == 0;
  }

  // Holds the writers' claim; spins (yielding) while another writer has it.
  // Only slot writers (reconfigure, re-base) ever take it.
  class claim_guard {
   public:
    explicit claim_guard(std::atomic<std::uint32_t>& c) noexcept : c_(c) {
      while (!try_take(c_)) std::this_thread::yield();
    }
    /// Adopts a claim the caller already took with try_take().
    claim_guard(std::atomic<std::uint32_t>& c, bool /*adopt*/) noexcept : c_(c) {}
    claim_guard(const claim_guard&) = delete;
    claim_guard& operator=(const claim_guard&) = delete;
    ~claim_guard() { c_.store(0, std::memory_order_release); }

   private:
    std::atomic<std::uint32_t>& c_;
  };

  // Wide states only (after widen(), or once a wide value was seen). The
  // generation first, then the value: a value read after generation g
  // belongs to g or a later generation, and the caller's CAS (or re-check
  // of the generation) tells which.
  [[nodiscard]] bucket_word load() const noexcept {
    const std::uint64_t g = pair_.second.load(std::memory_order_acquire);
    const auto v = static_cast<std::int64_t>(pair_.first.load(std::memory_order_acquire));
    return {v, g};
  }

  // Only before the state is shared (constructors).
  void store(const bucket_word& w) noexcept {
    pair_.first.store(static_cast<std::uint64_t>(w.value), std::memory_order_relaxed);
    pair_.second.store(w.generation, std::memory_order_relaxed);
  }

  // One CAS of the pair (acquire-release: it heads or continues the release
  // sequence a slot writer's CAS started, and it sees that writer's slot).
  bool exchange(const bucket_word& expected, const bucket_word& desired) noexcept {
    return pair_.compare_exchange(static_cast<std::uint64_t>(expected.value), expected.generation,
                                  static_cast<std::uint64_t>(desired.value), desired.generation);
  }

  // Read after an acquire load of the generation g. That load sees the slot
  // as its writer left it: the writer stored the fields before the CAS that
  // published g. The slot is next rewritten for generation g + 2, which
  // only starts once g + 1 is published; so if the generation is still g
  // when the caller's CAS succeeds or its re-check runs, the fields read are
  // g's. The loads are acquire so that a field written for g + 2 (seen by a
  // stale reader) makes that reader's later re-check see the generation
  // move on. On x86 an acquire load is a plain load; unlike a fence,
  // ThreadSanitizer understands it.
  [[nodiscard]] slot_values read_slot(std::uint64_t generation) const noexcept {
    const slot& s = slots_[generation & 1U];
    return {{s.count.load(std::memory_order_acquire), s.period.load(std::memory_order_acquire),
             s.burst.load(std::memory_order_acquire)},
            s.base.load(std::memory_order_acquire)};
  }

  // Called only with the claim held (or before the state is shared), on the
  // slot of a generation not yet published.
  void write_slot(std::uint64_t generation, const bucket_config& c, std::int64_t base) noexcept {
    slot& s = slots_[generation & 1U];
    s.count.store(c.count, std::memory_order_release);
    s.period.store(c.period, std::memory_order_release);
    s.burst.store(c.burst, std::memory_order_release);
    s.base.store(base, std::memory_order_release);
  }

  // True if the generation is still `g` after the slot was read
  // (seqlock-style validation for paths that decide without a CAS). The
  // generation only grows, so "still g" means "g all along". Relaxed
  // suffices: the slot loads before it are acquire, so it cannot be
  // reordered before them.
  [[nodiscard]] bool unchanged(std::uint64_t g) const noexcept {
    return pair_.second.load(std::memory_order_relaxed) == g;
  }

  // Ticks from `base` to `now`, clamped below at the floor (an older time is
  // judged as the oldest representable one: fewer tokens, never more).
  static span ticks_since(std::int64_t now, std::int64_t base, std::int64_t count, std::int64_t& out) noexcept {
    const std::int64_t d = saturating_sub(now, base);
    std::int64_t t = 0;
    if (__builtin_mul_overflow(d, count, &t)) {
      if (d < 0) {
        out = bucket_floor;
        return span::near;
      }
      return span::far;
    }
    if (t < bucket_floor) t = bucket_floor;
    out = t;
    if (t <= bucket_soft_limit) return span::near;
    return t <= bucket_hard_limit ? span::soft : span::far;
  }

  // Ticks from the slot's base to `now` in 128 bits (never overflows),
  // clamped below at the floor.
  static bucket_int128 clamped_ticks(std::int64_t now, const slot_values& s) noexcept {
    const bucket_int128 t = (static_cast<bucket_int128>(now) - s.base) * s.config.count;
    return t < bucket_floor ? bucket_int128{bucket_floor} : t;
  }

  // Moves the base to `now` (same rate), converting the TAT. With `wait`
  // false it gives up at once if another writer holds the claim. Returns
  // true if the state is now near its base (re-based by this call or by
  // another writer before it).
  bool rebase(std::int64_t now, bool wait) noexcept {
    if (wait) {
      claim_guard guard(claim_);
      return rebase_claimed(now);
    }
    if (!try_take(claim_)) return false;
    claim_guard guard(claim_, true);
    return rebase_claimed(now);
  }

  bool rebase_claimed(std::int64_t now) noexcept {
    if (clamped_ticks(now, read().slot) <= bucket_soft_limit) return true;  // done by another writer
    widen();
    for (;;) {
      const bucket_word w = load();
      const slot_values s = read_slot(w.generation);
      const bucket_int128 nt = clamped_ticks(now, s);
      if (nt <= bucket_soft_limit) return true;  // done by another writer
      const bucket_int128 moved = static_cast<bucket_int128>(w.value) - nt;
      const std::int64_t value = moved < bucket_floor ? bucket_floor : static_cast<std::int64_t>(moved);
      write_slot(w.generation + 1, s.config, now);
      if (exchange(w, {value, w.generation + 1})) return true;
    }
  }

  atomic_pair pair_;  // first: the TAT (value), second: the generation
  slot slots_[2];
  std::int64_t max_wait_ = 0;
  std::atomic<std::uint32_t> claim_{0};
  std::atomic<bool> modified_{false};
  cost_source cost_{};  // one byte, in the tail padding: a keyed bucket costs no more per key
};

}  // namespace armor::detail
