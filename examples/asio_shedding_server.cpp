// An Asio coroutine HTTP server that sheds load by resource use and drains on
// SIGTERM: the server of docs/shedding.md#in-a-server. Unlike the other
// examples it runs until it is told to stop; its test
// (tests/examples/check_shedding_server.py) starts it, drives it and sends
// it SIGTERM.
//
// Every request to a work endpoint goes through one pipeline:
//   drain (outermost) -> load shedder -> per-IP token bucket -> the work
// refused with 503 "draining" once SIGTERM came, 503 + Retry-After when the
// shedder's level refuses the request's priority (header X-Priority:
// critical | normal | sheddable; normal without one), 429 + Retry-After when
// the client's bucket is empty (100 a minute per IP, bursts of 20).
// Refusals are answered through armor::http::answer_for.
//
// Endpoints:
//   GET /            10 ms of stand-in work ("hello")
//   GET /slow?ms=N   N ms of stand-in work (N <= 60000)
//   GET /live        200 while the process runs (armor::readiness's JSON)
//   GET /ready       200; 503 while the shedder refuses normal requests
//                    (shedding, maintenance) or draining: armor::readiness's
//                    JSON, with the reason per policy (docs/readiness.md)
//   POST /admin/reading?resource=memory&value=0.97   (TEST ONLY, see below)
//   POST /admin/mode?mode=maintenance|read_only|automatic (TEST ONLY)
//
// Readings: a steady_timer samples armor::resource_sampler every second and
// feeds the shedder memory, cpu and fds. With --inject-readings the sampler
// is not started and the two /admin endpoints are served instead, to
// requests from a loopback address only: a way for a test to drive the
// levels without exhausting the machine. Never enable it in production.
//
// SIGTERM or SIGINT starts the drain: /ready answers 503, new requests get
// 503 draining, requests in flight finish; then the server exits, 0 when
// every request in flight ended within the grace period (--grace-ms,
// 15000 by default: half of Kubernetes' default terminationGracePeriodSeconds),
// 3 when some were still running at its end.
//
// Options: --port N (0 by default: an ephemeral port; it prints
// "listening on 127.0.0.1:PORT"), --address A (127.0.0.1), --grace-ms N,
// --inject-readings.
#include <armor/asio.hpp>
#include <armor/drain.hpp>
#include <armor/http/answer.hpp>
#include <armor/http/rate_limit.hpp>
#include <armor/keyed.hpp>
#include <armor/load_shedder.hpp>
#include <armor/readiness.hpp>
#include <armor/resource_sampler.hpp>
#include <armor/token_bucket.hpp>

#include <asio/buffer.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read_until.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/streambuf.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

using namespace std::chrono_literals;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

struct server_options {
  std::string address = "127.0.0.1";
  unsigned short port = 0;
  std::chrono::milliseconds grace = 15000ms;
  bool inject_readings = false;
};

// Logs the shedder's level and mode changes (the ladder's "at 80 %: log a
// warning" is the change to warning), not its refusals: those come per request.
struct log_shedding {
  void operator()(const armor::load_shedder_event& e) const noexcept {
    if (e.kind == armor::load_shedder_event_kind::level_changed) {
      std::printf("load level %s -> %s (%.*s at %.0f %%)\n", armor::to_string(e.from).data(),
                  armor::to_string(e.to).data(), static_cast<int>(e.resource.size()), e.resource.data(),
                  e.reading * 100);
    } else if (e.kind == armor::load_shedder_event_kind::mode_changed) {
      std::printf("load mode %s\n", armor::to_string(e.mode).data());
    }
    std::fflush(stdout);
  }
};

