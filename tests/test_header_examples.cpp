// The examples at the top of armor's core headers, compiled and run with
// stand-ins for the HTTP clients, upstreams and handlers they call.
//
// Each example is copied verbatim under a `// header example: <armor/...>`
// line; tests/shape/check_examples.py (CTest armor_header_examples_check)
// fails when a header's example and its copy here differ. Change both
// together. The examples that need Asio, fmt, SQLite or Redis are in
// tests/<that>/test_header_examples.cpp.
#include <armor/any_token_bucket.hpp>
#include <armor/armor.hpp>
#include <armor/resource_sampler.hpp>
#include <armor/storage/any.hpp>
#include <armor/storage/backend_url.hpp>
#include <armor/storage/quota_storage.hpp>
#include <armor/version.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace header_examples {

// A response as cpp-httplib's: a status and a range of headers.
struct http_response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
};

// ---------------------------------------------------------------------------
// header example: <armor/armor.hpp>
namespace armor_ex {
std::string fetch(std::chrono::nanoseconds timeout) { return timeout <= 2s ? "fetched" : "given too long"; }

std::string example() {
  using namespace std::chrono_literals;

  auto p = armor::pipeline{armor::deadline{2s}};
  auto v = p.execute([](const armor::context& ctx) { return fetch(ctx.remaining()); });
  return v;
}
}  // namespace armor_ex

// ---------------------------------------------------------------------------
// header example: <armor/adaptive_limit.hpp>
namespace adaptive_limit_ex {
struct request {
  std::string path;
};
struct response {
  int status = 200;
  std::string body;
};
response forward(const request& req, std::chrono::nanoseconds) { return {200, req.path}; }
response service_unavailable(std::optional<std::chrono::nanoseconds>) { return {503, {}}; }

response handle(const request& req) {
  using namespace std::chrono_literals;
  // Start at 20 calls in flight; let the latency move it between 4 and 200.
  armor::adaptive_limit<> upstream{{.initial_limit = 20, .min_limit = 4, .max_limit = 200}};
  auto p = armor::pipeline{armor::deadline{2s}, std::ref(upstream)};
  auto r = p.try_execute([&](const armor::context& ctx) { return forward(req, ctx.remaining()); },
                         {.priority = armor::priority::sheddable});  // refused first
  if (!r && r.code() == armor::errc::concurrency_limited) return service_unavailable(r.retry_after());
  return r ? *r : response{500, {}};
}
}  // namespace adaptive_limit_ex

// ---------------------------------------------------------------------------
// header example: <armor/adaptive_throttle.hpp>
namespace adaptive_throttle_ex {
int upstream_calls = 0;
int degraded = 0;
std::error_code call_upstream(std::chrono::nanoseconds) {
  ++upstream_calls;
  return std::make_error_code(std::errc::connection_refused);  // the upstream refuses everything
}
void serve_degraded() { ++degraded; }

void example() {
  using namespace std::chrono_literals;
  armor::adaptive_throttle<> throttle{{.k = 2.0, .window = 2min}};
  auto p = armor::pipeline{armor::deadline{2s}, std::ref(throttle)};
  auto r = p.try_execute([&](const armor::context& ctx) { return call_upstream(ctx.remaining()); });
  if (!r && r.code() == armor::errc::client_throttled) serve_degraded();   // never sent
  // The same throttle, many calls later: most are refused locally.
  for (int i = 0; i < 200; ++i) {
    r = p.try_execute([&](const armor::context& ctx) { return call_upstream(ctx.remaining()); });
    if (!r && r.code() == armor::errc::client_throttled) serve_degraded();
  }
}
}  // namespace adaptive_throttle_ex

// ---------------------------------------------------------------------------
// header example: <armor/backoff.hpp>
namespace backoff_ex {
int calls = 0;
std::string http_get(const std::string& url, std::chrono::nanoseconds timeout) {
  ++calls;
  if (timeout > 2s) throw std::logic_error("more time than the deadline");
  return "body of " + url;
}

std::string example() {
  const std::string url = "https://example.com/";
  using namespace std::chrono_literals;
  auto p = armor::pipeline{
      armor::deadline{2s},                       // retries and delays included
      armor::backoff{{.max_attempts = 4, .initial = 100ms, .max_delay = 5s}},
  };
  auto body = p.execute([&](const armor::context& ctx) { return http_get(url, ctx.remaining()); });
  return body;
}
}  // namespace backoff_ex

// ---------------------------------------------------------------------------
// header example: <armor/http/cache_control.hpp>
namespace cache_control_ex {
const std::string body = "<html>";
armor::cache_item<std::string> example() {
    auto cc = armor::http::parse_cache_control("max-age=300, stale-if-error=86400");
    auto item = armor::http::cache_item_from(cc, std::make_shared<const std::string>(body));
    // item.freshness: 300 s fresh, a day on errors; item.store: true
  return item;
}
}  // namespace cache_control_ex

// ---------------------------------------------------------------------------
// header example: <armor/coalesce.hpp>
namespace coalesce_ex {
int fetches = 0;
std::string http_get(const std::string& url) {
  ++fetches;
  return "body of " + url;
}

// One fetch per user id in flight, however many threads ask at once.
armor::coalescer<std::string, std::string> profiles;
std::string profile(const std::string& id) {
    return profiles.execute(id, [&] { return http_get("/users/" + id); });
}
}  // namespace coalesce_ex

