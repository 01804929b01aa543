// armor::make_token_bucket with armor::redis_token_bucket_backend on one
// redis-server on loopback: a redis:// URL builds the type memory: builds
// and decides alike (time=caller), keys included; the URL's parameters and
// the options' name reach the bucket; bad ones are refused by name;
// redis+sentinel:// and redis+cluster:// build before any server answers;
// on_failure from the URL decides while Redis is away.
#include <armor/any_token_bucket.hpp>
#include <armor/pipeline.hpp>
#include <armor/redis/token_bucket.hpp>

#include "armor_catch.hpp"
#include "bucket_describe.hpp"
#include "redis/redis_server.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using armor_test::describe;
using namespace std::chrono;

namespace {

const bool have_redis_server_for_any_bucket = armor_test::require_redis_server();

using any_bucket = armor::any_token_bucket<armor::manual_clock>;
using redis_bucket = armor::redis_token_bucket<armor::manual_clock>;

armor::any_token_bucket_options<armor::manual_clock> with_redis(std::string name) {
  return {.name = std::move(name), .backends = {armor::redis_token_bucket_backend<armor::manual_clock>}};
}

std::string server_url() {
  std::string u = "redis://127.0.0.1:";
  u += std::to_string(armor_test::shared_redis().port());
  return u;
}

std::string unique(const char* what) {
  static int n = 0;
  std::string s = what;
  s += '-';
  s += std::to_string(::getpid());
  s += '-';
  s += std::to_string(++n);
  return s;
}

std::string refusal(const std::string& url, const armor::token_bucket_options& o = {.rate = {10, 1s}, .burst = 5}) {
  try {
    (void)armor::make_token_bucket(url, o, with_redis("refused"), armor::manual_clock{});
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST_CASE("redis: a redis:// URL builds the bucket memory: builds, deciding alike, keys included",
          "[any_token_bucket][redis]") {
  struct config {
    armor::rate rate;
    std::int64_t burst;
  };
  const std::vector<config> configs{{{3, 1s}, 5}, {{100, 1s}, 20}, {{7, 1min}, 2}};
  const std::vector<std::string> keys{"", "", "10.0.0.1", "2001:db8::1", std::string(300, 'k')};
  std::mt19937_64 rng{2026};
  for (std::size_t k = 0; k < configs.size(); ++k) {
    INFO("config " << k);
    const armor::manual_clock clock{nanoseconds{1'718'452'800'000'000'000}};
    armor::token_bucket_options o{.rate = configs[k].rate, .burst = configs[k].burst};
    any_bucket mem = armor::make_token_bucket("memory:", o, with_redis("x"), clock);
    any_bucket red = armor::make_token_bucket(server_url() + "?time=caller&prefix=armor-test&command_timeout=1s", o,
                                              with_redis(unique("any-same")), clock);
    REQUIRE(red.target<redis_bucket>() != nullptr);
    const std::int64_t interval = std::max<std::int64_t>(o.rate.per.count() / o.rate.count, 1);
    // Keys and clock moves; then rate and burst changes on the bucket without a key.
    for (int step = 0; step < 500; ++step) {
      INFO("step " << step);
      const bool changes = step >= 350;
      const unsigned op = static_cast<unsigned>(rng() % 20);
      if (op < 11) {
        const std::string& key = changes ? keys[0] : keys[rng() % keys.size()];
        const std::int64_t n = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(o.burst + 2));
        REQUIRE(describe(mem.try_acquire(key, n)) == describe(red.try_acquire(key, n)));
      } else if (op < 18 || !changes) {
        clock.advance(nanoseconds{static_cast<std::int64_t>(rng() % 4) * interval +
                                  static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(interval))});
      } else if (op == 18) {
        o.rate = {std::clamp<std::int64_t>(o.rate.count + static_cast<std::int64_t>(rng() % 3) - 1, 1, 1000), o.rate.per};
        mem.set_rate(o.rate);
        red.set_rate(o.rate);
      } else {
        o.burst = std::max<std::int64_t>(1, o.burst + static_cast<std::int64_t>(rng() % 5) - 2);
        mem.set_burst(o.burst);
        red.set_burst(o.burst);
      }
    }
    CHECK(red.rate() == mem.rate());
    CHECK(red.burst() == mem.burst());
    CHECK(red.target<redis_bucket>()->stats().unanswered == 0);
  }
}

TEST_CASE("redis: in a pipeline, call_options::key picks the Redis key", "[any_token_bucket][redis]") {
  armor::manual_clock clock{nanoseconds{1'718'452'800'000'000'000}};
  any_bucket per_ip = armor::make_token_bucket(server_url() + "?time=caller&prefix=armor-test",
                                               {.rate = {10, 1s}, .burst = 2}, with_redis(unique("any-pipe")), clock);
  auto p = armor::pipeline{clock, std::ref(per_ip)};
  CHECK(p.try_execute([] { return 1; }, {.key = "a"}).has_value());
  CHECK(p.try_execute([] { return 1; }, {.key = "a"}).has_value());
  const auto r = p.try_execute([] { return 1; }, {.key = "a"});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::rate_limited);
  CHECK(*r.retry_after() == 100ms);
  CHECK(p.try_execute([] { return 1; }, {.key = "b"}).has_value());
  CHECK(p.try_execute([] { return 1; }, {.key = "c", .cost = 3}).code() == armor::errc::request_too_large);
}

