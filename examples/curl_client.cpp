// libcurl's easy API wrapped in an armor pipeline, using armor/http.hpp.
//
// Each attempt is one curl_easy_perform whose timeout is the time the
// pipeline has left (ctx.remaining()); response headers go through
// CURLOPT_HEADERFUNCTION into an armor::http::header_map, so the status
// classifier can read Retry-After and the rate-limit headers; a CURLcode is
// judged by curl_verdict() below (the header does not depend on curl).
//
// A small HTTP server runs on 127.0.0.1 (an ephemeral port, in a thread):
//   1. /flaky answers 503 with Retry-After as an HTTP-date one to two
//      seconds ahead, then 200: the retry waits until that date.
//   2. /missing answers 404: returned at once, not retried.
//   3. /slow never answers: every attempt times out at its 300 ms budget
//      (CURLE_OPERATION_TIMEDOUT, retried) until the 1 s deadline.
//   4. a port nobody listens on: CURLE_COULDNT_CONNECT, retried 3 times.
// Exits 0 when all four did what they claim, 1 otherwise.
#include <armor/armor.hpp>
#include <armor/http.hpp>

#include <curl/curl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

using namespace std::chrono_literals;
namespace http = armor::http;

namespace {

// ---------------------------------------------------------------- curl side

/// CURLcode as a std::error_code, so a verdict (and a failure) can carry it.
class curl_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "curl"; }
  std::string message(int c) const override { return curl_easy_strerror(static_cast<CURLcode>(c)); }
};
const curl_category_impl curl_category_instance;
std::error_code make_curl_error(CURLcode c) { return {static_cast<int>(c), curl_category_instance}; }

/// A transfer that failed without a response: worth retrying when the
/// connection failed, timed out or broke; not when the URL, TLS or options
/// are wrong.
armor::verdict curl_verdict(CURLcode c) {
  switch (c) {
    case CURLE_OK: return armor::verdict::success();
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return armor::verdict::failure(make_curl_error(c), true);
    default: return armor::verdict::permanent_failure(make_curl_error(c));
  }
}

/// What one attempt produced: the transfer's result and, when there was a
/// response, its headers (and status) and body.
struct curl_response {
  CURLcode code = CURLE_OK;
  http::header_map headers;
  std::string body;
};
// armor::http reads the status and headers of a curl_response through these.
std::optional<std::string_view> armor_http_header(const curl_response& r, std::string_view name) {
  return r.headers.find(name);
}
int armor_http_status(const curl_response& r) { return r.headers.status(); }

/// One GET on `easy`, giving up after `budget`.
curl_response curl_get(CURL* easy, const std::string& url, std::chrono::nanoseconds budget) {
  curl_response r;
  const long ms = static_cast<long>(std::max<std::int64_t>(1, std::chrono::ceil<std::chrono::milliseconds>(budget).count()));
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, ms);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, ms);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION,
                   +[](char* data, std::size_t size, std::size_t n, void* user) -> std::size_t {
                     static_cast<http::header_map*>(user)->add_line(std::string_view(data, size * n));
                     return size * n;
                   });
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &r.headers);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, +[](char* data, std::size_t size, std::size_t n, void* user) -> std::size_t {
    static_cast<std::string*>(user)->append(data, size * n);
    return size * n;
  });
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &r.body);
  r.code = curl_easy_perform(easy);
  return r;
}

// ---------------------------------------------------------------- the server

/// A one-connection-at-a-time HTTP server on 127.0.0.1, enough for this example.
class tiny_server {
 public:
  tiny_server() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      return;
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~tiny_server() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  tiny_server(const tiny_server&) = delete;
  tiny_server& operator=(const tiny_server&) = delete;

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] int requests(std::string_view path) const {
    if (path == "/flaky") return flaky_;
    if (path == "/slow") return slow_;
    return missing_;
  }

 private:
  void run() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      timeval tv{0, 50'000};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      serve(c);
      ::close(c);
    }
  }

  void serve(int c) {
    std::string req;
    char buf[1024];
    while (req.find("\r\n\r\n") == std::string::npos && !stop_) {
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n == 0) return;
      if (n > 0) req.append(buf, static_cast<std::size_t>(n));
    }
    std::string reply;
    if (req.rfind("GET /flaky ", 0) == 0) {
      if (++flaky_ == 1) {
        reply = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: " + http_date_in(1s) +
                "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      } else {
        reply = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
      }
    } else if (req.rfind("GET /slow ", 0) == 0) {
      ++slow_;
      while (!stop_) {  // never answer; wait for the client to hang up
        const ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n == 0) return;
      }
      return;
    } else {
      ++missing_;
      reply = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    }
    (void)::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
  }

  /// An IMF-fixdate `ahead` after the current second ends (gmtime_r: the
  /// server side may use the C library; armor's parser does not).
  static std::string http_date_in(std::chrono::seconds ahead) {
    const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()) + 1 + ahead.count();
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char out[40];
    std::strftime(out, sizeof out, "%a, %d %b %Y %H:%M:%S GMT", &tm);  // the "C" locale: English names
    return out;
  }

  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> flaky_{0};
  std::atomic<int> slow_{0};
  std::atomic<int> missing_{0};
};

