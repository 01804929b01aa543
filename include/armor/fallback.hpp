// armor/fallback.hpp: when the call fails, answer with something else.
//
//     using namespace std::chrono_literals;
//     auto p = armor::pipeline{
//         armor::fallback{[&](const armor::failure& why, const armor::context&) {
//             return cache.get(key);                      // a stale answer beats none
//         }},
//         armor::deadline{2s},
//         std::ref(breaker),
//     };
//     std::string body = p.execute([&] { return fetch(key); });   // live, or the cached copy
//
// A fallback layer runs the layers inside it; when they end in a failure it
// handles, the call returns what `fn` returns instead. Which failures, by
// fallback_options: the verdict kinds (an upstream failure, a timeout, armor
// refusing the call: an open breaker, no tokens, a spent quota, a full
// bulkhead; not a cancellation, by default), narrowed if wanted to some codes
// (`.codes = {armor::errc::circuit_open, armor::errc::quota_exhausted}`).
//
// `fn` may take `(const armor::failure&, const armor::context&)`,
// `(const armor::failure&)` or nothing. The failure is what try_execute
// would have reported (code, retry_after, the operation's exception as the
// cause); for a value the classifier judged a failure (an error code, a 503
// response), its code is the verdict's. `fn` must return the operation's
// type (or one convertible to it); for a void operation, void (a side
// effect: log, serve from a cache). The pipeline checks this at compile time.
//
// The verdict is left as it was, so layers outside the fallback still see
// that the upstream failed; only the answer changes. If `fn` throws, the
// call fails with that exception, as if the operation had thrown it
// (execute rethrows it; try_execute keeps it as the cause). Put a fallback
// outermost (see docs/policies_order.md): then it also covers the deadline and
// every refusal inside it. Fallbacks stack into a degradation ladder: the
// inner one is tried first, an outer one handles what the inner one let
// through or threw.
//
// Both drivers run fallbacks; with the Asio driver `fn` is still a plain
// function (no co_await in it). Stateless: costs nothing on success beyond
// one test of the verdict; no allocation.
#pragma once

#include <armor/context.hpp>
#include <armor/error.hpp>
#include <armor/policy.hpp>
#include <armor/result.hpp>
#include <armor/verdict.hpp>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <system_error>
#include <type_traits>
#include <utility>

namespace armor {

/// A small set of armor::errc values (a bit mask; no allocation).
class errc_set {
 public:
  constexpr errc_set() noexcept = default;
  constexpr errc_set(std::initializer_list<errc> codes) noexcept {  // NOLINT(google-explicit-constructor)
    for (errc e : codes) mask_ |= bit(e);
  }

  [[nodiscard]] constexpr bool empty() const noexcept { return mask_ == 0; }
  [[nodiscard]] constexpr bool contains(errc e) const noexcept { return (mask_ & bit(e)) != 0; }
  /// True when `code` is an armor::errc in the set.
  [[nodiscard]] bool contains(const std::error_code& code) const noexcept {
    if (code.category() != error_category()) return false;
    const int v = code.value();
    return v > 0 && v < 64 && (mask_ & (std::uint64_t{1} << v)) != 0;
  }

 private:
  static constexpr std::uint64_t bit(errc e) noexcept {
    const int v = static_cast<int>(e);
    return v > 0 && v < 64 ? std::uint64_t{1} << v : 0;
  }
  std::uint64_t mask_ = 0;
};

/// Which failures a fallback handles. An aggregate:
/// `{.on_failure = false, .codes = {armor::errc::circuit_open}}`.
struct fallback_options {
  /// The upstream failed (verdict `failure`): an exception, an error value, a 5xx.
  bool on_failure = true;
  /// The time budget ran out (verdict `timeout`, or deadline_exceeded before an attempt).
  bool on_timeout = true;
  /// armor refused the call (verdict `rejected`): circuit_open, rate_limited,
  /// quota_exhausted, bulkhead_full, ...
  bool on_rejected = true;
  /// The caller cancelled (Asio). Off by default: nobody waits for the answer.
  bool on_cancelled = false;
  /// When not empty, only failures whose code is one of these (the code
  /// try_execute would report: e.g. circuit_open, quota_exhausted,
  /// deadline_exceeded, operation_failed, retries_exhausted).
  errc_set codes{};
};

/// A layer that answers with `fn`'s value when the layers inside it fail
/// (see the top of this header). An armor::policy with no permit.
template <class F>
class fallback {
 public:
  using permit_type = no_permit;
  /// Tells the drivers to ask handles() and recover() after the inner layers.
  static constexpr bool recovers = true;

  explicit fallback(F fn, const fallback_options& options = {}) : fn_(std::move(fn)), options_(options) {}

  [[nodiscard]] admission<> admit(context&) const noexcept { return admission<>::admit(); }
  void settle(context&, no_permit, const verdict&) const noexcept {}

  /// Whether this fallback answers for a call that ended with `v` and `why`.
  [[nodiscard]] bool handles(const verdict& v, const failure& why) const noexcept {
    bool kind = false;
    // A refusal before any attempt on a spent budget is a timeout to the caller.
    const bool deadline = why.code == errc::deadline_exceeded;
    switch (v.kind) {
      case outcome::success: return false;
      case outcome::failure: kind = options_.on_failure; break;
      case outcome::timeout: kind = options_.on_timeout; break;
      case outcome::rejected: kind = deadline ? options_.on_timeout : options_.on_rejected; break;
      case outcome::cancelled: kind = options_.on_cancelled; break;
    }
    return kind && (options_.codes.empty() || options_.codes.contains(why.code));
  }

  /// The answer for operation result type R.
  template <class R>
  R recover(const failure& why, const context& ctx) const {
    using ret = decltype(call(why, ctx));
    if constexpr (std::is_void_v<R>) {
      static_assert(std::is_void_v<ret>,
                    "armor::fallback: the operation returns void, so the fallback function must return void too");
      call(why, ctx);
    } else {
      static_assert(std::is_convertible_v<ret, R>,
                    "armor::fallback: the fallback function must return the operation's type (or one convertible to "
                    "it)");
      return call(why, ctx);
    }
  }

  [[nodiscard]] const fallback_options& options() const noexcept { return options_; }

 private:
  decltype(auto) call(const failure& why, const context& ctx) const {
    if constexpr (std::is_invocable_v<const F&, const failure&, const context&>) {
      return std::invoke(fn_, why, ctx);
    } else if constexpr (std::is_invocable_v<const F&, const failure&>) {
      return std::invoke(fn_, why);
    } else {
      static_assert(std::is_invocable_v<const F&>,
                    "armor::fallback: the fallback function must be callable as f(const armor::failure&, const "
                    "armor::context&), f(const armor::failure&) or f()");
      return std::invoke(fn_);
    }
  }

  F fn_;
  fallback_options options_;
};

template <class F>
fallback(F) -> fallback<F>;
template <class F>
fallback(F, const fallback_options&) -> fallback<F>;

}  // namespace armor
