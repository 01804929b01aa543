// armor::adaptive_throttle: SRE client-side throttling. The rule, exact
// decisions with a scripted random source, the sliding window on
// manual_clock, what each verdict counts as, the pipeline, the listener and
// keyed throttles. Single-threaded; threads are in tests/stress/.
#include <armor/adaptive_throttle.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"
#include "test_policies.hpp"

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// The random word whose armor draw (top 53 bits / 2^53) is `u`.
constexpr std::uint64_t word_for(double u) {
  return static_cast<std::uint64_t>(u * 0x1.0p53) << 11;
}

/// A random source that returns whatever the test last set, and counts draws.
struct scripted_rng {
  std::uint64_t* next;
  int* draws;
  std::uint64_t operator()() const noexcept {
    ++*draws;
    return *next;
  }
};

struct rig {
  armor::manual_clock clock;
  std::uint64_t next = word_for(0.999999);  // admits anything below the cap
  int draws = 0;
  armor::adaptive_throttle<armor::manual_clock, scripted_rng> throttle;

  explicit rig(const armor::adaptive_throttle_options& o = {}) : throttle(o, clock, scripted_rng{&next, &draws}) {}

  [[nodiscard]] armor::timestamp now() const { return armor::to_timestamp(clock.now()); }

  /// `n` requests now, each settled with `v`.
  void run(int n, const armor::verdict& v) {
    for (int i = 0; i < n; ++i) {
      auto d = throttle.try_acquire();
      REQUIRE(d);
      throttle.record(std::move(d).permit(), v);
    }
  }
};

std::string config_error(const armor::adaptive_throttle_options& o) {
  try {
    armor::adaptive_throttle<> t{o};
  } catch (const armor::error& e) {
    if (e.code() == armor::errc::invalid_argument) return e.what();
    return "wrong code";
  }
  return "";
}

bool names(const std::string& message, const char* option) { return message.find(option) != std::string::npos; }

}  // namespace

TEST_CASE("adaptive_throttle options are validated, naming the option", "[adaptive_throttle]") {
  CHECK(config_error({}).empty());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(names(config_error({.k = 0.5}), "k must"));
  CHECK(names(config_error({.k = 0.0}), "k must"));
  CHECK(names(config_error({.k = -2.0}), "k must"));
  CHECK(names(config_error({.k = nan}), "k must"));
  CHECK(names(config_error({.k = inf}), "k must"));
  CHECK(config_error({.k = 1.0}).empty());
  CHECK(names(config_error({.buckets = 0}), "buckets"));
  CHECK(names(config_error({.buckets = 1025}), "buckets"));
  CHECK(config_error({.buckets = 1024}).empty());
  CHECK(names(config_error({.window = 19ms, .buckets = 20}), "window"));
  CHECK(names(config_error({.window = -1s}), "window"));
  CHECK(names(config_error({.window = 0s}), "window"));
  CHECK(config_error({.window = 20ms, .buckets = 20}).empty());
  CHECK(names(config_error({.max_rejection_probability = 0.0}), "max_rejection_probability"));
  CHECK(names(config_error({.max_rejection_probability = 1.5}), "max_rejection_probability"));
  CHECK(names(config_error({.max_rejection_probability = nan}), "max_rejection_probability"));
  CHECK(config_error({.max_rejection_probability = 1.0}).empty());
  CHECK(config_error({.min_requests = 0}).empty());

  const armor::adaptive_throttle<> defaults;
  CHECK(defaults.options().k == 2.0);
  CHECK(defaults.options().window == 2min);
  CHECK(defaults.options().buckets == 20);
  CHECK(defaults.options().min_requests == 10);
  CHECK(defaults.options().max_rejection_probability == 0.9);
}