// ---------------------------------------------------------------------------
// header example: <armor/bulkhead.hpp>
namespace bulkhead_ex {
struct request {
  std::string path;
};
struct response {
  int status = 200;
  std::string body;
};
response forward(const request& req, std::chrono::nanoseconds) { return {200, req.path}; }
response service_unavailable(std::chrono::nanoseconds retry_after) {
  return {503, std::to_string(std::chrono::duration_cast<std::chrono::seconds>(retry_after).count())};
}

response handle(const request& req) {
  using namespace std::chrono_literals;
  // At most 100 requests to the upstream at once; the 101st gets
  // bulkhead_full at once (answer 503) instead of queueing without bound.
  armor::bulkhead upstream_slots{{.max_concurrent = 100, .retry_after_hint = 1s}};
  auto p = armor::pipeline{armor::deadline{2s}, std::ref(upstream_slots)};
  auto r = p.try_execute([&](const armor::context& ctx) { return forward(req, ctx.remaining()); });
  if (!r && r.code() == armor::errc::bulkhead_full) return service_unavailable(*r.retry_after());  // 1 s
  return r ? *r : response{500, {}};
}
}  // namespace bulkhead_ex

// ---------------------------------------------------------------------------
// header example: <armor/circuit_breaker.hpp>
namespace circuit_breaker_ex {
int upstream_calls = 0;
int replies_503 = 0;
armor::verdict call_upstream() {
  ++upstream_calls;
  return armor::verdict::success();
}
void reply_503(std::chrono::nanoseconds) { ++replies_503; }

int example() {
  using namespace std::chrono_literals;
  armor::circuit_breaker upstream{{.failure_threshold = 5, .open_for = 30s}};
  if (auto d = upstream.try_acquire()) {
      upstream.record(std::move(d).permit(), call_upstream());   // the call's armor::verdict
  } else {
      reply_503(d.retry_after());            // errc::circuit_open, and when it half-opens
  }
  // Or as a pipeline layer:
  auto p = armor::pipeline{armor::deadline{2s}, std::ref(upstream)};
  return p.execute([] { return 42; });
}
}  // namespace circuit_breaker_ex

// ---------------------------------------------------------------------------
// header example: <armor/clock.hpp>
namespace clock_ex {
std::chrono::nanoseconds example() {
  armor::manual_clock clock;            // starts at its epoch
  auto p = armor::pipeline{clock, armor::deadline{2s}};
  clock.advance(500ms);                 // every copy of clock sees it
  return p.execute([](const armor::context& ctx) { return ctx.now().time_since_epoch(); });
}
}  // namespace clock_ex

// ---------------------------------------------------------------------------
// header example: <armor/context.hpp>
namespace context_ex {
std::chrono::nanoseconds given{};
std::string http_get(const std::string& url, std::chrono::nanoseconds timeout) {
  given = timeout;
  return url;
}

void example() {
  auto p = armor::pipeline{armor::deadline{2s}};
  const std::string url = "https://example.com/";
  const std::string_view upstream = "example.com";
  p.execute([&](const armor::context& ctx) {
      return http_get(url, ctx.remaining());   // never outlive the deadline
  }, {.key = upstream, .cost = 1});
}
}  // namespace context_ex

// ---------------------------------------------------------------------------
// header example: <armor/deadline.hpp>
namespace deadline_ex {
std::chrono::nanoseconds example() {
  auto p = armor::pipeline{
      armor::deadline{2s},                       // the whole call: 2 s
      armor::backoff{{.max_attempts = 5}},
      armor::deadline{500ms},                    // each attempt: 500 ms
  };
  return p.execute([](const armor::context& ctx) { return ctx.remaining(); });
}
}  // namespace deadline_ex

// ---------------------------------------------------------------------------
// header example: <armor/histogram.hpp>
namespace histogram_ex {
armor::latency_recorder_stats example() {
  armor::latency_recorder call_latency{};                  // 1 ms .. 10 s buckets
  armor::latency_recorder attempt_latency{{.scope = armor::latency_scope::attempt}};
  auto p = armor::pipeline{
      std::ref(call_latency),                              // whole call: retries and waits
      armor::backoff{{.max_attempts = 3}},
      std::ref(attempt_latency),                           // each attempt
  };
  p.execute([] { return 42; });
  auto s = call_latency.stats();                           // s.duration.p95, .count, ...
  return s;
}
}  // namespace histogram_ex

// ---------------------------------------------------------------------------
// header example: <armor/decision.hpp>
namespace decision_ex {
armor::verdict next_verdict = armor::verdict::success();
int logged = 0;
armor::verdict call_upstream() { return next_verdict; }
void log(const std::string& why, std::chrono::nanoseconds retry_after) {
  if (!why.empty() && retry_after > 0ns) ++logged;
}

void example(armor::circuit_breaker<>& breaker) {
  if (auto d = breaker.try_acquire()) {
      auto permit = std::move(d).permit();   // when the policy hands one out
      breaker.record(std::move(permit), call_upstream());
  } else {
      log(d.code().message(), d.retry_after());
  }
}
}  // namespace decision_ex

// ---------------------------------------------------------------------------
// header example: <armor/error.hpp>
namespace error_ex {
int responses_429 = 0;
int responses_504 = 0;
void respond_429() { ++responses_429; }
void respond_504() { ++responses_504; }

void example() {
  std::error_code ec = armor::errc::deadline_exceeded;
  if (ec == armor::errc::rate_limited) respond_429();
  if (ec == std::errc::timed_out) respond_504();   // true for deadline_exceeded
}
}  // namespace error_ex