// What every connection shares. The policies are used through std::ref in
// the pipeline; the shedder and the drain are also read by /ready.
struct server {
  armor::drain<> drain;
  armor::load_shedder<armor::steady_clock, log_shedding> shedder{
      {.resources = {{.name = "memory"}, {.name = "cpu"}, {.name = "fds"}}, .retry_after_hint = 2s}};
  armor::keyed<armor::token_bucket<>> per_ip{{.rate = {100, 1min}, .burst = 20}, {.max_keys = 100000}};
  armor::readiness health;  // answers /ready and /live
  server() { health.add("drain", drain).add("shedder", shedder); }
  bool inject_readings = false;
  int connections = 0;  // serve() coroutines alive (one thread: a plain int)
};

// The parts of a request line and head that the server reads.
struct request {
  std::string method;
  std::string path;
  std::string query;
  std::string head;
};

std::optional<request> parse(const std::string& head) {
  const auto sp1 = head.find(' ');
  if (sp1 == std::string::npos) return std::nullopt;
  const auto sp2 = head.find(' ', sp1 + 1);
  if (sp2 == std::string::npos) return std::nullopt;
  request r;
  r.method = head.substr(0, sp1);
  const std::string target = head.substr(sp1 + 1, sp2 - sp1 - 1);
  const auto q = target.find('?');
  r.path = target.substr(0, q);
  if (q != std::string::npos) r.query = target.substr(q + 1);
  r.head = head;
  return r;
}

