// What the Redis failure tests share: options that give up fast, the bound
// on one call while Redis is down or frozen, and timing helpers.
#pragma once

#include <armor/redis/connection.hpp>

#include <chrono>
#include <thread>

namespace armor_test {

/// `o` with short timeouts and a breaker that opens after two failures and
/// probes again after 200 ms.
inline armor::redis_options failing_redis_options(armor::redis_options o) {
  using namespace std::chrono_literals;
  o.connect_timeout = 100ms;
  o.command_timeout = 100ms;
  o.breaker.failure_threshold = 2;
  o.breaker.open_for = 200ms;
  return o;
}

/// The longest a call may take while Redis is down or frozen, with the
/// options above: a wait for a connection, a reconnection, a reply (see
/// docs/redis.md, "When Redis fails"), and slack for a loaded machine.
inline constexpr std::chrono::milliseconds redis_call_bound{100 + 100 + 100 + 100 + 400};

/// How long `f()` took.
template <class F>
std::chrono::nanoseconds timed(F f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::steady_clock::now() - t0;
}

/// Calls `f` until it returns true, for at most `limit`; true if it did.
template <class F>
bool eventually(F f, std::chrono::milliseconds limit = std::chrono::milliseconds{5000}) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  return false;
}

}  // namespace armor_test