/// A port that refuses connections: bound, never listened on.
struct refusing_port {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int port = 0;
  refusing_port() {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof a;
    if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port = ntohs(a.sin_port);
    }
  }
  ~refusing_port() {
    if (fd >= 0) ::close(fd);
  }
  refusing_port(const refusing_port&) = delete;
  refusing_port& operator=(const refusing_port&) = delete;
};

long long ms(std::chrono::steady_clock::duration d) {
  return static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

}  // namespace

int main() {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL* easy = curl_easy_init();
  tiny_server srv;
  refusing_port closed;
  if (easy == nullptr || srv.port() == 0 || closed.port == 0) {
    std::printf("setup failed\n");
    return 1;
  }
  const std::string base = "http://127.0.0.1:" + std::to_string(srv.port());

  // A response by its status and headers; no response by its CURLcode.
  const auto judge = armor::classify{[](const curl_response& r) {
    if (r.code != CURLE_OK) return curl_verdict(r.code);
    return http::status_classifier{}(r);
  }};
  const auto p = armor::pipeline{judge, armor::deadline{5s},
                                 armor::backoff{{.max_attempts = 3, .initial = 20ms, .max_retry_after = 3s}}};
  int attempts = 0;
  auto get = [&](std::string url) {
    return [&attempts, easy, url](const armor::context& ctx) {
      ++attempts;
      return curl_get(easy, url, ctx.has_deadline() ? ctx.remaining() : std::chrono::nanoseconds{10s});
    };
  };
  bool ok = true;

  // 1. Retry-After as an HTTP-date.
  {
    attempts = 0;
    const auto start = std::chrono::steady_clock::now();
    auto r = p.try_execute(get(base + "/flaky"));
    const auto took = std::chrono::steady_clock::now() - start;
    const bool good = r && r->code == CURLE_OK && r->headers.status() == 200 && r->body == "hello" && attempts == 2 &&
                      took >= 900ms && took < 3500ms;
    std::printf("GET /flaky: %d \"%s\" after %d attempts and %lld ms (503 with Retry-After as a date)\n",
                r ? r->headers.status() : 0, r ? r->body.c_str() : "", attempts, ms(took));
    ok = ok && good;
  }
  // 2. A client error is not retried.
  {
    attempts = 0;
    auto r = p.try_execute(get(base + "/missing"));
    std::printf("GET /missing: %d after %d attempt(s)\n", r ? r->headers.status() : 0, attempts);
    ok = ok && r && r->headers.status() == 404 && attempts == 1;
  }
  // 3. Timeouts from ctx.remaining().
  {
    attempts = 0;
    const auto slow = armor::pipeline{judge, armor::deadline{1s}, armor::backoff{{.max_attempts = 10, .initial = 10ms}},
                                      armor::deadline{300ms}};
    const auto start = std::chrono::steady_clock::now();
    auto r = slow.try_execute(get(base + "/slow"));
    const auto took = std::chrono::steady_clock::now() - start;
    const CURLcode last = r ? r->code : CURLE_OK;
    std::printf("GET /slow: %s after %d attempts and %lld ms (300 ms each, 1 s in all)\n",
                r ? curl_easy_strerror(last) : r.code().message().c_str(), attempts, ms(took));
    ok = ok && attempts >= 2 && took < 2500ms && (!r || last == CURLE_OPERATION_TIMEDOUT);
  }
  // 4. Connection refused: a retryable transport error.
  {
    attempts = 0;
    auto r = p.try_execute(get("http://127.0.0.1:" + std::to_string(closed.port) + "/"));
    std::printf("GET on a closed port: %s after %d attempts\n", r ? curl_easy_strerror(r->code) : "?", attempts);
    ok = ok && r && r->code == CURLE_COULDNT_CONNECT && attempts == 3;
  }

  curl_easy_cleanup(easy);
  curl_global_cleanup();
  std::printf("%s\n", ok ? "ok" : "UNEXPECTED RESULT");
  return ok ? 0 : 1;
}
