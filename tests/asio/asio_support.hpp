// Helpers shared by the Asio driver's tests: running a coroutine to the end,
// a timer sleep, an exception type, and a policy that counts what it sees.
#pragma once

#include <armor/policy.hpp>
#include <armor/verdict.hpp>

#include <asio.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <stdexcept>
#include <utility>

namespace armor_test {

struct boom : std::runtime_error {
  boom() : std::runtime_error("boom") {}
};

// Runs `body` as a coroutine on a fresh io_context until it and everything it
// started have finished; rethrows what it threw.
template <class Body>
void run_coroutine(Body body) {
  asio::io_context io;
  std::exception_ptr failure;
  asio::co_spawn(io, std::move(body), [&](std::exception_ptr e) { failure = e; });
  io.run();
  if (failure) std::rethrow_exception(failure);
}

// Waits on a real timer of the coroutine's executor.
inline asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(asio::use_awaitable);
}

// A thread-safe policy that counts admissions and verdict kinds.
struct counting_policy {
  using permit_type = armor::no_permit;
  std::atomic<long> admitted{0};
  // One per armor::outcome (throttled is the last).
  std::atomic<long> kinds[static_cast<int>(armor::outcome::throttled) + 1]{};
  armor::admission<> admit(armor::context&) noexcept {
    admitted.fetch_add(1, std::memory_order_relaxed);
    return armor::admission<>::admit();
  }
  void settle(armor::context&, armor::no_permit, const armor::verdict& v) noexcept {
    kinds[static_cast<int>(v.kind)].fetch_add(1, std::memory_order_relaxed);
  }
  long count(armor::outcome k) const { return kinds[static_cast<int>(k)].load(); }
};

}  // namespace armor_test
