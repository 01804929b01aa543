// The Asio driver against real Asio operations: timers and loopback sockets.
// These are driver tests, so they run in real (short) time; every policy rule
// itself is tested on manual_clock elsewhere.
#include <armor/asio.hpp>
#include <armor/backoff.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/token_bucket.hpp>
#include <armor/deadline.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"
#include "test_policies.hpp"

#include <asio/buffer.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/thread_pool.hpp>
#include <asio/write.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

using namespace armor_test;  // boom, run_coroutine, sleep_for, counting_policy (asio_support.hpp)

TEST_CASE("async_execute returns the awaitable's value and async_try_execute wraps it") {
  const auto p = armor::pipeline{armor::deadline{5s}};
  run_coroutine([&]() -> awaitable<void> {
    const int v = co_await p.async_execute([]() -> awaitable<int> { co_return 42; });
    CHECK(v == 42);
    auto r = co_await p.async_try_execute([](const armor::context& ctx) -> awaitable<std::string> {
      co_return ctx.has_deadline() ? std::string("with deadline") : std::string("none");
    });
    REQUIRE(r.has_value());
    CHECK(*r == "with deadline");
    co_await p.async_execute([]() -> awaitable<void> { co_return; });
  });
}

TEST_CASE("async_execute rethrows the operation's exception; async_try_execute keeps it as the cause") {
  const auto p = armor::pipeline{};
  run_coroutine([&]() -> awaitable<void> {
    bool thrown = false;
    try {
      (void)co_await p.async_execute([]() -> awaitable<int> { throw boom(); co_return 0; });
    } catch (const boom&) {
      thrown = true;
    }
    CHECK(thrown);
    auto r = co_await p.async_try_execute([]() -> awaitable<int> { throw boom(); co_return 0; });
    REQUIRE_FALSE(r.has_value());
    CHECK(r.code() == armor::errc::operation_failed);
    CHECK(r.error().from_operation());
  });
}

TEST_CASE("the deadline cancels an operation in flight; its verdict is timeout") {
  counting_policy counter;
  const auto p = armor::pipeline{armor::deadline{50ms}, std::ref(counter)};
  bool op_saw_abort = false;
  const auto start = std::chrono::steady_clock::now();
  run_coroutine([&]() -> awaitable<void> {
    auto r = co_await p.async_try_execute([&]() -> awaitable<int> {
      try {
        co_await sleep_for(10s);
      } catch (const std::system_error& e) {
        op_saw_abort = e.code() == asio::error::operation_aborted;
        throw;
      }
      co_return 1;
    });
    REQUIRE_FALSE(r.has_value());
    CHECK(r.code() == armor::errc::deadline_exceeded);
    CHECK(r.error().cause);  // the operation's own operation_aborted
  });
  CHECK(op_saw_abort);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(counter.count(armor::outcome::timeout) == 1);
}

TEST_CASE("a classifier that throws with the deadline's timer armed: the exception leaves, the timer is taken back") {
  // The operation suspends long enough for the deadline's timer to be armed
  // (1 ms against a 1 s deadline); the classifier then throws. The frame the
  // timer's handler refers to goes with the exception, so the driver must
  // take the wait back first (ASan would see a handler touching a freed
  // frame). Some of the calls' deadlines end as the operation does, so a
  // timer completion already on its way meets the throw too.
  const auto p = armor::pipeline{
      armor::classify{[](const int&) -> armor::verdict { throw std::logic_error("classifier bug"); }},
      armor::deadline{1s}};
  const auto racing = armor::pipeline{
      armor::classify{[](const int&) -> armor::verdict { throw std::logic_error("classifier bug"); }},
      armor::deadline{2ms}};
  int thrown = 0;
  run_coroutine([&]() -> awaitable<void> {
    for (int i = 0; i < 20; ++i) {
      try {
        (void)co_await p.async_execute([]() -> awaitable<int> {
          co_await sleep_for(1ms);
          co_return 1;
        });
      } catch (const std::logic_error&) {
        ++thrown;
      }
      try {
        (void)co_await racing.async_try_execute([]() -> awaitable<int> {
          co_await sleep_for(2ms);
          co_return 1;
        });
      } catch (const std::logic_error&) {
        ++thrown;
      }
    }
  });
  CHECK(thrown >= 20);
}

