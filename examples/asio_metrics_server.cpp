// A /metrics endpoint: the Prometheus text exposition of a service's armor
// policies, served over HTTP by Asio on loopback.
//
// The "service" calls a flaky upstream (S3, say) through a pipeline of a
// latency recorder, a backoff and a circuit breaker, limits its own clients with a per-IP token
// bucket, and tracks a daily API quota. A registry names those policies
// (upstream="s3-products", ...) and the server answers GET /metrics with
// the registry's exposition. The example then fetches its own /metrics once
// (127.0.0.1, an ephemeral port), prints the answer, checks a few of the
// values it knows must be there, and exits 0 when they are.
#include <armor/backoff.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/histogram.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/prometheus.hpp>
#include <armor/quota_tracker.hpp>
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

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <functional>
#include <istream>
#include <string>
#include <string_view>
#include <system_error>

using namespace std::chrono_literals;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

// Answers GET /metrics with the exposition, anything else with 404.
awaitable<void> serve(tcp::socket socket, const armor::prometheus::registry& metrics) {
  asio::streambuf request;
  co_await asio::async_read_until(socket, request, "\r\n\r\n", use_awaitable);
  std::istream in(&request);
  std::string method;
  std::string target;
  in >> method >> target;

  fmt::memory_buffer body;
  std::string_view status = "404 Not Found";
  std::string_view type = "text/plain; charset=utf-8";
  if (method == "GET" && target == "/metrics") {
    metrics.write(body);
    status = "200 OK";
    type = "text/plain; version=0.0.4; charset=utf-8";
  } else {
    fmt::format_to(fmt::appender(body), "not found\n");
  }
  const std::string head = fmt::format("HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                       status, type, body.size());
  const std::array<asio::const_buffer, 2> out{asio::buffer(head), asio::buffer(body.data(), body.size())};
  co_await asio::async_write(socket, out, use_awaitable);
}

awaitable<void> accept_loop(tcp::acceptor& acceptor, const armor::prometheus::registry& metrics) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::experimental::as_tuple(use_awaitable));
    if (ec) co_return;  // the acceptor was closed: we are done
    asio::co_spawn(acceptor.get_executor(), serve(std::move(socket), metrics), asio::detached);
  }
}

// One GET; returns the raw response.
awaitable<std::string> http_get(tcp::endpoint server, std::string_view target) {
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect(server, use_awaitable);
  const std::string request = fmt::format("GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", target);
  co_await asio::async_write(socket, asio::buffer(request), use_awaitable);
  std::string raw;
  char chunk[4096];
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), asio::experimental::as_tuple(use_awaitable));
    raw.append(chunk, n);
    if (ec) break;
  }
  co_return raw;
}

}  // namespace

int main() {
  // ---- the service's policies, and some traffic through them
  armor::circuit_breaker s3_breaker{{.failure_threshold = 3, .open_for = 30s, .count_calls = true}};
  armor::backoff s3_retries{{.max_attempts = 2, .initial = 1ms, .max_delay = 5ms}};
  armor::latency_recorder s3_latency{};  // whole calls, retries included
  const auto s3 = armor::pipeline{std::ref(s3_latency), std::ref(s3_retries), std::ref(s3_breaker)};
  int attempt = 0;
  for (int i = 0; i < 4; ++i) {
    // The upstream fails from its third attempt on: calls 3 and 4 exhaust
    // their two attempts, and the third failure in a row opens the breaker
    // (call 4's second attempt is refused by it).
    (void)s3.try_execute([&] { return ++attempt > 2 ? std::make_error_code(std::errc::io_error) : std::error_code{}; });
  }

  armor::keyed<armor::token_bucket<>> per_ip{{.rate = {5, 1min}, .burst = 5}, {.max_keys = 10'000}};
  for (int i = 0; i < 7; ++i) (void)per_ip.get("203.0.113.7")->try_acquire();
  (void)per_ip.get("198.51.100.20")->try_acquire();

  armor::quota_tracker gemini{{.windows = {armor::quota_window::per_day(50), armor::quota_window::per_minute(10)}}};
  (void)gemini.try_consume(12);  // more than a minute allows: refused
  (void)gemini.try_consume(8);

  armor::prometheus::registry metrics;
  metrics.add(s3_latency, {{"upstream", "s3-products"}})
      .add(s3_breaker, {{"upstream", "s3-products"}})
      .add(s3_retries, {{"upstream", "s3-products"}})
      .add(per_ip, {{"route", "/search"}}, "client")
      .add(gemini, {{"api", "gemini"}});

  // ---- the server, and one scrape of it
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const tcp::endpoint server = acceptor.local_endpoint();
  asio::co_spawn(io, accept_loop(acceptor, metrics), asio::detached);

  std::string response;
  std::string missing;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        response = co_await http_get(server, "/metrics");
        missing = co_await http_get(server, "/nothing-here");
        acceptor.close();
      },
      asio::detached);
  io.run();

  fmt::print("GET /metrics from {}:{}\n\n{}\n", server.address().to_string(), server.port(), response);
  fmt::print("s3 latency: {}\n", s3_latency.stats());  // count, sum, p50, p95, p99 for a log line

  const auto has = [&](std::string_view line) { return response.find(line) != std::string::npos; };
  const bool ok = response.starts_with("HTTP/1.1 200 OK\r\n") &&
                  has("Content-Type: text/plain; version=0.0.4") &&
                  has("# TYPE armor_circuit_breaker_state gauge\n") &&
                  has("# TYPE armor_call_duration_seconds histogram\n") &&
                  has("armor_call_duration_seconds_count{upstream=\"s3-products\"} 4\n") &&
                  has("armor_call_duration_seconds_bucket{upstream=\"s3-products\",le=\"+Inf\"} 4\n") &&
                  has("armor_circuit_breaker_state{upstream=\"s3-products\"} 1\n") &&
                  has("armor_circuit_breaker_opened_total{upstream=\"s3-products\"} 1\n") &&
                  has("armor_retry_exhausted_total{upstream=\"s3-products\"} 2\n") &&
                  has("armor_rate_limit_available_tokens{route=\"/search\",client=\"203.0.113.7\"} 0\n") &&
                  has("armor_rate_limit_available_tokens{route=\"/search\",client=\"198.51.100.20\"} 4\n") &&
                  has("armor_quota_used{api=\"gemini\",window=\"day\"} 8\n") &&
                  has("armor_quota_limit{api=\"gemini\",window=\"minute\"} 10\n") &&
                  has("armor_quota_rejected_total{api=\"gemini\",reason=\"too_large\"} 1\n") &&
                  missing.starts_with("HTTP/1.1 404 Not Found\r\n");
  fmt::print("{}\n", ok ? "ok" : "UNEXPECTED RESULT");
  return ok ? 0 : 1;
}