TEST_CASE("the rule: max(0, (requests - k * accepts) / (requests + 1)), capped, from min_requests on",
          "[adaptive_throttle]") {
  const armor::adaptive_throttle<> t{{.k = 2.0, .min_requests = 10, .max_rejection_probability = 1.0}};
  CHECK(t.rejection_probability(100, 40) == Approx(20.0 / 101.0));
  CHECK(t.rejection_probability(100, 50) == 0.0);  // exactly k times the accepts: nothing refused
  CHECK(t.rejection_probability(100, 90) == 0.0);  // never negative
  CHECK(t.rejection_probability(100, 0) == Approx(100.0 / 101.0));
  CHECK(t.rejection_probability(9, 0) == 0.0);  // below min_requests
  CHECK(t.rejection_probability(10, 0) == Approx(10.0 / 11.0));
  CHECK(t.rejection_probability(0, 0) == 0.0);

  const armor::adaptive_throttle<> capped{{.max_rejection_probability = 0.5}};
  CHECK(capped.rejection_probability(100, 0) == 0.5);
  CHECK(capped.rejection_probability(100, 40) == Approx(20.0 / 101.0));  // below the cap: unchanged

  const armor::adaptive_throttle<> k1{{.k = 1.0, .max_rejection_probability = 1.0}};
  CHECK(k1.rejection_probability(100, 90) == Approx(10.0 / 101.0));
}

TEST_CASE("n = 100, accepts = 40, k = 2: p = 20/101 = 0.1980; a draw of 0.19 is refused, 0.21 admitted",
          "[adaptive_throttle]") {
  rig r;
  r.run(40, armor::verdict::success());
  r.run(60, armor::verdict::failure());
  const auto s = r.throttle.stats();
  REQUIRE(s.requests == 100);
  REQUIRE(s.accepts == 40);
  REQUIRE(s.rejection_probability == Approx(0.1980).epsilon(0.001));

  SECTION("0.19 is refused") {
    r.next = word_for(0.19);
    const auto d = r.throttle.try_acquire();
    CHECK_FALSE(d);
    CHECK(d.code() == armor::errc::client_throttled);
    CHECK(r.throttle.stats().refused == 1);
    CHECK(r.throttle.stats().requests == 101);  // a local refusal is a request (SRE)
  }
  SECTION("0.21 is admitted") {
    r.next = word_for(0.21);
    auto d = r.throttle.try_acquire();
    CHECK(d);
    CHECK(r.throttle.stats().refused == 0);
    r.throttle.record(std::move(d).permit(), armor::verdict::success());
    CHECK(r.throttle.stats().accepts == 41);
  }
}

TEST_CASE("nothing is drawn while the probability is zero", "[adaptive_throttle]") {
  rig r;
  r.run(200, armor::verdict::success());
  CHECK(r.draws == 0);
  r.run(5, armor::verdict::failure());
  CHECK(r.draws == 0);
}

TEST_CASE("below min_requests nothing is refused, however bad the window", "[adaptive_throttle]") {
  rig r{{.min_requests = 10}};
  r.next = word_for(0.0);  // would refuse any positive probability
  r.run(10, armor::verdict::failure());  // decided on 0..9 requests: all admitted
  CHECK(r.draws == 0);
  CHECK_FALSE(r.throttle.try_acquire());  // 10 requests, 0 accepts: p = 10/11, capped at 0.9
  CHECK(r.draws == 1);
}

TEST_CASE("the cap keeps a share of requests going to a dead upstream", "[adaptive_throttle]") {
  rig r{{.max_rejection_probability = 0.9}};
  r.run(1000, armor::verdict::failure());
  CHECK(r.throttle.stats().rejection_probability == 0.9);
  r.next = word_for(0.90001);  // at or above the cap: admitted
  CHECK(r.throttle.try_acquire());
  r.next = word_for(0.8999);
  CHECK_FALSE(r.throttle.try_acquire());
}

TEST_CASE("a refusal says when the window's oldest request leaves it", "[adaptive_throttle]") {
  rig r;  // 2 min in 20 buckets of 6 s
  r.clock.advance(1s);
  r.run(20, armor::verdict::failure());  // bucket 0 (0..6 s)
  r.clock.advance(7s);                   // t = 8 s, bucket 1
  r.next = word_for(0.0);
  const auto d = r.throttle.try_acquire();
  REQUIRE_FALSE(d);
  CHECK(d.retry_after() == 120s - 8s);  // bucket 0 leaves at 20 * 6 s

  armor::context ctx{r.now()};
  const auto a = r.throttle.admit(ctx);
  CHECK(a.kind == armor::admission_kind::rejected);
  CHECK(a.code == armor::errc::client_throttled);
  CHECK(a.retryable);
  REQUIRE(a.retry_after.has_value());
  CHECK(*a.retry_after == 112s);
}

