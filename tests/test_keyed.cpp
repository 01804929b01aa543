// armor::keyed: one policy instance per key, bounded memory, idle-first
// eviction (and why it is safe), pinning, and keyed as a pipeline layer.
#include <armor/fixed_window.hpp>
#include <armor/http/date.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <armor/detail/key_tally.hpp>
#include <armor/detail/keyed_table.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

using bucket = armor::token_bucket<armor::manual_clock>;
using keyed_buckets = armor::keyed<bucket>;

armor::timestamp at(nanoseconds d) { return armor::timestamp{d}; }

/// prefix followed by n ("k17"). Built by appending: `"k" + std::to_string(n)`
/// (operator+ inserting a literal before a temporary string) makes GCC 12's
/// -O3 report a -Wrestrict false positive in the inlined memcpy, which stops
/// a Release build under -Werror.
std::string numbered(std::string_view prefix, unsigned long long n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}

/// A second kind of policy, to show keyed is generic: at most `limit` calls
/// in flight per key; idle when none is.
struct inflight_options {
  int limit = 1;
};

class inflight_limiter {
 public:
  using options_type = inflight_options;
  using clock_type = armor::manual_clock;

  class permit {
   public:
    permit() = default;
    explicit permit(std::atomic<int>* n) : n_(n) {}
    permit(permit&& o) noexcept : n_(std::exchange(o.n_, nullptr)) {}
    permit& operator=(permit&& o) noexcept {
      if (this != &o) {
        release();
        n_ = std::exchange(o.n_, nullptr);
      }
      return *this;
    }
    ~permit() { release(); }

   private:
    void release() {
      if (n_ != nullptr) n_->fetch_sub(1);
      n_ = nullptr;
    }
    std::atomic<int>* n_ = nullptr;
  };
  using permit_type = permit;

  inflight_limiter(const inflight_options& o, armor::manual_clock) : limit_(o.limit) {}

  armor::admission<permit> admit(armor::context&) noexcept {
    if (in_flight_.fetch_add(1) >= limit_) {
      in_flight_.fetch_sub(1);
      return armor::admission<permit>::reject(armor::errc::bulkhead_full, std::nullopt, true);
    }
    return armor::admission<permit>::admit(permit(&in_flight_));
  }
  void settle(armor::context&, permit, const armor::verdict&) noexcept {}
  [[nodiscard]] bool idle(armor::timestamp) const noexcept { return in_flight_.load() == 0; }
  [[nodiscard]] int in_flight() const noexcept { return in_flight_.load(); }

 private:
  int limit_;
  std::atomic<int> in_flight_{0};
};

}  // namespace

TEST_CASE("each key has its own instance, created on first use from the shared options") {
  armor::manual_clock clock;
  keyed_buckets per_ip{{.rate = {1, 1s}, .burst = 2}, {.max_keys = 100}, clock};
  CHECK(per_ip.size() == 0);
  CHECK_FALSE(per_ip.find("10.0.0.1"));  // find does not create
  CHECK(per_ip.get("10.0.0.1")->try_acquire(2));
  CHECK_FALSE(per_ip.get("10.0.0.1")->try_acquire(1));
  CHECK(per_ip.get("10.0.0.2")->try_acquire(2));  // another key, another bucket
  CHECK(per_ip.get("")->try_acquire(2));          // the empty key is a key like any other
  CHECK(per_ip.size() == 3);
  auto h1 = per_ip.get("10.0.0.1");
  auto h2 = per_ip.find("10.0.0.1");
  REQUIRE(h2);
  CHECK(&*h1 == &*h2);  // the same instance
  CHECK(h1.key() == "10.0.0.1");
  CHECK(h1->burst() == 2);
  clock.advance(1s);
  CHECK(per_ip.get("10.0.0.1")->try_acquire(1));
  static_assert(armor::policy<keyed_buckets>);
  static_assert(std::is_same_v<keyed_buckets::instance_type, armor::token_bucket<armor::manual_clock, false>>);
}