// The value of `name` in a query string "a=1&b=2" (no percent-decoding: the
// values used here need none).
std::string_view query_value(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

// The value of header `name` (given in lower case), header names compared
// without regard to case.
std::string_view header_value(std::string_view head, std::string_view name) {
  std::size_t at = head.find("\r\n");
  while (at != std::string_view::npos && at + 2 < head.size()) {
    const std::size_t start = at + 2;
    const std::size_t end = head.find("\r\n", start);
    const std::string_view line = head.substr(start, end - start);
    const std::size_t colon = line.find(':');
    if (colon == name.size()) {
      bool same = true;
      for (std::size_t i = 0; i < colon && same; ++i) {
        const char c = line[i];
        same = (c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) == name[i];
      }
      if (same) {
        std::string_view v = line.substr(colon + 1);
        while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
        while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
        return v;
      }
    }
    at = end;
  }
  return {};
}

armor::priority priority_of(std::string_view value) {
  if (value == "critical") return armor::priority::critical;
  if (value == "sheddable") return armor::priority::sheddable;
  return armor::priority::normal;
}

std::string reply(int status, std::string_view reason, std::string_view headers, std::string_view body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n" + std::string(headers) +
         "Content-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + std::string(body);
}

std::string reply_json(const armor::readiness_report& r, std::string_view ok, std::string_view failing) {
  const std::string body = r.json(ok, failing);
  return "HTTP/1.1 " + std::to_string(r.http_status()) + (r.ok ? " OK" : " Service Unavailable") +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

// /ready: not ready while draining, or while the shedder refuses requests of
// normal priority (the shedding level, or maintenance forced): a load
// balancer then sends new requests elsewhere. /live: 200 while it answers.
std::string readiness(const server& s) {
  const armor::readiness_report r = s.health.ready();
  return reply_json(r, "ready", "not_ready");
}

// The test-only admin endpoints (--inject-readings, loopback clients only).
std::string admin(server& s, const request& r, const tcp::endpoint& peer) {
  if (!s.inject_readings || !peer.address().is_loopback()) return reply(404, "Not Found", "", "not found\n");
  if (r.method != "POST") return reply(405, "Method Not Allowed", "", "POST only\n");
  if (r.path == "/admin/reading") {
    const std::string_view resource = query_value(r.query, "resource");
    const std::string value(query_value(r.query, "value"));
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (value.empty() || end != value.c_str() + value.size() || !s.shedder.update(resource, v)) {
      return reply(400, "Bad Request", "", "want resource=memory|cpu|fds&value=<0..1>\n");
    }
    return reply(200, "OK", "", "level " + std::string(armor::to_string(s.shedder.level())) + "\n");
  }
  if (r.path == "/admin/mode") {
    const std::string_view m = query_value(r.query, "mode");
    if (m == "automatic") s.shedder.set_mode(armor::load_mode::automatic);
    else if (m == "read_only") s.shedder.set_mode(armor::load_mode::read_only);
    else if (m == "maintenance") s.shedder.set_mode(armor::load_mode::maintenance);
    else return reply(400, "Bad Request", "", "want mode=automatic|read_only|maintenance\n");
    return reply(200, "OK", "", "mode " + std::string(m) + "\n");
  }
  return reply(404, "Not Found", "", "not found\n");
}

// The stand-in for the work behind an answer: a timer wait.
awaitable<std::string> work(std::chrono::milliseconds d, std::string body) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(use_awaitable);
  co_return body;
}

// Answers one request (one per connection: Connection: close).
awaitable<void> serve(tcp::socket socket, server& s, const auto& pipeline) {
  ++s.connections;
  struct leave {
    server& s;
    ~leave() { --s.connections; }
  } guard{s};

  asio::streambuf buffer(16 * 1024);
  auto [ec, n] = co_await asio::async_read_until(socket, buffer, "\r\n\r\n", asio::experimental::as_tuple(use_awaitable));
  if (ec) co_return;
  const std::optional<request> r =
      parse(std::string{asio::buffers_begin(buffer.data()), asio::buffers_begin(buffer.data()) + static_cast<std::ptrdiff_t>(n)});
  std::error_code ignored;
  const tcp::endpoint peer = socket.remote_endpoint(ignored);

  std::string out;
  if (!r) {
    out = reply(400, "Bad Request", "", "bad request\n");
  } else if (r->path == "/live") {
    out = reply_json(s.health.live(), "live", "not_live");
  } else if (r->path == "/ready") {
    out = readiness(s);
  } else if (r->path.starts_with("/admin/")) {
    out = admin(s, *r, peer);
  } else if (r->path == "/" || r->path == "/slow") {
    std::chrono::milliseconds d = 10ms;
    if (r->path == "/slow") {
      const std::string_view ms = query_value(r->query, "ms");
      long v = 0;
      std::from_chars(ms.data(), ms.data() + ms.size(), v);
      d = std::chrono::milliseconds{std::clamp(v, 0L, 60000L)};
    }
    const std::string ip = peer.address().to_string();
    const auto result = co_await pipeline.async_try_execute(
        [&] { return work(d, "hello from " + r->path + "\n"); },
        {.key = ip, .priority = priority_of(header_value(r->head, "x-priority"))});
    if (result) {
      out = reply(200, "OK", "", *result);
    } else {
      // 503 + Retry-After (overloaded), 503 (draining), 429 + Retry-After
      // (the client's bucket), 500 if the work itself failed.
      const armor::http::answer a = armor::http::answer_for(result.error());
      std::string headers;
      armor::http::answer_headers(a, [&](std::string_view name, std::string_view value) {
        headers.append(name).append(": ").append(value).append("\r\n");
      });
      const std::string why(result.code() == armor::errc::draining     ? "draining"
                            : result.code() == armor::errc::overloaded ? "overloaded"
                                                                       : a.reason());
      out = reply(a.status, a.reason(), headers, why + "\n");
    }
  } else {
    out = reply(404, "Not Found", "", "not found\n");
  }
  co_await asio::async_write(socket, asio::buffer(out), asio::experimental::as_tuple(use_awaitable));
  socket.shutdown(tcp::socket::shutdown_send, ignored);
}

awaitable<void> accept_loop(tcp::acceptor& acceptor, server& s, const auto& pipeline) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::experimental::as_tuple(use_awaitable));
    if (ec) co_return;  // closed: the drain is over
    asio::co_spawn(acceptor.get_executor(), serve(std::move(socket), s, pipeline), asio::detached);
  }
}

