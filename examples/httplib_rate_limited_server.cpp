// A cpp-httplib server that limits each client IP, and clients that read
// its answers with armor/http.hpp.
//
// The server (127.0.0.1, an ephemeral port, in a thread) keeps one token
// bucket per client IP in an armor::keyed map: one request a second, burst 5.
// Every answer carries the rate-limit headers armor::http::rate_limit_headers
// writes (RateLimit-Limit/-Remaining/-Reset with the burst, RateLimit-Policy
// with the rate as the IETF draft's quota policy, "5;w=5": 5 tokens refill
// in 5 s; X-RateLimit-* with the reset as a Unix time, as GitHub sends it);
// a refusal is 429 with Retry-After.
//
// Then, on 127.0.0.1:
//   1. client A sends 8 requests at once: 5 answers, then 429s. The example
//      reads the first 429 back with armor::http::read_rate_limit and
//      parse_retry_after and checks every number.
//   2. client B, from 127.0.0.2 (Linux routes all of 127/8 to loopback),
//      is limited separately: its 3 requests all pass.
//   3. client A again, through a pipeline with status_classifier and a
//      retry layer: its first attempt is refused, the retry waits the
//      server's Retry-After and passes.
// Exits 0 when all of that happened, 1 otherwise.
#include <armor/armor.hpp>
#include <armor/http.hpp>

#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace http = armor::http;

namespace {

using per_ip_limits = armor::keyed<armor::token_bucket<>>;

class limited_server {
 public:
  limited_server() : limits_(armor::token_bucket_options::parse("1/s burst=5"), {.max_keys = 10'000}) {
    svr_.Get("/", [this](const httplib::Request& req, httplib::Response& res) {
      const armor::token_bucket_decision<> d = limits_.get(req.remote_addr)->try_acquire();
      armor::http::rate_limit_headers(
          d, [&](std::string_view name, std::string_view value) { res.set_header(std::string(name), std::string(value)); },
          {.wall_now = std::chrono::system_clock::now()});
      if (!d) {
        ++refused_;
        res.status = 429;
        res.set_content("slow down\n", "text/plain");
        return;
      }
      res.set_content("hello " + req.remote_addr + "\n", "text/plain");
    });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
  }
  ~limited_server() {
    svr_.stop();
    thread_.join();
  }
  limited_server(const limited_server&) = delete;
  limited_server& operator=(const limited_server&) = delete;

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] int refused() const { return refused_; }

 private:
  per_ip_limits limits_;
  httplib::Server svr_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> refused_{0};
};

/// A bare HTTP/1.1 GET from a chosen local address (cpp-httplib's client
/// cannot bind one), with its answer collected in an armor::http::header_map.
/// Returns the status, or 0 when the connection failed.
int get_from(const char* local_ip, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  ::inet_pton(AF_INET, local_ip, &local.sin_addr);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr);
  int status = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) == 0 &&
      ::connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof remote) == 0) {
    const std::string request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (::send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
      std::string raw;
      char buf[1024];
      for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) raw.append(buf, static_cast<std::size_t>(n));
      http::header_map headers;
      std::size_t pos = 0;
      for (std::size_t eol; (eol = raw.find("\r\n", pos)) != std::string::npos && eol != pos; pos = eol + 2) {
        headers.add_line(std::string_view(raw).substr(pos, eol - pos));
      }
      status = headers.status();
    }
  }
  ::close(fd);
  return status;
}

}  // namespace

