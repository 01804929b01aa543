// armor/http/answer.hpp: every armor refusal maps to the status and
// Retry-After a server answers with.
#include <armor/armor.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
namespace http = armor::http;

namespace {

std::vector<std::pair<std::string, std::string>> headers_of(const http::answer& a) {
  std::vector<std::pair<std::string, std::string>> out;
  http::answer_headers(a, [&](std::string_view name, std::string_view value) { out.emplace_back(name, value); });
  return out;
}

}  // namespace

TEST_CASE("every armor code maps to a status; waits are kept for 429 and 503 only") {
  struct row {
    armor::errc code;
    int status;
    bool keeps_wait;
  };
  const row rows[] = {
      {armor::errc::rate_limited, 429, true},          {armor::errc::quota_exhausted, 429, true},
      {armor::errc::request_too_large, 413, false},    {armor::errc::circuit_open, 503, true},
      {armor::errc::bulkhead_full, 503, true},         {armor::errc::storage_unavailable, 503, true},
      {armor::errc::concurrency_limited, 503, true},
      {armor::errc::client_throttled, 503, true},
      {armor::errc::overloaded, 503, true},            {armor::errc::draining, 503, true}, {armor::errc::no_host, 503, true},
      {armor::errc::cancelled, 503, true},             {armor::errc::deadline_exceeded, 504, false},
      {armor::errc::wait_exceeds_deadline, 504, false}, {armor::errc::operation_failed, 500, false},
      {armor::errc::retries_exhausted, 500, false},    {armor::errc::invalid_argument, 500, false},
  };
  for (const row& r : rows) {
    INFO(armor::to_string(r.code));
    const http::answer a = http::answer_for(armor::make_error_code(r.code), 2500ms);
    CHECK(a.status == r.status);
    CHECK(a.retry_after.has_value() == r.keeps_wait);
    if (r.keeps_wait) CHECK(*a.retry_after == 2500ms);
    CHECK_FALSE(a.reason().empty());
  }
}

TEST_CASE("a failure of the operation itself is 500, or what a proxy asks for") {
  const armor::failure f{armor::errc::retries_exhausted, 1s, nullptr};
  CHECK(http::answer_for(f).status == 500);
  CHECK(http::answer_for(f, 502).status == 502);
  CHECK(http::answer_for(f, 502).reason() == "Bad Gateway");
  // A code that is not armor's: the operation's own failure too.
  CHECK(http::answer_for(std::make_error_code(std::errc::connection_refused), std::nullopt).status == 500);
}

TEST_CASE("Retry-After is whole seconds rounded up, at least 1, and absent when no wait is known") {
  CHECK(headers_of(http::answer_for(armor::errc::rate_limited, 2500ms)) ==
        std::vector<std::pair<std::string, std::string>>{{"Retry-After", "3"}});
  CHECK(headers_of(http::answer_for(armor::errc::rate_limited, 0ns)) ==
        std::vector<std::pair<std::string, std::string>>{{"Retry-After", "1"}});
  CHECK(headers_of(http::answer_for(armor::errc::rate_limited, -5s)) ==
        std::vector<std::pair<std::string, std::string>>{{"Retry-After", "1"}});
  CHECK(headers_of(http::answer_for(armor::errc::rate_limited, std::nullopt)).empty());
  // nanoseconds::max(): no wait is known to help, so none is promised.
  CHECK(headers_of(http::answer_for(armor::errc::circuit_open, std::chrono::nanoseconds::max())).empty());
  CHECK(headers_of(http::answer_for(armor::errc::deadline_exceeded, 3s)).empty());
  CHECK(http::answer{499, std::nullopt}.reason().empty());  // a status armor has no phrase for
}

TEST_CASE("a pipeline's refusals answer as a server should") {
  armor::manual_clock clock;
  armor::circuit_breaker breaker{{.failure_threshold = 1, .open_for = 30s}, clock};
  auto p = armor::pipeline{clock, std::ref(breaker)};
  (void)p.try_execute([]() -> int { throw std::runtime_error("down"); });
  const auto r = p.try_execute([] { return 1; });
  REQUIRE_FALSE(r);
  const http::answer a = http::answer_for(r.error());
  CHECK(a.status == 503);
  CHECK(a.reason() == "Service Unavailable");
  CHECK(headers_of(a) == std::vector<std::pair<std::string, std::string>>{{"Retry-After", "30"}});
}
