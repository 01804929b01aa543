// An Asio coroutine HTTP/1.1 client wrapped in an armor pipeline.
//
// The example starts a tiny HTTP server on 127.0.0.1 (an ephemeral port) that
// answers the first two requests with 503 + Retry-After and then with 200,
// and a third path that never answers. The client GETs through
//
//     deadline{2s} -> backoff{4 attempts} -> deadline{300ms per attempt}
//
// with armor::http::status_classifier, which reads the status and the
// server's Retry-After (the response's headers are collected in an
// armor::http::header_map). It prints
// each attempt and the outcome, and exits 0 if armor did what it promises:
// the 503s were retried after the server's Retry-After, and the silent path
// was cut off by the per-attempt deadline (its socket closed, not leaked).
#include <armor/armor.hpp>
#include <armor/asio.hpp>
#include <armor/http.hpp>

#include <asio/buffer.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/streambuf.hpp>
#include <asio/write.hpp>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

using namespace std::chrono_literals;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

struct http_response {
  armor::http::header_map headers;  // the status line sets headers.status()
  std::string body;
  [[nodiscard]] int status() const { return headers.status(); }
};
// How armor::http reads an http_response (found by argument-dependent lookup).
std::optional<std::string_view> armor_http_header(const http_response& r, std::string_view name) {
  return r.headers.find(name);
}
int armor_http_status(const http_response& r) { return r.headers.status(); }

// Splits "HTTP/1.1 503 ...\r\nRetry-After: 1\r\n...\r\n\r\nbody" into lines for the header map.
http_response parse_response(std::string_view raw) {
  http_response r;
  std::size_t pos = 0;
  for (std::size_t eol; (eol = raw.find("\r\n", pos)) != std::string_view::npos && eol != pos; pos = eol + 2) {
    r.headers.add_line(raw.substr(pos, eol - pos));
  }
  if (const auto end = raw.find("\r\n\r\n"); end != std::string_view::npos) r.body = std::string(raw.substr(end + 4));
  return r;
}

// One GET on a fresh connection; the pipeline's per-attempt deadline cancels it.
awaitable<http_response> http_get(tcp::endpoint server, std::string path) {
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect(server, use_awaitable);
  const std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  co_await asio::async_write(socket, asio::buffer(request), use_awaitable);
  std::string raw;
  char chunk[1024];
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), asio::experimental::as_tuple(use_awaitable));
    raw.append(chunk, n);
    if (ec == asio::error::eof) break;
    if (ec) throw std::system_error(ec);
  }
  co_return parse_response(raw);
}

// The flaky upstream: /flaky fails twice with 503 + Retry-After: 1, then
// answers; /silent reads the request and never answers.
struct upstream {
  int flaky_requests = 0;
  int silent_closed_by_client = 0;

  awaitable<void> serve(tcp::socket s) {
    asio::streambuf request;
    co_await asio::async_read_until(s, request, "\r\n\r\n", use_awaitable);
    std::string head{asio::buffers_begin(request.data()), asio::buffers_end(request.data())};
    std::string reply;
    if (head.rfind("GET /silent", 0) == 0) {
      char byte = 0;
      auto [ec, n] = co_await s.async_read_some(asio::buffer(&byte, 1), asio::experimental::as_tuple(use_awaitable));
      (void)n;
      if (ec == asio::error::eof) ++silent_closed_by_client;
      co_return;
    }
    if (++flaky_requests <= 2) {
      reply = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    } else {
      reply = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    }
    co_await asio::async_write(s, asio::buffer(reply), use_awaitable);
  }

  awaitable<void> accept_loop(tcp::acceptor& acceptor) {
    for (;;) {
      tcp::socket s = co_await acceptor.async_accept(use_awaitable);
      asio::co_spawn(acceptor.get_executor(), serve(std::move(s)), asio::detached);
    }
  }
};

struct print_retries {
  void operator()(const armor::backoff_event& e) const noexcept {
    if (e.kind != armor::backoff_event_kind::retry) return;
    std::printf("  attempt %u failed (%s), retrying in %lld ms\n", e.attempt,
                e.last.kind == armor::outcome::timeout ? "timed out" : "server error",
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(e.delay).count()));
  }
};

}  // namespace

int main() {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const tcp::endpoint server = acceptor.local_endpoint();
  upstream up;
  asio::co_spawn(io, up.accept_loop(acceptor), asio::detached);

  const auto client = armor::pipeline{
      armor::classify{armor::http::status_classifier{}},  // 408/429/5xx retried after Retry-After
      armor::deadline{3s},
      armor::backoff<armor::thread_rng, print_retries>{{.max_attempts = 4, .initial = 50ms, .max_retry_after = 2s}},
      armor::deadline{300ms},
  };

  bool ok = true;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        std::printf("GET /flaky (503 + Retry-After: 1 twice, then 200)\n");
        auto r = co_await client.async_try_execute([&] { return http_get(server, "/flaky"); });
        if (r && r->status() == 200) {
          std::printf("  -> %d \"%s\" after %d requests\n", r->status(), r->body.c_str(), up.flaky_requests);
        } else {
          std::printf("  -> failed: %s\n", r.code().message().c_str());
          ok = false;
        }

        std::printf("GET /silent (never answers; 300 ms per attempt, 3 s in all)\n");
        const auto start = std::chrono::steady_clock::now();
        auto s = co_await client.async_try_execute([&] { return http_get(server, "/silent"); });
        const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
        std::printf("  -> %s after %lld ms\n", s ? "answered?!" : s.code().message().c_str(),
                    static_cast<long long>(took.count()));
        if (s || s.code() != armor::errc::deadline_exceeded || took > 3500ms) ok = false;
        acceptor.close();
      },
      asio::detached);
  io.run();

  std::printf("server saw %d silent connection(s) closed by the client\n", up.silent_closed_by_client);
  if (up.flaky_requests != 3 || up.silent_closed_by_client != 4) ok = false;
  std::printf("%s\n", ok ? "ok" : "UNEXPECTED RESULT");
  return ok ? 0 : 1;
}
