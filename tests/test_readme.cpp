// The README's example, compiled and run with stand-ins for the HTTP client,
// so the first code a user reads is known to work.
#include <armor/armor.hpp>

#include "armor_catch.hpp"

#include <string>

using namespace std::chrono_literals;

namespace {

int http_calls = 0;
std::string http_get(const std::string& url, std::chrono::nanoseconds timeout) {
  ++http_calls;
  if (timeout > 2s) throw std::logic_error("the call was given more time than the deadline");
  return "{\"repo\": \"" + url + "\"}";
}

}  // namespace

TEST_CASE("the README example builds the pipeline it shows and runs a call through it") {
  // One pipeline per upstream, shared by every thread of the service.
  auto github = armor::pipeline{
      armor::deadline{2s},                                    // the whole call, retries included
      armor::backoff{{.max_attempts = 4, .initial = 100ms}},  // transient failures, with jitter
      armor::circuit_breaker{{.failure_threshold = 5, .open_for = 30s}},
      armor::token_bucket{{.rate = {5000, 1h}, .burst = 100}},
  };

  // The call gets the time it has left, for its own I/O timeout.
  auto r = github.try_execute([&](const armor::context& ctx) {
    return http_get("https://api.github.com/repos/x/y", ctx.remaining());
  });
  REQUIRE(r.has_value());
  CHECK(r->find("api.github.com") != std::string::npos);
  CHECK(http_calls == 1);
  CHECK_FALSE(r.code());
}