int main() {
  limited_server srv;
  if (srv.port() <= 0) {
    std::printf("could not bind 127.0.0.1\n");
    return 1;
  }
  bool ok = true;
  httplib::Client a("127.0.0.1", srv.port());

  // 1. A burst from one client: 5 pass, the rest get 429 and the headers.
  std::vector<int> statuses;
  std::optional<httplib::Response> first_429;
  const auto burst_start = std::chrono::steady_clock::now();
  for (int i = 0; i < 8; ++i) {
    auto r = a.Get("/");
    statuses.push_back(r ? r->status : 0);
    if (r && r->status == 429 && !first_429) first_429 = *r;
  }
  std::printf("client A, 8 requests:");
  for (int s : statuses) std::printf(" %d", s);
  std::printf("\n");
  int passed = 0;
  for (int s : statuses) passed += s == 200 ? 1 : 0;
  // The bucket refills one token a second: 8 requests spread over t seconds
  // (a loaded machine) may see up to floor(t) + 1 more than the burst.
  const auto burst_took = std::chrono::steady_clock::now() - burst_start;
  const int refilled = static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(burst_took).count()) + 1;
  ok = ok && passed >= 5 && passed <= 5 + refilled && first_429;
  if (first_429) {
    const auto now = std::chrono::system_clock::now();
    std::printf("first 429:\n");
    for (const auto& [name, value] : first_429->headers) std::printf("  %s: %s\n", name.c_str(), value.c_str());
    const http::rate_limit_info info = http::read_rate_limit(*first_429, now);
    const auto retry_after = http::parse_retry_after(http::header(*first_429, "Retry-After").value_or(""), now);
    const auto x_reset = http::header(*first_429, "X-RateLimit-Reset");
    const auto reset_unix = x_reset ? http::parse_rate_limit_count(*x_reset) : std::nullopt;
    const bool headers_ok = info.limit == 5 && info.remaining == 0 && info.reset_after &&
                            *info.reset_after <= 5s && retry_after == std::chrono::nanoseconds{1s} && reset_unix &&
                            *reset_unix > 1'000'000'000 &&  // X-RateLimit-Reset is a Unix time here
                            http::header(*first_429, "RateLimit-Policy") == "5;w=5" && info.window == 5s;
    std::printf("read back: limit %lld per %lld s, remaining %lld, reset in %lld ms, Retry-After %lld s, "
                "X-RateLimit-Reset is %s\n",
                static_cast<long long>(info.limit.value_or(-1)),
                static_cast<long long>(info.window ? info.window->count() / 1'000'000'000 : -1),
                static_cast<long long>(info.remaining.value_or(-1)),
                static_cast<long long>(info.reset_after ? info.reset_after->count() / 1'000'000 : -1),
                static_cast<long long>(retry_after ? retry_after->count() / 1'000'000'000 : -1),
                reset_unix && *reset_unix > 1'000'000'000 ? "a Unix time" : "not a Unix time");
    ok = ok && headers_ok;
  }

  // 2. Another client IP has its own bucket.
  int b_passed = 0;
  for (int i = 0; i < 3; ++i) b_passed += get_from("127.0.0.2", srv.port()) == 200 ? 1 : 0;
  std::printf("client B (from 127.0.0.2), 3 requests: %d passed\n", b_passed);
  ok = ok && b_passed == 3;

  // 3. Client A through a pipeline that honours Retry-After.
  const auto p = armor::pipeline{
      armor::classify{[](const httplib::Result& r) {
        if (!r) return http::classify_transport_error(std::errc::connection_refused);
        return http::status_classifier{}(*r);
      }},
      armor::deadline{5s},
      armor::backoff{{.max_attempts = 3, .initial = 10ms, .max_retry_after = 3s}},
  };
  int attempts = 0;
  const int refused_before = srv.refused();
  // Drain A's bucket first, so the pipeline's first attempt is refused.
  for (int i = 0; i < 10; ++i) {
    auto d = a.Get("/");
    if (d && d->status == 429) break;
  }
  const auto start = std::chrono::steady_clock::now();
  auto r = p.try_execute([&] {
    ++attempts;
    return a.Get("/");
  });
  const auto took = std::chrono::steady_clock::now() - start;
  const bool passed_after_wait = r && *r && (*r)->status == 200 && attempts == 2 && took >= 900ms;
  std::printf("client A via pipeline: %s after %d attempts and %lld ms (%d refusals counting the drain)\n",
              r && *r && (*r)->status == 200 ? "200" : "failed", attempts,
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()),
              srv.refused() - refused_before);
  ok = ok && passed_after_wait;

  std::printf("%s\n", ok ? "ok" : "UNEXPECTED RESULT");
  return ok ? 0 : 1;
}
