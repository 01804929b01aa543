// armor::redis_quota_storage against a real redis-server (started here):
// the same decisions as the memory backend, call for call; slices from
// Redis's clock; processes sharing one quota admit exactly its limit (and
// within the documented bound with leases); Redis killed and restarted
// under each failure mode, with every call bounded in time.
#include <armor/deadline.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/redis/quota_storage.hpp>

#include "armor_catch.hpp"
#include "redis/failure_support.hpp"
#include "redis/fork_children.hpp"
#include "redis/redis_server.hpp"

#include <poll.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using namespace std::chrono;
using armor::quota_window;

namespace {

// Without redis-server there is nothing to test: exit 77 (CTest: skipped).
const bool have_redis_server = armor_test::require_redis_server();

armor::manual_clock clock_at(sys_time<nanoseconds> t) {
  armor::manual_clock c;
  c.set(armor::manual_clock::time_point{t.time_since_epoch()});
  return c;
}

const auto noon = sys_days{2024y / June / 15} + 12h;

std::string unique_name(const char* what) {
  static std::atomic<int> n{0};
  return std::string(what) + "-" + std::to_string(::getpid()) + "-" + std::to_string(n.fetch_add(1));
}

armor::redis_options local_redis(int port) {
  armor::redis_options o;
  o.port = static_cast<std::uint16_t>(port);
  o.prefix = "armor-test";
  return o;
}

using redis_tracker = armor::quota_tracker<armor::manual_clock, armor::redis_quota_storage>;
using memory_tracker = armor::quota_tracker<armor::manual_clock>;

armor::redis_quota_storage caller_time_storage(const armor::redis_connection& c, const std::string& name,
                                               std::int64_t lease = 0) {
  return armor::redis_quota_storage{c, {.tracker = name, .lease = lease, .time = armor::redis_time_source::caller}};
}

struct alert_log {
  std::vector<std::string>* out = nullptr;
  void operator()(const armor::quota_tracker_event& a) const noexcept {
    out->push_back(std::to_string(a.window) + "@" + std::to_string(a.threshold) + ":" + std::to_string(a.used));
  }
};

template <class Permit>
std::string describe(const armor::quota_tracker_decision<Permit>& d) {
  return "status " + std::to_string(static_cast<int>(d.status())) + " window " + std::to_string(d.window()) +
         " used " + std::to_string(d.used()) + "/" + std::to_string(d.limit()) + " retry_after " +
         std::to_string(d.retry_after().count());
}

}  // namespace

// ---------------------------------------------------------------- options

TEST_CASE("redis options: bad ones are refused by name") {
  const auto message = [](auto make) -> std::string {
    try {
      make();
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      return e.what();
    }
    return "(nothing thrown)";
  };
  CHECK(message([] { armor::redis_connection c{{.prefix = "a{b"}}; }).find("prefix") != std::string::npos);
  CHECK(message([] { armor::redis_connection c{{.command_timeout = 0ms}}; }).find("command_timeout") !=
        std::string::npos);
  CHECK(message([] { armor::redis_connection c{{.connect_timeout = -1ms}}; }).find("connect_timeout") !=
        std::string::npos);
  CHECK(message([] { armor::redis_connection c{{.connections = 0}}; }).find("connections") != std::string::npos);
  const armor::redis_connection conn{local_redis(1)};
  CHECK(message([&] {
          armor::redis_quota_storage s{conn, {.on_failure = armor::redis_failure_mode::fallback_local}};
        }).find("local_share") != std::string::npos);
  CHECK(message([&] { armor::redis_quota_storage s{conn, {.lease = -1}}; }).find("lease") != std::string::npos);
  CHECK(message([&] { armor::redis_quota_storage s{conn, {.tracker = "x}"}}; }).find("tracker") !=
        std::string::npos);
  // 512 us in 1024 buckets: 500 ns a bucket, below the scripts' microsecond.
  CHECK(message([&] {
          armor::quota_tracker<armor::system_clock, armor::redis_quota_storage> t{
              {.windows = {quota_window::rolling(10, 512us, 1024)}}, {}, armor::redis_quota_storage{conn, {}}};
        }).find("whole microseconds") != std::string::npos);
}

// ---------------------------------------------------------------- names