TEST_CASE("as a pipeline layer it routes each call by call_options::key") {
  armor::manual_clock clock;
  keyed_buckets per_ip{{.rate = {1, 1s}, .burst = 1}, {}, clock};
  auto p = armor::pipeline{clock, std::ref(per_ip)};
  auto op = [] { return 200; };
  CHECK(p.try_execute(op, {.key = "a"}).has_value());
  CHECK(p.try_execute(op, {.key = "b"}).has_value());
  clock.advance(250ms);
  auto r = p.try_execute(op, {.key = "a"});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::rate_limited);
  CHECK(*r.retry_after() == 750ms);
  CHECK(armor::http::retry_after_seconds(*r.retry_after()) == 1);
  CHECK(p.try_execute(op, {.key = "c"}).has_value());
  CHECK(per_ip.size() == 3);
}

TEST_CASE("max_keys bounds the number of keys") {
  armor::manual_clock clock;
  SECTION("one shard") {
    keyed_buckets m{{.rate = {1, 1min}, .burst = 5}, {.max_keys = 50}, clock};
    CHECK(m.shard_count() == 1);
    for (int i = 0; i < 1000; ++i) {
      (void)m.get(numbered("key", static_cast<unsigned>(i)))->try_acquire();
      clock.advance(1ms);
      if (m.size() > 50) FAIL("size " << m.size() << " after " << i);
    }
    CHECK(m.size() == 50);
  }
  SECTION("many shards") {
    keyed_buckets m{{.rate = {1, 1min}, .burst = 5}, {.max_keys = 1000}, clock};
    CHECK(m.shard_count() == 8);  // about 64 keys per shard
    for (int i = 0; i < 20000; ++i) {
      (void)m.get(numbered("key", static_cast<unsigned>(i)))->try_acquire();
      if (m.size() > 1000) FAIL("size " << m.size() << " after " << i);
    }
    CHECK(m.size() == 1000);  // shards fill unevenly, but the map fills all the way
  }
  SECTION("shards can be chosen") {
    keyed_buckets m{{.rate = {1, 1min}}, {.max_keys = 10, .shards = 2}, clock};
    CHECK(m.shard_count() == 2);
  }
}

