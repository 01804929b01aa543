// The README's example, compiled and run with stand-ins for the HTTP client
// and the handlers it calls, so the first code a user reads is known to
// work. The example is copied verbatim below; tests/shape/check_examples.py
// (CTest armor_header_examples_check) fails when README.md's first C++ block
// and this copy differ. Change both together.
#include <armor/armor.hpp>

#include "armor_catch.hpp"

#include <stdexcept>
#include <string>
#include <string_view>

namespace {

int http_calls = 0;
std::string http_get(const std::string& url, std::chrono::nanoseconds timeout) {
  ++http_calls;
  if (timeout > std::chrono::seconds{2}) throw std::logic_error("the call was given more time than the deadline");
  return "{\"repo\": \"" + url + "\"}";
}

std::string used;
void use(const std::string& body) { used = body; }
int cached = 0;
void serve_cached() { ++cached; }
int logged = 0;
template <class... Args>
void log(std::string_view, const Args&...) {
  ++logged;
}

}  // namespace

TEST_CASE("the README example builds the pipeline it shows and runs a call through it") {
  using namespace std::chrono_literals;

  // One pipeline per upstream, shared by every thread of the service.
  auto github = armor::pipeline{
      armor::deadline{2s},                                   // the whole call, retries included
      armor::backoff{{.max_attempts = 4, .initial = 100ms}}, // transient failures, with jitter
      armor::circuit_breaker{{.failure_threshold = 5, .open_for = 30s}},
      armor::token_bucket{{.rate = {5000, 1h}, .burst = 100}},
  };

  // The call gets the time it has left, for its own I/O timeout.
  auto r = github.try_execute([&](const armor::context& ctx) {
      return http_get("https://api.github.com/repos/x/y", ctx.remaining());
  });
  if (r) use(*r);
  else if (r.code() == armor::errc::circuit_open) serve_cached();   // fail fast
  else log("gave up: {}, retry after {}", r.code().message(), r.retry_after());

  CHECK(used.find("api.github.com") != std::string::npos);
  CHECK(http_calls == 1);
  CHECK(cached == 0);
  CHECK(logged == 0);
}
