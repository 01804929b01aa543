// armor::any_token_bucket and armor::make_token_bucket: one bucket type for
// every backend URL. Built from memory:, it decides as token_bucket (and,
// per key, as one token_bucket per key) on random sequences with rate and
// burst changes; make_token_bucket refuses, naming what is wrong, malformed
// URLs, sqlite:, backends the program was not given and bad options; a
// listed backend gets the URL, the options and the name. Redis, with a real
// server: tests/redis/test_redis_any_bucket.cpp.
#include <armor/any_token_bucket.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"
#include "bucket_describe.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono;
using namespace std::chrono_literals;
using armor_test::describe;

namespace {

using any_bucket = armor::any_token_bucket<armor::manual_clock>;
using memory_bucket = armor::token_bucket<armor::manual_clock>;

template <class F>
std::string refusal_of(F make) {
  try {
    make();
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    return e.what();
  }
  return "(accepted)";
}

std::string refusal(std::string_view url, const armor::any_token_bucket_options<>& o = {},
                    const armor::token_bucket_options& b = {.rate = {10, 1s}, .burst = 5}) {
  return refusal_of([&] { (void)armor::make_token_bucket(url, b, o); });
}

/// A bucket that takes keys itself (as redis_token_bucket does) and
/// records what it was built with.
struct fake_bucket {
  using clock_type = armor::manual_clock;
  using options_type = armor::token_bucket_options;
  using permit_type = armor::no_permit;

  fake_bucket(const armor::token_bucket_options& o, std::string u, std::string n, armor::manual_clock c)
      : inner(o, c), url(std::move(u)), name(std::move(n)), clock_(c) {}

  armor::token_bucket_decision<> try_acquire(std::string_view key, std::int64_t n, armor::timestamp now) noexcept {
    last_key = std::string(key);
    return inner.try_acquire(n, now);
  }
  armor::admission<armor::no_permit> admit(armor::context& ctx) noexcept {
    return armor::detail::any_bucket_admission(try_acquire(ctx.key(), ctx.cost(), ctx.now()));
  }
  void set_rate(const armor::rate& r, std::int64_t b, armor::timestamp now) { inner.set_rate(r, b, now); }
  void set_rate(const armor::rate& r, armor::timestamp now) { inner.set_rate(r, now); }
  void set_burst(std::int64_t b, armor::timestamp now) { inner.set_burst(b, now); }
  armor::rate rate() const noexcept { return inner.rate(); }
  std::int64_t burst() const noexcept { return inner.burst(); }
  const armor::manual_clock& clock() const noexcept { return clock_; }

  memory_bucket inner;
  std::string url;
  std::string name;
  std::string last_key;
  armor::manual_clock clock_;
};
static_assert(armor::any_token_bucket_backend<fake_bucket, armor::manual_clock>);
static_assert(armor::policy<any_bucket>);

const armor::token_bucket_backend<armor::manual_clock> fake_backend{
    "fake",
    [](armor::backend_scheme s) noexcept { return s == armor::backend_scheme::redis; },
    [](std::string_view url, const armor::token_bucket_options& o, std::string_view name,
       const armor::manual_clock& clock) {
      return any_bucket(fake_bucket(o, std::string(url), std::string(name), clock));
    },
};

}  // namespace

