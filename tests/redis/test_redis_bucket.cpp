// armor::redis_token_bucket against a real redis-server (started here): the
// same decisions as armor::token_bucket on a manual clock, call for call
// (rate changes included); time from Redis's clock; per-key buckets;
// expiry; leases and their bounds; processes sharing one bucket; Redis
// killed, restarted and frozen under each failure mode.
#include <armor/deadline.hpp>
#include <armor/pipeline.hpp>
#include <armor/redis/token_bucket.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "bucket_describe.hpp"
#include "redis/failure_support.hpp"
#include "redis/fork_children.hpp"
#include "redis/redis_server.hpp"

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using armor_test::describe;
using namespace std::chrono;

namespace {

const bool have_redis_server_for_buckets = armor_test::require_redis_server();

// 2024-06-15 12:00 UTC in ns: a realistic epoch, so that times are split
// into seconds and nanoseconds as they are in production.
constexpr std::int64_t noon_ns = 1'718'452'800'000'000'000;

std::string bucket_name(const char* what) {
  static std::atomic<int> n{0};
  return std::string(what) + "-" + std::to_string(::getpid()) + "-" + std::to_string(n.fetch_add(1));
}

armor::redis_options bucket_redis(int port) {
  armor::redis_options o;
  o.port = static_cast<std::uint16_t>(port);
  o.prefix = "armor-test";
  return o;
}

using memory_bucket = armor::token_bucket<armor::manual_clock>;
using redis_bucket = armor::redis_token_bucket<armor::manual_clock>;

redis_bucket caller_bucket(const armor::token_bucket_options& o, const armor::redis_connection& c,
                           const std::string& name, const armor::manual_clock& clock, std::int64_t lease = 0) {
  return redis_bucket{o, c, {.name = name, .lease = lease, .time = armor::redis_time_source::caller}, clock};
}

/// A decision and whether Redis answered it: the connection counts each
/// script run to an answer, so a call served from a lease, by fail_open or
/// by the local fallback leaves its count as it was.
struct traced {
  armor::token_bucket_decision<> d;
  bool by_redis;
};

template <class F>
traced trace(const armor::redis_connection& c, F f) {
  const std::uint64_t before = c.stats().calls;
  const armor::token_bucket_decision<> d = f();
  return {d, c.stats().calls > before};
}

}  // namespace

// ---------------------------------------------------------------- options

TEST_CASE("redis bucket options: bad ones are refused by name") {
  const auto message = [](auto make) -> std::string {
    try {
      make();
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      return e.what();
    }
    return "(nothing thrown)";
  };
  const armor::redis_connection conn{bucket_redis(1)};
  const armor::token_bucket_options ok{.rate = {10, 1s}, .burst = 5};
  CHECK(message([&] { armor::redis_token_bucket<> b{{.rate = {10, 1s}, .max_wait = 1s}, conn, {}}; })
            .find("max_wait") != std::string::npos);
  // 2^52 ticks at 3/s (c = 3, p = 1e9): at most 4503599 tokens of burst.
  CHECK(message([&] { armor::redis_token_bucket<> b{{.rate = {3, 1s}, .burst = 4'503'600}, conn, {}}; })
            .find("burst") != std::string::npos);
  CHECK_NOTHROW(armor::redis_token_bucket<>{{.rate = {3, 1s}, .burst = 4'503'599}, conn, {}});
  CHECK(message([&] { armor::redis_token_bucket<> b{{.rate = {0, 1s}}, conn, {}}; }).find("rate.count") !=
        std::string::npos);
  CHECK(message([&] { armor::redis_token_bucket<> b{ok, conn, {.lease = 6}}; }).find("lease") != std::string::npos);
  CHECK(message([&] {
          armor::redis_token_bucket<> b{{.rate = {10, 1s}, .cost = armor::cost_source::slot(3)}, conn, {}};
        }).find("armor::redis_token_bucket: cost selects cost_source::slot(3)") != std::string::npos);
  CHECK(message([&] { armor::redis_token_bucket<> b{ok, conn, {.name = "a{b"}}; }).find("name") != std::string::npos);
  CHECK(message([&] {
          armor::redis_token_bucket<> b{ok, conn, {.on_failure = armor::redis_failure_mode::fallback_local}};
        }).find("local_share") != std::string::npos);
}