namespace {

/// Checks a Redis stats type's fields(): `n` fields, each exported in an
/// armor_redis_* family with a help text; the counters are distinct members
/// and their families end in _total.
template <class S>
void check_redis_fields(std::size_t n, std::string_view prefix) {
  std::size_t count = 0;
  S s{};
  armor::detail::for_each_field<S>([&](const auto& f) {
    ++count;
    INFO(f.name);
    CHECK(f.metric.starts_with(prefix));
    CHECK_FALSE(f.help.empty());
    if constexpr (std::is_same_v<std::remove_cvref_t<decltype(s.*(f.member))>, std::uint64_t>) {
      CHECK(s.*(f.member) == 0);  // not set by an earlier field: the members are distinct
      s.*(f.member) = count;
      CHECK(f.type == armor::metric_type::counter);
      CHECK(f.metric.ends_with("_total"));
    } else {
      CHECK(f.type == armor::metric_type::gauge);
    }
  });
  CHECK(count == n);
}

}  // namespace

TEST_CASE("redis: enums name themselves, stats describe their fields") {
  CHECK(armor::to_string(armor::redis_failure_mode::fail_closed) == "fail_closed");
  CHECK(armor::to_string(armor::redis_failure_mode::fail_open) == "fail_open");
  CHECK(armor::to_string(armor::redis_failure_mode::fallback_local) == "fallback_local");
  CHECK(armor::to_string(armor::redis_time_source::server) == "server");
  CHECK(armor::to_string(armor::redis_time_source::caller) == "caller");
  check_redis_fields<armor::redis_connection_stats>(12, "armor_redis_");
  check_redis_fields<armor::redis_quota_storage_stats>(8, "armor_redis_quota_");
  // Every call of a connection ends in one outcome of armor_redis_calls_total.
  std::size_t outcomes = 0;
  armor::detail::for_each_field<armor::redis_connection_stats>([&](const auto& f) {
    if (f.metric == "armor_redis_calls_total") {
      ++outcomes;
      CHECK(f.label_name == "outcome");
    }
  });
  CHECK(outcomes == 5);
}

// ---------------------------------------------------------------- semantics

TEST_CASE("redis backend: the same decisions as the memory backend, call for call") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{local_redis(server.port())};
  const std::vector<armor::quota_tracker_options> configs{
      {.windows = {quota_window::per_day(40), quota_window::per_minute(7)}, .utc_offset = -8h},
      {.windows = {quota_window::rolling(15, 10min, 10), quota_window::per_hour(25)}},
      {.windows = {quota_window::per_month(60), quota_window::per_week(30), quota_window::fixed(9, 90s)},
       .utc_offset = 5h + 30min},
  };
  std::mt19937 rng{20240615};
  for (std::size_t c = 0; c < configs.size(); ++c) {
    INFO("config " << c);
    const auto clock_m = clock_at(noon - 40min);
    const auto clock_r = clock_at(noon - 40min);
    std::vector<std::string> alerts_m;
    std::vector<std::string> alerts_r;
    armor::quota_tracker<armor::manual_clock, armor::memory_quota_storage, alert_log> mem{
        configs[c], clock_m, {}, alert_log{&alerts_m}};
    armor::quota_tracker<armor::manual_clock, armor::redis_quota_storage, alert_log> red{
        configs[c], clock_r, caller_time_storage(conn, unique_name("same")), alert_log{&alerts_r}};
    using reservation_m = decltype(mem)::permit_type;
    using reservation_r = decltype(red)::permit_type;
    std::vector<std::pair<reservation_m, reservation_r>> held;
    for (int step = 0; step < 600; ++step) {
      INFO("step " << step);
      const unsigned op = rng() % 10;
      const std::int64_t cost = static_cast<std::int64_t>(rng() % 4);
      if (op < 4) {
        const auto a = mem.try_consume(cost);
        const auto b = red.try_consume(cost);
        REQUIRE(describe(a) == describe(b));
      } else if (op < 6) {
        auto a = mem.reserve(cost + 1);
        auto b = red.reserve(cost + 1);
        REQUIRE(describe(a) == describe(b));
        if (a) held.emplace_back(std::move(a).permit(), std::move(b).permit());
      } else if (op == 6 && !held.empty()) {
        const std::int64_t actual = static_cast<std::int64_t>(rng() % 6);
        auto& [a, b] = held.back();
        REQUIRE(a.commit(actual) == b.commit(actual));
        held.pop_back();
      } else if (op == 7 && !held.empty()) {
        held.front().first.cancel();
        held.front().second.cancel();
        held.erase(held.begin());
      } else if (op == 8) {
        REQUIRE(mem.charge(cost) == red.charge(cost));
      } else {
        const auto d = nanoseconds{static_cast<std::int64_t>(rng() % 240) * 1'000'000'000};
        clock_m.advance(d);
        clock_r.advance(d);
      }
      for (std::size_t w = 0; w < mem.window_count(); ++w) {
        const auto um = mem.usage(w);
        const auto ur = red.usage(w);
        REQUIRE(um.used == ur.used);
        REQUIRE(um.resets_in == ur.resets_in);
      }
    }
    CHECK(alerts_m == alerts_r);
    CHECK_FALSE(alerts_m.empty());
  }
}