TEST_CASE("an operation that ignores cancellation holds the call until it ends; the call is still a timeout") {
  counting_policy counter;
  const auto p = armor::pipeline{armor::deadline{30ms}, std::ref(counter)};
  bool op_finished = false;
  const auto start = std::chrono::steady_clock::now();
  run_coroutine([&]() -> awaitable<void> {
    auto r = co_await p.async_try_execute([&]() -> awaitable<int> {
      // A wait that per-operation cancellation cannot reach (an empty slot).
      asio::steady_timer t(co_await asio::this_coro::executor, 150ms);
      co_await t.async_wait(asio::bind_cancellation_slot(asio::cancellation_slot(), use_awaitable));
      op_finished = true;
      co_return 1;
    });
    REQUIRE_FALSE(r.has_value());  // the late value is dropped
    CHECK(r.code() == armor::errc::deadline_exceeded);
  });
  CHECK(op_finished);  // never abandoned: the call returned after the operation ended
  CHECK(std::chrono::steady_clock::now() - start >= 150ms);
  CHECK(counter.count(armor::outcome::timeout) == 1);
}

TEST_CASE("a deadline cancels a slow socket read and the server sees the connection closed") {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto port = acceptor.local_endpoint().port();
  std::optional<std::error_code> server_saw;
  std::optional<std::error_code> client_result;

  // The server accepts, never answers, and waits for the client to go away.
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        tcp::socket s = co_await acceptor.async_accept(use_awaitable);
        char byte = 0;
        auto [ec, n] = co_await s.async_read_some(asio::buffer(&byte, 1),
                                                  asio::experimental::as_tuple(use_awaitable));
        (void)n;
        server_saw = ec;
      },
      asio::detached);

  const auto p = armor::pipeline{armor::deadline{100ms}};
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        auto r = co_await p.async_try_execute([&]() -> awaitable<std::string> {
          tcp::socket s(co_await asio::this_coro::executor);
          co_await s.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), use_awaitable);
          char buf[16];
          const std::size_t n = co_await s.async_read_some(asio::buffer(buf), use_awaitable);
          co_return std::string(buf, n);
        });
        client_result = r.code();
      },
      asio::detached);
  io.run();
  REQUIRE(client_result.has_value());
  CHECK(*client_result == armor::errc::deadline_exceeded);
  REQUIRE(server_saw.has_value());
  CHECK(*server_saw == asio::error::eof);  // the client's socket was closed, not leaked
}

TEST_CASE("backoff waits of one call do not delay other coroutines on the same thread") {
  const auto p = armor::pipeline{armor::backoff{{.max_attempts = 4,
                                                 .schedule = armor::backoff_schedule::constant,
                                                 .initial = 40ms,
                                                 .jitter = armor::jitter_mode::none}}};
  asio::io_context io;
  int ticks_during_retries = 0;
  bool retries_done = false;
  int attempts = 0;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        auto r = co_await p.async_try_execute([&]() -> awaitable<int> {
          ++attempts;
          throw boom();
          co_return 0;
        });
        CHECK(r.code() == armor::errc::retries_exhausted);
        retries_done = true;
      },
      asio::detached);
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        while (!retries_done) {
          co_await sleep_for(5ms);
          if (!retries_done) ++ticks_during_retries;
        }
      },
      asio::detached);
  const auto start = std::chrono::steady_clock::now();
  io.run();
  CHECK(attempts == 4);
  CHECK(std::chrono::steady_clock::now() - start >= 120ms);  // three 40 ms waits were really waited
  CHECK(ticks_during_retries >= 5);                          // while the other coroutine kept running
}