TEST_CASE("redis bucket stats describe their fields") {
  std::size_t count = 0;
  armor::redis_token_bucket_stats s{};
  armor::detail::for_each_field<armor::redis_token_bucket_stats>([&](const auto& f) {
    ++count;
    INFO(f.name);
    CHECK(s.*(f.member) == 0);  // the members are distinct
    s.*(f.member) = count;
    CHECK(f.type == armor::metric_type::counter);
    CHECK(f.metric.starts_with("armor_redis_rate_limit_"));
    CHECK(f.metric.ends_with("_total"));
  });
  CHECK(count == 9);
}

// ---------------------------------------------------------------- semantics

TEST_CASE("redis bucket: the same decisions as token_bucket, call for call (caller time)") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{bucket_redis(server.port())};
  struct config {
    armor::rate rate;
    std::int64_t burst;
  };
  const std::vector<config> configs{
      {{3, 1s}, 5}, {{7, 1min}, 2}, {{100, 1s}, 20}, {{12345, 1s}, 1000}, {{999'999'937, 1s}, 2'000'000},
      {{2, 3ns}, 40}, {{5000, 1h}, 1},
  };
  std::mt19937_64 rng{20240615};
  for (std::size_t k = 0; k < configs.size(); ++k) {
    const config& c = configs[k];
    INFO("config " << k);
    const armor::manual_clock clock{nanoseconds{noon_ns}};
    const armor::token_bucket_options o{.rate = c.rate, .burst = c.burst};
    memory_bucket mem{o, clock};
    redis_bucket red = caller_bucket(o, conn, bucket_name("same"), clock);
    std::int64_t burst = c.burst;
    armor::rate rate = c.rate;
    const auto interval = [&] { return std::max<std::int64_t>(rate.per.count() / rate.count, 1); };
    for (int step = 0; step < 700; ++step) {
      INFO("step " << step);
      const unsigned op = static_cast<unsigned>(rng() % 20);
      if (op < 11) {
        std::int64_t n = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(std::min<std::int64_t>(burst, 6) + 2));
        if (op == 0) n = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(burst + 2));
        const auto a = mem.try_acquire(n);
        const traced b = trace(conn, [&] { return red.try_acquire(n); });
        REQUIRE(b.by_redis);
        REQUIRE(a.code() == b.d.code());
        REQUIRE(describe(a) == describe(b.d));
      } else if (op < 18) {
        // Forward by a part of an interval, a few intervals, or (rarely) a long idle time.
        const std::int64_t i = interval();
        std::int64_t d = 0;
        switch (rng() % 4) {
          case 0: d = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(std::max<std::int64_t>(i, 2))); break;
          case 1: d = static_cast<std::int64_t>(rng() % 3) * i + static_cast<std::int64_t>(rng() % 7) - 3; break;
          case 2: d = static_cast<std::int64_t>(rng() % 1000); break;
          default: d = static_cast<std::int64_t>(rng() % 5) * i * std::max<std::int64_t>(burst / 3, 1); break;
        }
        if (rng() % 50 == 0) d = static_cast<std::int64_t>(rng() % 100'000) * 1'000'000'000;  // up to a day
        clock.advance(nanoseconds{std::max<std::int64_t>(d, 0)});
      } else if (op == 18) {
        // Token-preserving rate changes, in Redis as in memory.
        const std::int64_t count = rate.count + static_cast<std::int64_t>(rng() % 3) - 1;
        const armor::rate next{std::clamp<std::int64_t>(count, 1, rate.per.count()), rate.per};
        mem.set_rate(next);
        red.set_rate(next);
        rate = next;
      } else {
        const std::int64_t next = std::max<std::int64_t>(1, burst + static_cast<std::int64_t>(rng() % 5) - 2);
        mem.set_burst(next);
        red.set_burst(next);
        burst = next;
      }
    }
    CHECK(red.rate() == mem.rate());
    CHECK(red.burst() == mem.burst());
  }
}

