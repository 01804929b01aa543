// A cpp-httplib client wrapped in an armor pipeline, using armor/http.hpp.
//
// The example starts a cpp-httplib server on 127.0.0.1 (an ephemeral port,
// in a thread) and runs three scenarios against it:
//
//   1. /flaky answers 503 + Retry-After: 1, then 429 with Discord-style
//      rate-limit headers (nothing remaining, reset after 0.2 s), then 200.
//      status_classifier makes both retryable, and the retry layer waits
//      what the server said: about 1.2 s in all, not its own schedule.
//   2. /slow never answers in time. Each attempt's read timeout is the
//      pipeline's ctx.remaining() (per-attempt deadline 300 ms); the timeout
//      is a transport error, retried, until the overall deadline.
//   3. /quota has a quota the client is not told in advance: 10 requests per
//      3-second window (IETF RateLimit / RateLimit-Policy headers, draft 08
//      style).
//      20 requests at the client's own ceiling of 40/s run into 429s; the
//      same 20 paced by armor::http::pacer get none (at most one is
//      tolerated: the very first request knows nothing yet).
//
// httplib::Response has an `int status` and a `headers` multimap, which is
// all armor::http needs: no adapter. Exits 0 when every scenario did what it
// claims, 1 otherwise.
#include <armor/armor.hpp>
#include <armor/http.hpp>

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

using namespace std::chrono_literals;
namespace http = armor::http;

namespace {

/// cpp-httplib's transport errors as verdicts: failures to connect, read or
/// write are worth retrying; the rest (TLS, redirects, bad input) are not.
armor::verdict classify_httplib_error(httplib::Error e) {
  switch (e) {
    case httplib::Error::Success: return armor::verdict::success();
    case httplib::Error::Connection: return http::classify_transport_error(std::errc::connection_refused);
    case httplib::Error::ConnectionTimeout:
    case httplib::Error::Read: return http::classify_transport_error(std::errc::timed_out);
    case httplib::Error::Write: return http::classify_transport_error(std::errc::broken_pipe);
    case httplib::Error::Canceled: return {armor::outcome::cancelled, false, std::nullopt, armor::errc::cancelled};
    default: return armor::verdict::permanent_failure();
  }
}

/// The classifier of every pipeline below: a response by its status and
/// headers, no response by its transport error.
const auto judge = armor::classify{[](const httplib::Result& r) {
  if (!r) return classify_httplib_error(r.error());
  return http::status_classifier{}(*r);
}};

/// The test server. /quota counts requests per whole second of steady time.
class server {
 public:
  server() {
    svr_.Get("/flaky", [this](const httplib::Request&, httplib::Response& res) {
      const int n = ++flaky_;
      if (n == 1) {
        res.status = 503;
        res.set_header("Retry-After", "1");
      } else if (n == 2) {
        res.status = 429;
        res.set_header("X-RateLimit-Limit", "5");
        res.set_header("X-RateLimit-Remaining", "0");
        res.set_header("X-RateLimit-Reset-After", "0.2");
      } else {
        res.set_content("hello", "text/plain");
      }
    });
    svr_.Get("/slow", [this](const httplib::Request&, httplib::Response& res) {
      ++slow_;
      for (int i = 0; i < 40 && !stopping_; ++i) std::this_thread::sleep_for(25ms);  // 1 s, unless stopping
      res.set_content("too late", "text/plain");
    });
    // Two clients, each with its own quota: /quota/a and /quota/b.
    svr_.Get("/quota/a", [this](const httplib::Request&, httplib::Response& res) { quota(quotas_[0], res); });
    svr_.Get("/quota/b", [this](const httplib::Request&, httplib::Response& res) { quota(quotas_[1], res); });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
  }
  ~server() {
    stopping_ = true;
    svr_.stop();
    thread_.join();
  }
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] int flaky_requests() const { return flaky_; }
  [[nodiscard]] int slow_requests() const { return slow_; }
  int take_429s() { return too_many_.exchange(0); }

 private:
  // 10 requests per 3-second window, each window starting at the first
  // request after the previous one ended (not at clock seconds): 20 quick
  // requests then meet exactly 10 refusals however slow the machine is.
  static constexpr long quota_per_window = 10;
  static constexpr std::chrono::seconds quota_window{3};

  struct quota_state {
    std::chrono::steady_clock::time_point start{};
    bool open = false;
    long used = 0;
  };

