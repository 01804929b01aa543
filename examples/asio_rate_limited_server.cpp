// An Asio coroutine HTTP server that limits each client IP (429 with
// Retry-After and the RateLimit headers) and guards the work behind each
// answer with a pipeline on the Asio driver: the complete server of
// docs/asio.md (the doc's excerpts are checked against this file by
// tests/shape/check_examples.py).
//
// The server (127.0.0.1, an ephemeral port) keeps one token bucket per
// client IP in an armor::keyed map: 5 requests a minute, burst 5
// (RateLimit-Limit: 5, RateLimit-Policy: 5;w=60). A request that passes
// runs its backend query (a stand-in for a database: 10 ms, or never for
// /slow) through deadline{1s} -> bulkhead{2 at once, a queue of 8 waiting at
// most 250 ms}: a query still running after 1 s is cancelled and answered
// 504, a request that finds no slot in time is answered 503 + Retry-After.
//
// Clients connect from different loopback addresses (127.0.0.x, which Linux
// routes like 127.0.0.1):
//   127.0.0.2 sends 8 requests one after another: 5 answers, then 429s;
//   127.0.0.3, limited separately, gets all of its 3;
//   127.0.0.4 sends 4 at once: 2 run, the others wait in the queue, all 4
//   are answered;
//   127.0.0.5 sends 2 GET /slow, which hold both slots until their deadline
//   (504), and then a GET / that waits 250 ms in the queue and gets a 503.
// The example prints what each client got and the first 429 in full, and
// exits 0 if every count is as expected.
#include <armor/asio.hpp>
#include <armor/bulkhead.hpp>
#include <armor/deadline.hpp>
#include <armor/http/answer.hpp>
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
#include <asio/steady_timer.hpp>
#include <asio/streambuf.hpp>
#include <asio/write.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <system_error>

using namespace std::chrono_literals;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

using per_ip_limits = armor::keyed<armor::token_bucket<>>;

// The work behind an answer, a stand-in for a database query: 10 ms, or
// never for /slow. A timer wait ends early when the pipeline cancels it.
awaitable<std::string> query_backend(std::string target) {
  asio::steady_timer work(co_await asio::this_coro::executor);
  work.expires_after(target == "/slow" ? 1h : 10ms);
  co_await work.async_wait(use_awaitable);
  co_return "hello from " + target + "\n";
}

std::string answer(int status, std::string_view reason, std::string_view headers, std::string_view body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n" + std::string(headers) +
         "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + std::string(body);
}

// Answers one request: 429 once the client's bucket is empty; otherwise
// the backend's answer, 503 when no slot came free in time, 504 when the
// query outlived its deadline. `backend` is the pipeline main() builds,
// shared by every connection.
awaitable<void> serve(tcp::socket socket, per_ip_limits& limits, const auto& backend) {
  asio::streambuf request;
  co_await asio::async_read_until(socket, request, "\r\n\r\n", use_awaitable);
  const std::string head{asio::buffers_begin(request.data()), asio::buffers_end(request.data())};
  const std::string target = head.substr(4, head.find(' ', 4) - 4);  // "GET /x HTTP/1.1"
  const std::string ip = socket.remote_endpoint().address().to_string();

  // RateLimit-* (the policy included) and X-RateLimit-* on every answer
  // that passed the limit; Retry-After as well on a 429.
  const auto decision = limits.get(ip)->try_acquire();
  std::string headers;
  armor::http::rate_limit_headers(decision, [&](std::string_view name, std::string_view value) {
    headers.append(name).append(": ").append(value).append("\r\n");
  });
  if (!decision) {
    co_await asio::async_write(socket, asio::buffer(answer(429, "Too Many Requests", headers, "slow down\n")),
                               use_awaitable);
    co_return;
  }

  auto r = co_await backend.async_try_execute([&] { return query_backend(target); });
  std::string reply;
  if (r) {
    reply = answer(200, "OK", headers, *r);
  } else {
    // 503 + Retry-After (the bulkhead's retry_after_hint) when no slot came
    // free, 504 past the deadline, 502 when the backend itself failed.
    const armor::http::answer a = armor::http::answer_for(r.error(), 502);
    armor::http::answer_headers(a, [&](std::string_view name, std::string_view value) {
      headers.append(name).append(": ").append(value).append("\r\n");
    });
    reply = answer(a.status, a.reason(), headers, std::string(a.reason()) + "\n");
  }
  co_await asio::async_write(socket, asio::buffer(reply), use_awaitable);
}