TEST_CASE("the window slides a bucket at a time", "[adaptive_throttle]") {
  rig r;  // buckets of 6 s
  r.run(50, armor::verdict::failure());  // bucket 0
  r.clock.advance(6s);
  r.run(50, armor::verdict::success());  // bucket 1
  auto s = r.throttle.stats();
  CHECK(s.requests == 100);
  CHECK(s.accepts == 50);
  CHECK(s.rejection_probability == 0.0);

  r.clock.advance(113s);  // t = 119 s: bucket 19, both still inside
  CHECK(r.throttle.stats().requests == 100);
  r.clock.advance(1s);  // t = 120 s: bucket 0 has left
  s = r.throttle.stats();
  CHECK(s.requests == 50);
  CHECK(s.accepts == 50);
  r.clock.advance(6s);  // t = 126 s: bucket 1 has left too
  s = r.throttle.stats();
  CHECK(s.requests == 0);
  CHECK(s.accepts == 0);
  CHECK(r.throttle.idle(r.now()));
}

TEST_CASE("a failing upstream is throttled, and released as its failures leave the window", "[adaptive_throttle]") {
  rig r{{.max_rejection_probability = 1.0}};
  r.run(100, armor::verdict::failure());
  CHECK(r.throttle.stats().rejection_probability == Approx(100.0 / 101.0));
  r.clock.advance(60s);
  r.run(30, armor::verdict::success());  // recovering: 130 requests, 30 accepts
  CHECK(r.throttle.stats().rejection_probability == Approx(70.0 / 131.0));
  r.clock.advance(60s);  // the failures (bucket 0) left
  const auto s = r.throttle.stats();
  CHECK(s.requests == 30);
  CHECK(s.rejection_probability == 0.0);
}

TEST_CASE("what each verdict counts as", "[adaptive_throttle]") {
  rig r;
  const auto settle = [&](const armor::verdict& v) {
    auto d = r.throttle.try_acquire();
    REQUIRE(d);
    r.throttle.record(std::move(d).permit(), v);
    const auto s = r.throttle.stats();
    return std::pair{s.requests, s.accepts};
  };
  CHECK(settle(armor::verdict::success()) == std::pair<std::uint64_t, std::uint64_t>{1, 1});
  CHECK(settle(armor::verdict::failure()) == std::pair<std::uint64_t, std::uint64_t>{2, 1});          // 5xx
  CHECK(settle(armor::verdict::retry_later(1s)) == std::pair<std::uint64_t, std::uint64_t>{3, 1});    // 503 + Retry-After
  CHECK(settle(armor::verdict::throttled({}, 30s)) == std::pair<std::uint64_t, std::uint64_t>{4, 1}); // 429
  CHECK(settle({armor::outcome::timeout, true, {}, armor::errc::deadline_exceeded}) ==
        std::pair<std::uint64_t, std::uint64_t>{5, 1});
  // Never reached the upstream: neither a request nor an accept.
  CHECK(settle({armor::outcome::rejected, true, {}, armor::errc::circuit_open}) ==
        std::pair<std::uint64_t, std::uint64_t>{5, 1});
  CHECK(settle({armor::outcome::cancelled, false, {}, armor::errc::cancelled}) ==
        std::pair<std::uint64_t, std::uint64_t>{5, 1});
  CHECK(armor::throttle_health(armor::verdict::permanent_failure()) == armor::health::unhealthy);
}