// ---------------------------------------------------------------------------
// header example: <armor/fallback.hpp>
namespace fallback_ex {
struct stale_cache {
  std::string get(const std::string& key) const { return "cached " + key; }
};
std::string fetch(const std::string& key) { throw std::runtime_error("the upstream of " + key + " is down"); }

std::string example(armor::circuit_breaker<>& breaker) {
  const stale_cache cache;
  const std::string key = "products";
  using namespace std::chrono_literals;
  auto p = armor::pipeline{
      armor::fallback{[&](const armor::failure&, const armor::context&) {
          return cache.get(key);                      // a stale answer beats none
      }},
      armor::deadline{2s},
      std::ref(breaker),
  };
  std::string body = p.execute([&] { return fetch(key); });   // live, or the cached copy
  return body;
}
}  // namespace fallback_ex

// ---------------------------------------------------------------------------
// header example: <armor/http/answer.hpp>
namespace answer_ex {
struct server_response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  void set_header(const std::string& name, const std::string& value) { headers.emplace_back(name, value); }
};
int handle(int request) { return request * 2; }

server_response example(int request) {
  armor::token_bucket bucket{{.rate = {1, 1h}, .burst = 1}};
  auto limits = armor::pipeline{std::ref(bucket)};
  (void)limits.try_execute([] { return 0; });  // spends the one token
  server_response response;
  auto r = limits.try_execute([&] { return handle(request); });
  if (!r) {
      const armor::http::answer a = armor::http::answer_for(r.error());
      response.status = a.status;                       // 429, 503, 504...
      armor::http::answer_headers(a, [&](std::string_view name, std::string_view value) {
          response.set_header(std::string(name), std::string(value));  // Retry-After
      });
  }
  return response;
}
}  // namespace answer_ex

TEST_CASE("header example: armor/http/answer.hpp") {
  const auto res = answer_ex::example(21);
  CHECK(res.status == 429);
  REQUIRE(res.headers.size() == 1);
  CHECK(res.headers[0].first == "Retry-After");
  CHECK(res.headers[0].second == "3600");
}

// ---------------------------------------------------------------------------
// header example: <armor/http/classifier.hpp>
namespace classifier_ex {
int example() {
  armor::http::status_classifier judge;
  judge.set(404, armor::http::status_rule::failure);    // this API's 404 means "broken"
  auto p = armor::pipeline{armor::classify{judge}, armor::backoff{{.max_attempts = 4}}};
  return p.execute([] { return http_response{200, {}}; }).status;
}
}  // namespace classifier_ex

// ---------------------------------------------------------------------------
// header example: <armor/http/date.hpp>
namespace date_ex {
std::chrono::nanoseconds slept{};
void sleep_for(std::chrono::nanoseconds d) { slept = d; }

void example(std::string_view value) {
  const auto wait = armor::http::parse_retry_after(value, std::chrono::system_clock::now());
  if (wait) sleep_for(*wait);              // "120" or "Sun, 06 Nov 1994 08:49:37 GMT"
}
}  // namespace date_ex

// ---------------------------------------------------------------------------
// header example: <armor/http/headers.hpp>
namespace headers_ex {
std::pair<int, std::string> example() {
  armor::http::header_map h;               // fed by libcurl's CURLOPT_HEADERFUNCTION
  h.add_line("HTTP/1.1 429 Too Many Requests\r\n");
  h.add_line("Retry-After: 3\r\n");
  int code = armor::http::status(h);                     // 429
  auto retry = armor::http::header(h, "retry-after");    // std::optional: "3"
  return {code, std::string(retry.value_or("none"))};
}
}  // namespace headers_ex

// ---------------------------------------------------------------------------
// header example: <armor/http/pacer.hpp>
namespace pacer_ex {
struct fake_client {
  // 100 calls left, for the next 60 seconds.
  http_response get(const std::string&) const {
    return {200, {{"X-RateLimit-Limit", "5000"}, {"X-RateLimit-Remaining", "100"}, {"X-RateLimit-Reset", "60"}}};
  }
};

armor::rate example() {
  const fake_client client;
  const std::string url = "https://api.example.com/";
  armor::token_bucket bucket{{.rate = {50, 1s}, .burst = 5, .max_wait = 30s}};
  armor::http::pacer pace{bucket, {.ceiling = {50, 1s}, .max_burst = 5}};
  auto res = client.get(url);
  pace.observe(res);                       // reads the rate-limit headers, sets the bucket's rate
  return bucket.rate();
}
}  // namespace pacer_ex

// ---------------------------------------------------------------------------
// header example: <armor/http/rate_limit.hpp>
namespace rate_limit_ex {
struct server_response {
  std::vector<std::pair<std::string, std::string>> headers;
  void set_header(std::string_view name, std::string_view value) { headers.emplace_back(name, value); }
};

std::pair<armor::http::rate_limit_info, server_response> example() {
  const http_response response{429, {{"RateLimit-Limit", "100"}, {"RateLimit-Remaining", "0"}, {"RateLimit-Reset", "30"}}};
  const auto now = std::chrono::system_clock::now();
  armor::token_bucket bucket{{.rate = {1, 1h}, .burst = 1}};
  (void)bucket.try_acquire();  // spends the one token: the example's request is refused
  server_response res;
  // Client: how many calls are left, and when the window resets.
  const armor::http::rate_limit_info info = armor::http::read_rate_limit(response, now);

  // Server: answer with RateLimit-*, X-RateLimit-* and, on a refusal, Retry-After.
  if (auto d = bucket.try_acquire(); !d) {
      armor::http::rate_limit_headers(d, [&](std::string_view name, std::string_view value) {
          res.set_header(name, value);
      });
  }
  return {info, res};
}
}  // namespace rate_limit_ex