TEST_CASE("redis bucket: exactly burst + floor(rate * t) over a long run (3/s, 7/min)") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{bucket_redis(server.port())};
  SECTION("3 per second, burst 5, polled every 7 ms for 20 s") {
    const armor::manual_clock clock{nanoseconds{noon_ns}};
    redis_bucket b = caller_bucket({.rate = {3, 1s}, .burst = 5}, conn, bucket_name("long3"), clock);
    std::int64_t admitted = 0;
    for (std::int64_t t = 0; t <= 20'006'000'000; t += 7'000'000) {
      clock.set(armor::manual_clock::time_point{nanoseconds{noon_ns + t}});
      while (b.try_acquire(1)) ++admitted;
      if (admitted != 5 + (3 * t) / 1'000'000'000) FAIL("at " << t << " ns admitted " << admitted);
    }
    CHECK(admitted == 5 + 60);
  }
  SECTION("7 per minute, burst 2, polled every 5 s for a day") {
    const armor::manual_clock clock{nanoseconds{noon_ns}};
    redis_bucket b = caller_bucket({.rate = {7, 1min}, .burst = 2}, conn, bucket_name("long7"), clock);
    std::int64_t admitted = 0;
    for (std::int64_t s = 0; s <= 86'400; s += 5) {
      clock.set(armor::manual_clock::time_point{nanoseconds{noon_ns + s * 1'000'000'000}});
      while (b.try_acquire(1)) ++admitted;
      if (admitted != 2 + (7 * s) / 60) FAIL("at " << s << " s admitted " << admitted);
    }
    CHECK(admitted == 2 + 7 * 24 * 60);
  }
}

TEST_CASE("redis bucket: per-key buckets are independent and match token_bucket per key") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{bucket_redis(server.port())};
  const armor::manual_clock clock{nanoseconds{noon_ns}};
  const armor::token_bucket_options o{.rate = {10, 1s}, .burst = 4};
  const std::string name = bucket_name("keys");
  redis_bucket red = caller_bucket(o, conn, name, clock);
  std::map<std::string, memory_bucket> mem;
  const std::vector<std::string> keys{"10.0.0.1", "10.0.0.2", "2001:db8::1", "user:{odd}", std::string(300, 'x')};
  std::mt19937 rng{7};
  for (int step = 0; step < 600; ++step) {
    INFO("step " << step);
    const std::string& key = keys[rng() % keys.size()];
    if (rng() % 3 == 0) {
      clock.advance(nanoseconds{static_cast<std::int64_t>(rng() % 200'000'000)});
      continue;
    }
    auto it = mem.find(key);
    if (it == mem.end()) it = mem.emplace(key, memory_bucket{o, clock}).first;
    const std::int64_t n = static_cast<std::int64_t>(rng() % 3);
    REQUIRE(describe(it->second.try_acquire(n)) == describe(red.try_acquire(key, n)));
  }
  CHECK(server.integer("EXISTS %s", ("armor-test:b:{" + name + "}:k:10.0.0.1").c_str()) == 1);

  // Through a pipeline: call_options::key picks the bucket.
  auto p = armor::pipeline{clock, std::ref(red)};
  const std::string fresh = "192.0.2.7";
  for (int i = 0; i < 4; ++i) REQUIRE(p.try_execute([] { return 1; }, {.key = fresh}).has_value());
  const auto r = p.try_execute([] { return 1; }, {.key = fresh});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::rate_limited);
  REQUIRE(r.error().retry_after.has_value());
  CHECK(*r.error().retry_after == 100ms);
  const auto big = p.try_execute([] { return 1; }, {.key = "other", .cost = 5});
  CHECK(big.code() == armor::errc::request_too_large);
}

TEST_CASE("redis bucket: token_bucket_options::cost picks the call's cost it takes") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{bucket_redis(server.port())};
  const armor::manual_clock clock{nanoseconds{noon_ns}};
  redis_bucket requests = caller_bucket({.rate = {3, 1s}, .burst = 3, .cost = armor::cost_source::per_call()}, conn,
                                        bucket_name("percall"), clock);
  redis_bucket tokens = caller_bucket({.rate = {100, 1s}, .burst = 100, .cost = armor::cost_source::slot(0)}, conn,
                                      bucket_name("slot"), clock);
  auto p = armor::pipeline{clock, std::ref(requests), std::ref(tokens)};
  // 40'000 micro-dollars is the call's main cost, which neither bucket takes.
  CHECK(p.try_execute([] { return 1; }, {.cost = 40'000, .costs = {60}}).has_value());
  const auto few_tokens = p.try_execute([] { return 1; }, {.cost = 40'000, .costs = {60}});
  CHECK(few_tokens.code() == armor::errc::rate_limited);  // 40 tokens left: the slot's 60 do not fit
  CHECK(p.try_execute([] { return 1; }, {.cost = 40'000, .costs = {40}}).has_value());
  // Three calls, one request token each (the refused one spent its own too:
  // the Redis bucket spends at admission).
  const auto no_requests = p.try_execute([] { return 1; }, {.cost = 40'000, .costs = {0}});
  CHECK(no_requests.code() == armor::errc::rate_limited);
}

TEST_CASE("redis bucket: a per-key bucket converts at the time of a rate change") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{bucket_redis(server.port())};
  const armor::manual_clock clock{nanoseconds{noon_ns}};
  const armor::token_bucket_options o{.rate = {10, 1s}, .burst = 10};
  redis_bucket red = caller_bucket(o, conn, bucket_name("keyrate"), clock);
  memory_bucket mem{o, clock};
  REQUIRE(describe(mem.try_acquire(10)) == describe(red.try_acquire("k", 10)));
  clock.advance(250ms);
  mem.set_rate({3, 1s});
  red.set_rate({3, 1s});  // the key "k" is not touched now
  clock.advance(1s);
  for (int i = 0; i < 12; ++i) {
    INFO("call " << i);
    REQUIRE(describe(mem.try_acquire(1)) == describe(red.try_acquire("k", 1)));
    clock.advance(170ms);
  }
}

TEST_CASE("redis bucket: time comes from Redis, so skewed hosts agree") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{bucket_redis(server.port())};
  const std::string name = bucket_name("server");
  const armor::token_bucket_options o{.rate = {1, 1h}, .burst = 5};
  // Two hosts whose clocks disagree by a day: with server time, they share.
  redis_bucket a{o, conn, {.name = name}, armor::manual_clock{nanoseconds{noon_ns}}};
  redis_bucket b{o, conn, {.name = name}, armor::manual_clock{nanoseconds{noon_ns + 86'400'000'000'000}}};
  REQUIRE(a.try_acquire(3));
  const auto d = b.try_acquire(3);
  CHECK_FALSE(d);
  CHECK(d.code() == armor::errc::rate_limited);
  CHECK(d.remaining() == 2);
  CHECK(d.retry_after() > 59min);
  CHECK(d.retry_after() <= 1h);
  CHECK(b.try_acquire(2));
  CHECK_FALSE(a.try_acquire(1));
}

TEST_CASE("redis bucket: an idle bucket's key expires when it is full again") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{bucket_redis(server.port())};
  const std::string name = bucket_name("ttl");
  armor::redis_token_bucket<> b{{.rate = {10, 1s}, .burst = 5}, conn, {.name = name}};
  REQUIRE(b.try_acquire(5));  // full again in 500 ms
  const std::string key = "armor-test:b:{" + name + "}";
  const long long ttl = server.integer("PTTL %s", key.c_str());
  CHECK(ttl > 1000);
  CHECK(ttl <= 1500);  // full again, plus a second's grace
}

TEST_CASE("redis bucket: set_rate is shared through Redis and checked") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{bucket_redis(server.port())};
  const std::string name = bucket_name("shared-rate");
  const armor::manual_clock clock{nanoseconds{noon_ns}};
  const armor::token_bucket_options o{.rate = {10, 1s}, .burst = 4};
  redis_bucket a = caller_bucket(o, conn, name, clock);
  redis_bucket b = caller_bucket(o, conn, name, clock);
  REQUIRE(a.try_acquire(4));
  a.set_rate({1, 1s}, 2);  // empty stays empty: 2 tokens owed at 1/s
  const auto d = b.try_acquire(1);
  CHECK_FALSE(d);
  CHECK(d.limit() == 2);
  CHECK(d.retry_after() == 1s);
  CHECK(b.rate() == armor::rate{1, 1s});
  CHECK(b.burst() == 2);
  // A burst too long for the rate stored in Redis is refused by name, changing nothing.
  CHECK_THROWS_AS(b.set_burst(std::int64_t{1} << 40), armor::error);
  CHECK(a.try_acquire(1).limit() == 2);
}

// ---------------------------------------------------------------- leases

TEST_CASE("redis bucket leases: served locally, expire, returned when unused") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{bucket_redis(server.port())};
  const std::string name = bucket_name("lease");
  const armor::manual_clock clock{nanoseconds{noon_ns}};
  const armor::token_bucket_options o{.rate = {10, 1s}, .burst = 100};
  redis_bucket a = caller_bucket(o, conn, name, clock, 10);
  redis_bucket b = caller_bucket(o, conn, name, clock, 0);

  const traced first = trace(conn, [&] { return a.try_acquire(1); });
  REQUIRE(first.d);
  CHECK(first.by_redis);
  CHECK(a.leased() == 9);
  CHECK(first.d.remaining() == 99);  // the lease's unused tokens count as there
  const auto calls = conn.stats().calls;
  for (int i = 0; i < 9; ++i) {
    const traced d = trace(conn, [&] { return a.try_acquire(1); });
    REQUIRE(d.d);
    CHECK_FALSE(d.by_redis);  // served from the lease
  }
  CHECK(conn.stats().calls == calls);  // no round trip
  CHECK(a.try_acquire(1));             // a new lease
  CHECK(a.stats().leases == 2);
  CHECK(a.leased() == 9);

  // b takes what Redis has left: 80 (a holds 9 unserved).
  int admitted = 0;
  while (b.try_acquire(1)) ++admitted;
  CHECK(admitted == 80);
  // a's lease cannot go back now (b wrote since): it stays spent, counted as lost.
  CHECK_FALSE(a.return_lease());
  CHECK(a.stats().lost_tokens == 9);

  // A lease expires after 10 intervals (1 s): then Redis decides again.
  clock.advance(2s);  // 20 tokens back
  REQUIRE(a.try_acquire(1));
  CHECK(a.leased() == 9);
  clock.advance(1s);  // the lease is stale: the next call takes a new one, giving 9 back first
  REQUIRE(a.try_acquire(1));
  CHECK(a.stats().returned_tokens == 9);
  CHECK(a.stats().leases == 4);
  REQUIRE(a.return_lease());
  CHECK(a.stats().returned_tokens == 18);
  // Everything returned: Redis holds 20 + 10 - 2 tokens.
  admitted = 0;
  while (b.try_acquire(1)) ++admitted;
  CHECK(admitted == 28);
}

TEST_CASE("redis bucket leases: lease_ttl keeps a lease longer than its refill time") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{bucket_redis(server.port())};
  const armor::manual_clock clock{nanoseconds{noon_ns}};
  redis_bucket a{{.rate = {1000, 1s}, .burst = 100},
                 conn,
                 {.name = bucket_name("ttl-lease"), .lease = 10, .lease_ttl = 5s, .time = armor::redis_time_source::caller},
                 clock};
  REQUIRE(a.try_acquire(1));
  clock.advance(4s);  // far beyond 10 intervals (10 ms), within lease_ttl
  const traced d = trace(conn, [&] { return a.try_acquire(1); });
  CHECK(d.d);
  CHECK_FALSE(d.by_redis);  // served from the lease
  clock.advance(1s);
  const traced e = trace(conn, [&] { return a.try_acquire(1); });
  CHECK(e.d);
  CHECK(e.by_redis);
  CHECK(a.stats().returned_tokens == 8);
}

TEST_CASE("redis bucket leases: threads sharing one bucket admit exactly the burst") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{bucket_redis(server.port())};
  // One token a minute: during the test only the burst is there.
  armor::redis_token_bucket<> bucket{{.rate = {1, 1min}, .burst = 3000}, conn, {.name = bucket_name("threads"), .lease = 7}};
  std::atomic<std::int64_t> admitted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      std::int64_t mine = 0;
      while (bucket.try_acquire(1)) ++mine;
      admitted.fetch_add(mine);
    });
  }
  for (auto& th : threads) th.join();
  CHECK(admitted.load() == 3000);
  CHECK(bucket.stats().lost_tokens == 0);
}