TEST_CASE("any_token_bucket from memory: decides as token_bucket, per key as one token_bucket per key",
          "[any_token_bucket]") {
  struct config {
    armor::rate rate;
    std::int64_t burst;
  };
  const std::vector<config> configs{{{3, 1s}, 5}, {{7, 1min}, 2}, {{100, 1s}, 20}, {{2, 3ns}, 40}, {{5000, 1h}, 1}};
  const std::vector<std::string> keys{"", "", "10.0.0.1", "10.0.0.2", "a-much-longer-client-key-than-sso-holds-x"};
  std::mt19937_64 rng{20261206};
  for (std::size_t k = 0; k < configs.size(); ++k) {
    INFO("config " << k);
    const armor::manual_clock clock{nanoseconds{1'718'452'800'000'000'000}};
    armor::token_bucket_options o{.rate = configs[k].rate, .burst = configs[k].burst};
    any_bucket any = armor::make_token_bucket("memory:", o, {.name = "same"}, clock);
    memory_bucket unkeyed{o, clock};
    std::map<std::string, memory_bucket> per_key;  // made on first use, as keyed does
    const auto reference = [&](const std::string& key) -> memory_bucket& {
      if (key.empty()) return unkeyed;
      auto it = per_key.find(key);
      if (it == per_key.end()) it = per_key.try_emplace(key, o, clock).first;
      return it->second;
    };
    for (int step = 0; step < 1500; ++step) {
      INFO("step " << step);
      const unsigned op = static_cast<unsigned>(rng() % 20);
      const std::string& key = keys[rng() % keys.size()];
      if (op < 11) {
        std::int64_t n = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(std::min<std::int64_t>(o.burst, 6) + 2));
        if (op == 0) n = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(o.burst + 2)) - 1;  // -1 too
        const auto a = reference(key).try_acquire(n);
        const auto b = key.empty() ? any.try_acquire(n) : any.try_acquire(key, n);
        REQUIRE(describe(a) == describe(b));
      } else if (op < 18) {
        const std::int64_t interval = std::max<std::int64_t>(o.rate.per.count() / o.rate.count, 1);
        clock.advance(nanoseconds{static_cast<std::int64_t>(rng() % 4) * interval +
                                  static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(interval))});
      } else if (op == 18) {
        const std::int64_t count = o.rate.count + static_cast<std::int64_t>(rng() % 3) - 1;
        o.rate = {std::clamp<std::int64_t>(count, 1, o.rate.per.count()), o.rate.per};
        any.set_rate(o.rate);
        unkeyed.set_rate(o.rate);
        for (auto& [_, b] : per_key) b.set_rate(o.rate);
      } else {
        o.burst = std::max<std::int64_t>(1, o.burst + static_cast<std::int64_t>(rng() % 5) - 2);
        any.set_burst(o.burst);
        unkeyed.set_burst(o.burst);
        for (auto& [_, b] : per_key) b.set_burst(o.burst);
      }
    }
    CHECK(any.rate() == unkeyed.rate());
    CHECK(any.burst() == o.burst);
    REQUIRE(any.target<memory_bucket>() != nullptr);
    CHECK(any.target<memory_bucket>()->burst() == o.burst);
    CHECK(any.target<fake_bucket>() == nullptr);
  }
}

TEST_CASE("any_token_bucket in a pipeline: call_options::key picks the bucket, refusals as token_bucket's",
          "[any_token_bucket]") {
  armor::manual_clock clock;
  any_bucket per_ip = armor::make_token_bucket("memory:?max_keys=100", {.rate = {1, 1s}, .burst = 2}, {}, clock);
  auto p = armor::pipeline{clock, std::ref(per_ip)};
  int calls = 0;
  const auto call = [&] { return ++calls; };
  CHECK(p.try_execute(call, {.key = "a"}).has_value());
  CHECK(p.try_execute(call, {.key = "a"}).has_value());
  const armor::result<int> third = p.try_execute(call, {.key = "a"});
  REQUIRE_FALSE(third.has_value());
  CHECK(third.code() == armor::errc::rate_limited);
  CHECK(*third.retry_after() == 1s);
  CHECK(p.try_execute(call, {.key = "b"}).has_value());  // another key, another bucket
  CHECK(p.try_execute(call).has_value());               // and the bucket without a key
  const armor::result<int> large = p.try_execute(call, {.key = "c", .cost = 3});
  REQUIRE_FALSE(large.has_value());
  CHECK(large.code() == armor::errc::request_too_large);
  CHECK(p.try_execute(call, {.key = "c", .cost = 0}).has_value());  // free
  CHECK(calls == 5);
  clock.advance(1s);
  CHECK(p.try_execute(call, {.key = "a"}).has_value());
}

