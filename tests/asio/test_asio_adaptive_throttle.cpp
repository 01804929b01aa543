// armor::adaptive_throttle on the Asio driver: the same decisions as the
// sync driver (failures counted, a local refusal that never calls the
// operation), a call cut by its deadline counted as a request not
// accepted, and a coroutine destroyed mid-call taking its request back.
#include <armor/adaptive_throttle.hpp>
#include <armor/asio.hpp>
#include <armor/deadline.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>

using namespace std::chrono_literals;
using asio::awaitable;

using namespace armor_test;  // boom, run_coroutine, sleep_for (asio_support.hpp)

namespace {

/// Draws whatever the test set last.
struct scripted_rng {
  std::uint64_t* next;
  std::uint64_t operator()() const noexcept { return *next; }
};

constexpr std::uint64_t word_for(double u) { return static_cast<std::uint64_t>(u * 0x1.0p53) << 11; }

}  // namespace

TEST_CASE("asio: failures feed the throttle, and its refusal never calls the operation", "[adaptive_throttle]") {
  std::uint64_t next = word_for(0.999999);
  armor::adaptive_throttle<armor::steady_clock, scripted_rng> throttle{{}, {}, scripted_rng{&next}};
  const auto p = armor::pipeline{std::ref(throttle)};
  int calls = 0;
  run_coroutine([&]() -> awaitable<void> {
    for (int i = 0; i < 20; ++i) {
      auto r = co_await p.async_try_execute([&]() -> awaitable<int> {
        ++calls;
        throw boom();
        co_return 0;
      });
      CHECK_FALSE(r);
    }
    next = word_for(0.0);
    auto r = co_await p.async_try_execute([&]() -> awaitable<int> {
      ++calls;
      co_return 1;
    });
    CHECK(r.code() == armor::errc::client_throttled);
    CHECK(r.retry_after().has_value());
  });
  CHECK(calls == 20);
  const auto s = throttle.stats();
  CHECK(s.requests == 21);
  CHECK(s.accepts == 0);
  CHECK(s.refused == 1);
}

TEST_CASE("asio: a call cut by its deadline is a request the upstream did not accept", "[adaptive_throttle]") {
  armor::adaptive_throttle<> throttle;
  const auto p = armor::pipeline{armor::deadline{20ms}, std::ref(throttle)};
  run_coroutine([&]() -> awaitable<void> {
    auto r = co_await p.async_try_execute([]() -> awaitable<int> {
      co_await sleep_for(2s);
      co_return 1;
    });
    CHECK(r.code() == armor::errc::deadline_exceeded);
    co_return;
  });
  const auto s = throttle.stats();
  CHECK(s.requests == 1);
  CHECK(s.accepts == 0);
}

TEST_CASE("asio: a coroutine destroyed mid-call takes its request back", "[adaptive_throttle]") {
  armor::adaptive_throttle<> throttle;
  const auto p = armor::pipeline{std::ref(throttle)};
  bool started = false;
  {
    auto io = std::make_unique<asio::io_context>();
    asio::co_spawn(
        *io,
        [&]() -> awaitable<void> {
          (void)co_await p.async_try_execute([&]() -> awaitable<int> {
            started = true;
            co_await sleep_for(10s);
            co_return 1;
          });
        },
        asio::detached);
    io->run_for(20ms);
    REQUIRE(started);
    CHECK(throttle.stats().requests == 1);
  }  // the io_context goes, and the suspended coroutine with it
  CHECK(throttle.stats().requests == 0);
  CHECK(throttle.stats().accepts == 0);
}
