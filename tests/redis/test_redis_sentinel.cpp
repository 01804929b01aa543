// armor's Redis backends behind Redis Sentinel, on loopback: a primary, a
// replica and three sentinels started here (quorum 2, down-after 500 ms).
// The options and URLs that name Sentinel; no sentinel answering (calls end
// as on_failure says); then a shared token bucket under load from two
// threads while the primary is killed (SIGKILL): the sentinels promote the
// replica and the connection follows; then the old primary back as a
// replica and SENTINEL FAILOVER asked: the replaced primary still answers
// (the sentinels demote it seconds later), and the connection follows the
// new one by asking the sentinels again (sentinel_recheck, 1 s). The
// windows and what was admitted in them are measured and printed
// (docs/redis.md, "Sentinel"). About 8 s, most of it the sentinels'.
#include <armor/redis/quota_storage.hpp>
#include <armor/redis/token_bucket.hpp>

#include "armor_catch.hpp"
#include "redis/failure_support.hpp"
#include "redis/redis_server.hpp"

#include <hiredis/hiredis.h>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using namespace std::chrono;

namespace {

const bool have_redis_server_for_sentinel = armor_test::require_redis_server();

/// One command on 127.0.0.1:port, its reply as text (armor_test::redis_command).
std::string ask(int port, const std::vector<std::string>& words) {
  return armor_test::redis_command(port, words, std::chrono::seconds(1));
}

/// Calls `f` every 2 ms (or `every`) until it returns true, for at most `limit` (a bound
/// for a loaded machine, never a measure); true if it did.
template <class F>
bool poll_until(F f, milliseconds limit, milliseconds every = 2ms) {
  const auto until = steady_clock::now() + limit;
  while (steady_clock::now() < until) {
    if (f()) return true;
    std::this_thread::sleep_for(every);
  }
  return f();
}

/// A redis-server in Sentinel mode of the test's own (`redis-server
/// sentinel.conf --sentinel`), watching the primary at `primary_port` as
/// "mymaster", quorum 2; killed, its directory removed, by the destructor.
class sentinel_process {
 public:
  explicit sentinel_process(int primary_port) : port_(armor_test::free_port()) {
    static int n = 0;
    dir_ = std::filesystem::temp_directory_path() /
           ("armor_sentinel_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    std::filesystem::create_directories(dir_);
    const std::filesystem::path conf = dir_ / "sentinel.conf";
    {
      std::ofstream f(conf);
      f << "port " << port_ << "\nbind 127.0.0.1\ndaemonize no\ndir " << dir_.string() << "\nlogfile "
        << (dir_ / "sentinel.log").string() << "\nsentinel monitor mymaster 127.0.0.1 " << primary_port
        << " 2\nsentinel down-after-milliseconds mymaster 500\nsentinel failover-timeout mymaster 2000\n";
    }
    const std::string exe = armor_test::redis_server_path();
    const std::string conf_path = conf.string();
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("sentinel_process: fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      const std::array<const char*, 4> argv{exe.c_str(), conf_path.c_str(), "--sentinel", nullptr};
      ::execv(exe.c_str(), const_cast<char* const*>(argv.data()));
      ::_exit(127);
    }
    if (!poll_until([&] { return ask(port_, {"PING"}) == "PONG"; }, 10s)) {
      stop();
      throw std::runtime_error("sentinel_process: no answer on port " + std::to_string(port_));
    }
  }
  ~sentinel_process() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  sentinel_process(const sentinel_process&) = delete;
  sentinel_process& operator=(const sentinel_process&) = delete;

  [[nodiscard]] int port() const noexcept { return port_; }
  /// What this sentinel says of "mymaster" (SENTINEL MASTER): field `name`.
  [[nodiscard]] std::string field(const std::string& name) const {
    const std::string all = " " + ask(port_, {"SENTINEL", "MASTER", "mymaster"}) + " ";
    const auto at = all.find(" " + name + " ");
    if (at == std::string::npos) return {};
    const auto from = at + name.size() + 2;
    return all.substr(from, all.find(' ', from) - from);
  }

 private:
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  int port_;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
};

armor::redis_options sentinel_redis(const std::vector<int>& sentinel_ports, std::string name = "mymaster") {
  armor::redis_options o;
  for (const int p : sentinel_ports) o.sentinels.push_back("127.0.0.1:" + std::to_string(p));
  o.primary_name = std::move(name);
  o.prefix = "armor-test";
  return armor_test::failing_redis_options(std::move(o));
}

std::string message_of(const armor::redis_options& o) {
  try {
    const armor::redis_connection c{o};
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    return e.what();
  }
  return "(nothing thrown)";
}

}  // namespace

TEST_CASE("redis sentinel: options that cannot work are refused by name") {
  const auto has = [](const std::string& m, std::string_view part) { return m.find(part) != std::string::npos; };
  CHECK(has(message_of({.sentinels = {"s1:26379"}}), "primary_name must name the primary"));
  CHECK(has(message_of({.primary_name = "mymaster"}), "primary_name is for Sentinel"));
  CHECK(has(message_of({.sentinel_password = "pw"}), "sentinel_password is for Sentinel"));
  CHECK(has(message_of({.cluster = true, .sentinels = {"s1:26379"}, .primary_name = "m"}),
            "sentinels and cluster exclude each other"));
  CHECK(has(message_of({.sentinels = {"s1"}, .primary_name = "m"}), "sentinels: \"s1\" is not host:port"));
  CHECK(has(message_of({.sentinels = {":26379"}, .primary_name = "m"}), "sentinels: \":26379\" is not host:port"));
  CHECK(has(message_of({.sentinels = {"s1:0"}, .primary_name = "m"}), "sentinels: \"s1:0\""));
  CHECK(has(message_of({.sentinels = {"s1:26379"}, .primary_name = "m", .sentinel_recheck = -1ms}),
            "sentinel_recheck must not be negative"));
  CHECK(message_of({.sentinels = {"s1:26379", "[::1]:26380"}, .primary_name = "m"}) == "(nothing thrown)");
}

TEST_CASE("redis sentinel: a redis+sentinel URL names the sentinels, the primary and both passwords") {
  const armor::redis_quota_config c = armor::redis_quota_config_from_url(
      "redis+sentinel://:pw@10.0.0.7,10.0.0.8:26380,[::1]/mymaster/0"
      "?sentinel_password=spw&command_timeout=50ms&sentinel_recheck=250ms");
  CHECK(c.connection.sentinels == std::vector<std::string>{"10.0.0.7:26379", "10.0.0.8:26380", "::1:26379"});
  CHECK(c.connection.primary_name == "mymaster");
  CHECK(c.connection.password == "pw");
  CHECK(c.connection.sentinel_password == "spw");
  CHECK(c.connection.command_timeout == 50ms);
  CHECK(c.connection.sentinel_recheck == 250ms);
  CHECK_FALSE(c.connection.cluster);
  CHECK_NOTHROW(armor::redis_connection{c.connection});
  const auto message = [](const std::string& url) -> std::string {
    try {
      (void)armor::redis_quota_config_from_url(url);
    } catch (const armor::error& e) {
      return e.what();
    }
    return "(nothing thrown)";
  };
  CHECK(message("redis+sentinel://s1/mymaster").find("nothing thrown") != std::string::npos);
  CHECK(message("redis+sentinel://s1/mymaster/2").find("database 2: armor's Redis backends use database 0") !=
        std::string::npos);
  CHECK(message("redis+sentinel://s1/mymaster/x").find("the path is a database number (got \"x\")") !=
        std::string::npos);
  CHECK(message("redis+sentinel://s1/mymaster/").find("the path is a database number") != std::string::npos);
  CHECK(message("redis+sentinel://s1//0").find("primary's name is missing") != std::string::npos);
  CHECK(message("redis://h?sentinel_password=x").find("unknown query parameter \"sentinel_password\"") !=
        std::string::npos);
}

TEST_CASE("redis sentinel: no sentinel answers: calls end as on_failure says, fast") {
  const armor::redis_connection conn{sentinel_redis({armor_test::free_port(), armor_test::free_port()})};
  armor::redis_token_bucket<> closed{{.rate = {10, 1s}, .burst = 5}, conn, {.name = "nobody"}};
  armor::redis_token_bucket<> open{{.rate = {10, 1s}, .burst = 5},
                                   conn,
                                   {.name = "nobody-open", .on_failure = armor::redis_failure_mode::fail_open}};
  nanoseconds worst{0};
  for (int i = 0; i < 10; ++i) {
    worst = std::max(worst, armor_test::timed([&] {
      CHECK(closed.try_acquire(1).code() == armor::errc::storage_unavailable);
      CHECK(open.try_acquire(1).allowed());
    }));
  }
  CHECK(worst < 2 * armor_test::redis_call_bound);
  const armor::redis_connection_stats s = conn.stats();
  CHECK(s.primary_lookups >= 1);
  CHECK(s.primary_changes == 0);
  CHECK(s.calls == 0);
  CHECK(s.breaker_rejections > 0);
  CHECK(closed.stats().failed_closed == 10);
  CHECK(open.stats().failed_open == 10);
}

TEST_CASE("redis sentinel, under load: the primary killed, then a failover asked for; the connection follows both") {
  // No 5 s wait for more replicas before a full sync (either may be primary).
  armor_test::redis_server primary{{"--repl-diskless-sync-delay", "0"}};
  armor_test::redis_server replica{
      {"--replicaof", "127.0.0.1", std::to_string(primary.port()), "--repl-diskless-sync-delay", "0"}};
  REQUIRE(poll_until([&] { return ask(replica.port(), {"INFO", "replication"}).find("master_link_status:up") !=
                                  std::string::npos; },
                     15s));
  std::vector<std::unique_ptr<sentinel_process>> sentinels;
  std::vector<int> ports;
  for (int i = 0; i < 3; ++i) {
    sentinels.push_back(std::make_unique<sentinel_process>(primary.port()));
    ports.push_back(sentinels.back()->port());
  }
  // The sentinels find each other and the replica through the primary
  // (hello messages every 2 s); a failover needs that.
  REQUIRE(poll_until([&] {
    for (const auto& s : sentinels) {
      if (s->field("num-other-sentinels") != "2" || s->field("num-slaves") != "1") return false;
    }
    return true;
  }, 20s));

  // A name the sentinels do not monitor: no primary, fail_closed.
  {
    const armor::redis_connection lost{sentinel_redis(ports, "nosuch")};
    armor::redis_token_bucket<> b{{.rate = {10, 1s}, .burst = 5}, lost, {.name = "lost"}};
    CHECK(b.try_acquire(1).code() == armor::errc::storage_unavailable);
    CHECK(lost.stats().primary_lookups >= 1);
  }

  const armor::redis_connection conn{sentinel_redis({armor_test::free_port(), ports[0], ports[1], ports[2]})};
  constexpr double rate = 200;  // per second
  constexpr std::int64_t burst = 20;
  constexpr double share = 0.5;
  armor::redis_token_bucket<> bucket{{.rate = {200, 1s}, .burst = burst},
                                     conn,
                                     {.name = "failover",
                                      .on_failure = armor::redis_failure_mode::fallback_local,
                                      .local_share = share}};
  struct decision_at {
    steady_clock::time_point at;
    bool allowed;
  };
  std::atomic<bool> stop{false};
  std::array<std::vector<decision_at>, 2> seen;
  std::vector<std::thread> load;
  const auto start = steady_clock::now();
  for (auto& mine : seen) {
    mine.reserve(40'000);
    load.emplace_back([&bucket, &stop, &mine] {
      while (!stop.load(std::memory_order_relaxed)) {
        const bool ok = bucket.try_acquire(1).allowed();
        mine.push_back({steady_clock::now(), ok});
        std::this_thread::sleep_for(1ms);  // pacing: about 1000 calls a second per thread, well over the rate
      }
    });
  }
  bool followed = false;
  bool promoted = false;
  steady_clock::time_point killed;
  steady_clock::time_point switched;
  steady_clock::time_point back;
  armor::redis_connection_stats at_kill;
  bool followed_back = false;
  std::string failover_answer;
  steady_clock::time_point restarted;
  steady_clock::time_point synced_at;
  std::string refused_with;
  steady_clock::time_point asked;
  std::uint64_t failures_at_ask = 0;
  steady_clock::time_point back_again;
  // Everything from here to the join runs whatever happens (an exception
  // is kept for after it), so that the threads always stop.
  std::exception_ptr thrown;
  try {
    if (poll_until([&] { return conn.stats().calls >= 50; }, 10s)) {
      // 1. The primary killed: the sentinels promote the replica.
      at_kill = conn.stats();
      killed = steady_clock::now();
      primary.kill();
      if (poll_until([&] { return conn.stats().primary_changes >= 1; }, 20s)) {
        switched = steady_clock::now();
        const std::uint64_t calls = conn.stats().calls;
        followed = poll_until([&] { return conn.stats().calls > calls; }, 10s);
        back = steady_clock::now();
        promoted = ask(replica.port(), {"ROLE"}).starts_with("master");
      }
      // 2. The old primary back, as a replica of the new one; then a failover
      // asked for (SENTINEL FAILOVER) while the new primary stays up. The
      // sentinels name the first server at once but demote the second only
      // seconds later (it keeps answering as a primary meanwhile): no call
      // fails, and the connection follows on its next recheck.
      if (followed) {
        primary.start();  // empty, on its port
        restarted = steady_clock::now();
        (void)ask(primary.port(), {"REPLICAOF", "127.0.0.1", std::to_string(replica.port())});
        const bool synced = poll_until([&] {
          return ask(primary.port(), {"INFO", "replication"}).find("master_link_status:up") != std::string::npos;
        }, 15s);
        synced_at = steady_clock::now();
        // Refused (NOGOODSLAVE, INPROG) until the sentinel has seen the
        // replica fit and the last failover is over.
        if (synced && poll_until([&] {
              failover_answer = ask(ports[0], {"SENTINEL", "FAILOVER", "mymaster"});
              if (failover_answer != "OK") refused_with = failover_answer;
              return failover_answer == "OK";
            }, 20s, 50ms)) {
          asked = steady_clock::now();
          failures_at_ask = conn.stats().failures;
          if (poll_until([&] { return conn.stats().primary_changes >= 2; }, 20s)) {
            const std::uint64_t calls = conn.stats().calls;
            followed_back = poll_until([&] { return conn.stats().calls > calls; }, 10s);
            back_again = steady_clock::now();
          }
        }
      }
    }
    if (followed_back) std::this_thread::sleep_for(100ms);  // some load on the primary again
  } catch (...) {
    thrown = std::current_exception();
  }
  stop = true;
  for (auto& t : load) t.join();
  const auto end = steady_clock::now();
  if (thrown) std::rethrow_exception(thrown);

  REQUIRE(at_kill.calls >= 50);
  CHECK(at_kill.primary_lookups >= 1);
  CHECK(at_kill.primary_changes == 0);
  REQUIRE(followed);
  CHECK(promoted);
  INFO("SENTINEL FAILOVER answered: " << failover_answer);
  REQUIRE(followed_back);
  const armor::redis_connection_stats s = conn.stats();
  CHECK(s.primary_changes == 2);
  CHECK(ask(primary.port(), {"ROLE"}).starts_with("master"));

  struct tally {
    std::int64_t decided = 0;
    std::int64_t admitted = 0;
  };
  tally all;
  tally first_window;
  tally second_window;
  for (const auto& mine : seen) {
    for (const decision_at& d : mine) {
      const auto add = [&](tally& t) {
        ++t.decided;
        t.admitted += d.allowed ? 1 : 0;
      };
      add(all);
      if (d.at >= killed && d.at <= back) add(first_window);
      if (d.at >= asked && d.at <= back_again) add(second_window);
    }
  }
  const double window = duration<double>(back - killed).count();
  const double window_again = duration<double>(back_again - asked).count();
  const double total = duration<double>(end - start).count();
  const double local_bound = share * (static_cast<double>(burst) + rate * window);
  std::printf(
      "redis sentinel, primary killed: sentinels switched after %.0f ms; first answer from the new primary "
      "after %.0f ms (the window without Redis)\n"
      "  in the window: %lld decisions, %lld admitted (fallback_local, share %.1f: bound %.0f locally); "
      "served locally in all: %llu\n"
      "redis sentinel, SENTINEL FAILOVER (the old primary synced %.0f ms after its restart, failover accepted "
      "%.0f ms later, refused before with \"%s\"): first answer from the new primary %.0f ms after it was "
      "accepted; in between %lld decisions, %lld admitted, %llu failed calls\n"
      "  whole run %.2f s: %lld decisions, %lld admitted (rate * t + burst = %.0f); connection: %llu answered, "
      "%llu failed, %llu refused by the breaker, %llu lookups, %llu primary changes\n",
      duration<double, std::milli>(switched - killed).count(), window * 1000.0,
      static_cast<long long>(first_window.decided), static_cast<long long>(first_window.admitted), share,
      local_bound, static_cast<unsigned long long>(bucket.stats().served_locally),
      duration<double, std::milli>(synced_at - restarted).count(),
      duration<double, std::milli>(asked - synced_at).count(),
      refused_with.c_str(), window_again * 1000.0,
      static_cast<long long>(second_window.decided), static_cast<long long>(second_window.admitted),
      static_cast<unsigned long long>(s.failures - failures_at_ask), total,
      static_cast<long long>(all.decided), static_cast<long long>(all.admitted),
      rate * total + static_cast<double>(burst), static_cast<unsigned long long>(s.calls),
      static_cast<unsigned long long>(s.failures), static_cast<unsigned long long>(s.breaker_rejections),
      static_cast<unsigned long long>(s.primary_lookups), static_cast<unsigned long long>(s.primary_changes));
  std::fflush(stdout);

  // In the first window the local fallback admits at most its share of the
  // burst and of the rate; at its two ends a few decisions are Redis's (a
  // call in flight at the kill; the new primary's bucket, refilled while the
  // window lasted, answering before the poll above saw it).
  CHECK(static_cast<double>(first_window.admitted) <= local_bound + static_cast<double>(burst) + 4);
  // Over the run: the Redis bucket's rate and burst; the fallback's share
  // while Redis was away; what the promoted servers had not received
  // (replication is asynchronous: the tokens taken on the old primary in its
  // last moments, and, in the asked-for failover, the ones taken on the
  // demoted primary between the promotion and its demotion), bounded here
  // by a burst and the rate over the second window.
  CHECK(static_cast<double>(all.admitted) <=
        rate * total + static_cast<double>(burst) + local_bound + static_cast<double>(burst) +
            static_cast<double>(burst) + rate * window_again);
  CHECK(bucket.stats().served_locally > 0);
  // The primary answers: the bucket's state came with the replication.
  const armor::redis_connection_stats before = conn.stats();
  (void)bucket.try_acquire(1);
  CHECK(conn.stats().calls == before.calls + 1);
}
