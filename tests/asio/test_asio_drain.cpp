// armor::async_drain: a coroutine waits for a drain without blocking the
// thread; the last call to end (a coroutine on the same io_context, or a
// thread) wakes it; calls that never finish end the wait at its timeout.
#include <armor/asio.hpp>
#include <armor/drain.hpp>
#include <armor/load_shedder.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <thread>

using namespace std::chrono_literals;
using asio::awaitable;
using asio::use_awaitable;

using namespace armor_test;  // run_coroutine, sleep_for

TEST_CASE("async_drain: calls in flight through async_execute end, and the drainer wakes at the last") {
  armor::drain<> d;
  armor::load_shedder<> shedder{{.resources = {{.name = "memory"}}}};
  const auto p = armor::pipeline{std::ref(d), std::ref(shedder)};
  asio::io_context io;
  int finished = 0;
  std::optional<bool> drained;
  std::optional<armor::errc> late_code;
  auto call = [&](std::chrono::milliseconds busy) -> awaitable<void> {
    auto r = co_await p.async_try_execute([&]() -> awaitable<int> {
      co_await sleep_for(busy);
      co_return 1;
    });
    if (r.ok()) ++finished;
  };
  asio::co_spawn(io, call(30ms), asio::detached);
  asio::co_spawn(io, call(60ms), asio::detached);
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        co_await sleep_for(5ms);  // both calls are inside now
        d.start();
        const auto t0 = std::chrono::steady_clock::now();
        drained = co_await armor::async_drain(d, 20s);
        CHECK(std::chrono::steady_clock::now() - t0 < 10s);  // woken by the last call, not the timeout
        auto r = co_await p.async_try_execute([]() -> awaitable<int> { co_return 2; });
        late_code = static_cast<armor::errc>(r.code().value());
      },
      asio::detached);
  io.run();
  CHECK(finished == 2);
  REQUIRE(drained.has_value());
  CHECK(*drained);
  REQUIRE(late_code.has_value());
  CHECK(*late_code == armor::errc::draining);
}

TEST_CASE("async_drain: a call that never finishes ends the wait at the timeout, answering false") {
  armor::drain<> d;
  auto stuck = d.try_acquire().permit();
  d.start();
  std::optional<bool> drained;
  run_coroutine([&]() -> awaitable<void> { drained = co_await armor::async_drain(d, 20ms); });
  REQUIRE(drained.has_value());
  CHECK_FALSE(*drained);
  CHECK(d.in_flight() == 1);
  // Nothing in flight: at once.
  stuck.release();
  run_coroutine([&]() -> awaitable<void> { drained = co_await armor::async_drain(d, 20s); });
  CHECK(*drained);
}

TEST_CASE("async_drain: a call ending on another thread wakes the coroutine") {
  armor::drain<> d;
  auto held = d.try_acquire().permit();
  d.start();
  std::optional<bool> drained;
  std::thread ender([&] {
    std::this_thread::sleep_for(20ms);
    held.release();
  });
  run_coroutine([&]() -> awaitable<void> { drained = co_await armor::async_drain(d, 60s); });
  ender.join();
  REQUIRE(drained.has_value());
  CHECK(*drained);
}
