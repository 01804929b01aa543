// armor::hedge on the Asio driver, with an operation not marked safe to repeat.
// expect: armor::hedge runs the operation more than once, side by side: mark it safe to repeat
// expect: by passing armor::idempotent{op} to async_execute / async_try_execute
#include <armor/asio.hpp>
#include <armor/hedge.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <chrono>

using namespace std::chrono_literals;

int main() {
  asio::io_context io;
  const auto p = armor::pipeline{armor::hedge{{.max_attempts = 2, .delay = 50ms}}};
  int got = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto fetch = []() -> asio::awaitable<int> { co_return 1; };
#ifdef ARMOR_COMPILE_FAIL_FIXED
        got = co_await p.async_execute(armor::idempotent{fetch});
#else
        got = co_await p.async_execute(fetch);
#endif
      },
      asio::detached);
  io.run();
  return got == 1 ? 0 : 1;
}
