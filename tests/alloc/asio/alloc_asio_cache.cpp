// What armor::cache's Asio driver allocates on a hit: nothing. The call's
// coroutine frames come from Asio's per-thread frame recycling (after the
// first call on a thread), the fresh or stale answer copies a shared_ptr,
// and the call does not suspend. Built only with Asio (ARMOR_WITH_ASIO).
#include <armor/asio.hpp>
#include <armor/cache.hpp>

#include "armor_catch.hpp"
#include "alloc/counting_new.hpp"

#include <asio.hpp>
#include <asio/experimental/channel.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <memory>
#include <string>

using namespace std::chrono_literals;

TEST_CASE("asio cache: a fresh or stale answer allocates nothing", "[alloc][asio][cache]") {
  armor::manual_clock clock;
  armor::cache<std::string, std::string, armor::manual_clock> c(
      {.max_age = 10s, .stale_while_revalidate = 10s, .shards = 4}, clock);
  const std::string key = "a key long enough to be on the heap if copied";
  int calls = 0;
  std::size_t fresh_allocations = 1;
  std::size_t stale_allocations = 1;
  int fresh = 0;
  int stale = 0;
  asio::io_context io;
  // The refresh never finishes while the stale answers are counted: it
  // waits on this channel, filled at the end.
  asio::experimental::channel<void(std::error_code, int)> gate(io, 1);
  auto op = [&]() -> asio::awaitable<std::string> {
    if (++calls > 1) co_await gate.async_receive(asio::use_awaitable);
    co_return std::string(100, 'x');
  };
  std::exception_ptr failure;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        (void)co_await c.async_execute(key, op);  // the miss: allocates
        for (int i = 0; i < 10; ++i) {            // warm Asio's frame cache on this thread
          (void)co_await c.async_execute(key, op);
          (void)co_await c.async_try_execute(key, op);
        }
        {
          armor_test::allocation_scope scope;
          for (int i = 0; i < 100; ++i) {
            fresh += (co_await c.async_execute(key, op)).origin == armor::cache_origin::fresh ? 1 : 0;
            auto r = co_await c.async_try_execute(key, op);
            fresh += r.ok() && r->origin == armor::cache_origin::fresh ? 1 : 0;
          }
          fresh_allocations = scope.allocations();
        }
        clock.advance(11s);
        (void)co_await c.async_execute(key, op);  // claims the refresh and spawns it (allocates)
        for (int i = 0; i < 10; ++i) (void)co_await c.async_execute(key, op);
        {
          armor_test::allocation_scope scope;
          for (int i = 0; i < 100; ++i)
            stale += (co_await c.async_execute(key, op)).origin == armor::cache_origin::stale ? 1 : 0;
          stale_allocations = scope.allocations();
        }
        (void)gate.try_send(std::error_code{}, 0);
      },
      [&](std::exception_ptr e) { failure = e; });
  io.run();
  if (failure) std::rethrow_exception(failure);
  CHECK(fresh == 200);
  CHECK(fresh_allocations == 0);
  CHECK(stale == 100);
  CHECK(stale_allocations == 0);
  CHECK(calls == 2);
  CHECK(c.lookup(key).state == armor::cache_state::fresh);
}
