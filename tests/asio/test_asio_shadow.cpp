// armor::shadow on the Asio driver: coroutines over the limit run at once,
// none waits on a timer for a shadowed wait, and the counts match the
// shadowed policy's decisions.
#include <armor/asio.hpp>
#include <armor/bulkhead.hpp>
#include <armor/shadow.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <functional>

using namespace std::chrono_literals;
using asio::awaitable;

using namespace armor_test;  // run_coroutine, sleep_for (asio_support.hpp)

TEST_CASE("asio: a shadowed token bucket lets every coroutine through and counts what it would refuse", "[shadow]") {
  armor::token_bucket<> bucket{{.rate = {1, 1h}, .burst = 3}};
  armor::shadow trial{std::ref(bucket)};
  const auto p = armor::pipeline{std::ref(trial)};
  int ok = 0;
  run_coroutine([&]() -> awaitable<void> {
    for (int i = 0; i < 10; ++i) {
      auto r = co_await p.async_try_execute([i]() -> awaitable<int> { co_return i; });
      if (r.ok()) ++ok;
    }
  });
  CHECK(ok == 10);
  CHECK(trial.stats().rate_limited == 7);
  CHECK(bucket.available() == 0);
}

TEST_CASE("asio: a shadowed wait is not waited, and a shadowed bulkhead never queues", "[shadow]") {
  armor::token_bucket<> bucket{{.rate = {1, 1h}, .burst = 1, .max_wait = 24h}};
  armor::shadow paced{std::ref(bucket)};
  armor::bulkhead<> slots{{.max_concurrent = 1, .max_queue = 4, .max_wait = 10s}};
  armor::shadow narrow{std::ref(slots)};
  const auto p = armor::pipeline{std::ref(narrow), std::ref(paced)};
  asio::io_context io;
  int ok = 0;
  for (int i = 0; i < 4; ++i) {
    asio::co_spawn(
        io,
        [&]() -> awaitable<void> {
          auto r = co_await p.async_try_execute([]() -> awaitable<int> {
            co_await sleep_for(20ms);  // all four overlap
            co_return 1;
          });
          if (r.ok()) ++ok;
        },
        asio::detached);
  }
  const auto start = std::chrono::steady_clock::now();
  io.run();
  CHECK(std::chrono::steady_clock::now() - start < 5s);  // an hour's wait per call, not one waited
  CHECK(ok == 4);
  CHECK(narrow.stats().would_queue == 3);
  CHECK(paced.stats().would_wait == 3);  // every call reached the bucket: one token, three reservations
  CHECK(slots.in_use() == 0);
  CHECK(slots.queued() == 0);
}