TEST_CASE("a full map evicts an idle key first, and dropping it changes no decision") {
  armor::manual_clock clock;
  const armor::token_bucket_options options{.rate = {1, 1min}, .burst = 2};
  keyed_buckets m{options, {.max_keys = 4}, clock};
  bucket twin{options, clock};  // lives through what "a" lives through, never evicted
  REQUIRE(m.get("b")->try_acquire(2));  // t = 0: full again at 120 s
  clock.advance(1s);
  REQUIRE(m.get("a")->try_acquire(1));  // t = 1 s: full again at 61 s
  REQUIRE(twin.try_acquire(1));
  clock.advance(1s);
  REQUIRE(m.get("c")->try_acquire(2));  // full at 122 s
  clock.advance(1s);
  REQUIRE(m.get("d")->try_acquire(2));  // full at 123 s
  clock.set(armor::manual_clock::time_point{100s});
  REQUIRE(m.find("a")->idle(at(100s)));  // find() does not count as a use
  REQUIRE_FALSE(m.find("b")->idle(at(100s)));
  // "b" is the least recently used, but "a" is idle: "a" goes.
  (void)m.get("e");
  CHECK(m.size() == 4);
  CHECK_FALSE(m.find("a"));
  CHECK(m.find("b"));
  CHECK(m.find("c"));
  CHECK(m.find("d"));
  // "a" comes back as a fresh bucket and answers exactly like its twin.
  std::mt19937_64 rng(5);
  for (int i = 0; i < 200; ++i) {
    clock.advance(nanoseconds{static_cast<std::int64_t>(rng() % 40'000'000'000)});
    const std::int64_t n = static_cast<std::int64_t>(rng() % 3);
    const auto x = m.get("a")->try_acquire(n);
    const auto y = twin.try_acquire(n);
    REQUIRE(x.status() == y.status());
    REQUIRE(x.remaining() == y.remaining());
    REQUIRE(x.retry_after() == y.retry_after());
  }
}

TEST_CASE("with no idle key, the least recently used key not in use is evicted") {
  armor::manual_clock clock;
  keyed_buckets m{{.rate = {1, 1min}, .burst = 5}, {.max_keys = 4}, clock};
  for (const char* k : {"a", "b", "c", "d"}) {
    REQUIRE(m.get(k)->try_acquire());
    clock.advance(1ms);
  }
  (void)m.get("a");  // "a" is used again: "b" is now the oldest
  clock.advance(1ms);
  (void)m.get("e");
  CHECK(m.size() == 4);
  CHECK_FALSE(m.find("b"));
  CHECK(m.find("a"));
  CHECK(m.find("c"));
}

TEST_CASE("an entry in use is never evicted; a shard goes over its share only while entries are held") {
  armor::manual_clock clock;
  keyed_buckets m{{.rate = {1, 1min}, .burst = 1}, {.max_keys = 2}, clock};
  auto ha = m.get("a");
  REQUIRE(ha->try_acquire());
  clock.advance(1ms);
  REQUIRE(m.get("b")->try_acquire());
  clock.advance(1ms);
  auto hc = m.get("c");  // "a" is held: "b" goes
  REQUIRE(hc->try_acquire());
  CHECK_FALSE(m.find("b"));
  CHECK(m.find("a"));
  clock.advance(1ms);
  auto hd = m.get("d");  // "a" and "c" are held: nothing can go
  REQUIRE(hd->try_acquire());
  CHECK(m.size() == 3);
  ha.reset();
  hc.reset();
  hd.reset();
  clock.advance(1ms);
  (void)m.get("e");  // back within bounds: the two oldest go
  CHECK(m.size() == 2);
  CHECK(m.find("d"));
  CHECK(m.find("e"));
}

TEST_CASE("a handle keeps its entry alive after erase, eviction and the map itself") {
  armor::manual_clock clock;
  keyed_buckets::handle kept;
  {
    keyed_buckets m{{.rate = {1, 1s}, .burst = 3}, {.max_keys = 1}, clock};
    kept = m.get("a");
    REQUIRE(kept->try_acquire(2));
    CHECK(m.erase("a"));
    CHECK_FALSE(m.erase("a"));
    CHECK(m.size() == 0);
    CHECK(kept->available() == 1);  // still usable
    auto fresh = m.get("a");        // a new entry for the key
    CHECK(&*fresh != &*kept);
    CHECK(fresh->available() == 3);
  }
  CHECK(kept->try_acquire(1));  // the map is gone; the entry is not
  kept.reset();
  CHECK_FALSE(kept);
}

TEST_CASE("evict_idle sweeps every shard") {
  armor::manual_clock clock;
  keyed_buckets m{{.rate = {1, 1s}, .burst = 1}, {.max_keys = 1000, .shards = 16}, clock};
  for (int i = 0; i < 100; ++i) (void)m.get(numbered("k", static_cast<unsigned>(i)))->try_acquire(i % 2);  // odd keys take a token
  CHECK(m.size() == 100);
  auto held = m.get("k0");  // idle but in use: kept
  CHECK(m.evict_idle() == 49);
  CHECK(m.size() == 51);
  clock.advance(1s);
  CHECK(m.evict_idle() == 50);
  CHECK(m.size() == 1);
}

TEST_CASE("keyed_options are checked at construction") {
  const armor::token_bucket_options ok{.rate = {1, 1s}};
  CHECK_THROWS_AS(keyed_buckets(ok, {.max_keys = 0}), armor::error);
  CHECK_THROWS_AS(keyed_buckets(ok, {.max_keys = 100, .shards = 3}), armor::error);
  CHECK_THROWS_AS(keyed_buckets(ok, {.max_keys = 4, .shards = 8}), armor::error);
  CHECK_THROWS_AS(keyed_buckets({.rate = {0, 1s}}, {.max_keys = 4}), armor::error);  // the policy's own check
  try {
    keyed_buckets bad(ok, {.max_keys = 100, .shards = 3});
  } catch (const armor::error& e) {
    CHECK(std::string(e.what()).find("shards must be a power of two") != std::string::npos);
  }
  CHECK(keyed_buckets(ok, {.max_keys = 1'000'000}).shard_count() == 8192);
  CHECK(keyed_buckets(ok, {.max_keys = 100'000'000}).shard_count() == 65536);
  CHECK(keyed_buckets(ok, {.max_keys = 1}).shard_count() == 1);
}

TEST_CASE("a wait admitted through keyed holds its entry until settled, and gives tokens back if dropped") {
  armor::manual_clock clock;
  keyed_buckets m{{.rate = {1, 1s}, .burst = 1, .max_wait = 5s}, {.max_keys = 1}, clock};
  armor::context ctx(at(0s), {.key = "a"});
  auto first = m.admit(ctx);
  REQUIRE(first.kind == armor::admission_kind::admitted);
  m.settle(ctx, std::move(first.permit), armor::verdict::success());
  {
    auto w = m.admit(ctx);
    REQUIRE(w.kind == armor::admission_kind::wait);
    CHECK(w.delay == 1s);
    // "a" is in use: a new key cannot evict it.
    (void)m.get("b");
    CHECK(m.find("a"));
    CHECK(m.size() == 2);
  }  // dropped: the reservation goes back
  CHECK(m.find("a")->available(at(1s)) == 1);
}

TEST_CASE("any policy with the required shape can be keyed: a per-user concurrency limit") {
  armor::manual_clock clock;
  armor::keyed<inflight_limiter> per_user{{.limit = 1}, {.max_keys = 8}, clock};
  auto p = armor::pipeline{clock, std::ref(per_user)};
  armor::result<int> nested_same = armor::failure{};
  armor::result<int> nested_other = armor::failure{};
  auto outer = p.try_execute(
      [&] {
        nested_same = p.try_execute([] { return 1; }, {.key = "alice"});
        nested_other = p.try_execute([] { return 2; }, {.key = "bob"});
        return 0;
      },
      {.key = "alice"});
  CHECK(outer.has_value());
  REQUIRE_FALSE(nested_same.has_value());
  CHECK(nested_same.code() == armor::errc::bulkhead_full);
  CHECK(nested_other.has_value());
  CHECK(per_user.find("alice")->in_flight() == 0);
  CHECK(per_user.evict_idle() == 2);
}

TEST_CASE("the shard table finds, inserts and erases like a map, under heavy collisions") {
  struct entry {
    std::uint32_t hash;
    std::string key;
  };
  std::mt19937_64 rng(17);
  for (std::uint32_t hash_range : {1U, 3U, 16U, 1000U}) {  // 1: every key collides
    armor::detail::keyed_table<entry> table(4);
    std::map<std::string, std::unique_ptr<entry>> model;
    for (int i = 0; i < 20000; ++i) {
      const std::string key = numbered("k", rng() % 64);
      const auto hash = static_cast<std::uint32_t>(std::hash<std::string>{}(key) % hash_range);
      entry* found = table.find(key, hash);
      const auto it = model.find(key);
      REQUIRE((found != nullptr) == (it != model.end()));
      if (found != nullptr) REQUIRE(found == it->second.get());
      if (rng() % 2 == 0 && found == nullptr) {
        auto e = std::make_unique<entry>(entry{hash, key});
        table.insert(e.get());
        model.emplace(key, std::move(e));
      } else if (found != nullptr && rng() % 2 == 0) {
        table.erase(found);
        model.erase(it);
      }
      REQUIRE(table.size() == model.size());
    }
    for (const auto& [key, e] : model) REQUIRE(table.find(key, e->hash) == e.get());
  }
}

namespace {

/// A policy with a listener, to show how keyed hands one out: each key's
/// instance is built as P(options, clock, listener, key).
struct announced_event {
  std::string_view key;
};

template <class Listener>
class announcing_policy {
 public:
  using options_type = inflight_options;
  using clock_type = armor::manual_clock;
  using listener_type = Listener;
  using permit_type = armor::no_permit;

  announcing_policy(const inflight_options&, armor::manual_clock, Listener l, std::string_view key)
      : listener_(std::move(l)), key_(key) {}

  armor::admission<> admit(armor::context&) noexcept {
    armor::detail::notify(listener_, [&] { return announced_event{key_}; });
    return armor::admission<>::admit();
  }
  void settle(armor::context&, armor::no_permit, const armor::verdict&) noexcept {}
  [[nodiscard]] bool idle(armor::timestamp) const noexcept { return true; }

 private:
  Listener listener_;
  std::string_view key_;
};

struct key_log {
  std::vector<std::string> keys;
  void operator()(const announced_event& e) noexcept { keys.emplace_back(e.key); }
};

}  // namespace

TEST_CASE("a policy with a listener gets a copy of the map's listener and the key it serves") {
  armor::manual_clock clock;
  SECTION("std::ref: every copy calls the one listener") {
    key_log log;
    armor::keyed<announcing_policy<std::reference_wrapper<key_log>>> m{{}, {}, clock, std::ref(log)};
    static_assert(std::is_same_v<decltype(m)::listener_type, std::reference_wrapper<key_log>>);
    auto p = armor::pipeline{clock, std::ref(m)};
    p.execute([] {}, {.key = "a"});
    p.execute([] {}, {.key = "b"});
    p.execute([] {}, {.key = "a"});
    CHECK(log.keys == std::vector<std::string>{"a", "b", "a"});
  }
  SECTION("by value: each key's instance holds its own copy") {
    struct counting {
      std::vector<int>* seen;
      int mine = 0;
      void operator()(const announced_event&) noexcept { seen->push_back(++mine); }
    };
    std::vector<int> seen;
    armor::keyed<announcing_policy<counting>> m{{}, {}, clock, counting{&seen}};
    auto p = armor::pipeline{clock, std::ref(m)};
    for (const char* key : {"a", "b", "a", "c"}) p.execute([] {}, {.key = key});
    CHECK(seen == std::vector<int>{1, 1, 2, 1});  // "a"'s copy counted twice, the others once
  }
  // A policy without a listener is built from (options, clock) as before.
  static_assert(std::is_same_v<keyed_buckets::listener_type, armor::no_listener>);
}

TEST_CASE("keyed stats: refusals of every key together, kept when keys are evicted", "[keyed]") {
  armor::manual_clock clock;
  keyed_buckets per_ip{{.rate = {1, 1s}, .burst = 1}, {.max_keys = 2}, clock};
  auto p = armor::pipeline{clock, std::ref(per_ip)};
  auto op = [] { return 200; };
  for (const char* key : {"a", "a", "a", "b", "b"}) (void)p.try_execute(op, {.key = key});
  CHECK(per_ip.stats().rejected == 3);  // a twice, b once
  CHECK(per_ip.stats().keys == 2);
  CHECK(per_ip.stats().max_keys == 2);
  CHECK(per_ip.stats().removed() == 0);
  (void)p.try_execute(op, {.key = "c"});  // a full map: one key goes
  CHECK(per_ip.stats().removed() == 1);
  CHECK(per_ip.stats().keys == 2);
  CHECK(per_ip.stats().rejected == 3);    // the evicted key's refusals stay counted
  // A refusal asked of the instance directly is the instance's own business.
  (void)per_ip.get("c")->try_acquire();
  CHECK(per_ip.stats().rejected == 3);
  keyed_buckets moved{std::move(per_ip)};
  CHECK(moved.stats().rejected == 3);
  CHECK(moved.stats().removed() == 1);
}

namespace {
template <class K>
std::map<std::string, std::uint64_t> refusals_by_key(const K& m) {
  std::map<std::string, std::uint64_t> out;
  m.for_each_rejected([&](std::string_view key, std::uint64_t n) { out.emplace(std::string(key), n); });
  return out;
}
}  // namespace

TEST_CASE("keyed refusals per key: the first rejected_keys keys have their own count, the rest count as other",
          "[keyed]") {
  armor::manual_clock clock;
  keyed_buckets per_ip{{.rate = {1, 1s}, .burst = 1}, {.max_keys = 100, .rejected_keys = 2}, clock};
  CHECK(per_ip.rejected_keys() == 2);
  auto p = armor::pipeline{clock, std::ref(per_ip)};
  auto op = [] { return 200; };
  const std::string long_key(armor::detail::key_tally::max_key_size + 1, 'x');
  // Each key's first call is admitted (burst 1), the others refused.
  for (const std::string_view key : {"a", "a", "b", "b", "a", "c", "c", "other", "other", "d"}) {
    (void)p.try_execute(op, {.key = key});
  }
  (void)p.try_execute(op, {.key = long_key});
  (void)p.try_execute(op, {.key = long_key});
  CHECK(per_ip.stats().rejected == 6);  // a 2, b 1, c 1, other 1, the long key 1
  CHECK(refusals_by_key(per_ip) == std::map<std::string, std::uint64_t>{{"a", 2}, {"b", 1}});
  // c came third; "other" is always folded (its series is written once);
  // a key longer than 64 bytes is too.
  CHECK(per_ip.rejected_other() == 3);

  SECTION("refusals decided outside a pipeline are counted with record_rejection") {
    if (!per_ip.get("b")->try_acquire()) per_ip.record_rejection("b");
    if (!per_ip.get("e")->try_acquire()) per_ip.record_rejection("e");  // admitted: e's first call
    if (!per_ip.get("e")->try_acquire()) per_ip.record_rejection("e");
    CHECK(per_ip.stats().rejected == 8);
    CHECK(refusals_by_key(per_ip) == std::map<std::string, std::uint64_t>{{"a", 2}, {"b", 2}});
    CHECK(per_ip.rejected_other() == 4);
  }
  SECTION("a key keeps its count after it leaves the map, and the counts move with the map") {
    CHECK(per_ip.erase("a"));
    (void)p.try_execute(op, {.key = "a"});  // a fresh bucket: admitted
    (void)p.try_execute(op, {.key = "a"});
    keyed_buckets moved{std::move(per_ip)};
    CHECK(refusals_by_key(moved) == std::map<std::string, std::uint64_t>{{"a", 3}, {"b", 1}});
    CHECK(moved.rejected_other() == 3);
    CHECK(moved.stats().rejected == 7);
  }
}

TEST_CASE("keyed refusals per key: off by default, bounded at 1024", "[keyed]") {
  armor::manual_clock clock;
  keyed_buckets plain{{.rate = {1, 1s}, .burst = 1}, {.max_keys = 10}, clock};
  auto p = armor::pipeline{clock, std::ref(plain)};
  for (int i = 0; i < 2; ++i) (void)p.try_execute([] { return 1; }, {.key = "a"});
  CHECK(plain.rejected_keys() == 0);
  CHECK(plain.stats().rejected == 1);
  CHECK(refusals_by_key(plain).empty());
  CHECK(plain.rejected_other() == 0);
  try {
    keyed_buckets too_many{{.rate = {1, 1s}, .burst = 1}, {.max_keys = 10, .rejected_keys = 1025}, clock};
    FAIL("accepted rejected_keys = 1025");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    CHECK(std::string(e.what()).find("rejected_keys") != std::string::npos);
  }
  keyed_buckets most{{.rate = {1, 1s}, .burst = 1}, {.max_keys = 10, .rejected_keys = 1024}, clock};
  CHECK(most.rejected_keys() == 1024);
}

TEST_CASE("key tally: many keys under heavy collisions, each counted once, the rest as other", "[keyed]") {
  armor::detail::key_tally tally(16);
  for (unsigned long long round = 0; round < 3; ++round) {
    for (unsigned long long i = 0; i < 40; ++i) tally.add(numbered("k", i), i % 3);  // three hashes for all keys
  }
  std::vector<std::pair<std::string, std::uint64_t>> seen;
  tally.for_each([&](std::string_view key, std::uint64_t n) { seen.emplace_back(std::string(key), n); });
  REQUIRE(seen.size() == 16);
  for (std::size_t i = 0; i < seen.size(); ++i) {
    CHECK(seen[i].first == numbered("k", i));  // in the order first counted
    CHECK(seen[i].second == 3);
  }
  CHECK(tally.other() == 3 * 24);
}

TEST_CASE("keyed refusals per key: windows and quotas count the same way", "[keyed]") {
  armor::manual_clock clock;
  armor::keyed<armor::fixed_window<armor::manual_clock>> per_user{
      {.limit = 1, .window = 1min}, {.max_keys = 10, .rejected_keys = 4}, clock};
  auto p = armor::pipeline{clock, std::ref(per_user)};
  for (const char* key : {"ann", "ann", "ann", "bob", "bob"}) (void)p.try_execute([] { return 1; }, {.key = key});
  CHECK(refusals_by_key(per_user) == std::map<std::string, std::uint64_t>{{"ann", 2}, {"bob", 1}});
  CHECK(per_user.rejected_other() == 0);
  CHECK(per_user.stats().rejected == 3);
}

TEST_CASE("keys of any length are kept exactly; entries reuse freed memory; handles outlive the map") {
  armor::manual_clock clock;
  // Up to 15 characters sit in the entry; longer keys are allocated.
  const std::vector<std::string> keys{"", "a", std::string(15, 'x'), std::string(16, 'y'),
                                      std::string(1000, 'z'), std::string("nul\0inside", 10)};
  auto m = std::make_unique<keyed_buckets>(armor::token_bucket_options{.rate = {1, 1h}, .burst = 1},
                                           armor::keyed_options{.max_keys = 4, .shards = 1}, clock);
  std::vector<keyed_buckets::handle> held;
  for (const auto& k : keys) {
    auto h = m->get(k);
    REQUIRE(h.key() == k);
    CHECK(h->try_acquire());
    held.push_back(std::move(h));
  }
  // All six are held: the map is over max_keys until they are released.
  CHECK(m->size() == keys.size());
  for (const auto& k : keys) {
    auto h = m->find(k);
    REQUIRE(h);
    CHECK(h.key() == k);
    CHECK_FALSE(h->try_acquire());  // the same instance: its one token is spent
  }
  std::size_t visited = 0;
  m->for_each([&](std::string_view key, const bucket::keyed_instance&) {
    ++visited;
    CHECK(std::find(keys.begin(), keys.end(), std::string(key)) != keys.end());
  });
  CHECK(visited == keys.size());
  held.clear();
  // Churn through many keys with room for 4: entries leave and their memory
  // is reused; every handle still holds the key it was asked for.
  for (int i = 0; i < 2000; ++i) {
    const std::string k = numbered(i % 3 == 0 ? "a-key-longer-than-fifteen-" : "k", static_cast<std::size_t>(i % 37));
    auto h = m->get(k);
    REQUIRE(h.key() == k);
    if (i % 5 == 0) CHECK(m->erase(k));
  }
  CHECK(m->size() <= 4);
  // Handles to entries, one of them erased, outlive the map.
  (void)m->erase(keys[4]);  // whether or not the churn evicted it: created afresh below
  held.push_back(m->get(keys[4]));
  held.push_back(m->get(keys[1]));
  CHECK(m->erase(keys[1]));
  m.reset();
  CHECK(held[0].key() == keys[4]);
  CHECK(held[1].key() == keys[1]);
  CHECK(held[0]->try_acquire());  // created afresh: a full bucket
  held.clear();                   // the map's memory goes back with the last of them (ASan: no leak)
}