TEST_CASE("cancellation from the parent is reported as cancelled, not as an upstream failure") {
  using namespace asio::experimental::awaitable_operators;
  counting_policy counter;
  const auto p = armor::pipeline{armor::deadline{10s}, std::ref(counter)};
  std::optional<armor::result<int>> seen;
  run_coroutine([&]() -> awaitable<void> {
    auto call = [&]() -> awaitable<void> {
      seen = co_await p.async_try_execute([]() -> awaitable<int> {
        co_await sleep_for(10s);
        co_return 1;
      });
    };
    // The parent gives up after 30 ms: the || cancels the call.
    co_await (call() || sleep_for(30ms));
  });
  REQUIRE(seen.has_value());
  REQUIRE_FALSE(seen->has_value());
  CHECK(seen->code() == armor::errc::cancelled);
  CHECK(counter.count(armor::outcome::cancelled) == 1);
  CHECK(counter.count(armor::outcome::failure) == 0);
  CHECK(counter.count(armor::outcome::timeout) == 0);
}

TEST_CASE("a cancelled wait gives its reservation back") {
  using namespace asio::experimental::awaitable_operators;
  armor_test::permit_log permits;
  const auto p = armor::pipeline{armor_test::waiting_policy{10s, &permits}};
  bool ran = false;
  run_coroutine([&]() -> awaitable<void> {
    auto call = [&]() -> awaitable<void> {
      auto r = co_await p.async_try_execute([&]() -> awaitable<void> {
        ran = true;
        co_return;
      });
      CHECK(r.code() == armor::errc::cancelled);
    };
    co_await (call() || sleep_for(20ms));
  });
  CHECK_FALSE(ran);
  CHECK(permits.issued == 1);
  CHECK(permits.dropped == 1);
  CHECK(permits.settled == 0);
}

TEST_CASE("on a manual clock the driver waits in virtual time") {
  armor::manual_clock clock;
  const auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 3,
                                                        .schedule = armor::backoff_schedule::constant,
                                                        .initial = 30s,
                                                        .max_delay = 1min,
                                                        .jitter = armor::jitter_mode::none}}};
  std::vector<armor::timestamp> starts;
  run_coroutine([&]() -> awaitable<void> {
    const int v = co_await p.async_execute([&](const armor::context& ctx) -> awaitable<int> {
      starts.push_back(ctx.now());
      if (starts.size() < 3) throw boom();
      co_return 7;
    });
    CHECK(v == 7);
  });
  REQUIRE(starts.size() == 3);
  CHECK(starts[1] - starts[0] == 30s);
  CHECK(starts[2] - starts[1] == 30s);
}

TEST_CASE("an open breaker inside a retry layer fails the async call at once with circuit_open") {
  armor::manual_clock clock;
  armor::circuit_breaker<armor::manual_clock> breaker{{.failure_threshold = 1, .open_for = 30s}, clock};
  const auto trip = armor::pipeline{clock, std::ref(breaker)};
  const auto with_deadline = armor::pipeline{clock, armor::deadline{60s}, armor::backoff{{.max_attempts = 4}},
                                             std::ref(breaker)};
  const auto without = armor::pipeline{clock, armor::backoff{{.max_attempts = 4}}, std::ref(breaker)};
  int calls = 0;
  run_coroutine([&]() -> awaitable<void> {
    (void)co_await trip.async_try_execute([]() -> awaitable<int> { throw boom(); co_return 0; });
    CHECK(breaker.state() == armor::breaker_state::open);
    const auto start = clock.now();
    auto r1 = co_await without.async_try_execute([&]() -> awaitable<int> { co_return ++calls; });
    auto r2 = co_await with_deadline.async_try_execute([&]() -> awaitable<int> { co_return ++calls; });
    for (const auto* r : {&r1, &r2}) {
      REQUIRE_FALSE(r->has_value());
      CHECK(r->code() == armor::errc::circuit_open);
      CHECK(r->retry_after() == std::optional<std::chrono::nanoseconds>{30s});
    }
    CHECK(clock.now() == start);  // before: each call slept the 30 s
  });
  CHECK(calls == 0);
  CHECK(without.layer<0>().stats().refusal_stops == 1);
  CHECK(with_deadline.layer<1>().stats().refusal_stops == 1);
}