// ---------------------------------------------------------------------------
// header example: <armor/http/status.hpp>
namespace status_ex {
std::pair<armor::verdict, armor::verdict> example() {
  armor::verdict v = armor::http::classify_status(503);   // retryable failure, "HTTP 503 Service Unavailable"
  armor::verdict w = armor::http::classify_status(429);   // throttled: retried, not a failure
  armor::verdict t = armor::http::classify_transport_error(std::errc::connection_reset);  // retryable
  CHECK(w.kind == armor::outcome::throttled);
  return {v, t};
}
}  // namespace status_ex

// ---------------------------------------------------------------------------
// header example: <armor/keyed.hpp>
namespace keyed_ex {
struct response {
  int status = 200;
};
template <class Decision>
response too_many_requests(const Decision& d) {
  return {d.code() == armor::errc::rate_limited ? 429 : 500};
}

response handle(const std::string& client_ip) {
  auto handler = [] { return response{200}; };
  using namespace std::chrono_literals;
  // 100 requests a second per client IP, bursts of 20; at most 1e6 IPs.
  armor::keyed<armor::token_bucket<>> per_ip{{.rate = {100, 1s}, .burst = 20},
                                             {.max_keys = 1'000'000}};
  // Directly, in a request handler:
  if (auto d = per_ip.get(client_ip)->try_acquire(); !d) return too_many_requests(d);
  // Or as a pipeline layer, keyed by call_options::key:
  auto p = armor::pipeline{std::ref(per_ip)};
  auto r = p.try_execute(handler, {.key = client_ip});
  return r ? *r : response{503};
}
}  // namespace keyed_ex

// ---------------------------------------------------------------------------
// header example: <armor/listener.hpp>
namespace listener_ex {
armor::breaker_state example() {
  auto log_breaker = [](const armor::circuit_breaker_event& e) noexcept {
      std::fprintf(stderr, "breaker %s -> %s\n", armor::to_string(e.from).data(),
                   armor::to_string(e.to).data());
  };
  armor::circuit_breaker breaker{{.failure_threshold = 5}, armor::steady_clock{}, log_breaker};
  for (int i = 0; i < 5; ++i) {
    if (auto d = breaker.try_acquire()) breaker.record(std::move(d).permit(), armor::verdict::failure());
  }
  return breaker.state();
}
}  // namespace listener_ex

// ---------------------------------------------------------------------------
// header example: <armor/pipeline.hpp>
namespace pipeline_ex {
std::string http_get(const std::string& url, std::chrono::nanoseconds timeout) {
  if (timeout > 2s) throw std::logic_error("more time than the deadline");
  return "body of " + url;
}

std::string example(armor::circuit_breaker<>& shared_breaker) {
  const std::string url = "https://example.com/";
  auto p = armor::pipeline{
      armor::deadline{2s},                     // outermost first
      armor::backoff{{.max_attempts = 4}},
      std::ref(shared_breaker),                // shared with other pipelines
  };
  std::string body = p.execute([&](const armor::context& ctx) {
      return http_get(url, ctx.remaining());
  });
  return body;
}
}  // namespace pipeline_ex

// ---------------------------------------------------------------------------
// header example: <armor/policy.hpp>
namespace policy_ex {
struct count_calls {
    using permit_type = armor::no_permit;
    std::atomic<long> calls{0};
    armor::admission<> admit(armor::context&) noexcept {
        calls.fetch_add(1, std::memory_order_relaxed);
        return armor::admission<>::admit();
    }
    void settle(armor::context&, armor::no_permit, const armor::verdict&) noexcept {}
};
static_assert(armor::policy<count_calls>);
}  // namespace policy_ex

// ---------------------------------------------------------------------------
// header example: <armor/quota_tracker.hpp>
namespace quota_tracker_ex {
void example() {
  using namespace std::chrono_literals;
  // Gemini's free tier: 50 requests a day (resetting at midnight in
  // UTC-8), and no more than 10 a minute.
  armor::quota_tracker gemini{{
      .windows = {armor::quota_window::per_day(50), armor::quota_window::per_minute(10)},
      .utc_offset = -8h,
  }};
  if (auto d = gemini.try_consume(); !d) {
      std::printf("%s, resets in %llds\n", d.code().message().c_str(),
                  static_cast<long long>(d.retry_after() / 1s));
  }
}
}  // namespace quota_tracker_ex

// ---------------------------------------------------------------------------
// header example: <armor/rate.hpp>
namespace rate_ex {
armor::rate example() {
  armor::rate r = armor::rate::parse("5000/h");   // == armor::rate{5000, 1h}
  return r;
}
}  // namespace rate_ex

// ---------------------------------------------------------------------------
// header example: <armor/result.hpp>
namespace result_ex {
struct http_request {
  std::string path;
};
struct response {
  int status = 200;
};
response handle(const http_request&) { return {200}; }
response too_many_requests(std::optional<std::chrono::nanoseconds> retry_after) {
  return {retry_after ? 429 : 500};
}

template <class Limits>
response serve(const Limits& limits, const http_request& request) {
  auto r = limits.try_execute([&] { return handle(request); });
  if (!r && r.code() == armor::errc::rate_limited)
      return too_many_requests(r.retry_after());   // 429 + Retry-After
  return *r;
}
}  // namespace result_ex