TEST_CASE("redis backend: trackers sharing one quota fire each alert once between them, restarts included") {
  // Issue 17, item 5: "once per threshold per period" across processes and restarts.
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{local_redis(server.port())};
  const std::string name = unique_name("alerts");
  const armor::quota_tracker_options options{.windows = {quota_window::per_day(10), quota_window::per_hour(100)}};
  const auto clock = clock_at(noon);
  using alerting = armor::quota_tracker<armor::manual_clock, armor::redis_quota_storage, alert_log>;
  std::vector<std::string> heard_a;
  std::vector<std::string> heard_b;
  {
    alerting a{options, clock, caller_time_storage(conn, name), alert_log{&heard_a}};
    alerting b{options, clock, caller_time_storage(conn, name), alert_log{&heard_b}};
    REQUIRE(a.try_consume(7));
    REQUIRE(b.try_consume(1));  // 8: b reaches 80 %
    REQUIRE(a.try_consume(1));  // 9: a reaches 90 %; 80 % is b's already
    CHECK(heard_a == std::vector<std::string>{"0@0.900000:9"});
    CHECK(heard_b == std::vector<std::string>{"0@0.800000:8"});
    CHECK(a.stats().alerts + b.stats().alerts == 2);
  }
  // A restart (a new tracker on the same quota) fires nothing already fired.
  std::vector<std::string> heard_c;
  alerting c{options, clock, caller_time_storage(conn, name), alert_log{&heard_c}};
  REQUIRE(c.try_consume(0));
  CHECK(heard_c.empty());
  REQUIRE(c.try_consume(1));  // 10: 100 %, new
  CHECK(heard_c == std::vector<std::string>{"0@1.000000:10"});
  clock.advance(12h);  // a new day: armed again
  REQUIRE(c.try_consume(8));
  CHECK(heard_c == std::vector<std::string>{"0@1.000000:10", "0@0.800000:8"});
}

TEST_CASE("redis backend: a re-armed alert is re-armed for the next tracker too") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{local_redis(server.port())};
  const std::string name = unique_name("rearm");
  const armor::quota_tracker_options options{.windows = {quota_window::per_day(100)},
                                             .alert_basis = armor::quota_alert_basis::reserved};
  const auto clock = clock_at(noon);
  using alerting = armor::quota_tracker<armor::manual_clock, armor::redis_quota_storage, alert_log>;
  std::vector<std::string> heard;
  {
    alerting a{options, clock, caller_time_storage(conn, name), alert_log{&heard}};
    auto r = a.reserve(85).permit();
    CHECK(heard == std::vector<std::string>{"0@0.800000:85"});
    CHECK(r.commit(10) == armor::quota_tracker_status::granted);  // below 80 % again: re-armed
  }
  alerting b{options, clock, caller_time_storage(conn, name), alert_log{&heard}};
  REQUIRE(b.try_consume(70));
  CHECK(heard == std::vector<std::string>{"0@0.800000:85", "0@0.800000:80"});
}

