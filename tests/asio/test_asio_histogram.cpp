// latency_recorder under the Asio driver: the same layer, no driver code of
// its own; on a manual clock, so the durations are exact.
#include <armor/asio.hpp>
#include <armor/backoff.hpp>
#include <armor/histogram.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <asio/io_context.hpp>

#include <chrono>
#include <functional>

using namespace std::chrono_literals;
using asio::awaitable;

TEST_CASE("asio: latency recorders time the whole call and each attempt", "[histogram]") {
  armor::manual_clock clock;
  armor::latency_recorder call{};
  armor::latency_recorder attempt{{.scope = armor::latency_scope::attempt}};
  const auto p = armor::pipeline{clock, std::ref(call),
                                 armor::backoff{{.max_attempts = 3,
                                                 .schedule = armor::backoff_schedule::constant,
                                                 .initial = 100ms,
                                                 .jitter = armor::jitter_mode::none}},
                                 std::ref(attempt)};
  int calls = 0;
  armor_test::run_coroutine([&]() -> awaitable<void> {
    const int v = co_await p.async_execute([&]() -> awaitable<int> {
      clock.advance(20ms);
      if (++calls < 3) throw armor_test::boom();
      co_return 7;
    });
    CHECK(v == 7);
    // A success on the first attempt is timed too (the recorder asks for
    // the completion time).
    (void)co_await p.async_execute([&]() -> awaitable<int> {
      clock.advance(5ms);
      co_return 1;
    });
  });
  const auto c = call.stats().duration;
  CHECK(c.count == 2);
  CHECK(c.sum == 3 * 20ms + 2 * 100ms + 5ms);
  const auto a = attempt.stats().duration;
  CHECK(a.count == 4);
  CHECK(a.sum == 3 * 20ms + 5ms);
}
