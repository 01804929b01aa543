// armor::fixed_window: "N per window" exactly on a manual clock, the seed
// cases of issue 21, the pipeline layer, keyed, the 429 headers, option checks.
#include <armor/fixed_window.hpp>
#include <armor/http/rate_limit.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {
armor::timestamp at(nanoseconds d) { return armor::timestamp{d}; }
using window = armor::fixed_window<armor::manual_clock>;
}  // namespace

TEST_CASE("60 per minute: the 61st request in the minute is refused until the minute turns", "[fixed_window]") {
  window w{{.limit = 60, .window = 1min}, armor::manual_clock{}};
  const nanoseconds start = 10min + 15s;  // a quarter into a minute
  for (int i = 0; i < 60; ++i) {
    const armor::window_decision d = w.try_acquire(1, at(start + i * 500ms));
    REQUIRE(d);
    CHECK(d.remaining() == 59 - i);
    CHECK(d.limit() == 60);
  }
  const nanoseconds t61 = start + 30s;  // 10:45 into the minute 10
  const armor::window_decision d = w.try_acquire(1, at(t61));
  REQUIRE_FALSE(d);
  CHECK(d.status() == armor::window_status::denied);
  CHECK(d.code() == armor::errc::rate_limited);
  CHECK(d.retry_after() == 15s);  // to 11:00
  CHECK(d.reset() == 15s);
  CHECK(d.remaining() == 0);
  CHECK_FALSE(w.try_acquire(1, at(11min - 1ns)));
  CHECK(w.try_acquire(1, at(11min)).remaining() == 59);
}

TEST_CASE("2000 per 5 minutes (AWS WAF style)", "[fixed_window]") {
  window w{{.limit = 2000, .window = 5min}, armor::manual_clock{}};
  for (int i = 0; i < 2000; ++i) REQUIRE(w.try_acquire(1, at(5min + i * 100ms)));
  const armor::window_decision d = w.try_acquire(1, at(5min + 200s));
  REQUIRE_FALSE(d);
  CHECK(d.retry_after() == 100s);
  CHECK(w.try_acquire(2000, at(10min)));
  CHECK_FALSE(w.try_acquire(1, at(10min + 1s)));
}

TEST_CASE("a request is all or nothing, and more than the limit is too large", "[fixed_window]") {
  window w{{.limit = 10, .window = 1s}, armor::manual_clock{}};
  REQUIRE(w.try_acquire(7, at(0s)));
  const auto d = w.try_acquire(4, at(100ms));
  CHECK_FALSE(d);
  CHECK(d.remaining() == 3);
  CHECK(d.retry_after() == 900ms);
  CHECK(w.try_acquire(3, at(200ms)));
  const auto big = w.try_acquire(11, at(2s));
  CHECK(big.status() == armor::window_status::too_large);
  CHECK(big.code() == armor::errc::request_too_large);
  CHECK(big.retry_after() == nanoseconds::max());
  CHECK(w.try_acquire(-1, at(2s)).code() == armor::errc::invalid_argument);
  CHECK(w.try_acquire(0, at(2s)));
}

TEST_CASE("offset moves where windows turn", "[fixed_window]") {
  window w{{.limit = 1, .window = 1min, .offset = 30s}, armor::manual_clock{}};
  REQUIRE(w.try_acquire(1, at(1min)));
  const auto d = w.try_acquire(1, at(1min + 20s));
  CHECK(d.retry_after() == 10s);  // the window [0:30, 1:30)
  CHECK(w.try_acquire(1, at(1min + 30s)));
}

TEST_CASE("a call whose clock reading is older than the window counted counts in the newer one", "[fixed_window]") {
  window w{{.limit = 2, .window = 1s}, armor::manual_clock{}};
  REQUIRE(w.try_acquire(2, at(1s)));
  // A late thread still reading 999 ms must not start window 0 afresh.
  const auto d = w.try_acquire(1, at(999ms));
  CHECK_FALSE(d);
  CHECK(d.retry_after() == 1001ms);
}

TEST_CASE("a fixed window matches a brute-force count on random traffic", "[fixed_window]") {
  std::mt19937_64 rng(2101);
  for (int round = 0; round < 50; ++round) {
    const std::int64_t limit = 1 + static_cast<std::int64_t>(rng() % 5);
    const std::int64_t len = 1 + static_cast<std::int64_t>(rng() % 1000);
    window w{{.limit = limit, .window = nanoseconds{len}}, armor::manual_clock{}};
    std::int64_t t = 0;
    std::int64_t cur = -1;
    std::int64_t used = 0;
    for (int step = 0; step < 2000; ++step) {
      t += static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(len / 3 + 1));
      const std::int64_t n = static_cast<std::int64_t>(rng() % 4);
      if (t / len != cur) {
        cur = t / len;
        used = 0;
      }
      const bool want = used + n <= limit;
      const auto d = w.try_acquire(n, at(nanoseconds{t}));
      if (n > limit) {
        REQUIRE(d.status() == armor::window_status::too_large);
        continue;
      }
      REQUIRE(static_cast<bool>(d) == want);
      if (want) {
        used += n;
      } else {
        REQUIRE(d.retry_after().count() == (cur + 1) * len - t);
      }
      REQUIRE(d.remaining() == limit - used);
    }
  }
}