TEST_CASE("redis backend: slices come from Redis's clock, not the caller's") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{local_redis(server.port())};
  armor::redis_quota_storage s{conn, {.tracker = unique_name("time")}};
  // The windows of a tracker, as quota_tracker would lay them out.
  const std::vector<armor::quota_window_layout> layouts{
      {5, 0, "fixed/600000000000ns/-480min"},
      {5, 0, "week/+330min"},
      {5, 0, "month/-180min"},
      {5, 60, "rolling/3600000000000ns/60"},
  };
  s.bind(layouts);
  const std::vector<armor::detail::quota_cycle> cycles{
      {armor::detail::quota_cut::fixed, 600'000'000'000, -480LL * 60'000'000'000},
      {armor::detail::quota_cut::week, armor::detail::ns_per_week, 330LL * 60'000'000'000 - armor::detail::first_monday_ns},
      {armor::detail::quota_cut::month, 0, -180LL * 60'000'000'000},
      {armor::detail::quota_cut::rolling, 60'000'000'000, 0},
  };
  for (int attempt = 0;; ++attempt) {
    const std::int64_t before = duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count();
    const armor::quota_consumption c = s.try_consume(armor::quota_stamp{}, 1);  // the caller says: slice 0
    const std::int64_t after = duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count();
    REQUIRE(c.status == armor::quota_storage_status::consumed);
    bool stable = true;
    for (std::size_t i = 0; i < cycles.size(); ++i) stable = stable && cycles[i].index(before) == cycles[i].index(after);
    if (!stable && attempt < 3) continue;  // a boundary passed during the call: try again
    for (std::size_t i = 0; i < cycles.size(); ++i) {
      INFO("window " << i);
      CHECK(c.at[i] == cycles[i].index(after));
      CHECK(c.used[i] == 1);
    }
    break;
  }
}

TEST_CASE("redis backend: a window never moves back (caller time, a host behind)") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{local_redis(server.port())};
  const std::string name = unique_name("behind");
  const armor::quota_tracker_options options{.windows = {quota_window::per_day(5)}};
  redis_tracker ahead{options, clock_at(noon + 24h), caller_time_storage(conn, name)};
  redis_tracker behind{options, clock_at(noon), caller_time_storage(conn, name)};
  REQUIRE(ahead.try_consume(3));
  // The later day is stored: the host behind counts in it too.
  const auto d = behind.try_consume(3);
  CHECK(d.status() == armor::quota_tracker_status::exhausted);
  CHECK(d.used() == 3);
  CHECK(behind.try_consume(2));
  CHECK(ahead.usage(0).used == 5);
  CHECK(behind.usage(0).used == 5);
}

TEST_CASE("redis backend: an idle tracker's keys expire by themselves") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{local_redis(server.port())};
  const std::string name = unique_name("ttl");
  armor::quota_tracker<armor::system_clock, armor::redis_quota_storage> t{
      {.windows = {quota_window::fixed(5, 2s)}}, {}, armor::redis_quota_storage{conn, {.tracker = name}}};
  REQUIRE(t.try_consume(1));
  const std::string key = "armor-test:q:{" + name + "}:fixed/2000000000ns/+0min";
  const long long ttl = server.integer("PTTL %s", key.c_str());
  CHECK(ttl > 0);
  CHECK(ttl <= 3000);  // the period's end (at most 2 s away) plus a second's grace
}

// ---------------------------------------------------------------- leases

TEST_CASE("redis leases: served locally, returned when unused, bounded") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{local_redis(server.port())};
  const std::string name = unique_name("lease");
  const armor::quota_tracker_options options{.windows = {quota_window::per_day(100)}};
  const auto clock = clock_at(noon);
  redis_tracker a{options, clock, caller_time_storage(conn, name, 10)};
  redis_tracker b{options, clock, caller_time_storage(conn, name, 0)};

  REQUIRE(a.try_consume(1));
  CHECK(a.storage().leased() == 9);
  CHECK(b.usage(0).used == 10);  // the whole lease is counted in Redis
  const auto calls = conn.stats().calls;
  for (int i = 0; i < 9; ++i) REQUIRE(a.try_consume(1));
  CHECK(conn.stats().calls == calls);  // served from the lease: no round trip
  REQUIRE(a.try_consume(1));           // a new lease
  CHECK(a.storage().stats().leases == 2);
  CHECK(a.storage().leased() == 9);

  // b consumes until refused: a's 9 unused units are the under-admission.
  int admitted = 0;
  while (b.try_consume(1)) ++admitted;
  CHECK(admitted == 100 - 20);
  REQUIRE(a.storage().return_lease());
  CHECK(a.storage().stats().returned_units == 9);
  while (b.try_consume(1)) ++admitted;
  CHECK(admitted == 100 - 11);
  CHECK(b.usage(0).used == 100);

  // A new day: the old lease's slices are over; a new lease is taken.
  clock.advance(24h);
  REQUIRE(a.try_consume(3));
  CHECK(a.storage().leased() == 7);
  CHECK(b.usage(0).used == 10);
}

