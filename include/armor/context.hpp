// armor/context.hpp: what one call knows about itself.
//
// The driver creates one context per call and hands it to every policy and to
// the operation. The operation may take it to size its own I/O timeout:
//
//     p.execute([&](const armor::context& ctx) {
//         return http_get(url, ctx.remaining());   // never outlive the deadline
//     }, {.key = upstream, .cost = 1});
//
// now() is the clock reading the driver took for this attempt (one read per
// attempt, shared by every layer); remaining() is measured from it. See
// docs/architecture.md#deadlines.
//
// A call may carry more than one cost, one per unit a layer counts (1 per
// request for a request quota, micro-dollars for a budget): each
// cost-charging layer picks one with the `cost` field of its options, an
// armor::cost_source (docs/quota_tracker.md#more-than-one-cost-per-call).
// It may carry more than one key too (a client IP and a bucket name): each
// keyed layer picks one with keyed_options::key, an armor::key_source.
#pragma once

#include <armor/clock.hpp>
#include <armor/detail/config.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace armor {

/// How many costs a call carries besides its main one (call_options::costs).
inline constexpr std::size_t cost_slots = 3;

namespace detail {
/// cost_source::slot(i) keeps any i at or above this as this (one byte).
inline constexpr std::size_t cost_slot_clamp = 0xfd;
}  // namespace detail

class context;

/// Which of a call's costs a layer charges: the `cost` field of
/// quota_tracker_options and token_bucket_options (the Redis bucket's too).
/// One byte; reading it costs a compare and a load, no call.
///
///   cost_source::main()      call_options::cost (the default: a layer that
///                            does not choose charges the call's cost)
///   cost_source::slot(i)     call_options::costs[i], i < cost_slots: a
///                            second and third unit (LLM tokens beside dollars)
///   cost_source::per_call()  1 each time the layer admits, whatever the call
///                            says: a request count beside a cost in money or
///                            tokens (per attempt when inside a retry layer)
///
/// The operation's reported cost follows the same choice:
/// `ctx.report_cost(source, actual)` settles the layers that charge `source`
/// and no others; a per_call() layer has nothing to settle. Name a slot once
/// to keep the call sites readable:
///
///     constexpr auto llm_tokens = armor::cost_source::slot(0);
///     armor::token_bucket tpm{{.rate = {90'000, 1min}, .burst = 90'000, .cost = llm_tokens}};
///     p.execute(f, {.cost = 40'000, .costs = {3'000}});   // micro-dollars; tokens in slot 0
class cost_source {
 public:
  /// call_options::cost.
  constexpr cost_source() noexcept = default;

  /// call_options::cost, the call's main cost.
  [[nodiscard]] static constexpr cost_source main() noexcept { return {}; }
  /// call_options::costs[i]. A policy refuses i >= cost_slots at construction.
  [[nodiscard]] static constexpr cost_source slot(std::size_t i) noexcept {
    return cost_source(static_cast<std::uint8_t>(std::min(i, detail::cost_slot_clamp) + 1));
  }
  /// 1 per admission, whatever the call's costs.
  [[nodiscard]] static constexpr cost_source per_call() noexcept { return cost_source(per_call_code); }

  [[nodiscard]] constexpr bool is_main() const noexcept { return code_ == 0; }
  [[nodiscard]] constexpr bool is_per_call() const noexcept { return code_ == per_call_code; }
  [[nodiscard]] constexpr bool is_slot() const noexcept { return code_ != 0 && code_ != per_call_code; }
  /// The slot's index (is_slot() only).
  [[nodiscard]] constexpr std::size_t index() const noexcept { return is_slot() ? code_ - 1U : 0; }
  /// False for a slot at or past cost_slots.
  [[nodiscard]] constexpr bool valid() const noexcept { return !is_slot() || index() < cost_slots; }

  friend constexpr bool operator==(cost_source, cost_source) noexcept = default;

 private:
  friend class context;
  static constexpr std::uint8_t per_call_code = 0xff;

  constexpr explicit cost_source(std::uint8_t code) noexcept : code_(code) {}

  std::uint8_t code_ = 0;  // 0: main; 1 + i: slot(i); 0xff: per call
};

/// How many keys a call carries besides its main one (call_options::keys).
inline constexpr std::size_t key_slots = 3;