TEST_CASE("a permit dropped unsettled takes its request back", "[adaptive_throttle]") {
  rig r;
  {
    auto d = r.throttle.try_acquire();
    REQUIRE(d);
    CHECK(r.throttle.stats().requests == 1);
  }
  CHECK(r.throttle.stats().requests == 0);
  auto d = r.throttle.try_acquire();
  auto p = std::move(d).permit();
  CHECK(p);
  p.cancel();
  CHECK_FALSE(p);
  CHECK(r.throttle.stats().requests == 0);
  r.throttle.record(std::move(p), armor::verdict::success());  // empty: ignored
  CHECK(r.throttle.stats().accepts == 0);
}

TEST_CASE("an accept is credited to the bucket its request was counted in", "[adaptive_throttle]") {
  rig r;  // buckets of 6 s
  r.clock.advance(5s);
  auto d = r.throttle.try_acquire();  // bucket 0
  r.clock.advance(10s);               // t = 15 s: bucket 2
  r.throttle.record(std::move(d).permit(), armor::verdict::success());
  CHECK(r.throttle.stats().accepts == 1);
  r.clock.advance(105s);  // t = 120 s: bucket 0 has left, with its request and its accept
  const auto s = r.throttle.stats();
  CHECK(s.requests == 0);
  CHECK(s.accepts == 0);
}

TEST_CASE("a call that outlives the window does not credit its accept to a newer bucket", "[adaptive_throttle]") {
  rig r;
  auto slow = r.throttle.try_acquire();  // bucket 0
  r.clock.advance(121s);                 // bucket 20: the same slot of the ring
  r.run(1, armor::verdict::failure());   // restarts the slot for bucket 20
  r.throttle.record(std::move(slow).permit(), armor::verdict::success());
  const auto s = r.throttle.stats();
  CHECK(s.requests == 1);
  CHECK(s.accepts == 0);
}

TEST_CASE("a custom accept rule decides what counts", "[adaptive_throttle]") {
  // A service whose classifier calls 404s failures but whose upstream accepted them.
  constexpr armor::health_rule rule = [](const armor::verdict& v) noexcept {
    if (v.code == std::errc::no_such_file_or_directory) return armor::health::healthy;
    return armor::throttle_health(v);
  };
  rig r{{.accept_rule = rule}};
  r.run(1, armor::verdict::permanent_failure(std::make_error_code(std::errc::no_such_file_or_directory)));
  r.run(1, armor::verdict::failure());
  const auto s = r.throttle.stats();
  CHECK(s.requests == 2);
  CHECK(s.accepts == 1);
}

TEST_CASE("in a pipeline: the refusal, the operation not called, inner refusals not counted",
          "[adaptive_throttle]") {
  rig r;
  int calls = 0;
  SECTION("a throttled upstream (429) makes the throttle refuse, and the operation is not called") {
    const auto p = armor::pipeline{r.clock, armor::classify{[](int status) {
                                     return status == 429 ? armor::verdict::throttled() : armor::verdict::success();
                                   }},
                                   std::ref(r.throttle)};
    for (int i = 0; i < 20; ++i) {
      // The value comes back (no retry layer turns it into an error); the throttle saw a 429.
      CHECK(p.try_execute([&] {
                ++calls;
                return 429;
              }).value() == 429);
    }
    CHECK(r.throttle.stats().requests == 20);
    CHECK(r.throttle.stats().accepts == 0);
    r.next = word_for(0.5);
    const auto res = p.try_execute([&] {
      ++calls;
      return 200;
    });
    CHECK(res.code() == armor::errc::client_throttled);
    REQUIRE(res.retry_after().has_value());
    CHECK(*res.retry_after() == 120s);
    CHECK(calls == 20);
  }
  SECTION("an exception is a request not accepted") {
    const auto p = armor::pipeline{r.clock, std::ref(r.throttle)};
    CHECK_FALSE(p.try_execute([]() -> int { throw std::runtime_error("boom"); }));
    CHECK(r.throttle.stats().requests == 1);
    CHECK(r.throttle.stats().accepts == 0);
  }
  SECTION("a refusal by an inner layer counts as neither") {
    armor_test::rejecting_policy inner{armor::errc::circuit_open, 5s};
    const auto p = armor::pipeline{r.clock, std::ref(r.throttle), std::ref(inner)};
    CHECK(p.try_execute([&] { return ++calls; }).code() == armor::errc::circuit_open);
    CHECK(r.throttle.stats().requests == 0);
  }
  SECTION("successes are accepts") {
    const auto p = armor::pipeline{r.clock, std::ref(r.throttle)};
    CHECK(p.execute([&] { return ++calls; }) == 1);
    CHECK(r.throttle.stats().accepts == 1);
  }
}