TEST_CASE("redis leases: threads sharing one storage admit exactly the limit") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{local_redis(server.port())};
  armor::quota_tracker<armor::system_clock, armor::redis_quota_storage> t{
      {.windows = {quota_window::per_day(3000)}}, {}, armor::redis_quota_storage{conn, {.tracker = unique_name("threads"), .lease = 7}}};
  std::atomic<std::int64_t> admitted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      std::int64_t mine = 0;
      while (t.try_consume(1)) ++mine;
      admitted.fetch_add(mine);
    });
  }
  for (auto& th : threads) th.join();
  CHECK(admitted.load() == 3000);
  CHECK(t.usage(0).used == 3000);
}

// ---------------------------------------------------------------- processes

namespace {

/// Forks `children` processes that each build a tracker named `name` and
/// consume one unit at a time until refused; returns the units they report.
std::int64_t run_children(int port, const std::string& name, std::int64_t lease, int children,
                          const armor::quota_tracker_options& options) {
  return armor_test::sum_over_children(children, [&] {
    const armor::redis_connection conn{local_redis(port)};
    armor::quota_tracker<armor::system_clock, armor::redis_quota_storage> t{
        options, {}, armor::redis_quota_storage{conn, {.tracker = name, .lease = lease}}};
    armor_test::child_report r;
    while (t.try_consume(1)) ++r.units;
    r.refused_as_expected = t.try_consume(1).status() == armor::quota_tracker_status::exhausted;
    return r;
  });
}

}  // namespace

TEST_CASE("redis backend: processes sharing one quota admit exactly its limit") {
  auto& server = armor_test::shared_redis();
  const armor::quota_tracker_options options{.windows = {quota_window::per_day(600), quota_window::rolling(900, 1h, 60)}};
  const std::string name = unique_name("procs");
  CHECK(run_children(server.port(), name, 0, 4, options) == 600);
  const armor::redis_connection conn{local_redis(server.port())};
  armor::quota_tracker<armor::system_clock, armor::redis_quota_storage> t{
      options, {}, armor::redis_quota_storage{conn, {.tracker = name}}};
  CHECK(t.usage(0).used == 600);
  CHECK(t.usage(1).used == 600);
}

TEST_CASE("redis backend: processes with leases stay within the documented bound") {
  auto& server = armor_test::shared_redis();
  const armor::quota_tracker_options options{.windows = {quota_window::per_day(600)}};
  constexpr std::int64_t lease = 16;
  constexpr int children = 4;
  const std::string name = unique_name("procs-lease");
  const std::int64_t total = run_children(server.port(), name, lease, children, options);
  CHECK(total <= 600);
  CHECK(total >= 600 - children * lease);
  const armor::redis_connection conn{local_redis(server.port())};
  armor::quota_tracker<armor::system_clock, armor::redis_quota_storage> t{
      options, {}, armor::redis_quota_storage{conn, {.tracker = name}}};
  CHECK(t.usage(0).used <= 600);
}

// ---------------------------------------------------------------- failures

namespace {


using sys_tracker = armor::quota_tracker<armor::system_clock, armor::redis_quota_storage>;

}  // namespace

TEST_CASE("redis killed and restarted: fail_closed refuses with storage_unavailable, in time, then recovers") {
  armor_test::redis_server server;
  const armor::redis_connection conn{armor_test::failing_redis_options(local_redis(server.port()))};
  sys_tracker t{{.windows = {quota_window::per_day(100)}}, {}, armor::redis_quota_storage{conn, {.tracker = "closed"}}};
  REQUIRE(t.try_consume(1));
  server.kill();
  nanoseconds worst{0};
  for (int i = 0; i < 50; ++i) {
    armor::quota_tracker_decision<> d;
    worst = std::max(worst, armor_test::timed([&] { d = t.try_consume(1); }));
    REQUIRE(d.status() == armor::quota_tracker_status::unavailable);
    REQUIRE(d.code() == armor::errc::storage_unavailable);
  }
  CHECK(worst < armor_test::redis_call_bound);
  CHECK(conn.stats().breaker_rejections > 0);  // most calls never touched the network
  CHECK(t.storage().stats().failed_closed == 50);
  CHECK_THROWS_AS((void)t.usage(0), armor::error);

  // Through a pipeline with a deadline: the call ends in time, with the storage's own code.
  auto p = armor::pipeline{armor::deadline{300ms}, std::ref(t)};
  armor::result<int> r{0};
  const auto took = armor_test::timed([&] { r = p.try_execute([] { return 1; }); });
  CHECK_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::storage_unavailable);
  CHECK(took < armor_test::redis_call_bound);

  server.start();  // same port, empty (nothing persisted)
  CHECK(armor_test::eventually([&] { return t.try_consume(1).allowed(); }));
  CHECK(t.usage(0).used == 1);
  CHECK(conn.stats().connects >= 2);
}