// ---------------------------------------------------------------------------
// header example: <armor/stats.hpp>
namespace stats_ex {
struct my_policy_stats {
    std::int64_t in_use = 0;
    std::uint64_t rejected = 0;
    static constexpr auto fields() noexcept {
        return std::tuple{
            armor::gauge("in_use", &my_policy_stats::in_use,
                         "armor_my_policy_in_use", "Calls inside now."),
            armor::counter("rejected", &my_policy_stats::rejected,
                           "armor_my_policy_rejected_total", "Calls refused."),
        };
    }
};
static_assert(armor::described_stats<my_policy_stats>);
static_assert(std::tuple_size_v<decltype(my_policy_stats::fields())> == 2);
}  // namespace stats_ex

// ---------------------------------------------------------------------------
// header example: <armor/storage/memory.hpp>
namespace memory_ex {
bool example() {
  armor::quota_tracker quota{{.windows = {armor::quota_window::per_day(50)}}};
  // is armor::quota_tracker<armor::system_clock, armor::memory_quota_storage>
  static_assert(std::is_same_v<decltype(quota), armor::quota_tracker<armor::system_clock, armor::memory_quota_storage>>);
  return static_cast<bool>(quota.try_consume());
}
}  // namespace memory_ex

// ---------------------------------------------------------------------------
// header example: <armor/storage/quota_storage.hpp>
namespace quota_storage_ex {
struct my_storage {
    void bind(std::span<const armor::quota_window_layout> windows);   // once; may throw
    armor::quota_consumption try_consume(const armor::quota_stamp& at, std::int64_t n);  // all or none
    armor::quota_consumption charge(const armor::quota_stamp& at, std::int64_t n);       // no limit check
    void release(const armor::quota_stamp& at, std::int64_t n) noexcept;                // give back
    std::int64_t read(std::size_t w, std::int64_t i, std::span<std::int64_t> out) const;
};
static_assert(armor::quota_storage<my_storage>);
}  // namespace quota_storage_ex

// ---------------------------------------------------------------------------
// header example: <armor/token_bucket.hpp>
namespace token_bucket_ex {
int rejected = 0;
void reject(std::error_code code, std::chrono::nanoseconds retry_after) {
  if (code == armor::errc::rate_limited && retry_after > 0ns) ++rejected;
}

int example() {
  using namespace std::chrono_literals;
  armor::token_bucket bucket{{.rate = {100, 1s}, .burst = 20}};
  if (armor::token_bucket_decision<> d = bucket.try_acquire(); !d) {
      reject(d.code(), d.retry_after());  // rate_limited, and exactly when a token is there
  }
  // Or as a pipeline layer that waits up to 2 s for its token:
  auto p = armor::pipeline{armor::token_bucket{{.rate = {50, 1s}, .burst = 10, .max_wait = 2s}}};
  return p.execute([] { return 7; });
}
}  // namespace token_bucket_ex

// ---------------------------------------------------------------------------
// header example: <armor/verdict.hpp>
namespace verdict_ex {
struct response {
  int status = 200;
};

int example(int status) {
  auto p = armor::pipeline{armor::classify{[](const response& r) {
      if (r.status >= 500) return armor::verdict::failure();
      return armor::verdict::success();       // a 404 is the caller's problem
  }}, armor::backoff{{.max_attempts = 3}}};
  return p.execute([&] { return response{status}; }).status;
}
}  // namespace verdict_ex

// ---------------------------------------------------------------------------
// header example: <armor/version.hpp>
namespace version_ex {
static_assert(ARMOR_VERSION >= 100); // 0.1.0 or newer
}  // namespace version_ex

// ---------------------------------------------------------------------------
// header example: <armor/fixed_window.hpp>
namespace fixed_window_ex {
int rejected = 0;
void reject(std::error_code code, std::chrono::nanoseconds retry_after) {
  if (code == armor::errc::rate_limited && retry_after > 0ns) ++rejected;
}

int example() {
  using namespace std::chrono_literals;
  armor::fixed_window per_minute{{.limit = 60, .window = 1min}};
  if (armor::window_decision d = per_minute.try_acquire(); !d) {
      reject(d.code(), d.retry_after());  // rate_limited, until the minute turns
  }
  // Or as a pipeline layer:
  auto p = armor::pipeline{armor::fixed_window{{.limit = 2000, .window = 5min}}};
  return p.execute([] { return 8; });
}
}  // namespace fixed_window_ex

// ---------------------------------------------------------------------------
// header example: <armor/sliding_window.hpp>
namespace sliding_window_ex {
int rejected = 0;
void reject(std::error_code code, std::chrono::nanoseconds retry_after) {
  if (code == armor::errc::rate_limited && retry_after > 0ns) ++rejected;
}

bool example() {
  using namespace std::chrono_literals;
  // At most 100 requests in any 10 s, counted in 1 s segments:
  armor::sliding_window recent{{.limit = 100, .window = 10s, .segments = 10}};
  if (armor::window_decision d = recent.try_acquire(); !d) {
      reject(d.code(), d.retry_after());  // when enough old segments roll off
  }
  // The two-counter approximation: one word per window, no segments.
  armor::sliding_window approx{{.limit = 100, .window = 10s,
                                .algorithm = armor::sliding_window_algorithm::approximate}};
  return static_cast<bool>(approx.try_acquire());
}
}  // namespace sliding_window_ex