TEST_CASE("the Asio driver refuses a wait that would not fit with wait_exceeds_deadline, at once") {
  armor::manual_clock clock;
  armor_test::permit_log permits;
  const auto p = armor::pipeline{clock, armor::deadline{10s}, armor_test::waiting_policy{7s, &permits}};
  int calls = 0;
  run_coroutine([&]() -> awaitable<void> {
    auto early = co_await p.async_try_execute([&]() -> awaitable<void> { ++calls; co_return; },
                                              {.timeout = 6500ms});
    REQUIRE_FALSE(early.has_value());
    CHECK(early.code() == armor::errc::wait_exceeds_deadline);
    CHECK(early.code() == std::errc::timed_out);
    CHECK(early.retry_after() == std::optional<std::chrono::nanoseconds>{7s});
    CHECK(clock.now().time_since_epoch() == 0s);
    auto late = co_await p.async_try_execute([&]() -> awaitable<void> { ++calls; co_return; }, {.timeout = 0ns});
    CHECK(late.code() == armor::errc::deadline_exceeded);
    // A wait that fits is waited (in virtual time).
    auto fits = co_await p.async_try_execute([&]() -> awaitable<void> { ++calls; co_return; });
    CHECK(fits.has_value());
  });
  CHECK(calls == 1);
  CHECK(clock.now().time_since_epoch() == 7s);
  CHECK(permits.dropped == 2);
  CHECK(permits.settled == 1);
}

TEST_CASE("10 000 concurrent coroutines through one shared pipeline are all accounted for") {
  constexpr int calls = 10000;
  constexpr int retried = calls / 10;  // every tenth call fails once, then succeeds
  armor::circuit_breaker breaker{{.failure_threshold = 1000, .count_calls = true}};
  armor::token_bucket bucket{{.rate = {1000, 24h}, .burst = 20000}};  // refills one token per 86 s
  counting_policy counter;
  const auto p = armor::pipeline{armor::deadline{30s}, armor::backoff{{.max_attempts = 2, .initial = 1ms}},
                                 std::ref(breaker), std::ref(bucket), std::ref(counter)};
  asio::io_context io;
  int ok = 0;
  int failed = 0;
  for (int i = 0; i < calls; ++i) {
    asio::co_spawn(
        io,
        [&, i]() -> awaitable<void> {
          auto r = co_await p.async_try_execute([i](const armor::context& ctx) -> awaitable<int> {
            co_await asio::post(co_await asio::this_coro::executor, use_awaitable);
            if (i % 10 == 0 && ctx.attempt() == 1) throw boom();
            co_return i;
          });
          (r ? ok : failed) += 1;
        },
        asio::detached);
  }
  io.run();
  CHECK(ok == calls);
  CHECK(failed == 0);
  // Every attempt went through every layer exactly once.
  CHECK(counter.admitted.load() == calls + retried);
  CHECK(counter.count(armor::outcome::success) == calls);
  CHECK(counter.count(armor::outcome::failure) == retried);
  const auto b = breaker.stats();
  CHECK(b.successes == static_cast<std::uint64_t>(calls));
  CHECK(b.failures == static_cast<std::uint64_t>(retried));
  CHECK(breaker.state() == armor::breaker_state::closed);
  CHECK(bucket.available() == 20000 - calls - retried);  // one token per attempt, none lost
}

TEST_CASE("a thread pool drives one shared pipeline from several threads") {
  counting_policy counter;
  const auto p = armor::pipeline{armor::deadline{30s}, std::ref(counter)};
  constexpr int calls = 4000;
  asio::thread_pool pool(4);
  std::atomic<int> ok{0};
  for (int i = 0; i < calls; ++i) {
    asio::co_spawn(
        pool,
        [&]() -> awaitable<void> {
          auto r = co_await p.async_try_execute([]() -> awaitable<int> {
            co_await asio::post(co_await asio::this_coro::executor, use_awaitable);
            co_return 1;
          });
          if (r) ok.fetch_add(1, std::memory_order_relaxed);
        },
        asio::detached);
  }
  pool.join();
  CHECK(ok.load() == calls);
  CHECK(counter.admitted.load() == calls);
  CHECK(counter.count(armor::outcome::success) == calls);
}