TEST_CASE("redis killed and restarted: fail_open admits and says so") {
  armor_test::redis_server server;
  const armor::redis_connection conn{armor_test::failing_redis_options(local_redis(server.port()))};
  sys_tracker t{{.windows = {quota_window::per_day(5)}},
                {},
                armor::redis_quota_storage{conn, {.tracker = "open", .on_failure = armor::redis_failure_mode::fail_open}}};
  REQUIRE(t.try_consume(5));
  CHECK(t.try_consume(1).status() == armor::quota_tracker_status::exhausted);
  server.kill();
  nanoseconds worst{0};
  for (int i = 0; i < 20; ++i) {
    worst = std::max(worst, armor_test::timed([&] {
      auto r = t.reserve(2);  // admitted uncounted; dropping it must not touch Redis
      REQUIRE(r);
    }));
  }
  CHECK(worst < armor_test::redis_call_bound);
  CHECK(t.storage().stats().failed_open == 20);
  server.start();
  // fail_open admits either way: wait for a consumption Redis counted.
  CHECK(armor_test::eventually([&] {
    const auto open_before = t.storage().stats().failed_open;
    return t.try_consume(1).allowed() && t.storage().stats().failed_open == open_before;
  }));
  CHECK(t.usage(0).used == 1);  // a fresh server; nothing was subtracted from it
}

TEST_CASE("redis killed and restarted: fallback_local serves its share, then Redis again") {
  armor_test::redis_server server;
  const armor::redis_connection conn{armor_test::failing_redis_options(local_redis(server.port()))};
  sys_tracker t{{.windows = {quota_window::per_day(10)}},
                {},
                armor::redis_quota_storage{
                    conn, {.tracker = "local", .on_failure = armor::redis_failure_mode::fallback_local, .local_share = 0.5}}};
  REQUIRE(t.try_consume(1));
  server.kill();
  int admitted = 0;
  nanoseconds worst{0};
  for (int i = 0; i < 20; ++i) {
    armor::quota_tracker_decision<> d;
    worst = std::max(worst, armor_test::timed([&] { d = t.try_consume(1); }));
    if (d) ++admitted;
    else CHECK(d.status() == armor::quota_tracker_status::exhausted);
  }
  CHECK(admitted == 5);  // half of 10
  CHECK(worst < armor_test::redis_call_bound);
  CHECK(t.usage(0).used == 5);  // the local counts, while Redis is away
  CHECK(t.storage().stats().served_locally == 20);
  server.start();
  CHECK(armor_test::eventually([&] { return t.try_consume(2).allowed(); }));
  CHECK(t.usage(0).used == 2);  // Redis's counts again (a fresh server)
}

TEST_CASE("redis frozen (SIGSTOP): calls time out within the bound; the breaker makes them fast") {
  armor_test::redis_server server;
  const armor::redis_connection conn{armor_test::failing_redis_options(local_redis(server.port()))};
  sys_tracker t{{.windows = {quota_window::per_day(100)}}, {}, armor::redis_quota_storage{conn, {.tracker = "slow"}}};
  REQUIRE(t.try_consume(1));
  server.pause();
  std::vector<nanoseconds> took;
  for (int i = 0; i < 10; ++i) {
    took.push_back(armor_test::timed([&] { CHECK(t.try_consume(1).status() == armor::quota_tracker_status::unavailable); }));
  }
  server.resume();
  CHECK(*std::max_element(took.begin(), took.end()) < armor_test::redis_call_bound);
  CHECK(took.front() >= 90ms);  // the first call waited for its reply (command_timeout)
  CHECK(took.back() < 50ms);    // by then the breaker refused at once
  CHECK(armor_test::eventually([&] { return t.try_consume(1).allowed(); }));
  // The reply that arrived late was not taken for a later command's: the
  // count is what this test consumed (2 and the frozen call's unit, if
  // Redis ran it after waking).
  const auto used = t.usage(0).used;
  CHECK(used >= 2);
  CHECK(used <= 3);
}