TEST_CASE("a fixed window decides as a count by division at offsets, negative times and where its index outgrows the tag",
          "[fixed_window]") {
  // The state's word holds its window's index modulo 2^tag_bits, and a call
  // in the window whose index is the tag itself decides without dividing.
  // These runs cross both ends of that range (t - offset = 0, and
  // 2^tag_bits windows later), lower and raise the limit on the way, and
  // check every number a decision reports against a count by division.
  __extension__ typedef __int128 wide;
  const auto floor_div = [](std::int64_t a, std::int64_t b) { return a / b - ((a % b != 0 && a < 0) ? 1 : 0); };
  std::mt19937_64 rng(2122);
  const std::vector<std::int64_t> lengths{1, 7, 1000, 999'999'937, 1'000'000'000, 86'400'000'000'000};
  int fast_denials = 0;
  for (int round = 0; round < 48; ++round) {
    const std::int64_t len = lengths[static_cast<std::size_t>(round / 2) % lengths.size()];
    const unsigned count_bits =
        std::min(63U, static_cast<unsigned>(std::bit_width(static_cast<std::uint64_t>(len))) - 1 + 3);
    const std::int64_t edge = static_cast<std::int64_t>((wide{1} << (64 - count_bits)) * len);
    const std::int64_t offset = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(len));
    // At most 12, and what the count's bits hold (7 for 1 ns windows).
    const std::uint64_t most = std::min<std::uint64_t>(12, (std::uint64_t{1} << count_bits) - 1);
    std::int64_t limit = 1 + static_cast<std::int64_t>(rng() % most);
    const armor::fixed_window_options options{.limit = limit, .window = nanoseconds{len}, .offset = nanoseconds{offset}};
    window w{options, armor::manual_clock{}};
    std::int64_t t = (round % 2 == 0 ? 0 : edge) + offset - 3 * len - static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(len));
    std::int64_t cur = floor_div(t - offset, len);
    std::int64_t used = 0;
    for (int step = 0; step < 400; ++step) {
      t += static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(len / 3 + 2));
      if (step % 37 == 36) {
        limit = 1 + static_cast<std::int64_t>(rng() % most);
        armor::fixed_window_options o = options;
        o.limit = limit;
        w.reconfigure(o);
      }
      const std::int64_t idx = floor_div(t - offset, len);
      if (idx != cur) {
        cur = idx;
        used = 0;
      }
      const std::int64_t to_end = (cur + 1) * len + offset - t;
      const std::int64_t n = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(limit + 2));
      const armor::window_decision d = w.try_acquire(n, at(nanoseconds{t}));
      INFO("round " << round << " step " << step << " t " << t << " n " << n << " used " << used << " limit " << limit);
      if (n > limit) {
        REQUIRE(d.status() == armor::window_status::too_large);
      } else {
        const bool want = used + n <= limit;
        REQUIRE(static_cast<bool>(d) == want);
        if (want) used += n;
        REQUIRE(d.retry_after().count() == (want ? 0 : to_end));
        if (!want && t - offset >= 0 && t - offset < edge) ++fast_denials;
      }
      REQUIRE(d.remaining() == std::max<std::int64_t>(0, limit - used));
      REQUIRE(d.reset().count() == (used == 0 ? 0 : to_end));
    }
  }
  CHECK(fast_denials > 1000);
}

TEST_CASE("in a pipeline a fixed window refuses with rate_limited and the time to the window's end", "[fixed_window]") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, window{{.limit = 2, .window = 1s}, clock}};
  auto op = [] { return 1; };
  REQUIRE(p.try_execute(op).has_value());
  REQUIRE(p.try_execute(op).has_value());
  clock.advance(300ms);
  auto r = p.try_execute(op);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::rate_limited);
  REQUIRE(r.retry_after().has_value());
  CHECK(*r.retry_after() == 700ms);
  CHECK(p.try_execute(op, {.cost = 0}).has_value());
  CHECK(p.try_execute(op, {.cost = 3}).code() == armor::errc::request_too_large);
  clock.advance(700ms);
  CHECK(p.try_execute(op, {.cost = 2}).has_value());
}