// ---------------------------------------------------------------------------
// header example: <armor/resource_sampler.hpp>
namespace resource_sampler_ex {
int reported = 0;
bool in_range = true;
void report(std::string_view, double fraction) {
  ++reported;
  in_range = in_range && fraction >= 0.0 && fraction <= 1.0;
}

void example() {
  armor::resource_sampler<> sampler;   // reads /sys/fs/cgroup and /proc
  // every second, from a timer or thread of yours:
  armor::resource_readings r = sampler.sample();
  if (r.memory) report("memory", *r.memory);   // fractions in [0, 1]
  if (r.cpu) report("cpu", *r.cpu);            // since the previous sample
  if (r.file_descriptors) report("fds", *r.file_descriptors);
}
}  // namespace resource_sampler_ex
// header example: <armor/load_shedder.hpp>
namespace load_shedder_ex {
struct request {};
int handled = 0;
int replies_503 = 0;
int optional_skipped = 0;
int handle(const request&) { return ++handled; }
void reply_503(std::chrono::nanoseconds) { ++replies_503; }
void skip_optional_work() { ++optional_skipped; }

void example() {
  const request request{};
  using namespace std::chrono_literals;
  armor::load_shedder<> shedder{{.resources = {{.name = "memory"}, {.name = "cpu"}}}};
  shedder.update(0, 0.97);  // from your sampler's timer: memory at 97 % of its limit
  auto p = armor::pipeline{std::ref(shedder), armor::deadline{2s}};
  auto r = p.try_execute([&] { return handle(request); }, {.priority = armor::priority::normal});
  if (!r && r.code() == armor::errc::overloaded) reply_503(*r.retry_after());
  if (shedder.level() >= armor::load_level::degraded) skip_optional_work();
}
}  // namespace load_shedder_ex