awaitable<void> accept_loop(tcp::acceptor& acceptor, per_ip_limits& limits, const auto& backend) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::experimental::as_tuple(use_awaitable));
    if (ec) co_return;  // the acceptor was closed: we are done
    asio::co_spawn(acceptor.get_executor(), serve(std::move(socket), limits, backend), asio::detached);
  }
}

// One GET from the given local address; returns the raw response.
awaitable<std::string> get_from(const char* local_ip, tcp::endpoint server, std::string target = "/") {
  tcp::socket socket(co_await asio::this_coro::executor);
  socket.open(tcp::v4());
  socket.bind(tcp::endpoint(asio::ip::make_address(local_ip), 0));
  co_await socket.async_connect(server, use_awaitable);
  const std::string request = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
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

// Waits on a timer of the calling coroutine's executor.
awaitable<void> pause(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(use_awaitable);
}

}  // namespace

int main() {
  asio::io_context io;
  per_ip_limits limits{{.rate = {5, 1min}, .burst = 5}, {.max_keys = 10000}};
  // The backend: at most 2 queries at once, 8 more waiting up to 250 ms
  // each (then 503, with the hint as Retry-After); 1 s per query (then 504).
  armor::bulkhead<> slots{{.max_concurrent = 2, .max_queue = 8, .max_wait = 250ms, .retry_after_hint = 1s}};
  const auto backend = armor::pipeline{armor::deadline{1s}, std::ref(slots)};
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const tcp::endpoint server = acceptor.local_endpoint();
  asio::co_spawn(io, accept_loop(acceptor, limits, backend), asio::detached);

  std::map<std::string, std::map<int, int>> seen;  // client -> status -> count
  std::string first_429;
  std::string the_503;
  int pending = 0;  // requests sent and not answered yet
  auto get = [&](const char* ip, std::string target) -> awaitable<void> {
    ++pending;
    const std::string r = co_await get_from(ip, server, std::move(target));
    ++seen[ip][status_of(r)];
    if (status_of(r) == 429 && first_429.empty()) first_429 = r;
    if (status_of(r) == 503) the_503 = r;
    --pending;
  };
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        for (int i = 0; i < 8; ++i) co_await get("127.0.0.2", "/");
        for (int i = 0; i < 3; ++i) co_await get("127.0.0.3", "/");

        // Four at once: two run, the others wait in the bulkhead's queue.
        for (int i = 0; i < 4; ++i) asio::co_spawn(io, get("127.0.0.4", "/"), asio::detached);
        while (pending > 0) co_await pause(5ms);

        // Two that hold both slots until the deadline, and one that queues
        // behind them until max_wait passes.
        for (int i = 0; i < 2; ++i) asio::co_spawn(io, get("127.0.0.5", "/slow"), asio::detached);
        while (slots.in_use() < 2) co_await pause(1ms);
        co_await get("127.0.0.5", "/");
        while (pending > 0) co_await pause(5ms);
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
  std::printf("\nthe 503, as the client saw it:\n%s\n", the_503.c_str());

  const bool ok = seen["127.0.0.2"][200] == 5 && seen["127.0.0.2"][429] == 3 && seen["127.0.0.3"][200] == 3 &&
                  seen["127.0.0.4"][200] == 4 && seen["127.0.0.5"][504] == 2 && seen["127.0.0.5"][503] == 1 &&
                  first_429.find("Retry-After: 12\r\n") != std::string::npos &&
                  first_429.find("RateLimit-Remaining: 0\r\n") != std::string::npos &&
                  first_429.find("RateLimit-Policy: 5;w=60\r\n") != std::string::npos &&
                  the_503.find("Retry-After: 1\r\n") != std::string::npos;
  std::printf("%s\n", ok ? "ok" : "UNEXPECTED RESULT");
  return ok ? 0 : 1;
}