// Samples the machine every second and feeds the shedder. A fraction that
// cannot be read (no limit to measure against) is left out.
awaitable<void> sample_loop(asio::steady_timer& timer, server& s) {
  armor::resource_sampler<> sampler;
  for (;;) {
    const armor::resource_readings r = sampler.sample();
    if (r.memory) s.shedder.update(std::size_t{0}, *r.memory);
    if (r.cpu) s.shedder.update(std::size_t{1}, *r.cpu);
    if (r.file_descriptors) s.shedder.update(std::size_t{2}, *r.file_descriptors);
    timer.expires_after(1s);
    auto [ec] = co_await timer.async_wait(asio::experimental::as_tuple(use_awaitable));
    if (ec) co_return;  // cancelled: the server is stopping
  }
}

// On SIGTERM: stop admitting, wait for the requests in flight (at most the
// grace period), stop accepting, let the last answers be written, stop.
awaitable<void> drain_on_signal(asio::io_context& io, asio::signal_set& signals, tcp::acceptor& acceptor,
                                asio::steady_timer& sampling, server& s, std::chrono::milliseconds grace,
                                int& exit_code) {
  auto [ec, signal] = co_await signals.async_wait(asio::experimental::as_tuple(use_awaitable));
  if (ec) co_return;
  const auto until = std::chrono::steady_clock::now() + grace;
  std::printf("signal %d: draining %llu requests in flight (grace %lld ms)\n", signal,
              static_cast<unsigned long long>(s.drain.in_flight()), static_cast<long long>(grace.count()));
  std::fflush(stdout);
  s.drain.start();
  const bool drained = co_await armor::async_drain(s.drain, grace);
  acceptor.close();
  sampling.cancel();
  // The last answers are still being written (their calls ended, their
  // connections have not): give them what is left of the grace period.
  asio::steady_timer tick(io);
  while (s.connections > 0 && std::chrono::steady_clock::now() < until) {
    tick.expires_after(5ms);
    co_await tick.async_wait(asio::experimental::as_tuple(use_awaitable));
  }
  exit_code = drained && s.connections == 0 ? 0 : 3;
  std::printf("%s\n", exit_code == 0 ? "drained" : "grace period over with requests in flight");
  std::fflush(stdout);
  io.stop();
}

int usage(const char* self) {
  std::fprintf(stderr, "usage: %s [--address A] [--port N] [--grace-ms N] [--inject-readings]\n", self);
  return 2;
}

}  // namespace

int main(int argc, char** argv) try {
  server_options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--address" && has_value) o.address = argv[++i];
    else if (arg == "--port" && has_value) o.port = static_cast<unsigned short>(std::stoi(argv[++i]));
    else if (arg == "--grace-ms" && has_value) o.grace = std::chrono::milliseconds{std::stol(argv[++i])};
    else if (arg == "--inject-readings") o.inject_readings = true;
    else return usage(argv[0]);
  }

  // Declared before the io_context: coroutines still suspended when it
  // stops (past the grace period) are destroyed with it, and use both.
  server s;
  s.inject_readings = o.inject_readings;
  const auto pipeline = armor::pipeline{std::ref(s.drain), std::ref(s.shedder), std::ref(s.per_ip)};

  asio::io_context io;

  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address(o.address), o.port));
  asio::steady_timer sampling(io);
  asio::signal_set signals(io, SIGTERM, SIGINT);
  int exit_code = 0;

  asio::co_spawn(io, accept_loop(acceptor, s, pipeline), asio::detached);
  if (!o.inject_readings) asio::co_spawn(io, sample_loop(sampling, s), asio::detached);
  asio::co_spawn(io, drain_on_signal(io, signals, acceptor, sampling, s, o.grace, exit_code), asio::detached);

  const tcp::endpoint at = acceptor.local_endpoint();
  std::printf("listening on %s:%u%s\n", at.address().to_string().c_str(), static_cast<unsigned>(at.port()),
              o.inject_readings ? " (readings injected through /admin: test only)" : "");
  std::fflush(stdout);
  io.run();
  return exit_code;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
