// armor::redis_fixed_window and armor::redis_sliding_window against a real
// redis-server (started here): the same decisions as fixed_window and
// sliding_window (both algorithms) on a manual clock, call for call, on
// random sequences (0 disagreements in allowed, code, remaining, reset and
// retry_after); time from Redis's clock; per-key windows and the pipeline's
// call_options::key; keys that expire; bad options refused by name; Redis
// killed and restarted under each failure mode; a frozen Redis and a
// pipeline's deadline.
#include <armor/deadline.hpp>
#include <armor/fixed_window.hpp>
#include <armor/pipeline.hpp>
#include <armor/redis/fixed_window.hpp>
#include <armor/redis/sliding_window.hpp>
#include <armor/sliding_window.hpp>

#include "armor_catch.hpp"
#include "redis/failure_support.hpp"
#include "redis/redis_server.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using namespace std::chrono;

namespace {

const bool have_redis_server_for_windows = armor_test::require_redis_server();

// 2024-06-15 12:00 UTC in ns: a realistic epoch.
constexpr std::int64_t noon_ns = 1'718'452'800'000'000'000;

std::string window_name(const char* what) {
  static std::atomic<int> n{0};
  std::string s = what;
  s += "-w-";
  s += std::to_string(::getpid());
  s += "-";
  s += std::to_string(n.fetch_add(1));
  return s;
}

armor::redis_options window_redis(int port) {
  armor::redis_options o;
  o.port = static_cast<std::uint16_t>(port);
  o.prefix = "armor-test";
  return o;
}

armor::redis_window_options caller_time(const std::string& name) {
  return {.name = name, .time = armor::redis_time_source::caller};
}

std::string describe(const armor::window_decision& d) {
  std::string s = "status ";
  s += to_string(d.status());
  s += " code ";
  s += d.code().message();
  s += " remaining ";
  s += std::to_string(d.remaining());
  s += " reset ";
  s += std::to_string(d.reset().count());
  s += " retry_after ";
  s += std::to_string(d.retry_after().count());
  s += " limit ";
  s += std::to_string(d.limit());
  s += " window ";
  s += std::to_string(d.window().count());
  return s;
}

std::string message_of(const std::function<void()>& make) {
  try {
    make();
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    return e.what();
  }
  return "(nothing thrown)";
}

// Runs `steps` random steps against a memory limiter and a Redis one on the
// same manual clock: random n (0 to limit + 1, sometimes far more, rarely
// negative), random keys (unkeyed and two clients), random time steps
// within a period, across one or several boundaries, or idle for many
// windows. Returns the disagreements (and reports the first).
template <class Memory, class Redis>
int differential(Memory& mem_unkeyed, std::vector<Memory>& mem_keys, Redis& red, const armor::manual_clock& clock,
                 std::int64_t limit, std::int64_t period, std::int64_t window, std::mt19937_64& rng, int steps,
                 int& granted, int& denied) {
  const std::vector<std::string> keys{"client-a", "client-b"};
  int bad = 0;
  for (int step = 0; step < steps; ++step) {
    const unsigned op = static_cast<unsigned>(rng() % 10);
    if (op < 6) {
      std::int64_t n = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(std::min<std::int64_t>(limit, 8) + 2));
      if (rng() % 10 == 0) n = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(limit + 2));
      if (rng() % 200 == 0) n = -1;
      const std::size_t which = static_cast<std::size_t>(rng() % 3);
      armor::window_decision a = which == 0 ? mem_unkeyed.try_acquire(n) : mem_keys[which - 1].try_acquire(n);
      armor::window_decision b = which == 0 ? red.try_acquire(n) : red.try_acquire(keys[which - 1], n);
      if (a.allowed()) ++granted;
      else if (a.status() == armor::window_status::denied) ++denied;
      if (describe(a) != describe(b)) {
        if (bad == 0) {
          UNSCOPED_INFO("step " << step << " n " << n << " key " << which << " t "
                                << clock.now().time_since_epoch().count() << "\n memory " << describe(a)
                                << "\n redis  " << describe(b));
        }
        ++bad;
      }
    } else {
      std::int64_t d = 0;
      switch (rng() % 5) {
        case 0: d = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(period)); break;
        case 1: d = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(std::max<std::int64_t>(period / 7, 1))); break;
        case 2: d = period * static_cast<std::int64_t>(rng() % 3) + static_cast<std::int64_t>(rng() % 5) - 2; break;
        case 3: d = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(2 * window)); break;
        default: d = static_cast<std::int64_t>(rng() % 3); break;
      }
      if (rng() % 100 == 0) d = window * static_cast<std::int64_t>(1 + rng() % 50);
      clock.advance(nanoseconds{std::max<std::int64_t>(d, 0)});
    }
  }
  return bad;
}

}  // namespace