TEST_CASE("a fixed window counts the cost it selects", "[fixed_window]") {
  armor::manual_clock clock;
  auto p = armor::pipeline{
      clock, window{{.limit = 3, .window = 1s, .cost = armor::cost_source::per_call()}, clock}};
  auto op = [] { return 1; };
  for (int i = 0; i < 3; ++i) REQUIRE(p.try_execute(op, {.cost = 100}).has_value());
  CHECK_FALSE(p.try_execute(op, {.cost = 100}).has_value());
}

TEST_CASE("keyed fixed windows: one per key, idle once the window turned", "[fixed_window]") {
  armor::manual_clock clock;
  armor::keyed<window> per_ip{{.limit = 60, .window = 1min}, {.max_keys = 4}, clock};
  for (int i = 0; i < 60; ++i) REQUIRE(per_ip.get("10.0.0.1")->try_acquire());
  CHECK_FALSE(per_ip.get("10.0.0.1")->try_acquire());
  CHECK(per_ip.get("10.0.0.2")->try_acquire());
  CHECK_FALSE(per_ip.get("10.0.0.1")->idle(armor::to_timestamp(clock.now())));
  clock.advance(1min);
  CHECK(per_ip.evict_idle() == 2);
  auto p = armor::pipeline{clock, std::ref(per_ip)};
  CHECK(p.try_execute([] { return 1; }, {.key = "10.0.0.3"}).has_value());
}

TEST_CASE("a fixed window's decision writes the 429 headers", "[fixed_window]") {
  window w{{.limit = 60, .window = 1min}, armor::manual_clock{}};
  for (int i = 0; i < 60; ++i) REQUIRE(w.try_acquire(1, at(0s)));
  const auto d = w.try_acquire(1, at(45s));
  const auto h = armor::http::rate_limit_headers(d);
  CHECK(h.find("RateLimit-Limit") == "60");
  CHECK(h.find("RateLimit-Remaining") == "0");
  CHECK(h.find("RateLimit-Reset") == "15");
  CHECK(h.find("RateLimit-Policy") == "60;w=60");
  CHECK(h.find("Retry-After") == "15");
}

TEST_CASE("fixed window stats and listener", "[fixed_window]") {
  std::vector<armor::window_event> heard;
  auto listen = [&](const armor::window_event& e) noexcept { heard.push_back(e); };
  armor::fixed_window<armor::manual_clock, true, decltype(listen)> w{
      {.limit = 2, .window = 1s, .count_calls = true}, armor::manual_clock{}, listen};
  (void)w.try_acquire(1, at(0s));
  (void)w.try_acquire(1, at(100ms));
  (void)w.try_acquire(1, at(250ms));
  (void)w.try_acquire(3, at(250ms));
  const armor::fixed_window_stats s = w.stats(at(500ms));
  CHECK(s.used == 2);
  CHECK(s.reset == 500ms);
  CHECK(s.granted == 2);
  CHECK(s.rejected == 1);
  CHECK(s.too_large == 1);
  REQUIRE(heard.size() == 2);
  CHECK(heard[0].status == armor::window_status::denied);
  CHECK(heard[0].retry_after == 750ms);
  CHECK(heard[1].status == armor::window_status::too_large);
  CHECK(w.available(at(1s)) == 2);
}

TEST_CASE("fixed window options are checked, naming the option", "[fixed_window]") {
  auto message = [](const armor::fixed_window_options& o) {
    try {
      window w{o, armor::manual_clock{}};
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(message({.limit = 0, .window = 1s}).find("limit") != std::string::npos);
  CHECK(message({.limit = 1, .window = 0s}).find("window") != std::string::npos);
  CHECK(message({.limit = 1, .window = 1s, .offset = 1s}).find("offset") != std::string::npos);
  CHECK(message({.limit = 1, .window = 1s, .offset = -1ns}).find("offset") != std::string::npos);
  CHECK(message({.limit = std::int64_t{1} << 40, .window = 1ns}).find("limit") != std::string::npos);
  CHECK(message({.limit = 1, .window = 1s, .cost = armor::cost_source::slot(99)}).find("cost") != std::string::npos);
  CHECK(message({.limit = std::int64_t{1} << 31, .window = 1s}).empty());
}

TEST_CASE("fixed window: a fresh window counts in the clock's window at any epoch (no phantom future window)") {
  // 2024-06-15 12:00:00.074979872 UTC: a 10 s window's index has the top bit
  // of its tag set. The fresh state's empty word was once taken for a window
  // 30 years ahead, in which every later call then counted (found by the
  // differential test against the Redis backend).
  const armor::manual_clock clock{nanoseconds{1'718'452'800'074'979'872}};
  window w{{.limit = 100, .window = 10s}, clock};
  const armor::window_decision d = w.try_acquire(100);
  REQUIRE(d);
  CHECK(d.reset() == nanoseconds{9'925'020'128});
  CHECK(w.try_acquire(1).retry_after() == nanoseconds{9'925'020'128});
  clock.advance(nanoseconds{9'925'020'128});
  CHECK(w.try_acquire(100));
}