// ---------------------------------------------------------------- processes

namespace {

/// Forks `children` processes that each build a bucket named `name` (server
/// time) and take one token at a time until refused; returns the total.
std::int64_t run_bucket_children(int port, const std::string& name, std::int64_t lease, int children,
                                 const armor::token_bucket_options& options) {
  return armor_test::sum_over_children(children, [&] {
    const armor::redis_connection conn{bucket_redis(port)};
    armor::redis_token_bucket<> b{options, conn, {.name = name, .lease = lease}};
    armor_test::child_report r;
    while (b.try_acquire(1)) ++r.units;
    r.refused_as_expected = b.try_acquire(1).code() == armor::errc::rate_limited;
    return r;
  });
}

}  // namespace

TEST_CASE("redis bucket: processes sharing one bucket admit exactly its tokens") {
  auto& server = armor_test::shared_redis();
  // One token an hour: during the test only the burst is there.
  const armor::token_bucket_options options{.rate = {1, 1h}, .burst = 600};
  CHECK(run_bucket_children(server.port(), bucket_name("procs"), 0, 4, options) == 600);
}

TEST_CASE("redis bucket: processes with leases stay within the documented bound") {
  auto& server = armor_test::shared_redis();
  const armor::token_bucket_options options{.rate = {1, 1h}, .burst = 600};
  constexpr std::int64_t lease = 16;
  constexpr int children = 4;
  const std::int64_t total = run_bucket_children(server.port(), bucket_name("procs-lease"), lease, children, options);
  CHECK(total <= 600);
  CHECK(total >= 600 - children * lease);
}

