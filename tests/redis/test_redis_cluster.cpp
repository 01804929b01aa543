// armor's Redis backends on a Redis Cluster of three primaries (no
// replicas), started here on loopback and joined by hand (CLUSTER
// ADDSLOTSRANGE, SET-CONFIG-EPOCH, MEET: faster and more deterministic than
// redis-cli --cluster create): CRC16 hash slots; the same decisions as the
// memory bucket for buckets spread over the three nodes; a slot moved
// (MOVED followed, the map read again); a slot half-way through a migration
// (ASK followed with ASKING); NOSCRIPT on a node that lost its scripts;
// TRYAGAIN on keys a migration splits; threads calling while a slot moves;
// on a cluster of its own (two primaries, a replica), CLUSTER FAILOVER while
// threads call; last, a node killed and its slot given to another. About 5 s.
#include <armor/redis/fixed_window.hpp>
#include <armor/redis/sliding_window.hpp>
#include <armor/redis/token_bucket.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "bucket_describe.hpp"
#include "redis/any_storage_support.hpp"
#include "redis/redis_server.hpp"

#include <hiredis/hiredis.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using armor_test::describe;
using namespace std::chrono;

namespace {

const bool have_redis_server_for_cluster = armor_test::require_redis_server();

constexpr std::int64_t noon_ns = 1'718'452'800'000'000'000;

/// One command on 127.0.0.1:port, its reply as text (armor_test::redis_command).
std::string run(int port, const std::vector<std::string>& words) { return armor_test::redis_command(port, words); }

/// Three primaries, slots 0-5460, 5461-10922, 10923-16383, as redis-cli
/// --cluster create would split them.
class cluster {
 public:
  cluster() {
    for (auto& n : nodes_) {
      n = std::make_unique<armor_test::redis_server>(std::vector<std::string>{
          "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "15000"});
    }
    const std::array<std::pair<int, int>, 3> ranges{{{0, 5460}, {5461, 10922}, {10923, 16383}}};
    for (std::size_t i = 0; i < 3; ++i) {
      ids_[i] = run(port(i), {"CLUSTER", "MYID"});
      run(port(i), {"CLUSTER", "SET-CONFIG-EPOCH", std::to_string(i + 1)});
      run(port(i), {"CLUSTER", "ADDSLOTSRANGE", std::to_string(ranges[i].first), std::to_string(ranges[i].second)});
    }
    for (std::size_t i = 1; i < 3; ++i) run(port(0), {"CLUSTER", "MEET", "127.0.0.1", std::to_string(port(i))});
    const auto until = steady_clock::now() + 20s;  // a bound for a loaded machine; about 2 s idle
    while (!ready()) {
      if (steady_clock::now() > until) throw std::runtime_error("cluster: the three nodes did not agree in 20 s");
      std::this_thread::sleep_for(20ms);
    }
  }

  [[nodiscard]] int port(std::size_t i) const { return nodes_[i]->port(); }
  void kill(std::size_t i) { nodes_[i]->kill(); }
  [[nodiscard]] const std::string& id(std::size_t i) const { return ids_[i]; }
  /// The node serving `slot` as set up here (every test moves back the
  /// slots it moves).
  [[nodiscard]] static std::size_t owner(std::uint16_t slot) { return slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2; }

 private:
  [[nodiscard]] bool ready() const {
    for (std::size_t i = 0; i < 3; ++i) {
      const std::string info = run(port(i), {"CLUSTER", "INFO"});
      if (info.find("cluster_state:ok") == std::string::npos) return false;
      if (info.find("cluster_known_nodes:3") == std::string::npos) return false;
    }
    for (std::size_t i = 0; i < 3; ++i) {
      for (std::size_t j = 0; j < 3; ++j) {
        if (run(port(i), {"CLUSTER", "NODES"}).find(std::to_string(port(j))) == std::string::npos) return false;
      }
    }
    return true;
  }

  std::array<std::unique_ptr<armor_test::redis_server>, 3> nodes_;
  std::array<std::string, 3> ids_;
};

cluster& shared_cluster() {
  static cluster c;
  return c;
}

armor::redis_options cluster_redis(const cluster& c) {
  armor::redis_options o;
  o.port = static_cast<std::uint16_t>(c.port(0));
  o.prefix = "armor-cluster";
  o.cluster = true;
  o.seeds = {"127.0.0.1:" + std::to_string(c.port(1))};
  o.command_timeout = 1s;  // a loaded CI machine
  return o;
}

using memory_bucket = armor::token_bucket<armor::manual_clock>;
using redis_bucket = armor::redis_token_bucket<armor::manual_clock>;

std::string name_of(const char* what, int i) {
  std::string s = what;
  s += '-';
  s += std::to_string(::getpid());
  s += '-';
  s += std::to_string(i);
  return s;
}

/// A memory bucket and a Redis one (caller time) on one clock each.
struct pair_of_buckets {
  pair_of_buckets(const armor::token_bucket_options& o, const armor::redis_connection& conn, const std::string& name)
      : clock_m(nanoseconds{noon_ns}),
        clock_r(nanoseconds{noon_ns}),
        mem(o, clock_m),
        red(o, conn, {.name = name, .time = armor::redis_time_source::caller}, clock_r) {}
  void advance(nanoseconds d) {
    clock_m.advance(d);
    clock_r.advance(d);
  }
  void same(std::int64_t n) {
    const auto a = mem.try_acquire(n);
    const auto b = red.try_acquire(n);
    REQUIRE(describe(a) == describe(b));
  }
  armor::manual_clock clock_m;
  armor::manual_clock clock_r;
  memory_bucket mem;
  redis_bucket red;
};

/// The slot of a bucket's keys (armor writes "<prefix>:b:{<name>}...").
std::uint16_t slot_of(const std::string& name) { return armor::detail::redis_key_slot("x:b:{" + name + "}"); }

/// Moves `slot` from node `from` to node `to` with its keys: IMPORTING,
/// MIGRATING, MIGRATE; then (finish) NODE on every node.
void migrate(const cluster& c, std::uint16_t slot, std::size_t from, std::size_t to, bool finish) {
  const std::string s = std::to_string(slot);
  REQUIRE(run(c.port(to), {"CLUSTER", "SETSLOT", s, "IMPORTING", c.id(from)}) == "OK");
  REQUIRE(run(c.port(from), {"CLUSTER", "SETSLOT", s, "MIGRATING", c.id(to)}) == "OK");
  const std::string keys = run(c.port(from), {"CLUSTER", "GETKEYSINSLOT", s, "100"});
  std::vector<std::string> words{"MIGRATE", "127.0.0.1", std::to_string(c.port(to)), "", "0", "5000", "KEYS"};
  std::size_t start = 0;
  while (start < keys.size()) {
    const std::size_t end = keys.find(' ', start);
    words.push_back(keys.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (words.size() > 7) REQUIRE(run(c.port(from), words) == "OK");
  if (!finish) return;
  for (std::size_t i : {to, from, 3 - to - from}) {
    REQUIRE(run(c.port(i), {"CLUSTER", "SETSLOT", s, "NODE", c.id(to)}) == "OK");
  }
}

}  // namespace

TEST_CASE("redis cluster: CRC16 hash slots as the cluster spec computes them") {
  using armor::detail::redis_crc16;
  using armor::detail::redis_key_slot;
  CHECK(redis_crc16("123456789") == 0x31C3);  // the spec's check value
  CHECK(redis_key_slot("foo") == 12182);       // CLUSTER KEYSLOT foo
  CHECK(redis_key_slot("{user1000}.following") == redis_key_slot("user1000"));
  CHECK(redis_key_slot("foo{}{bar}") == (redis_crc16("foo{}{bar}") & 16383));  // an empty tag: the whole key
  CHECK(redis_key_slot("foo{{bar}}zap") == redis_key_slot("{bar"));
  CHECK(redis_key_slot("foo{bar}{zap}") == redis_key_slot("bar"));
  auto& c = shared_cluster();
  for (const char* k : {"foo", "armor:b:{api}", "armor:q:{openai}:fixed/60000000000ns/+0min", "a{b}c", "{}x"}) {
    INFO(k);
    CHECK(run(c.port(0), {"CLUSTER", "KEYSLOT", k}) == std::to_string(redis_key_slot(k)));
  }
}

TEST_CASE("redis cluster: bad cluster options are refused by name") {
  const auto message = [](armor::redis_options o) -> std::string {
    try {
      armor::redis_connection c{std::move(o)};
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      return e.what();
    }
    return "(nothing thrown)";
  };
  CHECK(message({.seeds = {"h:1"}}).find("seeds are for a cluster") != std::string::npos);
  CHECK(message({.cluster = true, .seeds = {"h"}}).find("seeds: \"h\"") != std::string::npos);
  CHECK(message({.cluster = true, .seeds = {"h:0"}}).find("seeds: \"h:0\"") != std::string::npos);
  CHECK(message({.cluster = true, .seeds = {":7000"}}).find("seeds") != std::string::npos);
  CHECK(message({.cluster = true, .max_redirects = 0}).find("max_redirects") != std::string::npos);
  CHECK(message({.port = 0, .cluster = true}).find("cluster needs TCP nodes") != std::string::npos);
  CHECK(message({.cluster = true, .seeds = {"10.0.0.5:7001", "[::1]:7002"}}) == "(nothing thrown)");
}

TEST_CASE("redis cluster: the same decisions as the memory bucket, buckets on all three nodes") {
  auto& c = shared_cluster();
  const armor::redis_connection conn{cluster_redis(c)};
  constexpr int buckets = 24;
  std::vector<std::unique_ptr<pair_of_buckets>> all;
  std::set<std::size_t> owners;
  for (int i = 0; i < buckets; ++i) {
    const std::string name = name_of("same", i);
    owners.insert(c.owner(slot_of(name)));
    const armor::token_bucket_options o{.rate = {static_cast<std::int64_t>(3 + i % 5), 1s}, .burst = 2 + i % 4};
    all.push_back(std::make_unique<pair_of_buckets>(o, conn, name));
  }
  REQUIRE(owners.size() == 3);
  std::mt19937_64 rng{20261205};
  for (int step = 0; step < 1200; ++step) {
    INFO("step " << step);
    pair_of_buckets& b = *all[rng() % all.size()];
    if (rng() % 4 == 0) {
      b.advance(nanoseconds{static_cast<std::int64_t>(rng() % 700'000'000)});
    } else {
      b.same(static_cast<std::int64_t>(rng() % 4));
    }
    if (step == 600) {
      // A node that lost its scripts answers NOSCRIPT: sent again with EVAL.
      for (std::size_t i = 0; i < 3; ++i) REQUIRE(run(c.port(i), {"SCRIPT", "FLUSH"}) == "OK");
    }
  }
  const armor::redis_connection_stats s = conn.stats();
  CHECK(s.failures == 0);
  CHECK(s.redirects == 0);
  CHECK(s.slot_map_loads == 1);
  CHECK(s.script_reloads >= 1);
  for (std::size_t i = 0; i < 3; ++i) CHECK(std::stoll(run(c.port(i), {"DBSIZE"})) > 0);  // every node holds some
}

TEST_CASE("redis cluster: a slot moved to another node is followed (MOVED), and the map read again") {
  auto& c = shared_cluster();
  const armor::redis_connection conn{cluster_redis(c)};
  const std::string name = name_of("moved", 0);
  const std::uint16_t slot = slot_of(name);
  const std::size_t from = c.owner(slot);
  const std::size_t to = (from + 1) % 3;
  pair_of_buckets b({.rate = {5, 1s}, .burst = 4}, conn, name);
  for (int i = 0; i < 6; ++i) b.same(1);  // the bucket is empty on `from`
  migrate(c, slot, from, to, true);
  const std::uint64_t loads = conn.stats().slot_map_loads;
  for (int i = 0; i < 10; ++i) {
    b.same(1);
    b.advance(150ms);
  }
  const armor::redis_connection_stats s = conn.stats();
  CHECK(s.failures == 0);
  CHECK(s.redirects == 1);              // one MOVED, then the map knows
  CHECK(s.slot_map_loads == loads + 1);  // read again after it
  CHECK(run(c.port(to), {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}) == "1");
  CHECK(run(c.port(from), {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}) == "0");
  migrate(c, slot, to, from, true);  // as it was, for the other tests
}

TEST_CASE("redis cluster: a slot half-way through a migration is followed with ASKING (ASK)") {
  auto& c = shared_cluster();
  const armor::redis_connection conn{cluster_redis(c)};
  const std::string name = name_of("ask", 0);
  const std::uint16_t slot = slot_of(name);
  const std::size_t from = c.owner(slot);
  const std::size_t to = (from + 2) % 3;
  pair_of_buckets b({.rate = {5, 1s}, .burst = 4}, conn, name);
  // Both keys of the bucket (its state and its config) exist: a script with
  // two keys is served on the importing node only when it holds them all.
  b.mem.set_rate({6, 1s});
  b.red.set_rate({6, 1s});
  for (int i = 0; i < 3; ++i) b.same(1);
  migrate(c, slot, from, to, false);  // the keys moved; the slot still belongs to `from`
  for (int i = 0; i < 8; ++i) {
    b.same(1);
    b.advance(100ms);
  }
  armor::redis_connection_stats s = conn.stats();
  CHECK(s.failures == 0);
  CHECK(s.redirects == 8);  // each call: ASK from `from`, then ASKING on `to`
  CHECK(run(c.port(from), {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}) == "0");
  CHECK(run(c.port(to), {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}) == "2");  // the state and the config
  // The migration ends: MOVED once, then straight to `to`.
  for (std::size_t i : {to, from, 3 - to - from}) {
    REQUIRE(run(c.port(i), {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", c.id(to)}) == "OK");
  }
  for (int i = 0; i < 4; ++i) b.same(1);
  s = conn.stats();
  CHECK(s.failures == 0);
  CHECK(s.redirects == 9);
  migrate(c, slot, to, from, true);
}

TEST_CASE("redis cluster: keys split by a migration get TRYAGAIN: bounded retries, then on_failure") {
  // Redis refuses a script on a migrating slot when only some of its keys
  // are on the node (TRYAGAIN): here the bucket's state but not its config
  // key (no set_rate was ever made).
  auto& c = shared_cluster();
  const armor::redis_connection conn{cluster_redis(c)};
  const std::string name = name_of("split", 0);
  const std::uint16_t slot = slot_of(name);
  const std::size_t from = c.owner(slot);
  const std::size_t to = (from + 1) % 3;
  pair_of_buckets b({.rate = {5, 1s}, .burst = 4}, conn, name);
  for (int i = 0; i < 3; ++i) b.same(1);
  const std::string s = std::to_string(slot);
  REQUIRE(run(c.port(to), {"CLUSTER", "SETSLOT", s, "IMPORTING", c.id(from)}) == "OK");
  REQUIRE(run(c.port(from), {"CLUSTER", "SETSLOT", s, "MIGRATING", c.id(to)}) == "OK");
  const auto start = steady_clock::now();
  const auto d = b.red.try_acquire(1);
  const auto took = steady_clock::now() - start;
  CHECK(d.code() == armor::errc::storage_unavailable);  // fail_closed
  armor::redis_connection_stats st = conn.stats();
  CHECK(st.failures == 1);
  CHECK(st.redirects == 5);       // max_redirects TRYAGAIN answers, then the call fails
  CHECK(took >= 1ms + 2ms + 4ms + 8ms + 16ms);  // the pauses between them
  for (std::size_t i : {to, from}) REQUIRE(run(c.port(i), {"CLUSTER", "SETSLOT", s, "STABLE"}) == "OK");
  for (int i = 0; i < 3; ++i) b.same(1);  // the migration called off: answered again
  st = conn.stats();
  CHECK(st.failures == 1);
}

TEST_CASE("redis cluster: threads calling while a slot moves: every call answered, nothing over-admitted") {
  auto& c = shared_cluster();
  armor::redis_options o = cluster_redis(c);
  o.connections = 2;
  const armor::redis_connection conn{o};
  constexpr int buckets = 6;
  constexpr std::int64_t burst = 5;
  std::vector<std::unique_ptr<armor::redis_token_bucket<>>> all;
  for (int i = 0; i < buckets; ++i) {
    all.push_back(std::make_unique<armor::redis_token_bucket<>>(
        armor::token_bucket_options{.rate = {20, 1s}, .burst = burst}, conn,
        armor::redis_token_bucket_options{.name = name_of("threads", i)}));
    all.back()->set_rate({20, 1s}, burst + 1);  // both keys exist: no TRYAGAIN while the slot moves
  }
  const std::uint16_t slot = slot_of(name_of("threads", 0));
  const std::size_t from = c.owner(slot);
  const std::size_t to = (from + 1) % 3;
  std::array<std::atomic<std::int64_t>, buckets> granted{};
  const auto start = steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 120; ++i) {
        const auto k = static_cast<std::size_t>((i + t) % buckets);
        if (all[k]->try_acquire(1)) granted[k].fetch_add(1);
      }
    });
  }
  migrate(c, slot, from, to, true);  // while they call (or after, if they were quick)
  for (auto& t : threads) t.join();
  const double seconds = duration<double>(steady_clock::now() - start).count();
  const armor::redis_connection_stats s = conn.stats();
  CHECK(s.failures == 0);
  CHECK(s.calls + s.pool_timeouts == 4 * 120 + buckets);  // the set_rate calls too
  for (int k = 0; k < buckets; ++k) {
    INFO("bucket " << k);
    CHECK(granted[static_cast<std::size_t>(k)].load() <= burst + 1 + static_cast<std::int64_t>(20 * seconds) + 1);
  }
  migrate(c, slot, to, from, true);
}

TEST_CASE("redis cluster: a redis+cluster:// URL builds the tracker memory: builds, deciding alike") {
  const auto& c = shared_cluster();
  std::string url = "redis+cluster://127.0.0.1:" + std::to_string(c.port(0));
  url += ",127.0.0.1:" + std::to_string(c.port(1));
  url += "?time=caller&prefix=armor-cluster&command_timeout=1s&tracker=any-cluster";
  armor_test::decides_as_memory(url, 26, 300);
}

namespace {

/// Two primaries (slots 0-8191, 8192-16383) and a replica of the first: a
/// cluster of its own for a promotion (the shared one has no replicas).
class cluster_with_replica {
 public:
  cluster_with_replica() {
    for (auto& n : nodes_) {
      n = std::make_unique<armor_test::redis_server>(std::vector<std::string>{
          "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "15000",
          "--repl-diskless-sync-delay", "0"});  // the replica's first sync at once, not after 5 s
    }
    for (std::size_t i = 0; i < 3; ++i) ids_[i] = run(port(i), {"CLUSTER", "MYID"});
    run(port(0), {"CLUSTER", "SET-CONFIG-EPOCH", "1"});
    run(port(1), {"CLUSTER", "SET-CONFIG-EPOCH", "2"});
    run(port(0), {"CLUSTER", "ADDSLOTSRANGE", "0", "8191"});
    run(port(1), {"CLUSTER", "ADDSLOTSRANGE", "8192", "16383"});
    for (std::size_t i = 1; i < 3; ++i) run(port(0), {"CLUSTER", "MEET", "127.0.0.1", std::to_string(port(i))});
    // A bound for a loaded machine; about 1 to 2 s idle.
    wait_for("the replica to know its primary",
             [&] { return run(port(2), {"CLUSTER", "NODES"}).find(ids_[0]) != std::string::npos; });
    REQUIRE(run(port(2), {"CLUSTER", "REPLICATE", ids_[0]}) == "OK");
    wait_for("the replica to sync and every node to see it", [&] {
      if (run(port(2), {"INFO", "replication"}).find("master_link_status:up") == std::string::npos) return false;
      for (std::size_t i = 0; i < 3; ++i) {
        const std::string info = run(port(i), {"CLUSTER", "INFO"});
        if (info.find("cluster_state:ok") == std::string::npos) return false;
        if (info.find("cluster_known_nodes:3") == std::string::npos) return false;
        // The replica asks for votes in an epoch above the one it knows: below
        // a primary's epoch (it had not heard of it yet) it would get no vote.
        if (info.find("cluster_current_epoch:2") == std::string::npos) return false;
        const std::string nodes = run(port(i), {"CLUSTER", "NODES"});
        const std::size_t line = nodes.find(ids_[2]);
        if (line == std::string::npos) return false;
        if (nodes.find("slave " + ids_[0], line) == std::string::npos) return false;
      }
      return true;
    });
  }

  [[nodiscard]] int port(std::size_t i) const { return nodes_[i]->port(); }
  [[nodiscard]] static std::size_t owner(std::uint16_t slot) { return slot <= 8191 ? 0 : 1; }
  /// "master" or "slave": the first word of ROLE on node i.
  [[nodiscard]] std::string role(std::size_t i) const {
    const std::string r = run(port(i), {"ROLE"});
    return r.substr(0, r.find(' '));
  }

  /// Polls `ready` every 20 ms for at most `bound`; throws after it.
  template <class F>
  static void wait_for(const char* what, F ready, seconds bound = 20s) {
    const auto until = steady_clock::now() + bound;
    while (!ready()) {
      if (steady_clock::now() > until) {
        throw std::runtime_error("cluster_with_replica: waited " + std::to_string(bound.count()) + " s for " + what);
      }
      std::this_thread::sleep_for(20ms);
    }
  }

 private:
  std::array<std::unique_ptr<armor_test::redis_server>, 3> nodes_;
  std::array<std::string, 3> ids_;
};

}  // namespace

TEST_CASE("redis cluster: CLUSTER FAILOVER under load: calls end by their deadline, nothing over-admitted, armor follows") {
  cluster_with_replica c;
  armor::redis_options o;
  o.port = static_cast<std::uint16_t>(c.port(0));
  o.prefix = "armor-failover";
  o.cluster = true;
  o.seeds = {"127.0.0.1:" + std::to_string(c.port(1))};
  o.command_timeout = 1s;
  o.connections = 3;
  const armor::redis_connection conn{o};
  std::string name;
  for (int i = 0; name.empty() || c.owner(slot_of(name)) != 0; ++i) name = name_of("failover", i);
  constexpr std::int64_t rate = 50;  // per second
  constexpr std::int64_t burst = 10;
  const auto made = steady_clock::now();  // the bucket is full from here on
  armor::redis_token_bucket<> b{{.rate = {rate, 1s}, .burst = burst}, conn, {.name = name}};
  b.set_rate({rate, 1s}, burst);  // both keys exist (the bucket's state is written by the first call)
  const armor::redis_connection_stats before = conn.stats();
  REQUIRE(before.slot_map_loads == 1);

  constexpr auto call_deadline = 300ms;
  constexpr auto slack = 700ms;  // a thread of a loaded machine may be descheduled anywhere
  enum class outcome : std::uint8_t { granted, limited, failed, deadline };
  struct call {
    nanoseconds start;
    nanoseconds end;
    outcome what;
  };
  constexpr int threads_n = 3;
  std::array<std::vector<call>, threads_n> calls;
  std::atomic<bool> stop{false};
  std::atomic<int> answered_after{0};  // calls answered by Redis that began after the promotion was seen
  std::atomic<std::int64_t> promoted_at{std::numeric_limits<std::int64_t>::max()};
  const auto t0 = steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < threads_n; ++t) {
    threads.emplace_back([&, t] {
      auto& mine = calls[static_cast<std::size_t>(t)];
      mine.reserve(20000);
      while (!stop.load() && mine.size() < 20000) {
        const auto start = steady_clock::now();
        armor::context ctx{armor::to_timestamp(start), {.timeout = call_deadline}};
        const armor::admission<armor::no_permit> a = b.admit(ctx);
        const auto end = steady_clock::now();
        outcome w = outcome::granted;
        if (a.kind != armor::admission_kind::admitted) {
          w = a.code == armor::errc::rate_limited        ? outcome::limited
              : a.code == armor::errc::deadline_exceeded ? outcome::deadline
                                                         : outcome::failed;
        }
        mine.push_back({start - t0, end - t0, w});
        if ((w == outcome::granted || w == outcome::limited) && (start - t0).count() > promoted_at.load()) {
          answered_after.fetch_add(1);
        }
        std::this_thread::sleep_for(1ms);  // about 3000 calls a second in all, not a spin
      }
    });
  }
  nanoseconds failover_at{0};
  std::string accepted;
  bool promoted = false;
  bool followed = false;
  try {  // the threads are joined whatever happens
    cluster_with_replica::wait_for(
        "calls before the failover", [&] { return conn.stats().calls >= before.calls + 30; }, 8s);
    failover_at = steady_clock::now() - t0;
    accepted = run(c.port(2), {"CLUSTER", "FAILOVER"});
    cluster_with_replica::wait_for("the replica to be promoted",
                                   [&] { return c.role(2) == "master" && c.role(0) == "slave"; }, 8s);
    promoted = true;
    promoted_at.store((steady_clock::now() - t0).count());
    cluster_with_replica::wait_for("calls answered after the promotion", [&] { return answered_after.load() >= 30; }, 8s);
    followed = true;
  } catch (const std::runtime_error& e) {
    WARN(e.what());
    for (std::size_t i = 0; i < 3; ++i) {
      WARN("node " << i << ": " << run(c.port(i), {"ROLE"}) << "\n" << run(c.port(i), {"CLUSTER", "INFO"}) << "\n"
                    << run(c.port(i), {"CLUSTER", "NODES"}));
    }
  }
  stop.store(true);
  for (auto& t : threads) t.join();
  const double seconds = duration<double>(steady_clock::now() - made).count();
  REQUIRE(accepted == "OK");
  CHECK(promoted);
  CHECK(followed);

  std::int64_t granted = 0;
  std::size_t total = 0;
  std::size_t not_answered = 0;
  nanoseconds longest{0};
  nanoseconds first_bad = nanoseconds::max();
  nanoseconds last_bad = nanoseconds::min();
  for (const auto& mine : calls) {
    for (const call& x : mine) {
      ++total;
      longest = std::max(longest, x.end - x.start);
      if (x.what == outcome::granted) ++granted;
      if (x.what == outcome::failed || x.what == outcome::deadline) {
        ++not_answered;
        first_bad = std::min(first_bad, x.start);
        last_bad = std::max(last_bad, x.end);
      }
    }
  }
  const armor::redis_connection_stats s = conn.stats();
  const auto ms = [](nanoseconds d) { return duration_cast<milliseconds>(d).count(); };
  std::printf("cluster failover: %zu calls in %.2f s, %lld granted (bound %lld); promotion seen %lld ms after "
              "CLUSTER FAILOVER; ",
              total, seconds, static_cast<long long>(granted),
              static_cast<long long>(burst + static_cast<std::int64_t>(static_cast<double>(rate) * seconds) + 1),
              static_cast<long long>(ms(nanoseconds{promoted_at.load()} - failover_at)));
  if (not_answered == 0) {
    std::printf("no call unanswered");
  } else {
    std::printf("%zu calls unanswered from %lld to %lld ms after it", not_answered,
                static_cast<long long>(ms(first_bad - failover_at)), static_cast<long long>(ms(last_bad - failover_at)));
  }
  std::printf("; longest call %lld ms; redirects %llu, slot map loads %llu, failures %llu, deadlines %llu\n",
              static_cast<long long>(ms(longest)), static_cast<unsigned long long>(s.redirects - before.redirects),
              static_cast<unsigned long long>(s.slot_map_loads - before.slot_map_loads),
              static_cast<unsigned long long>(s.failures), static_cast<unsigned long long>(s.deadline_exceeded));
  std::fflush(stdout);

  CHECK(longest < call_deadline + slack);  // every call ended by its deadline
  // A manual failover promotes the replica once it has every write: nothing
  // lost, so the bound of one bucket holds across it.
  CHECK(granted <= burst + static_cast<std::int64_t>(static_cast<double>(rate) * seconds) + 1);
  CHECK(s.redirects > before.redirects);          // the old primary answered MOVED
  CHECK(s.slot_map_loads > before.slot_map_loads);  // and the map was read again
  CHECK(s.breaker == armor::breaker_state::closed);
  CHECK(std::stoll(run(c.port(2), {"DBSIZE"})) >= 1);  // the bucket's keys, on the new primary
}

TEST_CASE("redis cluster: window limiters on all three nodes decide as their memory twins") {
  auto& c = shared_cluster();
  const armor::redis_connection conn{cluster_redis(c)};
  const armor::manual_clock clock{nanoseconds{1'718'452'800'000'000'000}};
  using alg = armor::sliding_window_algorithm;
  struct trio {
    armor::sliding_window<armor::manual_clock> mem;
    armor::redis_sliding_window<armor::manual_clock> red;
  };
  std::vector<std::unique_ptr<trio>> all;
  std::set<std::size_t> owners;
  for (int i = 0; i < 12; ++i) {
    const std::string name = name_of("window", i);
    owners.insert(c.owner(slot_of(name)));
    const armor::sliding_window_options o{.limit = 3 + i % 4,
                                          .window = 1s,
                                          .segments = 5,
                                          .algorithm = i % 2 == 0 ? alg::exact : alg::approximate};
    all.push_back(std::make_unique<trio>(trio{
        armor::sliding_window<armor::manual_clock>{o, clock},
        armor::redis_sliding_window<armor::manual_clock>{
            o, conn, {.name = name, .time = armor::redis_time_source::caller}, clock}}));
  }
  armor::fixed_window<armor::manual_clock> mem_fixed{{.limit = 4, .window = 1s}, clock};
  armor::redis_fixed_window<armor::manual_clock> red_fixed{
      {.limit = 4, .window = 1s}, conn, {.name = name_of("fixed", 0), .time = armor::redis_time_source::caller}, clock};
  REQUIRE(owners.size() == 3);
  std::mt19937_64 rng{20261208};
  int bad = 0;
  for (int step = 0; step < 900; ++step) {
    if (rng() % 4 == 0) {
      clock.advance(nanoseconds{static_cast<std::int64_t>(rng() % 400'000'000)});
      continue;
    }
    const auto n = static_cast<std::int64_t>(rng() % 4);
    const std::size_t k = static_cast<std::size_t>(rng() % (all.size() + 1));
    const armor::window_decision a = k == all.size() ? mem_fixed.try_acquire(n) : all[k]->mem.try_acquire(n);
    const armor::window_decision b = k == all.size() ? red_fixed.try_acquire("client", n)
                                                     : all[k]->red.try_acquire("client", n);
    const bool same = a.status() == b.status() && a.remaining() == b.remaining() && a.reset() == b.reset() &&
                      a.retry_after() == b.retry_after();
    if (!same) ++bad;
  }
  CHECK(bad == 0);
  const armor::redis_connection_stats s = conn.stats();
  CHECK(s.failures == 0);
  CHECK(s.redirects == 0);
}

// Last: it kills a node of the shared cluster.
TEST_CASE("redis cluster: a node gone, its slot given to another: the map is read again after the failure") {
  auto& c = shared_cluster();
  const armor::redis_connection conn{cluster_redis(c)};
  std::string name;
  for (int i = 0; name.empty() || c.owner(slot_of(name)) != 2; ++i) name = name_of("gone", i);
  const std::uint16_t slot = slot_of(name);
  pair_of_buckets b({.rate = {5, 1s}, .burst = 4}, conn, name);
  for (int i = 0; i < 3; ++i) b.same(1);
  const std::uint64_t loads = conn.stats().slot_map_loads;
  c.kill(2);  // as a failover would, its slot now lives on node 1 (empty there)
  for (std::size_t i : {std::size_t{1}, std::size_t{0}}) {
    REQUIRE(run(c.port(i), {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", c.id(1)}) == "OK");
  }
  const auto d = b.red.try_acquire(1);  // to the dead node: fails, and the map is read from another
  CHECK(d.code() == armor::errc::storage_unavailable);
  armor::redis_connection_stats s = conn.stats();
  CHECK(s.failures == 1);
  CHECK(s.slot_map_loads == loads + 1);
  const auto e = b.red.try_acquire(1);  // to node 1: a fresh bucket there
  CHECK(e.status() == armor::token_bucket_status::granted);
  CHECK(e.remaining() == 3);
  s = conn.stats();
  CHECK(s.failures == 1);
  CHECK(run(c.port(1), {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}) == "1");
}