TEST_CASE("make_token_bucket refuses what it cannot build, naming the part that is wrong", "[any_token_bucket]") {
  struct row {
    std::string_view url;
    std::string_view names;
  };
  const std::vector<row> rows{
      {"", "no scheme"},
      {"memroy:", "unknown scheme \"memroy\""},
      {"memory://host", "memory: takes no host"},
      {"memory:?max_keys=0", "max_keys=\"0\""},
      {"memory:?max_keys=ten", "max_keys=\"ten\""},
      {"memory:?tracker=x", "unknown query parameter \"tracker\" (known: name, max_keys)"},
      {"memory:?name=a&name=b", "\"name\" is given twice"},
      {"sqlite:///var/lib/app/rate.db", "sqlite: has no token bucket"},
      {"redis://10.0.0.5:6379", "the redis backend is not among .backends: include <armor/redis/token_bucket.hpp>"},
      {"redis+cluster://n1:7000,n2:7001", "the redis_cluster backend is not among .backends"},
      {"redis+sentinel://s1/mymaster", "the redis_sentinel backend is not among .backends"},
      {"redis://10.0.0.5:70000", "port \"70000\""},
      {"redis://:pw@", "a host is missing"},
      {"rediss://10.0.0.5", "TLS"},
      {"redis://10.0.0.5?command_timeout", "query parameter \"command_timeout\": name=value was expected"},
  };
  for (const row& r : rows) {
    INFO(r.url);
    const std::string m = refusal(r.url);
    CHECK(m.find(r.names) != std::string::npos);
  }
  // A backend not listed: the message does not repeat the URL (it may hold a password).
  CHECK(refusal("redis://:s3cret@10.0.0.5").find("s3cret") == std::string::npos);

  // Options are refused whatever the URL, so that a URL change cannot make
  // a program fail at start-up in one place and not another.
  CHECK(refusal("memory:", {.name = ""}).find("name must not be empty") != std::string::npos);
  CHECK(refusal("memory:", {.name = "a{b"}).find("name must not contain '{'") != std::string::npos);
  CHECK(refusal("memory:", {}, {.rate = {10, 1s}, .max_wait = 1s}).find("max_wait must be 0") != std::string::npos);
  CHECK(refusal("memory:", {}, {.rate = {0, 1s}}).find("rate.count") != std::string::npos);
  CHECK(refusal("memory:", {.keys = {.max_keys = 0}}).find("max_keys") != std::string::npos);
  CHECK(refusal("memory:", {.backends = {armor::token_bucket_backend<>{}}}).find("without serves or make") !=
        std::string::npos);

  any_bucket b = armor::make_token_bucket("memory:?name=x", {.rate = {10, 1s}, .burst = 5}, {}, armor::manual_clock{});
  CHECK(refusal_of([&] { b.set_burst(0); }).find("burst must be at least 1") != std::string::npos);
  CHECK(refusal_of([&] { b.set_rate({0, 1s}, 3); }).find("rate") != std::string::npos);
  CHECK(b.burst() == 5);  // unchanged
  CHECK(b.rate() == armor::rate{10, 1s});
}

TEST_CASE("make_token_bucket hands a URL to the backend that serves its scheme, with the options' name",
          "[any_token_bucket]") {
  const armor::manual_clock clock;
  const armor::any_token_bucket_options<armor::manual_clock> how{.name = "upstream", .backends = {fake_backend}};
  any_bucket b = armor::make_token_bucket("redis://10.0.0.5?name=ignored-by-the-fake", {.rate = {1, 1s}, .burst = 1},
                                          how, clock);
  fake_bucket* f = b.target<fake_bucket>();
  REQUIRE(f != nullptr);
  CHECK(f->url == "redis://10.0.0.5?name=ignored-by-the-fake");
  CHECK(f->name == "upstream");
  CHECK(b.try_acquire("k", 1));
  CHECK(f->last_key == "k");
  CHECK_FALSE(b.try_acquire());
  b.set_rate({2, 1s}, 4);
  CHECK(b.burst() == 4);
  b.set_burst(3);
  CHECK(f->inner.burst() == 3);
  CHECK(b.target<memory_bucket>() == nullptr);
  // Still refused: a scheme the listed backends do not serve.
  CHECK(refusal_of([&] { (void)armor::make_token_bucket("redis+cluster://n1", {.rate = {1, 1s}}, how, clock); })
            .find("redis_cluster backend is not among .backends") != std::string::npos);
}
