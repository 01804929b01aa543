// armor::http::parse_cache_control: the directives a client cache uses,
// read tolerantly from well-formed and malformed values, and what they make
// of an armor::cache entry (no-store never stored, per-entry freshness).
#include <armor/http/cache_control.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

using namespace std::chrono_literals;

namespace {
using armor::http::parse_cache_control;
}  // namespace

TEST_CASE("cache-control: the RFC 5861 directives and their defaults", "[http][cache]") {
  const auto cc = parse_cache_control("public, max-age=600, stale-while-revalidate=30, stale-if-error=1200");
  CHECK(cc.max_age == 600s);
  CHECK(cc.stale_while_revalidate == 30s);
  CHECK(cc.stale_if_error == 1200s);
  CHECK(cc.storable());
  const auto f = cc.freshness();
  CHECK(f.max_age == 600s);
  CHECK(f.stale_while_revalidate == 30s);
  CHECK(f.stale_if_error == 1200s);

  const auto partial = parse_cache_control("max-age=5").freshness({.max_age = 60s, .stale_while_revalidate = 1s,
                                                                   .stale_if_error = 2s});
  CHECK(partial.max_age == 5s);
  CHECK(partial.stale_while_revalidate == 1s);
  CHECK(partial.stale_if_error == 2s);
  const auto none = parse_cache_control("").freshness({.max_age = 60s});
  CHECK(none.max_age == 60s);
}

TEST_CASE("cache-control: no-store, no-cache and must-revalidate", "[http][cache]") {
  CHECK(!parse_cache_control("no-store").storable());
  CHECK(!parse_cache_control("private, NO-STORE, max-age=60").storable());
  CHECK(!parse_cache_control("no-cache").storable());
  CHECK(!parse_cache_control("no-cache=\"Set-Cookie, X-Token\", max-age=60").storable());
  const auto mr = parse_cache_control("max-age=60, must-revalidate, stale-if-error=600");
  CHECK(mr.storable());
  CHECK(mr.freshness().max_age == 60s);
  CHECK(mr.freshness().stale_if_error == 0s);
  CHECK(parse_cache_control("proxy-revalidate").must_revalidate);
  const auto nc = parse_cache_control("no-cache, stale-while-revalidate=30").freshness();
  CHECK(nc.max_age == 0s);
  CHECK(nc.stale_while_revalidate == 0s);
}

TEST_CASE("cache-control: malformed input is read tolerantly", "[http][cache]") {
  CHECK(parse_cache_control("MAX-AGE=60").max_age == 60s);
  CHECK(parse_cache_control("  max-age = 60  ").max_age == 60s);
  CHECK(parse_cache_control("max-age=\"60\"").max_age == 60s);
  CHECK(parse_cache_control(",, ,max-age=7,,").max_age == 7s);
  // First of duplicates.
  CHECK(parse_cache_control("max-age=60, max-age=10").max_age == 60s);
  // A bad max-age: the response is stale.
  CHECK(parse_cache_control("max-age=soon").max_age == 0s);
  CHECK(parse_cache_control("max-age=-5").max_age == 0s);
  CHECK(parse_cache_control("max-age=").max_age == 0s);
  CHECK(parse_cache_control("max-age").max_age == 0s);
  CHECK(parse_cache_control("max-age=1.5").max_age == 0s);
  // Huge values are capped at 2^31 seconds.
  CHECK(parse_cache_control("max-age=99999999999999999999999").max_age == std::chrono::seconds{std::int64_t{1} << 31});
  // A bad stale-* value is ignored.
  CHECK(!parse_cache_control("stale-if-error=x").stale_if_error);
  CHECK(!parse_cache_control("stale-while-revalidate").stale_while_revalidate);
  // Unknown directives, junk and unterminated quotes do not break the rest.
  const auto junk = parse_cache_control("foo=\"a,b\", ;;==, max-age=30, x-y, =5, stale-if-error=9");
  CHECK(junk.max_age == 30s);
  CHECK(junk.stale_if_error == 9s);
  const auto unterminated = parse_cache_control("no-store, foo=\"bar, max-age=60");
  CHECK(unterminated.no_store);
  CHECK(!unterminated.max_age);  // swallowed by the open quote
  const std::string binary("max-age=1\0, no-store", 20);
  CHECK(parse_cache_control(binary).max_age == 0s);
  CHECK(parse_cache_control(binary).no_store);
  static_assert(parse_cache_control("max-age=3").max_age == std::chrono::seconds{3});
}

TEST_CASE("cache-control: an armor::cache stores by it, and never a no-store response", "[http][cache]") {
  armor::manual_clock clock;
  armor::cache<std::string, std::string, armor::manual_clock> c({.max_age = 60s, .shards = 1}, clock);
  int calls = 0;
  std::string header;
  auto fetch = [&] {
    ++calls;
    return armor::http::cache_item_from(parse_cache_control(header), std::make_shared<const std::string>("body"));
  };
  header = "no-store";
  (void)c.execute("/private", fetch);
  (void)c.execute("/private", fetch);
  CHECK(calls == 2);
  CHECK(c.lookup("/private").state == armor::cache_state::miss);

  header = "max-age=600, stale-if-error=1200";
  (void)c.execute("/public", fetch);
  clock.advance(700s);
  CHECK(c.lookup("/public").state == armor::cache_state::stale_if_error);
  auto down = []() -> armor::result<std::string> { return armor::failure{armor::errc::operation_failed, {}, nullptr}; };
  auto a = c.execute("/public", down);
  CHECK(a.origin == armor::cache_origin::stale);
  CHECK(*a == "body");
}