// ---------------------------------------------------------------- failures

namespace {


const armor::token_bucket_options slow_bucket{.rate = {1, 1h}, .burst = 10};

}  // namespace

TEST_CASE("redis bucket, Redis killed and restarted: fail_closed refuses with storage_unavailable") {
  armor_test::redis_server server;
  const armor::redis_connection conn{armor_test::failing_redis_options(bucket_redis(server.port()))};
  armor::redis_token_bucket<> b{slow_bucket, conn, {.name = "closed"}};
  REQUIRE(b.try_acquire(1));
  server.kill();
  nanoseconds worst{0};
  for (int i = 0; i < 50; ++i) {
    armor::token_bucket_decision<> d = b.try_acquire(1);
    worst = std::max(worst, armor_test::timed([&] { d = b.try_acquire(i % 2 == 0 ? std::string_view{} : "key", 1); }));
    REQUIRE_FALSE(d.allowed());
    REQUIRE(d.code() == armor::errc::storage_unavailable);
    REQUIRE(d.retry_after() == 0ns);
  }
  CHECK(worst < armor_test::redis_call_bound);
  CHECK(conn.stats().breaker_rejections > 0);
  CHECK(b.stats().failed_closed == 100);
  CHECK_THROWS_AS(b.set_rate({2, 1h}), armor::error);

  auto p = armor::pipeline{armor::deadline{300ms}, std::ref(b)};
  armor::result<int> r{0};
  const auto took = armor_test::timed([&] { r = p.try_execute([] { return 1; }); });
  CHECK(r.code() == armor::errc::storage_unavailable);
  CHECK(took < armor_test::redis_call_bound);

  server.start();  // same port, empty
  CHECK(armor_test::eventually([&] { return b.try_acquire(1).allowed(); }));
  const traced d = trace(conn, [&] { return b.try_acquire(1); });
  CHECK(d.by_redis);
  CHECK(d.d.remaining() == 8);  // a fresh bucket: 10 - 2
}

