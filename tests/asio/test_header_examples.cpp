// The examples at the top of armor/asio.hpp, armor/hedge.hpp and
// armor/cache.hpp, compiled and run with stand-ins for the operations they call.
//
// Each example is copied verbatim under a `// header example: <armor/...>`
// line; tests/shape/check_examples.py (CTest armor_header_examples_check)
// fails when a header's example and its copy here differ. Change both
// together.
#include <armor/asio.hpp>
#include <armor/backoff.hpp>
#include <armor/cache.hpp>
#include <armor/deadline.hpp>
#include <armor/hedge.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <chrono>
#include <string>

using namespace std::chrono_literals;

namespace header_examples {

// ---------------------------------------------------------------------------
// header example: <armor/asio.hpp>
namespace asio_ex {
asio::awaitable<std::string> fetch(const armor::context& ctx);  // your operation

asio::awaitable<std::string> fetch_with_retries() {
    const auto p = armor::pipeline{armor::deadline{2s}, armor::backoff{{.max_attempts = 3}}};
    co_return co_await p.async_execute([&](const armor::context& ctx) { return fetch(ctx); });
}

int calls = 0;
asio::awaitable<std::string> fetch(const armor::context& ctx) {
  if (++calls == 1) throw std::runtime_error("a transient failure");
  co_return ctx.remaining() <= 2s ? "fetched" : "given too long";
}
}  // namespace asio_ex

// ---------------------------------------------------------------------------
// header example: <armor/hedge.hpp>
namespace hedge_ex {
asio::awaitable<std::string> http_get(std::string url, const armor::context&) { co_return "body of " + url; }

asio::awaitable<std::string> hedged_get(std::string url) {
    using namespace std::chrono_literals;
    const auto p = armor::pipeline{armor::deadline{2s}, armor::hedge{{.max_attempts = 2, .delay = 50ms}}};
    // GET is safe to repeat: say so, or the pipeline refuses to compile.
    co_return co_await p.async_execute(armor::idempotent{[&](const armor::context& ctx) {
        return http_get(url, ctx);                  // asio::awaitable<std::string>
    }});
}
}  // namespace hedge_ex

// ---------------------------------------------------------------------------
// header example: <armor/cache.hpp>
namespace cache_ex {
int searches = 0;
std::string github_search(const std::string& q) {
  ++searches;
  return "results for " + q;
}
asio::awaitable<std::string> async_github_search(std::string q) {
  ++searches;
  co_return "async results for " + q;
}

// Fresh for 5 min, stale for 30 s more while one refresh runs, 1 h on failure.
armor::cache<std::string, std::string> results({.max_age = std::chrono::minutes{5},
                                                .stale_while_revalidate = std::chrono::seconds{30},
                                                .stale_if_error = std::chrono::hours{1}});
std::string search(const std::string& q) {
    auto answer = results.execute(q, [&] { return github_search(q); });
    return *answer.value;  // answer.origin: fresh, stale or live
}
asio::awaitable<std::string> async_search(std::string q) {  // Asio: a fresh hit does not suspend
    auto fetch = [q] { return async_github_search(q); };  // named: see docs/cache.md#asio
    auto answer = co_await results.async_execute(q, std::move(fetch));
    co_return *answer.value;
}
}  // namespace cache_ex

}  // namespace header_examples

TEST_CASE("header examples: asio.hpp (a retry on Asio timers) and hedge.hpp") {
  namespace hx = header_examples;
  std::string fetched;
  std::string hedged;
  armor_test::run_coroutine([&]() -> asio::awaitable<void> {
    fetched = co_await hx::asio_ex::fetch_with_retries();
    hedged = co_await hx::hedge_ex::hedged_get("https://example.com/");
  });
  CHECK(fetched == "fetched");
  CHECK(hx::asio_ex::calls == 2);
  CHECK(hedged == "body of https://example.com/");
}

TEST_CASE("header example: cache.hpp (sync and Asio)") {
  namespace cx = header_examples::cache_ex;
  CHECK(cx::search("armor") == "results for armor");
  CHECK(cx::search("armor") == "results for armor");  // fresh: no second search
  std::string first;
  std::string again;
  std::string cached;
  armor_test::run_coroutine([&]() -> asio::awaitable<void> {
    first = co_await cx::async_search("asio");
    again = co_await cx::async_search("asio");  // fresh
    cached = co_await cx::async_search("armor");  // stored by the sync call
  });
  CHECK(first == "async results for asio");
  CHECK(again == first);
  CHECK(cached == "results for armor");
  CHECK(cx::searches == 2);
  CHECK(cx::results.stats().hits == 3);
}
