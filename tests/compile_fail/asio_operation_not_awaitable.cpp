// An operation given to async_execute that returns a plain value instead of
// asio::awaitable<R>.
// expect: armor: an async operation must return asio::awaitable<R>
#include <armor/asio.hpp>
#include <armor/deadline.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <chrono>

using namespace std::chrono_literals;

int main() {
  asio::io_context io;
  const auto p = armor::pipeline{armor::deadline{2s}};
  int got = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
#ifdef ARMOR_COMPILE_FAIL_FIXED
        got = co_await p.async_execute([]() -> asio::awaitable<int> { co_return 1; });
#else
        got = co_await p.async_execute([] { return 1; });
#endif
      },
      asio::detached);
  io.run();
  return got == 1 ? 0 : 1;
}