// ---------------------------------------------------------------- options

TEST_CASE("redis windows: bad options are refused by name") {
  const armor::redis_connection conn{window_redis(1)};
  const auto has = [](const std::string& m, const char* what) {
    INFO(m);
    return m.find(what) != std::string::npos;
  };
  CHECK(has(message_of([&] { armor::redis_fixed_window<> w{{.limit = 0, .window = 1s}, conn, {}}; }), "limit"));
  CHECK(has(message_of([&] { armor::redis_fixed_window<> w{{.limit = 5, .window = 0s}, conn, {}}; }), "window"));
  CHECK(has(message_of([&] { armor::redis_fixed_window<> w{{.limit = 5, .window = 1s, .offset = 2s}, conn, {}}; }),
            "offset"));
  CHECK(has(message_of([&] { armor::redis_fixed_window<> w{{.limit = 5, .window = 999ns}, conn, {}}; }),
            "armor::redis_fixed_window: the window's period"));
  CHECK(has(message_of([&] {
              armor::redis_fixed_window<> w{{.limit = (std::int64_t{1} << 52) + 1, .window = 24h * 20}, conn, {}};
            }),
            "armor::redis_fixed_window: limit must be at most 2^52"));
  CHECK(has(message_of([&] { armor::redis_fixed_window<> w{{.limit = 5, .window = 24h * 105}, conn, {}}; }),
            "armor::redis_fixed_window: window must be shorter than 2^53 ns"));
  // Server time reads microseconds: a window of 1.5 us is refused, with caller time it is fine.
  CHECK(has(message_of([&] { armor::redis_fixed_window<> w{{.limit = 5, .window = 1500ns}, conn, {}}; }),
            "whole microseconds"));
  CHECK_NOTHROW(armor::redis_fixed_window<>{{.limit = 5, .window = 1500ns}, conn, caller_time("x")});
  CHECK(has(message_of([&] {
              armor::redis_fixed_window<> w{{.limit = 5, .window = 1s, .offset = 1ns}, conn, {}};
            }),
            "offset must be whole microseconds"));
  CHECK(has(message_of([&] { armor::redis_fixed_window<> w{{.limit = 5, .window = 1s}, conn, {.name = "a}b"}}; }),
            "name"));
  CHECK(has(message_of([&] { armor::redis_fixed_window<> w{{.limit = 5, .window = 1s}, conn, {.name = ""}}; }),
            "name"));
  CHECK(has(message_of([&] {
              armor::redis_fixed_window<> w{
                  {.limit = 5, .window = 1s}, conn, {.on_failure = armor::redis_failure_mode::fallback_local}};
            }),
            "local_share"));
  CHECK(has(message_of([&] {
              armor::redis_fixed_window<> w{{.limit = 5, .window = 1s, .cost = armor::cost_source::slot(3)}, conn, {}};
            }),
            "cost"));
  CHECK(has(message_of([&] {
              armor::redis_sliding_window<> w{{.limit = 5, .window = 1s, .segments = 3}, conn, {}};
            }),
            "segments"));
  CHECK(has(message_of([&] {
              armor::redis_sliding_window<> w{{.limit = 5, .window = 10us, .segments = 20}, conn, caller_time("x")};
            }),
            "armor::redis_sliding_window: the window's period"));
  CHECK(has(message_of([&] {
              armor::redis_sliding_window<> w{{.limit = 5, .window = 10ms, .segments = 10000}, conn, {}};
            }),
            "segments"));
  CHECK_NOTHROW(armor::redis_sliding_window<>{
      {.limit = 5, .window = 10s, .algorithm = armor::sliding_window_algorithm::approximate}, conn, {}});
}