TEST_CASE("redis killed mid-run: leases under fail_closed; recovery takes a new lease") {
  armor_test::redis_server server;
  const armor::redis_connection conn{armor_test::failing_redis_options(local_redis(server.port()))};
  sys_tracker t{{.windows = {quota_window::per_day(100)}}, {}, armor::redis_quota_storage{conn, {.tracker = "lease-kill", .lease = 5}}};
  REQUIRE(t.try_consume(1));
  server.kill();
  int served = 0;
  while (t.try_consume(1)) ++served;
  CHECK(served == 4);  // what the lease held; then the refill fails closed
  CHECK(t.try_consume(1).status() == armor::quota_tracker_status::unavailable);
  server.start();
  CHECK(armor_test::eventually([&] { return t.try_consume(1).allowed(); }));
  CHECK(t.storage().leased() == 4);
}

// ---------------------------------------------------------------- from a URL

TEST_CASE("redis quota config from a backend URL: every parameter, and a tracker that counts through it") {
  const armor::redis_quota_config c = armor::redis_quota_config_from_url(
      "redis://:pw@10.0.0.5:6380/0?prefix=app&connect_timeout=1s&command_timeout=50ms&connections=4"
      "&tracker=openai&on_failure=fallback_local&local_share=0.25&lease=10&time=caller");
  CHECK(c.connection.host == "10.0.0.5");
  CHECK(c.connection.port == 6380);
  CHECK(c.connection.password == "pw");
  CHECK(c.connection.prefix == "app");
  CHECK(c.connection.connect_timeout == 1s);
  CHECK(c.connection.command_timeout == 50ms);
  CHECK(c.connection.connections == 4);
  CHECK(c.storage.tracker == "openai");
  CHECK(c.storage.on_failure == armor::redis_failure_mode::fallback_local);
  CHECK(c.storage.local_share == 0.25);
  CHECK(c.storage.lease == 10);
  CHECK(c.storage.time == armor::redis_time_source::caller);
  const armor::redis_quota_config d = armor::redis_quota_config_from_url("redis://cache");
  CHECK(d.connection.port == 6379);
  CHECK(d.connection.prefix == "armor");
  CHECK(d.storage.on_failure == armor::redis_failure_mode::fail_closed);

  // A real tracker on the test's server, configured by nothing but a URL.
  auto& server = armor_test::shared_redis();
  const armor::redis_quota_config u = armor::redis_quota_config_from_url(
      "redis://127.0.0.1:" + std::to_string(server.port()) + "?prefix=armor-test&time=caller&tracker=" +
      unique_name("url"));
  const armor::redis_connection conn{u.connection};
  const auto clock = clock_at(noon);
  const armor::quota_tracker_options options{.windows = {quota_window::per_day(3)}};
  redis_tracker a{options, clock, armor::redis_quota_storage{conn, u.storage}};
  redis_tracker b{options, clock, armor::redis_quota_storage{conn, u.storage}};
  CHECK(a.try_consume(2));
  CHECK(b.try_consume(1));
  CHECK_FALSE(a.try_consume(1));  // the two share the count in Redis
}

TEST_CASE("redis quota config from a backend URL: what it cannot do is refused by name") {
  const auto message = [](const std::string& url) -> std::string {
    try {
      (void)armor::redis_quota_config_from_url(url);
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      return e.what();
    }
    return "(nothing thrown)";
  };
  const auto has = [](const std::string& m, std::string_view part) { return m.find(part) != std::string::npos; };
  CHECK(has(message("redis://h?on_failure=ignore"), "on_failure=\"ignore\""));
  CHECK(has(message("redis://h?connections=0"), "connections=\"0\": an integer in [1, 64]"));
  CHECK(has(message("redis://h?command_timeout=5"), "command_timeout=\"5\": a duration with a unit"));
  CHECK(has(message("redis://h?lease=-1"), "lease=\"-1\""));
  CHECK(has(message("redis://h?time=local"), "time=\"local\": server or caller"));
  CHECK(has(message("redis://h?local_share=half"), "local_share=\"half\": a number"));
  CHECK(has(message("redis://h?db=2"), "unknown query parameter \"db\""));
  CHECK(has(message("redis://h/3"), "database 3: armor's Redis backends use database 0"));
  CHECK(has(message("redis://alice:pw@h"), "user \"alice\": only a password is sent"));
  CHECK(has(message("redis+sentinel://s1/mymaster/3"), "database 3: armor's Redis backends use database 0"));
  CHECK(armor::redis_quota_config_from_url("redis+sentinel://s1/mymaster").connection.primary_name == "mymaster");
  const armor::redis_quota_config cl = armor::redis_quota_config_from_url("redis+cluster://n1:7000,n2,n3:7002");
  CHECK(cl.connection.cluster);
  CHECK(cl.connection.host == "n1");
  CHECK(cl.connection.port == 7000);
  CHECK(cl.connection.seeds == std::vector<std::string>{"n2:6379", "n3:7002"});
  CHECK(has(message("sqlite:q.db"), "names a sqlite backend, not redis:"));
  CHECK(has(message("redis://h:99999"), "port \"99999\""));
  // Accepted: database 0 written out, and the ACL's default user.
  CHECK(message("redis://default:pw@h/0") == "(nothing thrown)");
}