/// Which of a call's keys a keyed layer uses: the `key` field of
/// armor::keyed_options. One byte; reading it costs a compare and a load.
///
///   key_source::main()    call_options::key (the default)
///   key_source::slot(i)   call_options::keys[i], i < key_slots
///
/// A per-IP and a per-bucket limit in one pipeline (docs/architecture.md,
/// "Several keys per call"):
///
///     constexpr auto by_bucket = armor::key_source::slot(0);
///     armor::keyed<armor::fixed_window<>> per_bucket{{.limit = 100, .window = 1s}, {.key = by_bucket}};
///     p.execute(f, {.key = client_ip, .keys = {bucket_name}});
class key_source {
 public:
  /// call_options::key.
  constexpr key_source() noexcept = default;

  /// call_options::key, the call's main key.
  [[nodiscard]] static constexpr key_source main() noexcept { return {}; }
  /// call_options::keys[i]. keyed refuses i >= key_slots at construction.
  [[nodiscard]] static constexpr key_source slot(std::size_t i) noexcept {
    return key_source(static_cast<std::uint8_t>(std::min<std::size_t>(i, 0xfd) + 1));
  }
  /// The host a host set layer outside picked for this attempt
  /// (context::host()): a per-host breaker or limit inside it.
  [[nodiscard]] static constexpr key_source host() noexcept { return key_source(host_code); }

  [[nodiscard]] constexpr bool is_main() const noexcept { return code_ == 0; }
  [[nodiscard]] constexpr bool is_host() const noexcept { return code_ == host_code; }
  /// The slot's index (0 for main() and host()).
  [[nodiscard]] constexpr std::size_t index() const noexcept {
    return code_ == 0 || code_ == host_code ? 0 : code_ - 1U;
  }
  /// False for a slot at or past key_slots.
  [[nodiscard]] constexpr bool valid() const noexcept { return code_ <= key_slots || code_ == host_code; }

  friend constexpr bool operator==(key_source, key_source) noexcept = default;

 private:
  friend class context;
  static constexpr std::uint8_t host_code = 0xff;  // slot(i) stays below
  constexpr explicit key_source(std::uint8_t code) noexcept : code_(code) {}

  std::uint8_t code_ = 0;  // 0: main; 1 + i: slot(i); 0xff: host()
};

/// How much a call matters when capacity runs short: a policy that sheds
/// load (armor::adaptive_limit) refuses sheddable calls first, then normal
/// ones, and critical calls last. Given per call in call_options::priority.
enum class priority : std::uint8_t {
  critical,   ///< refused only when the whole limit is in use
  normal,     ///< the default
  sheddable,  ///< refused first: background work, prefetches, retries of optional data
};

/// The enumerator's name: "critical", "normal", "sheddable".
[[nodiscard]] constexpr std::string_view to_string(priority p) noexcept {
  switch (p) {
    case priority::critical: return "critical";
    case priority::normal: return "normal";
    case priority::sheddable: return "sheddable";
  }
  return "unknown";
}

/// Per-call inputs given to execute(): which key a keyed policy should use
/// (client IP, upstream host), how many units the call costs (tokens for a
/// limiter, requests or micro-dollars for a quota; 1 by default), further
/// costs in other units for layers that select them (cost_source::slot),
/// and an optional time budget of its own, e.g. what is left of the
/// caller's deadline (`{.timeout = outer_ctx.remaining()}`), which every
/// layer's deadline then tightens further. A timeout of zero or less fails
/// the call with deadline_exceeded without running the operation.
struct call_options {
  /// The main key: what a keyed layer uses unless its keyed_options::key says otherwise.
  std::string_view key{};
  /// More keys of the same call: keys[i] is what a keyed layer with
  /// `.key = key_source::slot(i)` uses (a bucket name beside the client
  /// IP). Empty unless given. Not copied: they must outlive the call.
  std::array<std::string_view, key_slots> keys{};
  /// The main cost: what a layer charges unless its options' `cost` says otherwise.
  std::int64_t cost = 1;
  /// More costs of the same call, in other units: costs[i] is what a layer
  /// with `.cost = cost_source::slot(i)` charges. 0 unless given.
  std::array<std::int64_t, cost_slots> costs{};
  std::chrono::nanoseconds timeout = std::chrono::nanoseconds::max();  ///< max() = none
  /// How much the call matters to policies that shed load (armor::adaptive_limit).
  armor::priority priority = armor::priority::normal;
};

