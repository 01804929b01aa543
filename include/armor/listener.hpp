// armor/listener.hpp: the one listener shape of every policy.
//
// A policy that reports events takes a listener as its last template
// argument: armor::no_listener (the default, which costs no byte and no
// branch) or anything callable as `listener(const <policy>_event&) noexcept`,
// or std::ref to such a callable. It is called on the thread of the call
// that caused the event, so it must be quick; it must not throw (a throwing
// listener in the middle of a state transition would leave the caller
// holding half a decision), which the policy checks at compile time.
//
//     auto log_breaker = [](const armor::circuit_breaker_event& e) noexcept {
//         std::fprintf(stderr, "breaker %s -> %s\n", armor::to_string(e.from).data(),
//                      armor::to_string(e.to).data());
//     };
//     armor::circuit_breaker breaker{{.failure_threshold = 5}, armor::steady_clock{}, log_breaker};
//
// Each policy's event and when it fires: docs/observability.md#listeners.
#pragma once

#include <concepts>
#include <functional>
#include <type_traits>
#include <utility>

namespace armor {

/// The default listener: none. Nothing is stored and nothing is called.
struct no_listener {};

/// What a policy whose events are `Event` accepts as its listener.
template <class L, class Event>
concept listener_for =
    std::is_same_v<L, no_listener> || std::is_nothrow_invocable_v<std::unwrap_reference_t<L>&, const Event&>;

namespace detail {

/// True when `L` is a real listener (not no_listener).
template <class L>
inline constexpr bool listens = !std::is_same_v<L, no_listener>;

/// Tells listener `l` about the event `make()` builds. With no_listener
/// nothing happens: `make` is not even called, so building the event costs
/// nothing for a policy without a listener.
template <class L, class Make>
constexpr void notify(L& l, Make&& make) noexcept {
  if constexpr (listens<L>) {
    std::unwrap_reference_t<L>& f = l;
    f(std::forward<Make>(make)());
  }
}

}  // namespace detail
}  // namespace armor
