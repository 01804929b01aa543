// armor::hedge on the Asio driver, against real timers and loopback sockets:
// a second attempt after the delay, the first success wins, the loser is
// cancelled (its socket closed) before the call returns.
#include <armor/asio.hpp>
#include <armor/deadline.hpp>
#include <armor/hedge.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <asio/buffer.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/thread_pool.hpp>
#include <asio/write.hpp>

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
using tcp = asio::ip::tcp;

using namespace armor_test;  // boom, run_coroutine, sleep_for, counting_policy (asio_support.hpp)

TEST_CASE("hedging: a slow first attempt is overtaken by the second, and the loser's socket is closed") {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto port = acceptor.local_endpoint().port();
  std::optional<std::error_code> slow_connection_saw;
  int accepted = 0;

  // The server: the first connection never gets an answer (it waits to see
  // the client go away); later ones are answered at once.
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        for (;;) {
          auto [ec, s] = co_await acceptor.async_accept(asio::experimental::as_tuple(use_awaitable));
          if (ec) co_return;
          ++accepted;
          if (accepted == 1) {
            asio::co_spawn(
                io,
                [&, sock = std::move(s)]() mutable -> awaitable<void> {
                  char byte = 0;
                  auto [read_ec, n] = co_await sock.async_read_some(asio::buffer(&byte, 1),
                                                                    asio::experimental::as_tuple(use_awaitable));
                  (void)n;
                  slow_connection_saw = read_ec;
                },
                asio::detached);
          } else {
            co_await asio::async_write(s, asio::buffer(std::string_view("fast")), use_awaitable);
          }
        }
      },
      asio::detached);

  counting_policy per_attempt;
  const auto p = armor::pipeline{armor::deadline{5s}, armor::hedge{{.max_attempts = 2, .delay = 50ms}},
                                 std::ref(per_attempt)};
  std::optional<armor::result<std::string>> got;
  std::vector<unsigned> attempt_numbers;
  const auto start = std::chrono::steady_clock::now();
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        got = co_await p.async_try_execute(armor::idempotent{[&](const armor::context& ctx) -> awaitable<std::string> {
          attempt_numbers.push_back(ctx.attempt());
          tcp::socket s(co_await asio::this_coro::executor);
          co_await s.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), use_awaitable);
          char buf[16];
          const std::size_t n = co_await s.async_read_some(asio::buffer(buf), use_awaitable);
          co_return std::string(buf, n);
        }});
        acceptor.close();  // let the server loop end
      },
      asio::detached);
  io.run();

  REQUIRE(got.has_value());
  REQUIRE(got->has_value());
  CHECK(**got == "fast");
  CHECK(accepted == 2);
  CHECK(attempt_numbers == std::vector<unsigned>{1, 2});
  REQUIRE(slow_connection_saw.has_value());
  CHECK(*slow_connection_saw == asio::error::eof);  // the loser's socket was closed, not leaked
  CHECK(per_attempt.admitted.load() == 2);
  CHECK(per_attempt.count(armor::outcome::success) == 1);
  CHECK(per_attempt.count(armor::outcome::cancelled) == 1);  // the loser: not a failure
  CHECK(per_attempt.count(armor::outcome::failure) == 0);
  CHECK(std::chrono::steady_clock::now() - start < 4s);
}

TEST_CASE("hedging: an attempt that ends before the delay is the only one") {
  counting_policy per_attempt;
  const auto p = armor::pipeline{armor::hedge{{.max_attempts = 3, .delay = 2s}}, std::ref(per_attempt)};
  const auto start = std::chrono::steady_clock::now();
  run_coroutine([&]() -> awaitable<void> {
    const int v = co_await p.async_execute(armor::idempotent{[]() -> awaitable<int> { co_return 42; }});
    CHECK(v == 42);
  });
  CHECK(per_attempt.admitted.load() == 1);
  CHECK(std::chrono::steady_clock::now() - start < 1s);  // the pending hedge timer did not hold the call
}

TEST_CASE("hedging: a retryable failure starts the next attempt at once; all failing ends with the last") {
  counting_policy per_attempt;
  const auto p = armor::pipeline{armor::hedge{{.max_attempts = 3, .delay = 10s}}, std::ref(per_attempt)};
  const auto start = std::chrono::steady_clock::now();
  run_coroutine([&]() -> awaitable<void> {
    const int v = co_await p.async_execute(armor::idempotent{[](const armor::context& ctx) -> awaitable<int> {
      if (ctx.attempt() < 3) throw boom();
      co_return static_cast<int>(ctx.attempt());
    }});
    CHECK(v == 3);
    auto r = co_await p.async_try_execute(armor::idempotent{[]() -> awaitable<int> {
      throw boom();
      co_return 0;
    }});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.code() == armor::errc::retries_exhausted);
    CHECK(r.error().from_operation());
  });
  CHECK(std::chrono::steady_clock::now() - start < 5s);  // never waited for the 10 s delay
  CHECK(per_attempt.admitted.load() == 6);
  CHECK(per_attempt.count(armor::outcome::failure) == 5);
}

