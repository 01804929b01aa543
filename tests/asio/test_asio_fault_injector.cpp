// The Asio driver carries out a fault injector's faults: injected failures
// retried by backoff and counted by the breaker, injected latency waited on
// the clock (virtual, exact) or on a timer (real, short), and a latency past
// the deadline ending the attempt at the deadline as a timeout.
#include <armor/asio.hpp>
#include <armor/backoff.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/deadline.hpp>
#include <armor/fault_injector.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

using namespace std::chrono_literals;
using asio::awaitable;
using armor_test::run_coroutine;

namespace {

constexpr std::uint64_t word_for(double u) { return static_cast<std::uint64_t>(u * 0x1.0p53) << 11; }

/// Returns the scripted draws in turn (the last one again once they run
/// out) and counts how often it was consulted.
struct scripted_rng {
  std::vector<double>* draws;
  int* calls;
  std::uint64_t operator()() const noexcept {
    const auto i = static_cast<std::size_t>(*calls);
    ++*calls;
    return word_for(i < draws->size() ? (*draws)[i] : draws->back());
  }
};

}  // namespace

TEST_CASE("asio fault_injector: injected failures and latency through backoff and a breaker, exact on a manual clock",
          "[fault_injector]") {
  armor::manual_clock clock;
  std::vector<double> draws;
  int drawn = 0;
  armor::fault_injector<void, scripted_rng> chaos{
      {.error_rate = 0.5, .latency_rate = 0.5, .latency = 250ms}, scripted_rng{&draws, &drawn}};
  armor::circuit_breaker<armor::manual_clock> breaker{{.failure_threshold = 2, .open_for = 10s}, clock};
  const auto p = armor::pipeline{clock,
                                 armor::backoff{{.max_attempts = 3, .initial = 100ms, .jitter = armor::jitter_mode::none}},
                                 std::ref(breaker), armor::deadline{1s}, std::ref(chaos)};
  int real_calls = 0;
  run_coroutine([&]() -> awaitable<void> {
    // Attempt 1: slow and failed (250 ms, then an injected error); backoff
    // 100 ms; attempt 2: untouched, reaches the operation.
    draws = {0.1, 0.1, 0.9, 0.9};
    const auto t0 = clock.now();
    auto ok = co_await p.async_try_execute([&]() -> awaitable<int> { co_return ++real_calls; });
    REQUIRE(ok);
    CHECK(*ok == 1);
    CHECK(clock.now() - t0 == 350ms);
    CHECK(breaker.stats().failures == 1);

    // Every draw injects: two slow failures open the breaker; the third
    // attempt meets it open. 250 + 100 + 250 + 200 ms.
    draws = {0.0};
    drawn = 0;
    const auto t1 = clock.now();
    auto failed = co_await p.async_try_execute([&]() -> awaitable<int> { co_return ++real_calls; });
    REQUIRE_FALSE(failed);
    CHECK(failed.code() == armor::errc::circuit_open);
    CHECK(clock.now() - t1 == 800ms);
    CHECK(drawn == 4);
    CHECK(breaker.state() == armor::breaker_state::open);

    // A latency beyond the caller's budget: the attempt ends at the deadline
    // as a timeout, without reaching the operation.
    chaos.set_enabled(false);
    clock.advance(10s);
    auto probe = co_await p.async_try_execute([&]() -> awaitable<int> { co_return ++real_calls; });
    CHECK(probe);  // half-open probe, no fault: closes the breaker
    chaos.set_enabled(true);
    draws = {0.9, 0.0};  // no failure, latency
    drawn = 0;
    const auto t2 = clock.now();
    auto late = co_await p.async_try_execute([&]() -> awaitable<int> { co_return ++real_calls; }, {.timeout = 120ms});
    REQUIRE_FALSE(late);
    CHECK(late.code() == armor::errc::deadline_exceeded);
    CHECK(clock.now() - t2 == 120ms);
  });
  CHECK(real_calls == 2);
  const auto s = chaos.stats();
  CHECK(s.errors == 3);
  CHECK(s.latencies == 4);
  CHECK(s.active == 0);
}

TEST_CASE("asio fault_injector: injected latency is a timer; past the deadline the call is a timeout",
          "[fault_injector]") {
  std::vector<double> draws{0.0};
  int drawn = 0;
  armor::fault_injector<void, scripted_rng> chaos{{.latency_rate = 1.0, .latency = 20ms}, scripted_rng{&draws, &drawn}};
  const auto p = armor::pipeline{std::ref(chaos)};
  int real_calls = 0;
  run_coroutine([&]() -> awaitable<void> {
    const auto t0 = std::chrono::steady_clock::now();
    auto ok = co_await p.async_try_execute([&]() -> awaitable<int> { co_return ++real_calls; });
    CHECK(ok);
    CHECK(std::chrono::steady_clock::now() - t0 >= 20ms);

    chaos.set_enabled(true);
    const auto t1 = std::chrono::steady_clock::now();
    auto late = co_await p.async_try_execute([&]() -> awaitable<int> { co_return ++real_calls; }, {.timeout = 5ms});
    REQUIRE_FALSE(late);
    CHECK(late.code() == armor::errc::deadline_exceeded);
    CHECK(std::chrono::steady_clock::now() - t1 >= 5ms);
  });
  CHECK(real_calls == 1);
  CHECK(chaos.stats().latencies == 2);
  CHECK(chaos.stats().active == 0);
}
