// A program using armor::asio: standalone Asio with C++20 coroutines, under
// GCC and Clang alike (Asio before 1.26 needs armor::asio's definitions to
// see Clang's coroutines).
#include <armor/armor.hpp>
#if __has_include(<armor/asio.hpp>)
#include <armor/asio.hpp>
#endif

#include <asio.hpp>

#ifndef ASIO_STANDALONE
#error "armor::asio must define ASIO_STANDALONE"
#endif
#ifndef ASIO_HAS_CO_AWAIT
#error "asio::awaitable is not available: armor::asio did not enable coroutines"
#endif

namespace {
::asio::awaitable<int> answer() { co_return 42; }
}  // namespace

int main() {
  ::asio::io_context io;
  int result = 0;
  ::asio::co_spawn(io, answer(), [&](std::exception_ptr, int v) { result = v; });
  io.run();
  return result == 42 ? 0 : 1;
}