TEST_CASE("hedging: a failure that is not retryable is final and cancels the others") {
  counting_policy per_attempt;
  const auto p = armor::pipeline{armor::classify{[](const int& v) {
                                   return v < 0 ? armor::verdict::permanent_failure() : armor::verdict::success();
                                 }},
                                 armor::hedge{{.max_attempts = 2, .delay = 20ms}}, std::ref(per_attempt)};
  run_coroutine([&]() -> awaitable<void> {
    const int v = co_await p.async_execute(armor::idempotent{[](const armor::context& ctx) -> awaitable<int> {
      if (ctx.attempt() == 1) {
        co_await sleep_for(10s);  // slow: overtaken by the hedge
        co_return 1;
      }
      co_return -400;  // a client error: final
    }});
    CHECK(v == -400);
  });
  CHECK(per_attempt.count(armor::outcome::failure) == 1);
  CHECK(per_attempt.count(armor::outcome::cancelled) == 1);
}

TEST_CASE("hedging: a throttled answer starts no more attempts; the call ends with it for an outer retry") {
  counting_policy per_attempt;
  const auto judge = armor::classify{[](const int& status) {
    if (status == 429) return armor::verdict::throttled(armor::errc::rate_limited, std::chrono::seconds{2});
    return armor::verdict::success();
  }};
  const auto p = armor::pipeline{judge, armor::hedge{{.max_attempts = 3, .delay = 10s}}, std::ref(per_attempt)};
  const auto start = std::chrono::steady_clock::now();
  run_coroutine([&]() -> awaitable<void> {
    auto r = co_await p.async_try_execute(armor::idempotent{[]() -> awaitable<int> { co_return 429; }});
    REQUIRE(r.has_value());
    CHECK(*r == 429);
    CHECK_FALSE(r.ok());
  });
  CHECK(per_attempt.admitted.load() == 1);  // not asked again at once, as a retryable failure would be
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("hedging: after a throttled hedge, the attempt still running may win") {
  counting_policy per_attempt;
  const auto judge = armor::classify{[](const int& status) {
    if (status == 429) return armor::verdict::throttled(armor::errc::rate_limited, std::chrono::seconds{2});
    return armor::verdict::success();
  }};
  const auto p = armor::pipeline{judge, armor::hedge{{.max_attempts = 3, .delay = 20ms}}, std::ref(per_attempt)};
  run_coroutine([&]() -> awaitable<void> {
    const int v = co_await p.async_execute(armor::idempotent{[](const armor::context& ctx) -> awaitable<int> {
      if (ctx.attempt() == 1) {
        co_await sleep_for(200ms);  // overtaken by the hedge, which is throttled
        co_return 200;
      }
      co_return 429;
    }});
    CHECK(v == 200);
  });
  CHECK(per_attempt.admitted.load() == 2);  // no third attempt after the 429
  CHECK(per_attempt.count(armor::outcome::throttled) == 1);
  CHECK(per_attempt.count(armor::outcome::success) == 1);
}

TEST_CASE("hedging: cancelling the caller cancels every attempt before the call returns") {
  using namespace asio::experimental::awaitable_operators;
  counting_policy per_attempt;
  const auto p = armor::pipeline{armor::hedge{{.max_attempts = 3, .delay = 10ms}}, std::ref(per_attempt)};
  std::optional<armor::result<int>> seen;
  const auto start = std::chrono::steady_clock::now();
  run_coroutine([&]() -> awaitable<void> {
    auto call = [&]() -> awaitable<void> {
      seen = co_await p.async_try_execute(armor::idempotent{[]() -> awaitable<int> {
        co_await sleep_for(10s);
        co_return 1;
      }});
    };
    co_await (call() || sleep_for(100ms));
  });
  REQUIRE(seen.has_value());
  CHECK(seen->code() == armor::errc::cancelled);
  CHECK(per_attempt.admitted.load() == 3);
  CHECK(per_attempt.count(armor::outcome::cancelled) == 3);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("hedging on a thread pool: attempts never run the operation at the same time") {
  const auto p = armor::pipeline{armor::deadline{5s}, armor::hedge{{.max_attempts = 3, .delay = 1ms}}};
  asio::thread_pool pool(4);
  constexpr int calls = 200;
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> ok{0};
  for (int i = 0; i < calls; ++i) {
    asio::co_spawn(
        pool,
        [&]() -> awaitable<void> {
          auto r = co_await p.async_try_execute(armor::idempotent{[&]() -> awaitable<int> {
            if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
            inside.fetch_sub(1);
            co_await sleep_for(3ms);
            co_return 1;
          }});
          if (r) ok.fetch_add(1);
        },
        asio::detached);
  }
  pool.join();
  CHECK(ok.load() == calls);
  // `inside` is shared by all calls, so overlaps between different calls
  // are expected; this test is here for ThreadSanitizer and for the count.
  CHECK(inside.load() == 0);
}