TEST_CASE("redis: the URL's parameters and the options' name reach the bucket", "[any_token_bucket][redis]") {
  const armor::manual_clock clock;
  const std::string name = unique("any-shared");
  any_bucket a = armor::make_token_bucket(
      server_url() + "?prefix=armor-test&command_timeout=250ms&connections=3&lease=2&lease_ttl=2s&on_failure=fail_open",
      {.rate = {1, 1h}, .burst = 5}, with_redis(name), clock);
  const redis_bucket* r = a.target<redis_bucket>();
  REQUIRE(r != nullptr);
  CHECK(r->connection().options().command_timeout == 250ms);
  CHECK(r->connection().options().connections == 3);
  CHECK(r->connection().options().prefix == "armor-test");
  CHECK(a.target<armor::token_bucket<armor::manual_clock>>() == nullptr);
  // A second bucket named by its URL shares the first one's tokens.
  any_bucket b = armor::make_token_bucket(server_url() + "?prefix=armor-test&name=" + name,
                                          {.rate = {1, 1h}, .burst = 5}, with_redis("other"), clock);
  CHECK(a.try_acquire(1));  // a lease of 2: one served, one held
  CHECK(r->leased() == 1);
  CHECK(b.try_acquire(3));
  CHECK(b.try_acquire(1).code() == armor::errc::rate_limited);
  CHECK(a.try_acquire(1));  // from its lease
  CHECK_FALSE(a.try_acquire(1));
  CHECK(r->stats().leases == 1);
  CHECK(b.target<redis_bucket>()->stats().unanswered == 0);
}

TEST_CASE("redis: bad URLs and parameters are refused, naming the part", "[any_token_bucket][redis]") {
  const std::string u = server_url();
  CHECK(refusal(u + "?on_failure=retry").find("on_failure=\"retry\"") != std::string::npos);
  CHECK(refusal(u + "?lease_ttl=5").find("lease_ttl=\"5\"") != std::string::npos);
  CHECK(refusal(u + "?local_keys=0").find("local_keys=\"0\"") != std::string::npos);
  CHECK(refusal(u + "?tracker=t").find("unknown query parameter \"tracker\"") != std::string::npos);
  CHECK(refusal(u + "?time=wall").find("time=\"wall\"") != std::string::npos);
  CHECK(refusal(u + "/3").find("database 3") != std::string::npos);
  CHECK(refusal("redis://bob:pw@127.0.0.1").find("user \"bob\"") != std::string::npos);
  CHECK(refusal(u + "?lease=6").find("lease must be within [0, burst = 5]") != std::string::npos);
  CHECK(refusal(u + "?name=a{b").find("name must not contain") != std::string::npos);
  CHECK(refusal(u + "?on_failure=fallback_local").find("local_share") != std::string::npos);
  CHECK(refusal(u, {.rate = {10, 1s}, .max_wait = 1s}).find("max_wait must be 0") != std::string::npos);
  CHECK(refusal("redis+sentinel://127.0.0.1:1/").find("primary's name is missing") != std::string::npos);
  CHECK(refusal("redis+cluster://127.0.0.1:1/0").find("redis+cluster: takes no path") != std::string::npos);
  CHECK(refusal("sqlite:///tmp/x.db").find("sqlite: has no token bucket") != std::string::npos);
  // The parser alone, as a program would call it to log what it was given.
  const armor::redis_token_bucket_config c =
      armor::redis_token_bucket_config_from_url("redis+cluster://:pw@n1:7000,n2:7001?name=api&lease=10&lease_ttl=1s");
  CHECK(c.connection.cluster);
  CHECK(c.connection.host == "n1");
  CHECK(c.connection.seeds == std::vector<std::string>{"n2:7001"});
  CHECK(c.connection.password == "pw");
  CHECK(c.bucket.name == "api");
  CHECK(c.bucket.lease == 10);
  CHECK(c.bucket.lease_ttl == 1s);
}

TEST_CASE("redis: redis+sentinel:// and redis+cluster:// build their buckets before any server answers",
          "[any_token_bucket][redis]") {
  const armor::manual_clock clock;
  any_bucket s = armor::make_token_bucket("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/mymaster?sentinel_recheck=0ms",
                                          {.rate = {10, 1s}}, with_redis("sentinel"), clock);
  REQUIRE(s.target<redis_bucket>() != nullptr);
  CHECK(s.target<redis_bucket>()->connection().options().primary_name == "mymaster");
  CHECK(s.target<redis_bucket>()->connection().options().sentinels.size() == 2);
  any_bucket c = armor::make_token_bucket("redis+cluster://127.0.0.1:1,127.0.0.1:2", {.rate = {10, 1s}},
                                          with_redis("cluster"), clock);
  REQUIRE(c.target<redis_bucket>() != nullptr);
  CHECK(c.target<redis_bucket>()->connection().options().cluster);
}

TEST_CASE("redis: on_failure from the URL decides while Redis is away", "[any_token_bucket][redis]") {
  const armor::manual_clock clock;
  std::string away = "redis://127.0.0.1:";
  away += std::to_string(armor_test::free_port());
  away += "?connect_timeout=100ms&command_timeout=100ms";
  any_bucket closed = armor::make_token_bucket(away, {.rate = {10, 1s}}, with_redis("away"), clock);
  any_bucket open = armor::make_token_bucket(away + "&on_failure=fail_open", {.rate = {10, 1s}}, with_redis("away"), clock);
  any_bucket local = armor::make_token_bucket(away + "&on_failure=fallback_local&local_share=1", {.rate = {1, 1h}, .burst = 2},
                                              with_redis("away"), clock);
  CHECK(closed.try_acquire().code() == armor::errc::storage_unavailable);
  CHECK(open.try_acquire());
  CHECK(open.target<redis_bucket>()->stats().failed_open == 1);
  CHECK(local.try_acquire("k", 2));
  CHECK(local.try_acquire("k", 1).code() == armor::errc::rate_limited);
  auto p = armor::pipeline{clock, std::ref(closed)};
  const auto r = p.try_execute([] { return 1; });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::storage_unavailable);
}