namespace detail {
struct context_access;

/// The options of a call given none: a constant, so that a call without
/// options copies known values into its context instead of building a
/// temporary call_options (and zeroing it) first.
inline constexpr call_options no_call_options{};
}  // namespace detail

/// The state of one call, shared by the driver, the policies and the
/// operation. Not shared between threads; not copied by the driver.
class context {
 public:
  /// A context at time `now`, with no deadline.
  explicit context(timestamp now, const call_options& options = {}) noexcept
      : now_(now), priority_(options.priority) {
    keys_[0] = options.key;
    for (std::size_t i = 0; i < key_slots; ++i) keys_[i + 1] = options.keys[i];
    costs_[0] = options.cost;
    for (std::size_t i = 0; i < cost_slots; ++i) costs_[i + 1] = options.costs[i];
    if (options.timeout != std::chrono::nanoseconds::max()) {
      const auto t = std::max<std::int64_t>(options.timeout.count(), 0);
      tighten_deadline(timestamp{std::chrono::nanoseconds{detail::saturating_add(now.time_since_epoch().count(), t)}});
    }
  }

  /// The clock reading of this attempt (the pipeline clock's epoch).
  [[nodiscard]] timestamp now() const noexcept { return now_; }

  /// The earliest deadline of the layers around this point;
  /// timestamp::max() when there is none.
  [[nodiscard]] timestamp deadline() const noexcept { return deadline_; }
  [[nodiscard]] bool has_deadline() const noexcept { return deadline_ != timestamp::max(); }

  /// Time left until the deadline as of now(); never negative;
  /// nanoseconds::max() when there is no deadline.
  [[nodiscard]] std::chrono::nanoseconds remaining() const noexcept {
    if (!has_deadline()) return std::chrono::nanoseconds::max();
    return deadline_ > now_ ? deadline_ - now_ : std::chrono::nanoseconds::zero();
  }

  /// True once now() has reached the deadline.
  [[nodiscard]] bool expired() const noexcept { return now_ >= deadline_; }

  /// How many times the operation has been called in this call, counting the
  /// current attempt: 1 during the first attempt, 0 before it.
  [[nodiscard]] unsigned attempt() const noexcept { return attempt_; }

  /// The key given in call_options (empty if none).
  [[nodiscard]] std::string_view key() const noexcept { return keys_[0]; }

  /// The key `source` selects: call_options::key or one of
  /// call_options::keys (empty if not given, or for a slot that does not exist).
  [[nodiscard]] std::string_view key(key_source source) const noexcept {
    if (ARMOR_LIKELY(source.code_ <= key_slots)) return keys_[source.code_];
    return source.code_ == key_source::host_code ? keys_[key_slots + 1] : std::string_view{};
  }

  /// The host a host set layer (armor::host_set in a pipeline) picked for
  /// this attempt: valid from that layer's admission until it settles;
  /// empty outside such a layer. key(key_source::host()) reads it too.
  [[nodiscard]] std::string_view host() const noexcept { return keys_[key_slots + 1]; }

  /// The priority given in call_options (normal if none).
  [[nodiscard]] armor::priority priority() const noexcept { return priority_; }

  /// The cost given in call_options (1 if none): the estimate policies
  /// charge at admission.
  [[nodiscard]] std::int64_t cost() const noexcept { return costs_[0]; }

  /// The cost `source` selects: call_options::cost, one of
  /// call_options::costs, or 1 (per_call()); -1 for a slot that does not
  /// exist (which a policy refuses as invalid_argument).
  [[nodiscard]] std::int64_t cost(cost_source source) const noexcept {
    if (ARMOR_LIKELY(source.code_ < costs_.size())) return costs_[source.code_];
    return source.is_per_call() ? 1 : -1;
  }

  /// For the operation: the real cost of this attempt, once it is known (an
  /// LLM call's token count arrives with the response). Policies that charge
  /// by cost settle with it instead of the estimate. Callable through the
  /// const context the operation receives; not thread-safe (one call, one
  /// thread at a time). A negative cost counts as not reported.
  void report_cost(std::int64_t actual) const noexcept { set_reported(0, actual); }

