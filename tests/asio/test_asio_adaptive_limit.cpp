// armor::adaptive_limit on the Asio driver: coroutines in flight count
// against the limit, the one over it is refused at once, and the slot comes
// back on every path: settled, thrown through, cancelled by the caller, cut
// by the deadline, and a coroutine destroyed before it finished.
#include <armor/adaptive_limit.hpp>
#include <armor/asio.hpp>
#include <armor/deadline.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>

using namespace std::chrono_literals;
using asio::awaitable;

using namespace armor_test;  // boom, run_coroutine, sleep_for (asio_support.hpp)

TEST_CASE("asio: calls in flight count against the adaptive limit; the next is refused at once", "[adaptive_limit]") {
  armor::adaptive_limit<> lim{{.initial_limit = 2, .normal_share = 1}};
  const auto p = armor::pipeline{std::ref(lim)};
  int ok = 0;
  std::optional<armor::result<int>> third;
  run_coroutine([&]() -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    for (int i = 0; i < 2; ++i) {
      asio::co_spawn(
          ex,
          [&]() -> awaitable<void> {
            auto r = co_await p.async_try_execute([]() -> awaitable<int> {
              co_await sleep_for(20ms);
              co_return 1;
            });
            if (r) ++ok;
          },
          asio::detached);
    }
    co_await sleep_for(5ms);
    CHECK(lim.in_flight() == 2);
    third = co_await p.async_try_execute([]() -> awaitable<int> { co_return 3; });
    co_await sleep_for(40ms);
  });
  REQUIRE(third.has_value());
  CHECK(third->code() == armor::errc::concurrency_limited);
  CHECK(ok == 2);
  CHECK(lim.in_flight() == 0);
}

TEST_CASE("asio: the adaptive limit's slot comes back on exceptions, cancellation, the deadline and destruction",
          "[adaptive_limit]") {
  using namespace asio::experimental::awaitable_operators;
  armor::adaptive_limit<> lim{{.initial_limit = 4}};
  const auto p = armor::pipeline{std::ref(lim)};
  const auto q = armor::pipeline{armor::deadline{10ms}, std::ref(lim)};
  run_coroutine([&]() -> awaitable<void> {
    // Thrown through.
    auto thrown = co_await p.async_try_execute([]() -> awaitable<int> {
      co_await sleep_for(1ms);
      throw boom();
    });
    CHECK_FALSE(thrown);
    CHECK(lim.in_flight() == 0);
    // Cancelled by the caller: the sleep wins the race.
    auto slow = [&]() -> awaitable<void> {
      (void)co_await p.async_try_execute([]() -> awaitable<int> {
        co_await sleep_for(1s);
        co_return 1;
      });
    };
    co_await (slow() || sleep_for(10ms));
    CHECK(lim.in_flight() == 0);
    // Cut by the deadline: a timeout, a drop.
    auto late = co_await q.async_try_execute([]() -> awaitable<int> {
      co_await sleep_for(1s);
      co_return 1;
    });
    CHECK(late.code() == armor::errc::deadline_exceeded);
    CHECK(lim.in_flight() == 0);
  });
  // Destroyed before it finished: the io_context goes away with the coroutine suspended.
  {
    asio::io_context io;
    asio::co_spawn(
        io,
        [&]() -> awaitable<void> {
          (void)co_await p.async_try_execute([]() -> awaitable<int> {
            co_await sleep_for(1s);
            co_return 1;
          });
        },
        asio::detached);
    io.run_for(5ms);
    CHECK(lim.in_flight() == 1);
  }
  CHECK(lim.in_flight() == 0);
}
