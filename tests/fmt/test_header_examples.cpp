// The examples at the top of armor/fmt.hpp and armor/prometheus.hpp,
// compiled and run.
//
// Each example is copied verbatim under a `// header example: <armor/...>`
// line; tests/shape/check_examples.py (CTest armor_header_examples_check)
// fails when a header's example and its copy here differ. Change both
// together.
#include <armor/circuit_breaker.hpp>
#include <armor/clock.hpp>
#include <armor/fmt.hpp>
#include <armor/keyed.hpp>
#include <armor/prometheus.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <fmt/format.h>

#include <chrono>
#include <string>

using namespace std::chrono_literals;

namespace header_examples {

// ---------------------------------------------------------------------------
// header example: <armor/fmt.hpp>
namespace fmt_ex {
template <class Bucket>
void example(const armor::circuit_breaker<>& breaker, Bucket& bucket) {
  fmt::print("{}\n", breaker.stats());       // state=closed opened=1 failures=3 ...
  fmt::print("{}\n", bucket.try_acquire());  // granted, or "rate_limited (retry after 100ms)"
  fmt::print("{:>9}|\n", armor::breaker_state::open);   // "     open|"
}
}  // namespace fmt_ex

// ---------------------------------------------------------------------------
// header example: <armor/prometheus.hpp>
namespace prometheus_ex {
std::string example(const armor::circuit_breaker<>& s3_breaker, const armor::quota_tracker<>& gemini_quota,
                    const armor::keyed<armor::token_bucket<>>& per_ip_limits) {
  armor::prometheus::registry metrics;
  metrics.add(s3_breaker, {{"upstream", "s3-products"}})
         .add(gemini_quota, {{"api", "gemini"}})
         .add(per_ip_limits, {{"route", "/search"}}, "client");   // keyed: one series per key

  fmt::memory_buffer body;      // in the /metrics handler (text/plain; version=0.0.4)
  metrics.write(body);
  return fmt::to_string(body);
}
}  // namespace prometheus_ex

}  // namespace header_examples

TEST_CASE("header example: fmt.hpp, and what its comments say it prints") {
  armor::circuit_breaker<> breaker{{.failure_threshold = 5, .open_for = 30s}};
  armor::manual_clock clock;
  armor::token_bucket<armor::manual_clock> bucket{{.rate = {10, 1s}, .burst = 1}, clock};
  header_examples::fmt_ex::example(breaker, bucket);  // takes the bucket's one token

  CHECK(fmt::format("{}", breaker.stats()).rfind("state=closed opened=0 failures=0 ", 0) == 0);
  CHECK(fmt::format("{}", bucket.try_acquire()) == "rate_limited (retry after 100ms)");
  CHECK(fmt::format("{:>9}|", armor::breaker_state::open) == "     open|");
}

TEST_CASE("header example: prometheus.hpp") {
  armor::circuit_breaker<> s3_breaker{{.failure_threshold = 5, .open_for = 30s}};
  armor::quota_tracker<> gemini_quota{{.windows = {armor::quota_window::per_day(50)}}};
  armor::keyed<armor::token_bucket<>> per_ip_limits{{.rate = {100, 1s}, .burst = 20}};
  (void)per_ip_limits.get("192.0.2.1")->try_acquire();

  const std::string body = header_examples::prometheus_ex::example(s3_breaker, gemini_quota, per_ip_limits);
  CHECK(body.find("armor_circuit_breaker_state{upstream=\"s3-products\"} 0") != std::string::npos);
  CHECK(body.find("api=\"gemini\"") != std::string::npos);
  CHECK(body.find("client=\"192.0.2.1\"") != std::string::npos);
}
