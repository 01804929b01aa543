// armor::bulkhead and armor::fallback on the Asio driver: queued calls wait
// without blocking the thread, in arrival order; max_wait, the deadline and
// the caller's cancellation end a wait without losing a slot.
#include <armor/asio.hpp>
#include <armor/bulkhead.hpp>
#include <armor/deadline.hpp>
#include <armor/fallback.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using asio::awaitable;
using asio::use_awaitable;

using namespace armor_test;  // boom, run_coroutine, sleep_for, counting_policy (asio_support.hpp)

TEST_CASE("queued coroutines enter one at a time, in arrival order, on one thread") {
  armor::bulkhead b{{.max_concurrent = 1, .max_queue = 8, .max_wait = 5s}};
  const auto p = armor::pipeline{std::ref(b)};
  asio::io_context io;
  std::vector<int> order;
  int inside = 0;
  int most_inside = 0;
  int ok = 0;
  int ticks = 0;
  bool done = false;
  for (int i = 0; i < 5; ++i) {
    asio::co_spawn(
        io,
        [&, i]() -> awaitable<void> {
          auto r = co_await p.async_try_execute([&, i]() -> awaitable<int> {
            order.push_back(i);
            most_inside = std::max(most_inside, ++inside);
            co_await sleep_for(15ms);
            --inside;
            co_return i;
          });
          if (r) ++ok;
          if (ok == 5) done = true;
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
  CHECK(ok == 5);
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
  CHECK(most_inside == 1);
  CHECK(ticks >= 10);
  CHECK(b.in_use() == 0);
  CHECK(b.queued() == 0);
}

TEST_CASE("a queued coroutine gives up after max_wait with bulkhead_full, or at the deadline") {
  armor::bulkhead b{{.max_concurrent = 1, .max_queue = 4, .max_wait = 30ms}};
  const auto p = armor::pipeline{std::ref(b)};
  const auto with_deadline = armor::pipeline{armor::deadline{20ms}, std::ref(b)};
  run_coroutine([&]() -> awaitable<void> {
    auto holder = b.try_acquire().permit();
    const auto start = std::chrono::steady_clock::now();
    auto r = co_await p.async_try_execute([]() -> awaitable<int> { co_return 1; });
    CHECK(r.code() == armor::errc::bulkhead_full);
    CHECK(std::chrono::steady_clock::now() - start >= 30ms);
    auto r2 = co_await with_deadline.async_try_execute([]() -> awaitable<int> { co_return 1; });
    CHECK(r2.code() == armor::errc::deadline_exceeded);
    CHECK(b.queued() == 0);
    holder.release();
    auto r3 = co_await p.async_try_execute([]() -> awaitable<int> { co_return 3; });
    CHECK(*r3 == 3);
  });
  CHECK(b.in_use() == 0);
}

TEST_CASE("cancelling a queued coroutine takes it out of the queue; the slot goes to the next in line") {
  using namespace asio::experimental::awaitable_operators;
  armor::bulkhead b{{.max_concurrent = 1, .max_queue = 4, .max_wait = 10s}};
  const auto p = armor::pipeline{std::ref(b)};
  std::optional<armor::result<int>> cancelled;
  std::optional<armor::result<int>> next;
  run_coroutine([&]() -> awaitable<void> {
    auto holder = b.try_acquire().permit();
    auto ex = co_await asio::this_coro::executor;
    auto waiting = [&]() -> awaitable<void> {
      cancelled = co_await p.async_try_execute([]() -> awaitable<int> { co_return 1; });
    };
    // Queued behind the holder, it gives up when the sleep ends first.
    co_await (waiting() || sleep_for(20ms));
    CHECK(b.queued() == 0);
    // A second caller queues; the holder leaves; it is served.
    asio::co_spawn(
        ex, [&]() -> awaitable<void> { next = co_await p.async_try_execute([]() -> awaitable<int> { co_return 2; }); },
        asio::detached);
    co_await sleep_for(5ms);
    CHECK(b.queued() == 1);
    holder.release();
    co_await sleep_for(5ms);
  });
  REQUIRE(cancelled.has_value());
  CHECK(cancelled->code() == armor::errc::cancelled);
  REQUIRE(next.has_value());
  REQUIRE(next->has_value());
  CHECK(**next == 2);
  CHECK(b.in_use() == 0);
  CHECK(b.queued() == 0);
}

TEST_CASE("on a manual clock the Asio driver waits in the queue in virtual time") {
  armor::manual_clock clock;
  armor::bulkhead b{{.max_concurrent = 1, .max_queue = 4, .max_wait = 250ms}};
  const auto p = armor::pipeline{clock, std::ref(b)};
  run_coroutine([&]() -> awaitable<void> {
    auto holder = b.try_acquire().permit();
    auto r = co_await p.async_try_execute([]() -> awaitable<int> { co_return 1; });
    CHECK(r.code() == armor::errc::bulkhead_full);
  });
  CHECK(clock.now().time_since_epoch() == 250ms);
  CHECK(b.queued() == 0);
}

TEST_CASE("a thread pool through a queueing bulkhead never has more than max_concurrent inside") {
  armor::bulkhead b{{.max_concurrent = 3, .max_queue = 1000, .max_wait = 30s}};
  const auto p = armor::pipeline{armor::deadline{60s}, std::ref(b)};
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
            co_await asio::post(co_await asio::this_coro::executor, use_awaitable);
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
  CHECK(b.in_use() == 0);
  CHECK(b.queued() == 0);
}

TEST_CASE("a fallback answers for a failed async call") {
  const auto p = armor::pipeline{armor::fallback{[](const armor::failure& why) {
                                   return why.code == armor::errc::operation_failed ? std::string("cached")
                                                                                     : std::string("?");
                                 }},
                                 armor::deadline{5s}};
  run_coroutine([&]() -> awaitable<void> {
    const std::string v = co_await p.async_execute([]() -> awaitable<std::string> {
      throw boom();
      co_return std::string("live");
    });
    CHECK(v == "cached");
    const std::string live = co_await p.async_execute([]() -> awaitable<std::string> { co_return "live"; });
    CHECK(live == "live");
  });
}

TEST_CASE("an io_context destroyed while a coroutine waits in the queue takes it out; a release then touches nothing") {
  armor::bulkhead b{{.max_concurrent = 1, .max_queue = 4, .max_wait = 10s}};
  const auto p = armor::pipeline{std::ref(b)};
  auto holder = b.try_acquire().permit();
  bool finished = false;
  {
    asio::io_context io;
    asio::co_spawn(
        io,
        [&]() -> awaitable<void> {
          (void)co_await p.async_try_execute([]() -> awaitable<int> { co_return 1; });
          finished = true;
        },
        asio::detached);
    io.run_for(20ms);  // the coroutine queues behind the holder and suspends
    CHECK(b.queued() == 1);
  }  // its frame is destroyed with the io_context, suspended in the queue
  CHECK_FALSE(finished);
  CHECK(b.queued() == 0);
  holder.release();  // serves nobody: the waiter left with its frame
  CHECK(b.in_use() == 0);
  CHECK(b.queued() == 0);
}