TEST_CASE("redis bucket, Redis killed and restarted: fail_open admits and says so") {
  armor_test::redis_server server;
  const armor::redis_connection conn{armor_test::failing_redis_options(bucket_redis(server.port()))};
  armor::redis_token_bucket<> b{slow_bucket, conn, {.name = "open", .on_failure = armor::redis_failure_mode::fail_open}};
  REQUIRE(b.try_acquire(10));
  CHECK(b.try_acquire(1).code() == armor::errc::rate_limited);
  server.kill();
  nanoseconds worst{0};
  for (int i = 0; i < 20; ++i) {
    const auto open_before = b.stats().failed_open;
    worst = std::max(worst, armor_test::timed([&] {
      const auto d = b.try_acquire(1);
      REQUIRE(d);
      REQUIRE(d.remaining() == slow_bucket.burst);  // a fail_open answer reports a full bucket
    }));
    REQUIRE(b.stats().failed_open == open_before + 1);
  }
  CHECK(worst < armor_test::redis_call_bound);
  CHECK(b.stats().failed_open == 20);
  server.start();
  CHECK(armor_test::eventually([&] { return trace(conn, [&] { return b.try_acquire(1); }).by_redis; }));
}

TEST_CASE("redis bucket, Redis killed and restarted: fallback_local serves its share, per key too") {
  armor_test::redis_server server;
  const armor::redis_connection conn{armor_test::failing_redis_options(bucket_redis(server.port()))};
  armor::redis_token_bucket<> b{
      slow_bucket, conn, {.name = "local", .on_failure = armor::redis_failure_mode::fallback_local, .local_share = 0.5}};
  REQUIRE(b.try_acquire(1));
  server.kill();
  int admitted = 0;
  int admitted_key = 0;
  nanoseconds worst{0};
  for (int i = 0; i < 20; ++i) {
    const auto local_before = b.stats().served_locally;
    worst = std::max(worst, armor_test::timed([&] {
      const auto d = b.try_acquire(1);
      if (d) ++admitted;
      else CHECK(d.code() == armor::errc::rate_limited);
    }));
    CHECK(b.stats().served_locally == local_before + 1);
    if (b.try_acquire("client", 1)) ++admitted_key;
  }
  CHECK(admitted == 5);      // half of the burst of 10
  CHECK(admitted_key == 5);  // and as much for this key alone
  CHECK(b.stats().served_locally == 40);
  CHECK(worst < armor_test::redis_call_bound);
  server.start();
  CHECK(armor_test::eventually([&] { return trace(conn, [&] { return b.try_acquire(1); }).by_redis; }));
}