TEST_CASE("the listener hears each refusal once, with the window it was decided on", "[adaptive_throttle]") {
  armor::manual_clock clock;
  std::uint64_t next = word_for(0.999999);
  int draws = 0;
  std::vector<armor::adaptive_throttle_event> heard;
  auto listen = [&heard](const armor::adaptive_throttle_event& e) noexcept { heard.push_back(e); };
  armor::adaptive_throttle t{armor::adaptive_throttle_options{}, clock, scripted_rng{&next, &draws}, listen};
  for (int i = 0; i < 20; ++i) t.record(t.try_acquire().permit(), armor::verdict::failure());
  CHECK(heard.empty());
  next = word_for(0.0);
  CHECK_FALSE(t.try_acquire());
  REQUIRE(heard.size() == 1);
  CHECK(heard[0].kind == armor::adaptive_throttle_event_kind::refused);
  CHECK(heard[0].requests == 20);
  CHECK(heard[0].accepts == 0);
  CHECK(heard[0].probability == 0.9);
  CHECK(heard[0].retry_after == 120s);
  CHECK(heard[0].key.empty());
  CHECK(armor::to_string(armor::adaptive_throttle_event_kind::refused) == "refused");
}

TEST_CASE("keyed: one window per upstream", "[adaptive_throttle]") {
  armor::manual_clock clock;
  armor::keyed<armor::adaptive_throttle<armor::manual_clock>> per_host{{}, {.max_keys = 8}, clock};
  const auto p = armor::pipeline{clock, std::ref(per_host)};
  for (int i = 0; i < 50; ++i) (void)p.try_execute([]() -> int { throw std::runtime_error("down"); }, {.key = "a"});
  for (int i = 0; i < 50; ++i) CHECK(p.try_execute([] { return 1; }, {.key = "b"}));
  CHECK(per_host.get("a")->stats().requests == 50);  // every call counts, those refused locally too
  CHECK(per_host.get("a")->stats().accepts == 0);
  CHECK(per_host.get("a")->stats().rejection_probability == 0.9);
  CHECK(per_host.get("b")->stats().requests == 50);
  CHECK(per_host.get("b")->stats().accepts == 50);
  clock.advance(2min);
  CHECK(per_host.get("a")->idle(armor::to_timestamp(clock.now())));
}

TEST_CASE("keyed with a listener: each key's throttle names its key", "[adaptive_throttle]") {
  struct log {
    std::vector<std::string> keys;
  } seen;
  struct listen {
    log* l;
    void operator()(const armor::adaptive_throttle_event& e) const noexcept {
      try {
        l->keys.emplace_back(e.key);
      } catch (...) {
      }
    }
  };
  armor::manual_clock clock;
  armor::keyed<armor::adaptive_throttle<armor::manual_clock, armor::seeded_rng, listen>> per_host{
      {.max_rejection_probability = 1.0}, {.max_keys = 8}, clock, listen{&seen}};
  auto h = per_host.get("api.example");
  for (int i = 0; i < 200; ++i) {
    if (auto d = h->try_acquire()) h->record(std::move(d).permit(), armor::verdict::failure());
  }
  REQUIRE_FALSE(seen.keys.empty());
  CHECK(seen.keys.front() == "api.example");
}

TEST_CASE("a moved throttle keeps its window and its permits", "[adaptive_throttle]") {
  armor::manual_clock clock;
  armor::adaptive_throttle<armor::manual_clock, armor::seeded_rng> a{{}, clock, armor::seeded_rng{1}};
  auto d = a.try_acquire();
  armor::adaptive_throttle b{std::move(a)};
  b.record(std::move(d).permit(), armor::verdict::success());
  CHECK(b.stats().requests == 1);
  CHECK(b.stats().accepts == 1);
}
