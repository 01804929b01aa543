// armor::adaptive_limit on the Asio driver: coroutines in flight count
// against the limit, the one over it is refused at once, and the slot comes
// back on every path: settled, thrown through, cancelled by the caller, cut
// by the deadline, and a coroutine destroyed before it finished. With a
// queue: arrival order, handover, max_wait, the deadline, cancellation and
// a thread pool that never has more calls inside than the limit.
#include <armor/adaptive_limit.hpp>
#include <armor/asio.hpp>
#include <armor/deadline.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/thread_pool.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <vector>

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

// ---------------------------------------------------------------------------
// The queue (max_queue > 0) on the Asio driver.

TEST_CASE("asio: queued coroutines enter the adaptive limit one at a time, in arrival order, without blocking",
          "[adaptive_limit][queue]") {
  armor::adaptive_limit<> lim{{.initial_limit = 1, .min_limit = 1, .max_limit = 1, .max_queue = 8, .max_wait = 5s}};
  const auto p = armor::pipeline{std::ref(lim)};
  asio::io_context io;
  std::vector<int> order;
  int inside = 0;
  int most_inside = 0;
  int ok = 0;
  int ticks = 0;
  bool done = false;
  for (int i = 0; i < 4; ++i) {
    asio::co_spawn(
        io,
        [&, i]() -> awaitable<void> {
          auto r = co_await p.async_try_execute([&, i]() -> awaitable<int> {
            order.push_back(i);
            most_inside = std::max(most_inside, ++inside);
            co_await sleep_for(10ms);
            --inside;
            co_return i;
          });
          if (r) ++ok;
          if (ok == 4) done = true;
        },
        asio::detached);
  }
  // Another coroutine keeps running while the others wait: no thread is blocked.
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        while (!done) {
          co_await sleep_for(2ms);
          ++ticks;
        }
      },
      asio::detached);
  io.run();
  CHECK(ok == 4);
  CHECK(order == std::vector<int>{0, 1, 2, 3});
  CHECK(most_inside == 1);
  CHECK(ticks >= 5);
  CHECK(lim.in_flight() == 0);
  CHECK(lim.queued() == 0);
}

TEST_CASE("asio: a coroutine queued at the adaptive limit gives up after max_wait, at its deadline, or when cancelled",
          "[adaptive_limit][queue]") {
  using namespace asio::experimental::awaitable_operators;
  armor::adaptive_limit<> lim{{.initial_limit = 1, .min_limit = 1, .max_limit = 1, .max_queue = 4, .max_wait = 30ms}};
  const auto p = armor::pipeline{std::ref(lim)};
  const auto with_deadline = armor::pipeline{armor::deadline{15ms}, std::ref(lim)};
  std::optional<armor::result<int>> cancelled;
  run_coroutine([&]() -> awaitable<void> {
    auto holder = lim.try_acquire().permit();
    const auto start = std::chrono::steady_clock::now();
    auto r = co_await p.async_try_execute([]() -> awaitable<int> { co_return 1; });
    CHECK(r.code() == armor::errc::concurrency_limited);
    CHECK(std::chrono::steady_clock::now() - start >= 30ms);
    auto r2 = co_await with_deadline.async_try_execute([]() -> awaitable<int> { co_return 1; });
    CHECK(r2.code() == armor::errc::deadline_exceeded);
    // Cancelled by the caller: the sleep wins the race.
    auto waiting = [&]() -> awaitable<void> {
      cancelled = co_await p.async_try_execute([]() -> awaitable<int> { co_return 1; });
    };
    co_await (waiting() || sleep_for(5ms));
    CHECK(lim.queued() == 0);
    CHECK(lim.stats().abandoned == 3);
    holder.release();
    auto r3 = co_await p.async_try_execute([]() -> awaitable<int> { co_return 3; });
    CHECK(*r3 == 3);
  });
  REQUIRE(cancelled.has_value());
  CHECK(cancelled->code() == armor::errc::cancelled);
  CHECK(lim.in_flight() == 0);
  CHECK(lim.queued() == 0);
}

TEST_CASE("asio: a released slot goes to the queued coroutine, not to a newcomer", "[adaptive_limit][queue]") {
  armor::adaptive_limit<> lim{{.initial_limit = 1, .min_limit = 1, .max_limit = 1, .max_queue = 4, .max_wait = 10s}};
  const auto p = armor::pipeline{std::ref(lim)};
  std::optional<armor::result<int>> queued;
  run_coroutine([&]() -> awaitable<void> {
    auto holder = lim.try_acquire().permit();
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(
        ex, [&]() -> awaitable<void> { queued = co_await p.async_try_execute([]() -> awaitable<int> { co_return 2; }); },
        asio::detached);
    co_await sleep_for(5ms);
    CHECK(lim.queued() == 1);
    holder.release();  // handed to the queued coroutine, still counted
    CHECK(lim.in_flight() == 1);
    CHECK_FALSE(lim.try_acquire());  // no barging
    co_await sleep_for(5ms);
  });
  REQUIRE(queued.has_value());
  REQUIRE(queued->has_value());
  CHECK(**queued == 2);
  CHECK(lim.in_flight() == 0);
}

TEST_CASE("asio: on a manual clock a coroutine waits in the adaptive limit's queue in virtual time",
          "[adaptive_limit][queue]") {
  armor::manual_clock clock;
  armor::adaptive_limit<armor::gradient_limit, armor::manual_clock> lim{
      {.initial_limit = 1, .min_limit = 1, .max_limit = 1, .max_queue = 4, .max_wait = 250ms}, clock};
  const auto p = armor::pipeline{clock, std::ref(lim)};
  const auto d = armor::pipeline{clock, armor::deadline{100ms}, std::ref(lim)};
  run_coroutine([&]() -> awaitable<void> {
    auto holder = lim.try_acquire().permit();
    auto r = co_await p.async_try_execute([]() -> awaitable<int> { co_return 1; });
    CHECK(r.code() == armor::errc::concurrency_limited);
    CHECK(clock.now().time_since_epoch() == 250ms);
    auto r2 = co_await d.async_try_execute([]() -> awaitable<int> { co_return 1; });
    CHECK(r2.code() == armor::errc::deadline_exceeded);
    CHECK(clock.now().time_since_epoch() == 350ms);
  });
  CHECK(lim.queued() == 0);
  CHECK(lim.in_flight() == 0);
}

TEST_CASE("asio: a thread pool through a queueing adaptive limit never has more calls inside than the limit",
          "[adaptive_limit][queue]") {
  armor::adaptive_limit<> lim{{.initial_limit = 3, .min_limit = 3, .max_limit = 3, .normal_share = 1,
                               .max_queue = 1000, .max_wait = 30s}};
  const auto p = armor::pipeline{armor::deadline{60s}, std::ref(lim)};
  asio::thread_pool pool(4);
  constexpr int calls = 400;
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::atomic<int> ok{0};
  for (int i = 0; i < calls; ++i) {
    asio::co_spawn(
        pool,
        [&]() -> awaitable<void> {
          auto r = co_await p.async_try_execute([&]() -> awaitable<int> {
            const int now_inside = inside.fetch_add(1) + 1;
            int m = most.load();
            while (now_inside > m && !most.compare_exchange_weak(m, now_inside)) {
            }
            co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
            inside.fetch_sub(1);
            co_return 1;
          });
          if (r) ok.fetch_add(1);
        },
        asio::detached);
  }
  pool.join();
  CHECK(ok.load() == calls);
  CHECK(most.load() <= 3);
  CHECK(lim.in_flight() == 0);
  CHECK(lim.queued() == 0);
}
