// armor/hedge.hpp: cut tail latency with a second request (Asio driver
// only). Defines armor::hedge, hedge_options and armor::idempotent.
//
//     #include <armor/asio.hpp>
//     #include <armor/hedge.hpp>
//
//     asio::awaitable<std::string> hedged_get(std::string url) {
//         using namespace std::chrono_literals;
//         const auto p = armor::pipeline{armor::deadline{2s}, armor::hedge{{.max_attempts = 2, .delay = 50ms}}};
//         // GET is safe to repeat: say so, or the pipeline refuses to compile.
//         co_return co_await p.async_execute(armor::idempotent{[&](const armor::context& ctx) {
//             return http_get(url, ctx);                  // asio::awaitable<std::string>
//         }});
//     }
//
// When another attempt starts, which one wins, how the others are
// cancelled, and why the sync driver refuses a hedge: docs/policies_order.md#hedge.
#pragma once

#include <armor/context.hpp>
#include <armor/error.hpp>
#include <armor/policy.hpp>
#include <armor/verdict.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>

namespace armor {

/// The options of armor::hedge. An aggregate: `{.max_attempts = 2, .delay = 50ms}`.
struct hedge_options {
  /// Attempts in all, the first included, running at most this many at
  /// once; in [1, 8].
  std::uint32_t max_attempts = 2;
  /// Starts another attempt when none has finished this long after the
  /// last one started; >= 0.
  std::chrono::nanoseconds delay = std::chrono::milliseconds{50};
};

/// A hedging layer: starts the layers inside it once, and another attempt
/// when none has finished `delay` after the last one started (at once after
/// a retryable failure), up to `max_attempts` side by side; the first
/// success wins and the Asio driver cancels the rest. An answer that says
/// when to come back (throttled, or a retry_after) starts no more attempts. Stateless and
/// thread-safe; its decisions are plain functions the Asio driver asks.
class hedge {
 public:
  using permit_type = no_permit;
  using options_type = hedge_options;
  /// Tells the drivers this layer runs its inner layers side by side.
  static constexpr bool hedges = true;
  /// The most attempts a hedge may run.
  static constexpr std::uint32_t attempt_limit = 8;

  /// Throws armor::error(invalid_argument), naming the option, for
  /// max_attempts outside [1, 8] or a negative delay.
  explicit hedge(const hedge_options& options = {}) : options_(checked(options)) {}

  [[nodiscard]] admission<> admit(context&) const noexcept { return admission<>::admit(); }
  void settle(context&, no_permit, const verdict&) const noexcept {}

  [[nodiscard]] std::uint32_t max_attempts() const noexcept { return options_.max_attempts; }
  [[nodiscard]] std::chrono::nanoseconds delay() const noexcept { return options_.delay; }

  /// True when an attempt that ended with `v` settles the whole call: a
  /// success, or a failure retrying cannot fix. The others are cancelled.
  [[nodiscard]] static bool is_final(const verdict& v) noexcept {
    return v.ok() || (v.kind != outcome::cancelled && !v.retryable);
  }

  /// True when an attempt that ended with `v` (not final) tells the hedge
  /// to start no more attempts: the upstream (or a layer inside the hedge)
  /// said when to come back, as a 429, a 503 with Retry-After or an open
  /// breaker do. Attempts already running go on; the call ends with this
  /// verdict unless one of them settles it, so a retry layer outside the
  /// hedge waits its retry_after instead of the hedge asking again at once.
  [[nodiscard]] static bool stops_hedging(const verdict& v) noexcept {
    return !v.ok() && v.kind != outcome::cancelled && (v.kind == outcome::throttled || v.retry_after.has_value());
  }

  /// True when an attempt that ended with `v` (not final) should be
  /// followed by another one at once, rather than after the delay.
  [[nodiscard]] static bool start_next_now(const verdict& v) noexcept {
    return !v.ok() && v.retryable && v.kind != outcome::cancelled && !stops_hedging(v);
  }

 private:
  static const hedge_options& checked(const hedge_options& o) {
    if (o.max_attempts < 1 || o.max_attempts > attempt_limit) {
      detail::invalid_config("armor::hedge: max_attempts must be in [1, 8] (got " + std::to_string(o.max_attempts) +
                             ")");
    }
    if (o.delay.count() < 0) {
      detail::invalid_config("armor::hedge: delay must not be negative (got " + std::to_string(o.delay.count()) +
                             " ns)");
    }
    return o;
  }

  hedge_options options_;
};

/// Marks an operation as safe to repeat (and to run twice at once), which
/// armor::hedge requires: `p.async_execute(armor::idempotent{op})`. Calls
/// `fn` with whatever it is called with.
template <class F>
struct idempotent {
  F fn;

  template <class... Args>
    requires std::invocable<F&, Args...>
  decltype(auto) operator()(Args&&... args) {
    return std::invoke(fn, std::forward<Args>(args)...);
  }
  template <class... Args>
    requires std::invocable<const F&, Args...>
  decltype(auto) operator()(Args&&... args) const {
    return std::invoke(fn, std::forward<Args>(args)...);
  }
};
template <class F>
idempotent(F) -> idempotent<F>;

namespace detail {
template <class F>
inline constexpr bool is_idempotent_v = false;
template <class F>
inline constexpr bool is_idempotent_v<idempotent<F>> = true;
}  // namespace detail

}  // namespace armor
