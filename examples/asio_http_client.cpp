// An Asio coroutine HTTP/1.1 client wrapped in armor pipelines: the
// complete client of docs/asio.md (the doc's excerpts are checked against
// this file by tests/shape/check_examples.py).
//
// The example starts a tiny HTTP server on 127.0.0.1 (an ephemeral port):
// /flaky answers the first two requests with 503 + Retry-After and then
// with 200; /silent never answers; /slow-once never answers its first
// request and answers later ones at once. The client
//
//   1. GETs /flaky through deadline{3s} -> backoff{4 attempts} ->
//      deadline{300ms per attempt}, with armor::http::status_classifier,
//      which reads the status and the server's Retry-After: the 503s are
//      retried after the server's Retry-After;
//   2. GETs /silent through the same pipeline: every attempt is cut off by
//      the per-attempt deadline (its socket closed, not leaked) and the call
//      ends with deadline_exceeded within the 3 s budget;
//   3. GETs /slow-once through deadline{2s} -> hedge{2 attempts, 100ms}: the
//      second attempt answers, the first is cancelled;
//   4. starts a GET of /silent with co_spawn and a completion handler, and
//      cancels it from outside after 100 ms: the call ends with
//      errc::cancelled.
// It exits 0 if each step did what armor promises.
#include <armor/armor.hpp>
#include <armor/asio.hpp>
#include <armor/hedge.hpp>
#include <armor/http.hpp>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/buffer.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/streambuf.hpp>
#include <asio/write.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <optional>
#include <system_error>
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

// The upstream: /flaky fails twice with 503 + Retry-After: 1, then answers;
// /silent reads the request and never answers; /slow-once is silent the
// first time and answers at once after that.
struct upstream {
  int flaky_requests = 0;
  int slow_once_requests = 0;
  int silent_closed_by_client = 0;  // /silent and the first /slow-once

  awaitable<void> serve(tcp::socket s) {
    asio::streambuf request;
    co_await asio::async_read_until(s, request, "\r\n\r\n", use_awaitable);
    std::string head{asio::buffers_begin(request.data()), asio::buffers_end(request.data())};
    const bool slow_once = head.rfind("GET /slow-once", 0) == 0;
    if (head.rfind("GET /silent", 0) == 0 || (slow_once && ++slow_once_requests == 1)) {
      char byte = 0;
      auto [ec, n] = co_await s.async_read_some(asio::buffer(&byte, 1), asio::experimental::as_tuple(use_awaitable));
      (void)n;
      if (ec == asio::error::eof) ++silent_closed_by_client;
      co_return;
    }
    std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    if (!slow_once && ++flaky_requests <= 2) {
      reply = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    }
    co_await asio::async_write(s, asio::buffer(reply), use_awaitable);
  }

  awaitable<void> accept_loop(tcp::acceptor& acceptor) {
    for (;;) {
      auto [ec, s] = co_await acceptor.async_accept(asio::experimental::as_tuple(use_awaitable));
      if (ec) co_return;  // the acceptor was closed: we are done
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

long long ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main() {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const tcp::endpoint server = acceptor.local_endpoint();
  upstream up;
  asio::co_spawn(io, up.accept_loop(acceptor), asio::detached);

  // One pipeline per upstream, shared by every call (and every thread).
  const auto client = armor::pipeline{
      armor::classify{armor::http::status_classifier{}},  // 408/429/5xx retried after Retry-After
      armor::deadline{3s},                                // the whole call, retries included
      armor::backoff<armor::thread_rng, print_retries>{{.max_attempts = 4, .initial = 50ms, .max_retry_after = 2s}},
      armor::deadline{300ms},                             // each attempt
  };
  // Hedged: a second request if the first has not answered within 100 ms.
  const auto hedged = armor::pipeline{
      armor::classify{armor::http::status_classifier{}},
      armor::deadline{2s},
      armor::hedge{{.max_attempts = 2, .delay = 100ms}},
  };

  bool ok = true;
  auto steps = [&]() -> awaitable<void> {
    std::printf("1. GET /flaky (503 + Retry-After: 1 twice, then 200)\n");
    auto r = co_await client.async_try_execute([&] { return http_get(server, "/flaky"); });
    if (r && r->status() == 200) {
      std::printf("  -> %d \"%s\" after %d requests\n", r->status(), r->body.c_str(), up.flaky_requests);
    } else {
      std::printf("  -> failed: %s\n", r.code().message().c_str());
      ok = false;
    }

    std::printf("2. GET /silent (never answers; 300 ms per attempt, 3 s in all)\n");
    auto start = std::chrono::steady_clock::now();
    auto s = co_await client.async_try_execute([&] { return http_get(server, "/silent"); });
    std::printf("  -> %s after %lld ms\n", s ? "answered?!" : s.code().message().c_str(), ms_since(start));
    if (s || s.code() != armor::errc::deadline_exceeded || ms_since(start) > 3500) ok = false;

    std::printf("3. GET /slow-once, hedged (the first request is never answered)\n");
    start = std::chrono::steady_clock::now();
    try {
      // GET is safe to send twice: armor::idempotent says so.
      const http_response h = co_await hedged.async_execute(armor::idempotent{[&](const armor::context& ctx) {
        std::printf("  attempt %u sent after %lld ms\n", ctx.attempt(), ms_since(start));
        return http_get(server, "/slow-once");
      }});
      std::printf("  -> %d \"%s\" after %lld ms\n", h.status(), h.body.c_str(), ms_since(start));
      if (h.status() != 200 || ms_since(start) > 1500) ok = false;
    } catch (const armor::error& e) {  // armor stopped the call: e.code() says why
      std::printf("  -> failed: %s\n", e.what());
      ok = false;
    }
  };

  // 4. A call started by co_spawn with a completion handler (no coroutine
  // of ours awaits it), cancelled from outside through the cancellation
  // slot bound to that handler. (co_spawn needs a default-constructible
  // value, so this form takes async_execute, not async_try_execute.)
  asio::cancellation_signal stop;
  asio::steady_timer give_up(io);
  std::error_code ended_with;
  auto cancelled_call = [&] {
    std::printf("4. GET /silent, cancelled by the caller after 100 ms\n");
    asio::co_spawn(io, client.async_execute([&] { return http_get(server, "/silent"); }),
                   asio::bind_cancellation_slot(stop.slot(), [&](std::exception_ptr e, http_response) {
                     try {
                       if (e) std::rethrow_exception(e);
                     } catch (const armor::error& why) {
                       ended_with = why.code();  // errc::cancelled
                     } catch (...) {
                     }
                     acceptor.close();
                   }));
    give_up.expires_after(100ms);
    give_up.async_wait([&](std::error_code) { stop.emit(asio::cancellation_type::terminal); });
  };

  asio::co_spawn(io, steps, [&](std::exception_ptr e) {
    if (e) ok = false;  // an exception escaped the steps above
    cancelled_call();
  });
  io.run();
  std::printf("  -> %s\n", ended_with ? ended_with.message().c_str() : "answered?!");
  if (ended_with != armor::errc::cancelled) ok = false;

  // 4 timed-out attempts of step 2, the hedge's loser, the cancelled call.
  std::printf("server saw %d silent connection(s) closed by the client\n", up.silent_closed_by_client);
  if (up.flaky_requests != 3 || up.slow_once_requests != 2 || up.silent_closed_by_client != 6) ok = false;
  std::printf("%s\n", ok ? "ok" : "UNEXPECTED RESULT");
  return ok ? 0 : 1;
}