  /// The same for the cost `source` selects: only the layers charging that
  /// source settle with it. Ignored for per_call() (nothing to settle) and
  /// for a slot that does not exist.
  void report_cost(cost_source source, std::int64_t actual) const noexcept {
    if (source.code_ < reported_.size()) set_reported(source.code_, actual);
  }

  /// The main cost the operation reported for this attempt, if it did.
  [[nodiscard]] std::optional<std::int64_t> reported_cost() const noexcept { return reported(0); }

  /// The cost the operation reported for `source` in this attempt, if it
  /// did; never for per_call().
  [[nodiscard]] std::optional<std::int64_t> reported_cost(cost_source source) const noexcept {
    if (source.code_ >= reported_.size()) return std::nullopt;
    return reported(source.code_);
  }

  /// For policies: moves the deadline earlier to `t` (never later). The driver
  /// restores the outer deadline when the policy's layer is left, so a
  /// deadline inside a retry layer is a per-attempt timeout.
  void tighten_deadline(timestamp t) noexcept {
    if (t < deadline_) deadline_ = t;
  }

 private:
  friend struct detail::context_access;

  [[nodiscard]] std::optional<std::int64_t> reported(std::size_t i) const noexcept {
    if ((reported_mask_ & (1U << i)) == 0) return std::nullopt;
    return reported_[i];
  }

  void set_reported(std::size_t i, std::int64_t actual) const noexcept {
    reported_[i] = actual;
    const auto bit = static_cast<std::uint8_t>(1U << i);
    reported_mask_ = static_cast<std::uint8_t>(actual >= 0 ? reported_mask_ | bit : reported_mask_ & ~bit);
  }

  timestamp now_;
  timestamp deadline_ = timestamp::max();
  // [0]: the main key; [1 + i]: keys[i]; [key_slots + 1]: the picked host.
  std::array<std::string_view, key_slots + 2> keys_{};
  // The host a host set layer picked last in this call, as that layer
  // knows it (an identity, never read through): its retry avoids it.
  const void* last_host_ = nullptr;
  std::array<std::int64_t, cost_slots + 1> costs_{};  // [0]: the main cost; [1 + i]: costs[i]
  // What the operation reported, valid where reported_mask_ has the bit:
  // a new attempt forgets every report by clearing one byte.
  mutable std::array<std::int64_t, cost_slots + 1> reported_{};
  unsigned attempt_ = 0;
  mutable std::uint8_t reported_mask_ = 0;
  armor::priority priority_ = armor::priority::normal;
};

namespace detail {

/// What drivers may change in a context and policies may not.
struct context_access {
  static void set_now(context& c, timestamp t) noexcept { c.now_ = t; }
  static void set_deadline(context& c, timestamp t) noexcept { c.deadline_ = t; }
  /// For a host set layer: the host this attempt goes to (`id` empty when
  /// it settles) and who it is, kept for the next pick of the call.
  static void set_host(context& c, std::string_view id, const void* who) noexcept {
    c.keys_[key_slots + 1] = id;
    c.last_host_ = who;
  }
  [[nodiscard]] static const void* last_host(const context& c) noexcept { return c.last_host_; }
  static void begin_attempt(context& c) noexcept {
    ++c.attempt_;
    c.reported_mask_ = 0;
  }
};

/// For a policy's constructor: throws armor::error(invalid_argument) when
/// `source` (the `cost` option) selects a slot a call does not have.
inline void check_cost_source(cost_source source, std::string_view who) {
  if (source.valid()) return;
  std::string what(who);
  what.append(": cost selects cost_source::slot(")
      .append(std::to_string(source.index()))
      .append(source.index() >= cost_slot_clamp ? " or more" : "")
      .append("), but a call has slots 0 to ")
      .append(std::to_string(cost_slots - 1))
      .append(" (call_options::costs)");
  invalid_config(what);
}

/// For keyed's constructor: throws armor::error(invalid_argument) when
/// `source` (the `key` option) selects a slot a call does not have.
inline void check_key_source(key_source source, std::string_view who) {
  if (source.valid()) return;
  std::string what(who);
  what.append(": key selects key_source::slot(")
      .append(std::to_string(source.index()))
      .append("), but a call has slots 0 to ")
      .append(std::to_string(key_slots - 1))
      .append(" (call_options::keys)");
  invalid_config(what);
}

}  // namespace detail
}  // namespace armor