// ---------------------------------------------------------------- reconfigure

TEST_CASE("redis backend: reconfigure() changes the limits from the next consumption; Redis's counts stay",
          "[reconfigure]") {
  auto& server = armor_test::shared_redis();
  const armor::redis_connection conn{local_redis(server.port())};
  const auto per_day = [](std::int64_t limit) {
    return armor::quota_tracker_options{.windows = {quota_window::per_day(limit), quota_window::per_minute(100)}};
  };
  for (const std::int64_t lease : {std::int64_t{0}, std::int64_t{2}}) {
    CAPTURE(lease);
    const std::string name = unique_name("reconfigure");
    redis_tracker t{per_day(3), clock_at(noon), caller_time_storage(conn, name, lease)};
    CHECK(t.try_consume(1));
    t.reconfigure(per_day(5));
    // Another process, sharing the counts with the limits built with.
    redis_tracker other{per_day(3), clock_at(noon), caller_time_storage(conn, name)};
    CHECK(t.try_consume(1));
    CHECK(t.try_consume(1));
    CHECK(other.try_consume(1).status() == armor::quota_tracker_status::exhausted);  // 3 of its 3
    CHECK(t.try_consume(1));
    CHECK(t.try_consume(1));  // 5 of the new 5: a lease taken before was given back
    const auto d = t.try_consume(1);
    CHECK(d.status() == armor::quota_tracker_status::exhausted);
    CHECK(d.limit() == 5);
    // Lowered below the use: refused, used above limit.
    t.reconfigure(per_day(4));
    CHECK(t.try_consume(0).status() == armor::quota_tracker_status::exhausted);
    CHECK(t.usage(0).limit == 4);
    // A bad value is refused by name; the old limits stay.
    try {
      t.reconfigure(per_day(0));
      FAIL("a zero limit was taken");
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      CHECK(std::string(e.what()).find("windows[0].limit") != std::string::npos);
    }
    CHECK(t.options().windows[0].limit == 4);
    // Back to the limits built with (leases again), then raised: the counts
    // in Redis are what both trackers see.
    t.reconfigure(per_day(3));
    CHECK(!t.try_consume(1));
    t.reconfigure(per_day(9));
    redis_tracker fresh{per_day(9), clock_at(noon), caller_time_storage(conn, name)};
    const std::int64_t used = fresh.usage(0).used;
    CHECK(used == 5);
    for (std::int64_t k = used; k < 9; ++k) CHECK(t.try_consume(1));
    CHECK(!t.try_consume(1));
    CHECK(!fresh.try_consume(1));
  }
}

TEST_CASE("redis killed: fallback_local serves its share of the reconfigured limits", "[reconfigure]") {
  armor_test::redis_server server;
  const armor::redis_connection conn{armor_test::failing_redis_options(local_redis(server.port()))};
  sys_tracker t{{.windows = {quota_window::per_day(10)}},
                {},
                armor::redis_quota_storage{conn,
                                           {.tracker = unique_name("local-reconfigure"),
                                            .on_failure = armor::redis_failure_mode::fallback_local,
                                            .local_share = 0.5}}};
  REQUIRE(t.try_consume(1));
  t.reconfigure({.windows = {quota_window::per_day(16)}});
  server.kill();
  int admitted = 0;
  for (int i = 0; i < 20; ++i) {
    const auto d = t.try_consume(1);
    if (d) ++admitted;
    else CHECK(d.status() == armor::quota_tracker_status::exhausted);
  }
  CHECK(admitted == 8);  // half of 16 (the limit built with: 5)
}