  void quota(quota_state& q, httplib::Response& res) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    if (!q.open || now - q.start >= quota_window) {
      q.open = true;
      q.start = now;
      q.used = 0;
    }
    // Seconds to the reset, rounded up, so a client never thinks it is sooner.
    const long reset = static_cast<long>(std::chrono::ceil<std::chrono::seconds>(q.start + quota_window - now).count());
    if (q.used < quota_per_window) {
      ++q.used;
      res.set_content("ok", "text/plain");
    } else {
      ++too_many_;
      res.status = 429;
      res.set_header("Retry-After", std::to_string(reset));
    }
    res.set_header("RateLimit", "\"default\";r=" + std::to_string(quota_per_window - q.used) + ";t=" +
                                    std::to_string(reset));
    res.set_header("RateLimit-Policy", "\"default\";q=" + std::to_string(quota_per_window) +
                                           ";w=" + std::to_string(quota_window.count()));
  }

  httplib::Server svr_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> flaky_{0};
  std::atomic<int> slow_{0};
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  quota_state quotas_[2];
  std::atomic<int> too_many_{0};
};

long long ms(std::chrono::steady_clock::duration d) {
  return static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

}  // namespace

int main() {
  server srv;
  if (srv.port() <= 0) {
    std::printf("could not bind 127.0.0.1\n");
    return 1;
  }
  httplib::Client client("127.0.0.1", srv.port());
  // One GET with the time the pipeline has left as its timeouts.
  auto get = [&](const char* path) {
    return [&client, path](const armor::context& ctx) {
      const auto left = ctx.has_deadline() ? ctx.remaining() : std::chrono::nanoseconds{10s};
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(left);
      client.set_connection_timeout(us);
      client.set_read_timeout(us);
      return client.Get(path);
    };
  };
  bool ok = true;

  // 1. Retry-After and rate-limit resets drive the retries.
  {
    const auto p = armor::pipeline{judge, armor::deadline{10s},
                                   armor::backoff{{.max_attempts = 4, .initial = 10ms, .max_retry_after = 5s}}};
    const auto start = std::chrono::steady_clock::now();
    auto r = p.try_execute(get("/flaky"));
    const auto took = std::chrono::steady_clock::now() - start;
    const bool good = r && *r && (*r)->status == 200 && srv.flaky_requests() == 3 && took >= 1200ms && took < 4s;
    std::printf("GET /flaky: %s after %d requests and %lld ms (503 Retry-After: 1, then 429 reset after 0.2 s)\n",
                r && *r ? (*r)->body.c_str() : "failed", srv.flaky_requests(), ms(took));
    ok = ok && good;
  }

  // 2. Timeouts from ctx.remaining(): a transport error, retried until the deadline.
  {
    const auto p = armor::pipeline{judge, armor::deadline{1s},
                                   armor::backoff{{.max_attempts = 10, .initial = 10ms}}, armor::deadline{300ms}};
    const auto start = std::chrono::steady_clock::now();
    auto r = p.try_execute(get("/slow"));
    const auto took = std::chrono::steady_clock::now() - start;
    const bool failed = !r || !*r;
    std::printf("GET /slow: %s after %d attempts and %lld ms (300 ms per attempt, 1 s in all)\n",
                failed ? "gave up" : "answered?!", srv.slow_requests(), ms(took));
    ok = ok && failed && srv.slow_requests() >= 2 && took < 2500ms;
  }

  // 3. A hidden quota: the same 20 requests, unpaced and paced.
  {
    armor::token_bucket fast{{.rate = {40, 1s}, .burst = 1, .max_wait = 5s}};
    const auto unpaced = armor::pipeline{judge, std::ref(fast)};
    int unpaced_ok = 0;
    for (int i = 0; i < 20; ++i) {
      auto r = unpaced.try_execute(get("/quota/a"));  // no retry: count what the server refuses
      if (r && *r && (*r)->status == 200) ++unpaced_ok;
    }
    const int unpaced_429 = srv.take_429s();

    armor::token_bucket bucket{{.rate = {40, 1s}, .burst = 1, .max_wait = 5s}};
    http::pacer pacer{bucket, {.ceiling = {40, 1s}, .margin = 100ms}};
    const auto paced = armor::pipeline{judge, std::ref(bucket)};
    int paced_ok = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) {
      auto r = paced.try_execute([&](const armor::context& ctx) {
        auto res = get("/quota/b")(ctx);
        if (res) pacer.observe(*res);
        return res;
      });
      if (r && *r && (*r)->status == 200) ++paced_ok;
    }
    const auto took = std::chrono::steady_clock::now() - start;
    const int paced_429 = srv.take_429s();
    std::printf("GET /quota x20 (10 per 3 s, not announced): unpaced %d ok, %d x 429; paced %d ok, %d x 429 in %lld ms\n",
                unpaced_ok, unpaced_429, paced_ok, paced_429, ms(took));
    ok = ok && unpaced_429 == 10 && paced_429 <= 1 && paced_ok >= 19;
  }

  std::printf("%s\n", ok ? "ok" : "UNEXPECTED RESULT");
  return ok ? 0 : 1;
}
