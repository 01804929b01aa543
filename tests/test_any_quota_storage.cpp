// armor::any_quota_storage and armor::make_quota_storage: one tracker type
// for every backend URL. A tracker on any_quota_storage decides as one on
// memory_quota_storage on the same random sequence; make_quota_storage
// builds memory: and refuses, naming what is wrong, malformed URLs and
// backends the program was not given (SQLite: tests/sqlite/, Redis:
// tests/redis/, with real servers).
#include <armor/keyed.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/storage/any.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono;
using namespace std::chrono_literals;
using armor::quota_window;

namespace {

using any_tracker = armor::quota_tracker<armor::manual_clock, armor::any_quota_storage>;
using memory_tracker = armor::quota_tracker<armor::manual_clock, armor::memory_quota_storage>;

std::string refusal(std::string_view url, const armor::any_quota_storage_options& o = {}) {
  try {
    (void)armor::make_quota_storage(url, o);
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    return e.what();
  }
  return "(accepted)";
}

/// A storage with nothing optional (no deadline, no alerts, not keyed, no
/// default constructor) that throws when asked to.
struct bare_storage {
  explicit bare_storage(bool t) : throws(t) {}
  bool throws = false;
  void bind(std::span<const armor::quota_window_layout>) {}
  armor::quota_consumption try_consume(const armor::quota_stamp& at, std::int64_t) {
    if (throws) throw std::runtime_error("down");
    armor::quota_consumption r;
    r.at = at;
    return r;
  }
  armor::quota_consumption charge(const armor::quota_stamp& at, std::int64_t n) { return try_consume(at, n); }
  void release(const armor::quota_stamp&, std::int64_t) noexcept {}
  std::int64_t read(std::size_t, std::int64_t i, std::span<std::int64_t>) const { return i; }
};
static_assert(armor::quota_storage<bare_storage>);

}  // namespace

TEST_CASE("any_quota_storage meets every storage concept and holds memory by default", "[any_quota_storage]") {
  static_assert(armor::deadline_quota_storage<armor::any_quota_storage>);
  static_assert(armor::alert_quota_storage<armor::any_quota_storage>);
  static_assert(armor::keyed_quota_storage<armor::any_quota_storage>);
  static_assert(!std::is_copy_constructible_v<armor::any_quota_storage>);
  armor::any_quota_storage s;
  CHECK(s.target<armor::memory_quota_storage>() != nullptr);
  CHECK(s.target<bare_storage>() == nullptr);
  const armor::any_quota_storage& cs = s;
  CHECK(cs.target<armor::memory_quota_storage>() != nullptr);
  CHECK(s.for_key("k").target<armor::memory_quota_storage>() != nullptr);
}