TEST_CASE("redis bucket, Redis frozen (SIGSTOP): calls time out within the bound; the breaker makes them fast") {
  armor_test::redis_server server;
  const armor::redis_connection conn{armor_test::failing_redis_options(bucket_redis(server.port()))};
  armor::redis_token_bucket<> b{slow_bucket, conn, {.name = "slow"}};
  REQUIRE(b.try_acquire(1));
  server.pause();
  std::vector<nanoseconds> took;
  for (int i = 0; i < 10; ++i) {
    took.push_back(armor_test::timed([&] { CHECK(b.try_acquire(1).code() == armor::errc::storage_unavailable); }));
  }
  server.resume();
  CHECK(*std::max_element(took.begin(), took.end()) < armor_test::redis_call_bound);
  CHECK(took.front() >= 90ms);
  CHECK(took.back() < 50ms);
  CHECK(armor_test::eventually([&] { return b.try_acquire(1).allowed(); }));
}

TEST_CASE("redis bucket, Redis killed mid-run: a lease keeps serving, then fail_closed; recovery leases again") {
  armor_test::redis_server server;
  const armor::redis_connection conn{armor_test::failing_redis_options(bucket_redis(server.port()))};
  armor::redis_token_bucket<> b{slow_bucket, conn, {.name = "lease-kill", .lease = 5}};
  REQUIRE(b.try_acquire(1));
  server.kill();
  int served = 0;
  while (b.try_acquire(1)) ++served;
  CHECK(served == 4);
  CHECK(b.try_acquire(1).code() == armor::errc::storage_unavailable);
  server.start();
  CHECK(armor_test::eventually([&] { return b.try_acquire(1).allowed(); }));
  CHECK(b.leased() == 4);
}
