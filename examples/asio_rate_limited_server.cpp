// A server that limits each client IP and answers 429 with Retry-After and
// the RateLimit headers.
//
// The server (Asio coroutines, 127.0.0.1, an ephemeral port) keeps one token
// bucket per client IP in an armor::keyed map: 5 requests a minute, burst 5
// (RateLimit-Limit: 5, RateLimit-Policy: 5;w=60).
// Two clients connect from different loopback addresses (127.0.0.2 and
// 127.0.0.3, which Linux routes like 127.0.0.1): the first sends 8 requests
// and gets 5 answers and then 429s; the second, limited separately, gets all
// of its 3. The example prints the first 429 in full and exits 0 if every
// count is as expected.
#include <armor/http/rate_limit.hpp>
#include <armor/keyed.hpp>
#include <armor/token_bucket.hpp>

#include <asio/buffer.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read_until.hpp>
#include <asio/streambuf.hpp>
#include <asio/write.hpp>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>

using namespace std::chrono_literals;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

using per_ip_limits = armor::keyed<armor::token_bucket<>>;

// Answers one request: 200 while the client's bucket has a token, else 429.
awaitable<void> serve(tcp::socket socket, per_ip_limits& limits) {
  asio::streambuf request;
  co_await asio::async_read_until(socket, request, "\r\n\r\n", use_awaitable);
  const std::string ip = socket.remote_endpoint().address().to_string();

  const auto decision = limits.get(ip)->try_acquire();
  std::string head = decision ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.1 429 Too Many Requests\r\n";
  // Retry-After on a refusal; RateLimit-* (the policy included) and
  // X-RateLimit-* on every answer.
  armor::http::rate_limit_headers(decision, [&](std::string_view name, std::string_view value) {
    head.append(name).append(": ").append(value).append("\r\n");
  });
  const std::string body = decision ? "hello\n" : "slow down\n";
  head += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  co_await asio::async_write(socket, asio::buffer(head + body), use_awaitable);
}

awaitable<void> accept_loop(tcp::acceptor& acceptor, per_ip_limits& limits) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::experimental::as_tuple(use_awaitable));
    if (ec) co_return;  // the acceptor was closed: we are done
    asio::co_spawn(acceptor.get_executor(), serve(std::move(socket), limits), asio::detached);
  }
}

// One GET from the given local address; returns the raw response.
awaitable<std::string> get_from(const char* local_ip, tcp::endpoint server) {
  tcp::socket socket(co_await asio::this_coro::executor);
  socket.open(tcp::v4());
  socket.bind(tcp::endpoint(asio::ip::make_address(local_ip), 0));
  co_await socket.async_connect(server, use_awaitable);
  const std::string request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  co_await asio::async_write(socket, asio::buffer(request), use_awaitable);
  std::string raw;
  char chunk[512];
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), asio::experimental::as_tuple(use_awaitable));
    raw.append(chunk, n);
    if (ec) break;
  }
  co_return raw;
}

int status_of(std::string_view raw) { return raw.size() > 12 ? std::stoi(std::string(raw.substr(9, 3))) : 0; }

}  // namespace

int main() {
  asio::io_context io;
  per_ip_limits limits{{.rate = {5, 1min}, .burst = 5}, {.max_keys = 10000}};
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const tcp::endpoint server = acceptor.local_endpoint();
  asio::co_spawn(io, accept_loop(acceptor, limits), asio::detached);

  std::map<std::string, std::map<int, int>> seen;  // client -> status -> count
  std::string first_429;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        for (int i = 0; i < 8; ++i) {
          const std::string r = co_await get_from("127.0.0.2", server);
          ++seen["127.0.0.2"][status_of(r)];
          if (status_of(r) == 429 && first_429.empty()) first_429 = r;
        }
        for (int i = 0; i < 3; ++i) {
          const std::string r = co_await get_from("127.0.0.3", server);
          ++seen["127.0.0.3"][status_of(r)];
        }
        acceptor.close();
      },
      asio::detached);
  io.run();

  for (const auto& [client, statuses] : seen) {
    std::printf("client %s:", client.c_str());
    for (const auto& [status, count] : statuses) std::printf("  %d x %d", count, status);
    std::printf("\n");
  }
  std::printf("\nthe first 429, as the client saw it:\n%s\n", first_429.c_str());

  const bool ok = seen["127.0.0.2"][200] == 5 && seen["127.0.0.2"][429] == 3 && seen["127.0.0.3"][200] == 3 &&
                  first_429.find("Retry-After: 12\r\n") != std::string::npos &&
                  first_429.find("RateLimit-Remaining: 0\r\n") != std::string::npos &&
                  first_429.find("RateLimit-Policy: 5;w=60\r\n") != std::string::npos;
  std::printf("%s\n", ok ? "ok" : "UNEXPECTED RESULT");
  return ok ? 0 : 1;
}