TEST_CASE("redis window stats describe their fields") {
  std::size_t count = 0;
  armor::redis_window_stats s{};
  armor::detail::for_each_field<armor::redis_window_stats>([&](const auto& f) {
    ++count;
    INFO(f.name);
    CHECK(s.*(f.member) == 0);  // the members are distinct
    s.*(f.member) = count;
    CHECK(f.type == armor::metric_type::counter);
    CHECK(f.metric.starts_with("armor_redis_window_"));
    CHECK(f.metric.ends_with("_total"));
  });
  CHECK(count == 5);
}

// ---------------------------------------------------------------- semantics

TEST_CASE("redis fixed window: the same decisions as fixed_window on random sequences (caller time)") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{window_redis(server.port())};
  struct config {
    std::int64_t limit;
    nanoseconds window;
    nanoseconds offset;
  };
  const std::vector<config> configs{
      {60, 1min, 0s}, {1, 1s, 0s}, {5, 1s, 300ms}, {2000, 5min, 0s}, {7, 1'000'003ns, 17ns}, {100, 10s, 9999ms},
  };
  std::mt19937_64 rng{20261206};
  int total_bad = 0;
  int granted = 0;
  int denied = 0;
  for (std::size_t k = 0; k < configs.size(); ++k) {
    const config& c = configs[k];
    INFO("config " << k);
    const armor::manual_clock clock{nanoseconds{noon_ns + static_cast<std::int64_t>(rng() % 1'000'000'000)}};
    const armor::fixed_window_options o{.limit = c.limit, .window = c.window, .offset = c.offset};
    armor::fixed_window<armor::manual_clock> mem{o, clock};
    std::vector<armor::fixed_window<armor::manual_clock>> mem_keys;
    mem_keys.emplace_back(o, clock);
    mem_keys.emplace_back(o, clock);
    armor::redis_fixed_window<armor::manual_clock> red{o, conn, caller_time(window_name("fixed")), clock};
    const int bad = differential(mem, mem_keys, red, clock, c.limit, c.window.count(), c.window.count(), rng, 1500,
                                 granted, denied);
    CHECK(bad == 0);
    total_bad += bad;
  }
  CHECK(total_bad == 0);
  CHECK(granted > 1000);  // both answers were common
  CHECK(denied > 300);
  CHECK(conn.stats().failures == 0);
}

TEST_CASE("redis sliding window: the same decisions as sliding_window on random sequences (caller time)") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{window_redis(server.port())};
  using alg = armor::sliding_window_algorithm;
  struct config {
    std::int64_t limit;
    nanoseconds window;
    std::int64_t segments;
    alg algorithm;
    nanoseconds offset;
  };
  const std::vector<config> configs{
      {100, 10s, 10, alg::exact, 0s},          {5, 1s, 1, alg::exact, 0s},
      {7, 1'000'003ns * 3, 3, alg::exact, 5ns}, {60, 1min, 60, alg::exact, 0s},
      {3, 1s, 4, alg::exact, 100ms},           {100, 10s, 10, alg::approximate, 0s},
      {5, 1s, 10, alg::approximate, 0s},       {7, 1'000'003ns, 10, alg::approximate, 999'999ns},
      {2000, 5min, 10, alg::approximate, 0s},  {1'000'000, 24h * 100, 10, alg::approximate, 0s},
  };
  std::mt19937_64 rng{20261207};
  int total_bad = 0;
  int granted = 0;
  int denied = 0;
  for (std::size_t k = 0; k < configs.size(); ++k) {
    const config& c = configs[k];
    INFO("config " << k << " " << to_string(c.algorithm));
    const armor::manual_clock clock{nanoseconds{noon_ns + static_cast<std::int64_t>(rng() % 1'000'000'000)}};
    const armor::sliding_window_options o{
        .limit = c.limit, .window = c.window, .segments = c.segments, .algorithm = c.algorithm, .offset = c.offset};
    armor::sliding_window<armor::manual_clock> mem{o, clock};
    std::vector<armor::sliding_window<armor::manual_clock>> mem_keys;
    mem_keys.emplace_back(o, clock);
    mem_keys.emplace_back(o, clock);
    armor::redis_sliding_window<armor::manual_clock> red{o, conn, caller_time(window_name("sliding")), clock};
    CHECK(red.algorithm() == c.algorithm);
    const std::int64_t period = c.algorithm == alg::exact ? c.window.count() / c.segments : c.window.count();
    // Large limits are reached by many-unit calls: scale n up for them.
    const int bad =
        c.limit > 10'000
            ? [&] {
                int b = 0;
                for (int i = 0; i < 300; ++i) {
                  const auto n = static_cast<std::int64_t>(rng() % 400'000);
                  const armor::window_decision a = mem.try_acquire(n);
                  const armor::window_decision r = red.try_acquire(n);
                  if (a.allowed()) ++granted;
                  else ++denied;
                  if (describe(a) != describe(r)) {
                    if (b == 0) UNSCOPED_INFO("memory " << describe(a) << "\nredis  " << describe(r));
                    ++b;
                  }
                  clock.advance(nanoseconds{static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(period / 3))});
                }
                return b;
              }()
            : differential(mem, mem_keys, red, clock, c.limit, period, c.window.count(), rng, 1500, granted, denied);
    CHECK(bad == 0);
    total_bad += bad;
  }
  CHECK(total_bad == 0);
  CHECK(granted > 1000);
  CHECK(denied > 1000);
  CHECK(conn.stats().failures == 0);
}

TEST_CASE("redis fixed window: the 61st request in the minute is refused until the minute turns") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{window_redis(server.port())};
  const armor::manual_clock clock{nanoseconds{noon_ns + 20'000'000'000}};  // 12:00:20
  armor::redis_fixed_window<armor::manual_clock> per_minute{
      {.limit = 60, .window = 1min}, conn, caller_time(window_name("minute")), clock};
  for (int i = 0; i < 60; ++i) REQUIRE(per_minute.try_acquire("203.0.113.9"));
  const armor::window_decision d = per_minute.try_acquire("203.0.113.9");
  CHECK(d.code() == armor::errc::rate_limited);
  CHECK(d.retry_after() == 40s);
  CHECK(d.remaining() == 0);
  CHECK(per_minute.try_acquire("198.51.100.1"));  // another client
  clock.advance(40s);
  const armor::window_decision e = per_minute.try_acquire("203.0.113.9");
  CHECK(e);
  CHECK(e.remaining() == 59);
  CHECK(e.reset() == 1min);
}

TEST_CASE("redis windows: time from Redis's clock") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{window_redis(server.port())};
  // A manual clock far in the past: with server time it decides nothing.
  // (Days of UTC: the fixed window turns only at midnight.)
  const armor::manual_clock clock{nanoseconds{0}};
  armor::redis_fixed_window<armor::manual_clock> fixed{{.limit = 3, .window = 24h}, conn, {.name = window_name("srv")},
                                                       clock};
  armor::redis_sliding_window<armor::manual_clock> exact{
      {.limit = 3, .window = 1h, .segments = 60}, conn, {.name = window_name("srv")}, clock};
  armor::redis_sliding_window<armor::manual_clock> approx{
      {.limit = 3, .window = 1h, .algorithm = armor::sliding_window_algorithm::approximate},
      conn,
      {.name = window_name("srv")},
      clock};
  for (int i = 0; i < 3; ++i) {
    REQUIRE(fixed.try_acquire());
    REQUIRE(exact.try_acquire());
  }
  const armor::window_decision f = fixed.try_acquire();
  CHECK(f.code() == armor::errc::rate_limited);
  CHECK(f.retry_after() > 0ns);
  CHECK(f.retry_after() <= 24h);
  const armor::window_decision x = exact.try_acquire();
  CHECK(x.code() == armor::errc::rate_limited);
  CHECK(x.retry_after() > 0ns);
  CHECK(x.retry_after() <= 1h);
  // The approximation may weigh a previous hour: none was counted, so 3 fit.
  for (int i = 0; i < 3; ++i) REQUIRE(approx.try_acquire());
  CHECK(approx.try_acquire().code() == armor::errc::rate_limited);
  // The wall clock as Redis sees it: the fixed window's reset ends the day of UTC.
  const auto now = system_clock::now().time_since_epoch();
  const auto to_day = 24h - (now % 24h);
  CHECK(f.reset() <= to_day + 2s);
  CHECK(f.reset() + 2s >= to_day);
}

TEST_CASE("redis windows: keys carry the name's hash tag and expire when nothing in them counts") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{window_redis(server.port())};
  const std::string name = window_name("ttl");
  armor::redis_fixed_window<> fixed{{.limit = 3, .window = 2s}, conn, {.name = name}};
  armor::redis_sliding_window<> exact{{.limit = 3, .window = 4s, .segments = 4}, conn, {.name = name}};
  armor::redis_sliding_window<> approx{
      {.limit = 3, .window = 3s, .algorithm = armor::sliding_window_algorithm::approximate}, conn, {.name = name}};
  REQUIRE(fixed.try_acquire("k"));
  REQUIRE(exact.try_acquire("k"));
  REQUIRE(approx.try_acquire("k"));
  const auto pttl = [&](const std::string& key) { return std::stoll(armor_test::redis_command(server.port(), {"PTTL", key})); };
  const std::string fk = "armor-test:fw:{" + name + "}:k:k";
  const std::string sk = "armor-test:sw:{" + name + "}:k:k";
  const std::string ak = "armor-test:sa:{" + name + "}:k:k";
  // Fixed: until its window ends (<= 2 s) plus a second.
  CHECK(pttl(fk) > 0);
  CHECK(pttl(fk) <= 3000);
  // Exact: until the segment counted rolls off (<= 4 s) plus a second.
  CHECK(pttl(sk) > 3000);
  CHECK(pttl(sk) <= 5000);
  // Approximate: until the next window ends (<= 6 s) plus a second.
  CHECK(pttl(ak) > 3000);
  CHECK(pttl(ak) <= 7000);
  // One hash slot per script: each key's slot is the name's.
  const std::uint16_t slot = armor::detail::redis_key_slot(name);
  CHECK(armor::detail::redis_key_slot(fk) == slot);
  CHECK(armor::detail::redis_key_slot(sk) == slot);
  CHECK(armor::detail::redis_key_slot(ak) == slot);
  // A refusal writes nothing: an unknown key stays unknown.
  armor::redis_fixed_window<> one{{.limit = 1, .window = 2s}, conn, {.name = name + "-r"}};
  CHECK(one.try_acquire("z", 2).code() == armor::errc::request_too_large);
  CHECK(armor_test::redis_command(server.port(), {"EXISTS", "armor-test:fw:{" + name + "-r}:k:z"}) == "0");
}

TEST_CASE("redis windows in a pipeline: call_options::key picks the client, the cost is counted") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{window_redis(server.port())};
  const armor::manual_clock clock{nanoseconds{noon_ns}};
  armor::redis_sliding_window<armor::manual_clock> w{
      {.limit = 3, .window = 10s, .segments = 10}, conn, caller_time(window_name("pipe")), clock};
  auto p = armor::pipeline{clock, std::ref(w)};
  const auto call = [&](std::string_view key, std::int64_t cost = 1) {
    return p.try_execute([] { return 1; }, {.key = key, .cost = cost});
  };
  CHECK(call("a", 2).has_value());
  CHECK(call("a").has_value());
  const armor::result<int> r = call("a");
  CHECK(r.code() == armor::errc::rate_limited);
  CHECK(call("b", 3).has_value());
  CHECK(call("b", 4).code() == armor::errc::request_too_large);
  clock.advance(10s);
  CHECK(call("a", 3).has_value());
}

TEST_CASE("redis windows: threads sharing one window admit exactly the limit") {
  auto& server = armor_test::shared_redis();
  armor::redis_options o = window_redis(server.port());
  o.connections = 4;  // one per thread: a call never waits for a connection another thread holds
  const armor::redis_connection conn{o};
  const std::string name = window_name("threads");
  // Caller time on a clock that does not move: no window turns during the test.
  const armor::manual_clock clock{nanoseconds{noon_ns}};
  armor::redis_fixed_window<armor::manual_clock> fixed{{.limit = 150, .window = 1h}, conn, caller_time(name), clock};
  armor::redis_sliding_window<armor::manual_clock> exact{
      {.limit = 150, .window = 1h, .segments = 60}, conn, caller_time(name), clock};
  armor::redis_sliding_window<armor::manual_clock> approx{
      {.limit = 150, .window = 1h, .algorithm = armor::sliding_window_algorithm::approximate}, conn,
      caller_time(name), clock};
  std::atomic<int> granted_fixed{0};
  std::atomic<int> granted_exact{0};
  std::atomic<int> granted_approx{0};
  std::atomic<int> other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      // 4 x 60 calls each: 240 > 150, so every window fills whatever the interleaving.
      for (int i = 0; i < 60; ++i) {
        const auto one = [&](armor::window_decision d, std::atomic<int>& granted) {
          if (d) granted.fetch_add(1);
          else if (d.code() != armor::errc::rate_limited) {
            other.fetch_add(1);
            UNSCOPED_INFO("refused: " << d.code().message());
          }
        };
        one(fixed.try_acquire("shared"), granted_fixed);
        one(exact.try_acquire("shared"), granted_exact);
        one(approx.try_acquire("shared"), granted_approx);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const armor::redis_connection_stats cs = conn.stats();
  INFO("failures " << cs.failures << " pool_timeouts " << cs.pool_timeouts << " connects " << cs.connects
                   << " reloads " << cs.script_reloads << " calls " << cs.calls);
  CHECK(other.load() == 0);
  CHECK(granted_fixed.load() == 150);
  CHECK(granted_exact.load() == 150);
  CHECK(granted_approx.load() == 150);
}

// ---------------------------------------------------------------- failures

TEST_CASE("redis windows, Redis killed and restarted: each failure mode") {
  armor_test::redis_server server;
  const armor::redis_connection conn{armor_test::failing_redis_options(window_redis(server.port()))};
  const armor::fixed_window_options ten{.limit = 10, .window = 1h};
  armor::redis_fixed_window<> closed{ten, conn, {.name = window_name("closed")}};
  armor::redis_fixed_window<> open{ten, conn, {.name = window_name("open"), .on_failure = armor::redis_failure_mode::fail_open}};
  armor::redis_sliding_window<> local{{.limit = 10, .window = 1h, .segments = 6},
                                      conn,
                                      {.name = window_name("local"),
                                       .on_failure = armor::redis_failure_mode::fallback_local,
                                       .local_share = 0.5}};
  REQUIRE(closed.try_acquire(1));
  REQUIRE(open.try_acquire(10));
  CHECK(open.try_acquire(1).code() == armor::errc::rate_limited);
  REQUIRE(local.try_acquire(1));
  server.kill();
  nanoseconds worst{0};
  int admitted = 0;
  int admitted_key = 0;
  for (int i = 0; i < 20; ++i) {
    worst = std::max(worst, armor_test::timed([&] {
      const armor::window_decision d = closed.try_acquire(i % 2 == 0 ? std::string_view{} : "key", 1);
      REQUIRE_FALSE(d.allowed());
      REQUIRE(d.code() == armor::errc::storage_unavailable);
      REQUIRE(d.retry_after() == 0ns);
    }));
    worst = std::max(worst, armor_test::timed([&] {
      const armor::window_decision d = open.try_acquire(1);
      REQUIRE(d);
      REQUIRE(d.remaining() == 10);  // a fail_open answer reports an empty window
    }));
    worst = std::max(worst, armor_test::timed([&] {
      if (local.try_acquire(1)) ++admitted;
      if (local.try_acquire("client", 1)) ++admitted_key;
    }));
  }
  CHECK(admitted == 5);  // half of the limit of 10
  CHECK(admitted_key == 5);
  CHECK(worst < armor_test::redis_call_bound);
  CHECK(closed.stats().failed_closed == 20);
  CHECK(open.stats().failed_open == 20);
  CHECK(local.stats().served_locally == 40);
  CHECK(closed.stats().unanswered + open.stats().unanswered + local.stats().unanswered == 80);
  CHECK(conn.stats().breaker_rejections > 0);

  auto p = armor::pipeline{armor::deadline{300ms}, std::ref(closed)};
  armor::result<int> r{0};
  const auto took = armor_test::timed([&] { r = p.try_execute([] { return 1; }); });
  CHECK(r.code() == armor::errc::storage_unavailable);
  CHECK(took < armor_test::redis_call_bound);

  server.start();  // same port, empty
  CHECK(armor_test::eventually([&] { return closed.try_acquire(1).allowed(); }));
  const armor::window_decision d = closed.try_acquire(1);
  CHECK(d);
  CHECK(d.remaining() == 8);  // a fresh window: 10 - 2
}

TEST_CASE("redis windows, Redis frozen: a pipeline call ends at its deadline, not at command_timeout") {
  armor_test::redis_server server;
  armor::redis_options o = window_redis(server.port());
  o.connect_timeout = 2s;
  o.command_timeout = 2s;
  const armor::redis_connection conn{o};
  const bool sliding = GENERATE(false, true);
  CAPTURE(sliding);
  armor::redis_fixed_window<> fixed{{.limit = 10, .window = 1h}, conn, {.name = window_name("dl")}};
  armor::redis_sliding_window<> slide{{.limit = 10, .window = 1h}, conn, {.name = window_name("dl")}};
  REQUIRE(fixed.try_acquire(1));  // connected, scripts loaded
  REQUIRE(slide.try_acquire(1));
  server.pause();
  armor::result<int> r{0};
  bool ran = false;
  const auto body = [&] {
    ran = true;
    return 1;
  };
  const nanoseconds took = armor_test::timed([&] {
    if (sliding) {
      auto p = armor::pipeline{armor::deadline{150ms}, std::ref(slide)};
      r = p.try_execute(body, {.key = "user-7"});
    } else {
      auto p = armor::pipeline{armor::deadline{150ms}, std::ref(fixed)};
      r = p.try_execute(body, {.key = "user-7"});
    }
  });
  server.resume();
  CHECK_FALSE(ran);
  CHECK(r.code() == armor::errc::deadline_exceeded);
  CHECK(took > 100ms);
  CHECK(took < 150ms + 300ms);
  CHECK((sliding ? slide.stats() : fixed.stats()).deadline_exceeded == 1);
  CHECK(conn.stats().failures == 0);
  CHECK(armor_test::eventually([&] { return fixed.try_acquire(1).allowed(); }));
}

TEST_CASE("redis windows: reconfigure changes the limit as the memory windows' reconfigure does") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{window_redis(server.port())};
  const armor::manual_clock clock{nanoseconds{noon_ns + 3'000'000'000}};
  const auto approximate = armor::sliding_window_algorithm::approximate;
  const armor::fixed_window_options f{.limit = 10, .window = 10s};
  const armor::sliding_window_options x{.limit = 10, .window = 10s, .segments = 5};
  const armor::sliding_window_options a{.limit = 10, .window = 10s, .algorithm = approximate};
  armor::fixed_window<armor::manual_clock> mf{f, clock};
  armor::sliding_window<armor::manual_clock> mx{x, clock};
  armor::sliding_window<armor::manual_clock> ma{a, clock};
  armor::redis_fixed_window<armor::manual_clock> rf{f, conn, caller_time(window_name("re-f")), clock};
  armor::redis_sliding_window<armor::manual_clock> rx{x, conn, caller_time(window_name("re-x")), clock};
  armor::redis_sliding_window<armor::manual_clock> ra{a, conn, caller_time(window_name("re-a")), clock};
  std::mt19937_64 rng(2113);
  const std::vector<std::int64_t> limits{10, 4, 25, 1, 12};
  int bad = 0;
  for (std::size_t round = 0; round < limits.size(); ++round) {
    const std::int64_t limit = limits[round];
    if (round > 0) {  // the same reconfiguration on both twins, mid-window
      armor::fixed_window_options f2 = f;
      f2.limit = limit;
      armor::sliding_window_options x2 = x;
      x2.limit = limit;
      armor::sliding_window_options a2 = a;
      a2.limit = limit;
      mf.reconfigure(f2);
      rf.reconfigure(f2);
      mx.reconfigure(x2);
      rx.reconfigure(x2);
      ma.reconfigure(a2);
      ra.reconfigure(a2);
    }
    CHECK(rf.limit() == limit);
    CHECK(rx.limit() == limit);
    CHECK(ra.limit() == limit);
    for (int step = 0; step < 40; ++step) {
      clock.advance(nanoseconds{static_cast<std::int64_t>(rng() % 700'000'000)});
      const std::int64_t n = static_cast<std::int64_t>(rng() % 4);
      const auto same = [&](const armor::window_decision& m, const armor::window_decision& r) {
        if (describe(m) != describe(r)) {
          if (bad++ == 0) FAIL_CHECK("limit " << limit << " n " << n << ": memory " << describe(m) << " / redis " << describe(r));
        }
      };
      same(mf.try_acquire(n), rf.try_acquire(n));
      same(mx.try_acquire(n), rx.try_acquire(n));
      same(ma.try_acquire(n), ra.try_acquire(n));
    }
  }
  CHECK(bad == 0);

  // Refused by name; the old limit stays.
  const auto refused = [&](auto& w, auto options) {
    const std::string m = message_of([&] { w.reconfigure(options); });
    CHECK(w.limit() == 12);
    return m;
  };
  armor::fixed_window_options bad_f = f;
  bad_f.limit = 0;
  CHECK_THAT(refused(rf, bad_f), Catch::Contains("limit"));
  bad_f.limit = (std::int64_t{1} << 52) + 1;
  CHECK_THAT(refused(rf, bad_f), Catch::Contains("limit 4503599627370497 is too large"));
  bad_f = f;
  bad_f.window = 20s;
  CHECK_THAT(refused(rf, bad_f), Catch::Contains("redis_fixed_window::reconfigure: window"));
  bad_f = f;
  bad_f.offset = 1s;
  CHECK_THAT(refused(rf, bad_f), Catch::Contains("offset"));
  armor::sliding_window_options bad_x = x;
  bad_x.segments = 10;
  CHECK_THAT(refused(rx, bad_x), Catch::Contains("redis_sliding_window::reconfigure: segments"));
  bad_x = x;
  bad_x.algorithm = approximate;
  CHECK_THAT(refused(rx, bad_x), Catch::Contains("algorithm"));
  armor::sliding_window_options bad_a = a;
  bad_a.window = 5s;
  CHECK_THAT(refused(ra, bad_a), Catch::Contains("window"));
  bad_a = a;
  bad_a.limit = -3;
  CHECK_THAT(refused(ra, bad_a), Catch::Contains("limit"));

  // With a local fallback, its windows take their share of the new limit.
  armor::redis_window_options local = caller_time(window_name("re-local"));
  local.on_failure = armor::redis_failure_mode::fallback_local;
  local.local_share = 0.5;
  armor::redis_fixed_window<armor::manual_clock> rl{f, conn, local, clock};
  armor::fixed_window_options f3 = f;
  f3.limit = 30;
  rl.reconfigure(f3);
  CHECK(rl.limit() == 30);
  CHECK(rl.try_acquire(30));
}

TEST_CASE("redis windows: reconfigure while other threads decide: every decision reads one whole limit") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{window_redis(server.port())};
  armor::redis_sliding_window<> w{{.limit = 1000, .window = 10s, .segments = 10}, conn, caller_time(window_name("re-t"))};
  std::atomic<int> odd{0};
  std::thread decider([&] {
    for (int i = 0; i < 200; ++i) {
      const armor::window_decision d = w.try_acquire(1);
      if (d.limit() != 1000 && d.limit() != 2000) odd.fetch_add(1);
    }
  });
  for (int i = 0; i < 500; ++i) {
    armor::sliding_window_options o{.limit = i % 2 == 0 ? 2000 : 1000, .window = 10s, .segments = 10};
    w.reconfigure(o);
  }
  decider.join();
  CHECK(odd.load() == 0);
}