// ---------------------------------------------------------------------------
// header example: <armor/storage/backend_url.hpp>
namespace backend_url_ex {
bool example() {
  const armor::backend_url u = armor::parse_backend_url("redis://127.0.0.1:6380?prefix=app");
  const bool as_written = u.scheme == armor::backend_scheme::redis && u.hosts[0].port == 6380 &&
                          u.param("prefix") == "app";
  return as_written;
}
}  // namespace backend_url_ex
// header example: <armor/storage/any.hpp>
namespace any_storage_ex {
bool example() {
  // QUOTA_URL=memory: on a laptop; redis+cluster://... also needs .backends (below)
  const char* url = std::getenv("QUOTA_URL");
  armor::quota_tracker<armor::system_clock, armor::any_quota_storage> quota{
      {.windows = {armor::quota_window::per_day(10'000)}}, {},
      armor::make_quota_storage(url != nullptr ? url : "memory:", {.tracker = "openai"})};
  return static_cast<bool>(quota.try_consume());
}
}  // namespace any_storage_ex
// header example: <armor/any_token_bucket.hpp>
namespace any_bucket_ex {
bool example() {
  using namespace std::chrono_literals;
  // RATE_URL=memory: on a laptop; redis://... also needs .backends (below)
  const char* url = std::getenv("RATE_URL");
  armor::any_token_bucket<> upstream = armor::make_token_bucket(
      url != nullptr ? url : "memory:", {.rate = {100, 1s}, .burst = 20}, {.name = "upstream"});
  auto p = armor::pipeline{std::ref(upstream)};  // call_options::key: one bucket per key
  auto r = p.try_execute([] { return 1; }, {.key = "10.0.0.7"});
  return r.has_value();
}
}  // namespace any_bucket_ex
// header example: <armor/drain.hpp>
namespace drain_ex {
struct request {};
int handled = 0;
int handle(const request&) { return ++handled; }

bool example() {
  const request request{};
  using namespace std::chrono_literals;
  armor::drain<> drain;
  auto p = armor::pipeline{std::ref(drain), armor::deadline{2s}};
  auto r = p.try_execute([&] { return handle(request); });  // errc::draining once draining
  // On SIGTERM (Kubernetes' preStop grace, 15 s here):
  drain.start();
  const bool drained = drain.wait_for(15s);  // false: calls still in flight at the deadline
  return r.ok() && drained && !p.try_execute([&] { return handle(request); }) ;
}
}  // namespace drain_ex
// header example: <armor/shadow.hpp>
namespace shadow_ex {
struct response {
  int status = 200;
};

std::uint64_t example(const std::string& client_ip) {
  auto handler = [] { return response{200}; };
  using namespace std::chrono_literals;
  // A new per-IP limit, tried for a week before it answers 429:
  armor::keyed<armor::token_bucket<>> per_ip{{.rate = {20, 1s}, .burst = 40}};
  armor::shadow trial{std::ref(per_ip)};
  auto p = armor::pipeline{std::ref(trial)};
  auto r = p.try_execute(handler, {.key = client_ip});   // never refused by per_ip
  std::uint64_t over = trial.stats().would_refuse();     // what it would have answered 429
  for (int i = 0; i < 60; ++i) r = p.try_execute(handler, {.key = client_ip});
  return r.ok() ? trial.stats().would_refuse() - over : 0;
}
}  // namespace shadow_ex
// header example: <armor/host_set.hpp>
namespace host_set_ex {
std::vector<std::string> called;
bool call_upstream(std::string_view host) {
  called.emplace_back(host);
  return host != "10.0.0.2:443";
}

armor::host_set_stats example() {
  using namespace std::chrono_literals;
  armor::host_set<> hosts{{.outlier = {.consecutive_failures = 3}}};
  hosts.update({{"10.0.0.1:443"}, {"10.0.0.2:443"}, {"10.0.0.3:443", 2}});
  if (auto d = hosts.pick()) {
    auto permit = std::move(d).permit();
    const bool ok = call_upstream(permit.id());
    hosts.record(std::move(permit), ok ? armor::host_outcome::success : armor::host_outcome::failure);
  }
  return hosts.stats();
}
}  // namespace host_set_ex
// header example: <armor/health_check.hpp>
namespace health_check_ex {
bool ping(std::string_view host) { return host == "10.0.0.1:443"; }

armor::health_check_stats example() {
  using namespace std::chrono_literals;
  armor::host_set<> hosts;
  hosts.update({{"10.0.0.1:443"}, {"10.0.0.2:443"}});
  armor::health_checker checker{hosts, {.interval = 5s, .healthy_threshold = 2}};
  checker.run_due(checker.now(), [](std::string_view id) { return ping(id); });
  return checker.stats();
}
}  // namespace health_check_ex
// header example: <armor/readiness.hpp>
namespace readiness_ex {
int status = 0;
std::string body;
void respond(int code, std::string text) {
  status = code;
  body = std::move(text);
}

void example() {
  armor::host_set<> upstream;
  armor::load_shedder<> shedder{{.resources = {{.name = "memory"}}}};
  armor::readiness health;
  health.add("payments", upstream).add("shedder", shedder);
  const armor::readiness_report r = health.ready();
  respond(r.http_status(), r.json());  // 503 and {"status":"not_ready",...}: no healthy host
}
}  // namespace readiness_ex

// ---------------------------------------------------------------------------
// header example: <armor/fault_injector.hpp>
namespace fault_injector_ex {
armor::circuit_breaker<> breaker;
int calls = 0;
bool drill_running() { return false; }  // a flag the operators flip
int call_upstream(std::chrono::nanoseconds) { return ++calls; }

bool example() {
  using namespace std::chrono_literals;
  armor::fault_injector<> chaos{{.enabled = false, .error_rate = 0.05, .latency_rate = 0.1, .latency = 300ms}};
  auto p = armor::pipeline{armor::backoff{{.max_attempts = 3}}, std::ref(breaker), std::ref(chaos)};
  chaos.set_enabled(drill_running());  // from any thread, at any time
  auto r = p.try_execute([&](const armor::context& ctx) { return call_upstream(ctx.remaining()); });
  return r.ok() && chaos.stats().errors + chaos.stats().latencies == 0;
}
}  // namespace fault_injector_ex

}  // namespace header_examples

namespace hx = header_examples;

TEST_CASE("header examples: armor.hpp, pipeline.hpp, deadline.hpp, context.hpp, clock.hpp") {
  CHECK(hx::armor_ex::example() == "fetched");

  armor::circuit_breaker<> shared_breaker{{.failure_threshold = 5, .open_for = 30s}};
  CHECK(hx::pipeline_ex::example(shared_breaker) == "body of https://example.com/");

  const auto left = hx::deadline_ex::example();
  CHECK(left > 0ns);
  CHECK(left <= 500ms);  // the inner deadline: the earliest wins

  const auto latency = hx::histogram_ex::example();
  CHECK(latency.duration.count == 1);
  CHECK(latency.is_call);

  hx::context_ex::example();
  CHECK(hx::context_ex::given > 0ns);
  CHECK(hx::context_ex::given <= 2s);

  CHECK(hx::clock_ex::example() == 500ms);  // the call ran at the time the clock was moved to
}

TEST_CASE("header examples: backoff.hpp, fallback.hpp, verdict.hpp, result.hpp, error.hpp") {
  CHECK(hx::backoff_ex::example() == "body of https://example.com/");
  CHECK(hx::backoff_ex::calls == 1);

  armor::circuit_breaker<> breaker{{.failure_threshold = 5, .open_for = 30s}};
  CHECK(hx::fallback_ex::example(breaker) == "cached products");

  CHECK(hx::verdict_ex::example(404) == 404);  // a success: no retry, the value comes back

  const auto limits = armor::pipeline{armor::token_bucket{{.rate = {1, 1h}, .burst = 1}}};
  CHECK(hx::result_ex::serve(limits, {"/a"}).status == 200);
  CHECK(hx::result_ex::serve(limits, {"/b"}).status == 429);

  hx::error_ex::example();
  CHECK(hx::error_ex::responses_429 == 0);
  CHECK(hx::error_ex::responses_504 == 1);
}

TEST_CASE("header examples: circuit_breaker.hpp, decision.hpp, listener.hpp") {
  CHECK(hx::circuit_breaker_ex::example() == 42);
  CHECK(hx::circuit_breaker_ex::upstream_calls == 1);
  CHECK(hx::circuit_breaker_ex::replies_503 == 0);

  armor::circuit_breaker<> breaker{{.failure_threshold = 1, .open_for = 30s}};
  hx::decision_ex::example(breaker);  // granted, and it succeeds
  CHECK(hx::decision_ex::logged == 0);
  hx::decision_ex::next_verdict = armor::verdict::failure();
  hx::decision_ex::example(breaker);  // granted, and it fails: the breaker opens
  hx::decision_ex::example(breaker);  // refused, and logged with the time until half-open
  CHECK(hx::decision_ex::logged == 1);

  CHECK(hx::listener_ex::example() == armor::breaker_state::open);
}

TEST_CASE("header examples: adaptive_throttle.hpp") {
  hx::adaptive_throttle_ex::example();
  // 201 calls to an upstream that refuses all: after min_requests (10) the
  // throttle refuses up to 90 % of them locally.
  CHECK(hx::adaptive_throttle_ex::upstream_calls + hx::adaptive_throttle_ex::degraded == 201);
  CHECK(hx::adaptive_throttle_ex::degraded > 100);
  CHECK(hx::adaptive_throttle_ex::upstream_calls >= 10);
}

TEST_CASE("header examples: token_bucket.hpp, keyed.hpp, rate.hpp, bulkhead.hpp, policy.hpp") {
  CHECK(hx::token_bucket_ex::example() == 7);
  CHECK(hx::token_bucket_ex::rejected == 0);

  CHECK(hx::keyed_ex::handle("192.0.2.1").status == 200);

  CHECK(hx::rate_ex::example() == armor::rate{5000, 1h});

  CHECK(hx::bulkhead_ex::handle({"/upstream"}).body == "/upstream");
  CHECK(hx::adaptive_limit_ex::handle({"/upstream"}).body == "/upstream");

  hx::policy_ex::count_calls counter;
  const auto p = armor::pipeline{std::ref(counter)};
  CHECK(p.execute([] { return 1; }) == 1);
  CHECK(counter.calls.load() == 1);
}

TEST_CASE("header examples: shadow.hpp") {
  // 61 calls at once from one IP: the bucket holds 40 (and refills a few
  // meanwhile on a real clock); every call is served.
  const std::uint64_t over = hx::shadow_ex::example("192.0.2.7");
  CHECK(over >= 15);
  CHECK(over <= 21);
}

TEST_CASE("header examples: quota_tracker.hpp, storage/memory.hpp, storage/quota_storage.hpp, stats.hpp") {
  hx::quota_tracker_ex::example();  // granted: nothing printed
  CHECK(hx::memory_ex::example());
}

TEST_CASE("header examples: http/status.hpp, http/date.hpp, http/headers.hpp, http/classifier.hpp") {
  const auto [v, t] = hx::status_ex::example();
  CHECK(v.kind == armor::outcome::failure);
  CHECK(v.retryable);
  CHECK(t.kind == armor::outcome::failure);
  CHECK(t.retryable);

  hx::date_ex::example("120");
  CHECK(hx::date_ex::slept == 120s);

  CHECK(hx::headers_ex::example() == std::pair<int, std::string>{429, "3"});

  CHECK(hx::classifier_ex::example() == 200);
}

TEST_CASE("header examples: http/rate_limit.hpp, http/pacer.hpp") {
  const auto [info, res] = hx::rate_limit_ex::example();
  CHECK(info.remaining == 0);
  CHECK(info.reset_after == std::optional<std::chrono::nanoseconds>{30s});
  bool retry_after = false;
  for (const auto& [name, value] : res.headers) retry_after = retry_after || name == "Retry-After";
  CHECK(retry_after);

  // 100 calls left for 60 s: the bucket is slowed below the ceiling of 50/s.
  CHECK(hx::pacer_ex::example() != armor::rate{50, 1s});
}

TEST_CASE("header examples: fixed_window.hpp, sliding_window.hpp") {
  CHECK(hx::fixed_window_ex::example() == 8);
  CHECK(hx::fixed_window_ex::rejected == 0);
  CHECK(hx::sliding_window_ex::example());
  CHECK(hx::sliding_window_ex::rejected == 0);
}

TEST_CASE("header examples: resource_sampler.hpp") {
  hx::resource_sampler_ex::example();  // on this machine: whatever it can read, each a fraction
  CHECK(hx::resource_sampler_ex::in_range);
}

TEST_CASE("header example: http/cache_control.hpp") {
  const auto item = hx::cache_control_ex::example();
  CHECK(item.store);
  REQUIRE(item.freshness.has_value());
  CHECK(item.freshness->max_age == std::chrono::seconds{300});
  CHECK(item.freshness->stale_if_error == std::chrono::hours{24});
  CHECK(*item.value == "<html>");
}

TEST_CASE("header example: coalesce.hpp") {
  CHECK(hx::coalesce_ex::profile("42") == "body of /users/42");
  CHECK(hx::coalesce_ex::profile("42") == "body of /users/42");  // the first flight ended: a second fetch
  CHECK(hx::coalesce_ex::fetches == 2);
  CHECK(hx::coalesce_ex::profiles.stats().executions == 2);
}

TEST_CASE("header examples: load_shedder.hpp, drain.hpp") {
  header_examples::load_shedder_ex::example();
  CHECK(header_examples::load_shedder_ex::handled == 0);
  CHECK(header_examples::load_shedder_ex::replies_503 == 1);
  CHECK(header_examples::load_shedder_ex::optional_skipped == 1);
  CHECK(header_examples::drain_ex::example());
  CHECK(header_examples::drain_ex::handled == 1);
}

TEST_CASE("header examples: storage/backend_url.hpp") { CHECK(header_examples::backend_url_ex::example()); }

TEST_CASE("header example: storage/any.hpp") { CHECK(header_examples::any_storage_ex::example()); }

TEST_CASE("header example: any_token_bucket.hpp") { CHECK(header_examples::any_bucket_ex::example()); }

TEST_CASE("header example: host_set.hpp") {
  const armor::host_set_stats s = hx::host_set_ex::example();
  CHECK(s.hosts == 3);
  CHECK(s.picks == 1);
  CHECK(s.pending == 0);
  CHECK(hx::host_set_ex::called.size() == 1);
}

TEST_CASE("header example: health_check.hpp") {
  const armor::health_check_stats s = hx::health_check_ex::example();
  CHECK(s.hosts == 2);
  CHECK(s.probes == 2);
  CHECK(s.unhealthy == 1);
  CHECK(s.turned_healthy == 1);
}

TEST_CASE("header example: readiness.hpp") {
  hx::readiness_ex::example();
  CHECK(hx::readiness_ex::status == 503);
  CHECK(hx::readiness_ex::body.rfind(R"({"status":"not_ready","checks":[{"name":"payments","kind":"host_set")", 0) == 0);
}

TEST_CASE("header example: fault_injector.hpp") {
  CHECK(header_examples::fault_injector_ex::example());
  CHECK(header_examples::fault_injector_ex::calls == 1);
}