TEST_CASE("a tracker on any_quota_storage decides as one on memory_quota_storage", "[any_quota_storage]") {
  const armor::quota_tracker_options options{
      .windows = {quota_window::per_minute(40), quota_window::rolling(100, 10min, 10)},
      .alerts = {0.5, 0.9},
  };
  armor::manual_clock clock_a;
  armor::manual_clock clock_b;
  memory_tracker mem{options, clock_a};
  any_tracker any{options, clock_b, armor::make_quota_storage("memory:")};
  std::mt19937_64 rng(25);
  for (int i = 0; i < 4000; ++i) {
    const auto op = rng() % 8;
    const auto cost = static_cast<std::int64_t>(rng() % 7);
    INFO("step " << i << " op " << op << " cost " << cost);
    if (op <= 3) {
      const auto a = mem.try_consume(cost);
      const auto b = any.try_consume(cost);
      REQUIRE(a.status() == b.status());
      REQUIRE(a.window() == b.window());
      REQUIRE(a.used() == b.used());
      REQUIRE(a.retry_after() == b.retry_after());
    } else if (op == 4) {
      auto a = mem.reserve(cost + 1);
      auto b = any.reserve(cost + 1);
      REQUIRE(a.status() == b.status());
      const auto actual = static_cast<std::int64_t>(rng() % 9);
      if (a) {
        REQUIRE(a.permit().commit(actual) == b.permit().commit(actual));
      }
    } else if (op == 5) {
      REQUIRE(mem.charge(cost) == any.charge(cost));
    } else {
      const auto step = nanoseconds{static_cast<std::int64_t>(rng() % 20'000'000'000)};
      clock_a.advance(step);
      clock_b.advance(step);
    }
    for (std::size_t w = 0; w < 2; ++w) {
      const armor::quota_usage ua = mem.usage(w);
      const armor::quota_usage ub = any.usage(w);
      REQUIRE(ua.used == ub.used);
      REQUIRE(ua.resets_in == ub.resets_in);
    }
  }
  CHECK(mem.stats().alerts == any.stats().alerts);
  CHECK(mem.stats().exhausted == any.stats().exhausted);
  CHECK(mem.stats().alerts > 0);
  CHECK(mem.stats().exhausted > 0);
}

TEST_CASE("make_quota_storage builds memory: and refuses what it cannot build, naming why", "[any_quota_storage]") {
  CHECK(armor::make_quota_storage("memory:").target<armor::memory_quota_storage>() != nullptr);
  CHECK(armor::make_quota_storage("memory://?tracker=x").target<armor::memory_quota_storage>() != nullptr);

  struct row {
    const char* url;
    const char* says;
  };
  const std::vector<row> rows{
      {"memory:?flush_every=5s", "unknown query parameter \"flush_every\""},
      {"memory:/path", "memory: takes no host or path"},
      {"sqlite:/var/lib/app/quota.db", "the sqlite backend is not among .backends"},
      {"sqlite:/var/lib/app/quota.db", "<armor/storage/sqlite.hpp>, link armor::sqlite"},
      {"redis://:secret@10.0.0.5:6379", "the redis backend is not among .backends"},
      {"redis://:secret@10.0.0.5:6379", "<armor/redis/quota_storage.hpp>, link armor::redis"},
      {"redis+cluster://n1:7000,n2:7001", "the redis_cluster backend is not among .backends"},
      {"redis+sentinel://s1,s2/mymaster", "the redis_sentinel backend is not among .backends"},
      {"etcd://h:2379", "unknown scheme \"etcd\""},
      {"rediss://h", "TLS"},
      {"redis://h:99999", "port"},
      {"quota.db", "no scheme"},
  };
  for (const row& r : rows) {
    INFO(r.url);
    const std::string what = refusal(r.url);
    INFO(what);
    CHECK(what.find(r.says) != std::string::npos);
  }
  // The password of a URL is not repeated by a refusal of the backend.
  CHECK(refusal("redis://:secret@10.0.0.5:6379").find("secret") == std::string::npos);

  CHECK(refusal("memory:", {.tracker = ""}).find("tracker must not be empty") != std::string::npos);
  CHECK(refusal("memory:", {.backends = {armor::quota_backend{}}}).find("backends: an entry without") !=
        std::string::npos);
}

TEST_CASE("make_quota_storage hands a URL to the first backend given that serves its scheme", "[any_quota_storage]") {
  static std::string seen;
  const armor::quota_backend fake{
      "fake",
      [](armor::backend_scheme s) noexcept { return s == armor::backend_scheme::redis_cluster; },
      [](std::string_view url, std::string_view tracker) {
        seen = std::string(url) + " as " + std::string(tracker);
        return armor::any_quota_storage(bare_storage(false));
      },
  };
  auto s = armor::make_quota_storage("redis+cluster://a:1,b:2", {.tracker = "openai", .backends = {fake}});
  CHECK(seen == "redis+cluster://a:1,b:2 as openai");
  CHECK(s.target<bare_storage>() != nullptr);
  CHECK(refusal("redis://a:1", {.backends = {fake}}).find("the redis backend is not among") != std::string::npos);
}

TEST_CASE("a wrapped storage that throws answers unavailable; one that cannot be keyed says so", "[any_quota_storage]") {
  armor::quota_tracker_options options{.windows = {quota_window::per_minute(10)}};
  any_tracker t{options, armor::manual_clock{}, armor::any_quota_storage(bare_storage(true))};
  const auto d = t.try_consume(1);
  CHECK(d.status() == armor::quota_tracker_status::unavailable);
  CHECK(t.charge(1) == armor::quota_tracker_status::unavailable);
  CHECK(t.stats().unavailable == 2);

  const armor::any_quota_storage s(bare_storage(false));
  try {
    (void)s.for_key("k");
    FAIL("for_key was accepted");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    CHECK(std::string(e.what()).find("makes no storage per key") != std::string::npos);
  }
}

TEST_CASE("a keyed map of trackers on any_quota_storage counts each key apart", "[any_quota_storage]") {
  using keyed_any = armor::keyed<any_tracker>;
  static_assert(std::is_same_v<keyed_any::options_type, armor::keyed_quota_options<armor::any_quota_storage>>);
  const armor::manual_clock clock;
  keyed_any per_user{{.quota = {.windows = {quota_window::per_day(3)}, .alerts = {}},
                      .storage = armor::make_quota_storage("memory:")},
                     {.max_keys = 10},
                     clock};
  for (int i = 0; i < 3; ++i) REQUIRE(per_user.get("ann")->try_consume());
  CHECK_FALSE(per_user.get("ann")->try_consume());
  CHECK(per_user.get("bob")->try_consume(3));
}
