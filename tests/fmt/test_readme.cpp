// The README's example, compiled and run with stand-ins for the HTTP client
// and the handlers it calls, so the first code a user reads is known to
// work as written: `log` is a real fmt-style logger (it does not compile
// for an argument fmt cannot format). The example is copied verbatim into
// readme_example() below; tests/shape/check_examples.py (CTest
// armor_header_examples_check) fails when README.md's first C++ block and
// this copy differ. Change both together.
#include <armor/armor.hpp>
#include <armor/fmt.hpp>

#include "armor_catch.hpp"

#include <fmt/format.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

// What the stand-in upstream does on each call.
// (The other two branches, an open breaker and a refusal, are compiled here
// and run in tests/test_backoff.cpp ("[refusal]" cases): reaching
// them through this pipeline takes real backoff sleeps.)
enum class upstream { ok, not_implemented };
upstream behaviour = upstream::ok;
int http_calls = 0;

struct response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

response http_get(const std::string& url, std::chrono::nanoseconds timeout) {
  ++http_calls;
  if (timeout > std::chrono::seconds{2}) throw std::logic_error("the call was given more time than the deadline");
  switch (behaviour) {
    case upstream::ok: return {200, {{"Content-Type", "application/json"}}, "{\"repo\": \"" + url + "\"}"};
    case upstream::not_implemented: return {501, {}, "not here"};
  }
  return {};
}

std::string used;
void use(const response& r) { used = r.body; }
int cached = 0;
void serve_cached() { ++cached; }
std::vector<std::string> logged;
template <class... Args>
void log(fmt::format_string<Args...> format, Args&&... args) {
  logged.push_back(fmt::format(format, std::forward<Args>(args)...));
}

void readme_example() {
  using namespace std::chrono_literals;

  // One pipeline per upstream, shared by every thread of the service.
  auto github = armor::pipeline{
      armor::classify{armor::http::status_classifier{}},     // 5xx: failure; 429: throttled, not a failure
      armor::deadline{2s},                                   // the whole call, retries included
      armor::backoff{{.max_attempts = 4, .initial = 100ms}}, // transient failures, with jitter
      armor::circuit_breaker{{.failure_threshold = 5, .open_for = 30s}},
      armor::token_bucket{{.rate = {5000, 1h}, .burst = 100}},
  };

  // http_get is your HTTP client: any response with `int status` and `headers`
  // works (cpp-httplib's as is). It gets the time left, for its own timeout.
  auto r = github.try_execute([&](const armor::context& ctx) {
      return http_get("https://api.github.com/repos/x/y", ctx.remaining());
  });
  if (r.ok()) use(*r);                                             // a response judged a success
  else if (r) log("upstream answered {}", r->status);              // judged a failure: retries spent or pointless
  else if (r.code() == armor::errc::circuit_open) serve_cached();  // fail fast, no call made
  else log("gave up: {}", r.error());                              // e.g. "deadline_exceeded"
}

void reset(upstream b) {
  behaviour = b;
  http_calls = 0;
  used.clear();
  cached = 0;
  logged.clear();
}

}  // namespace

TEST_CASE("the README example uses a response judged a success") {
  reset(upstream::ok);
  readme_example();
  CHECK(used.find("api.github.com") != std::string::npos);
  CHECK(http_calls == 1);
  CHECK(cached == 0);
  CHECK(logged.empty());
}

TEST_CASE("the README example tells a response judged a failure from a success") {
  // A 501 is a failure that retrying cannot fix: one call, and the
  // response comes back as a value that is not ok().
  reset(upstream::not_implemented);
  readme_example();
  CHECK(used.empty());
  CHECK(http_calls == 1);
  CHECK(cached == 0);
  REQUIRE(logged.size() == 1);
  CHECK(logged[0] == "upstream answered 501");
}
