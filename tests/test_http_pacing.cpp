// armor::http pacing: the pure pacing decision, the pacer applied to a token
// bucket, and a virtual-time simulation in which the same workload runs
// against a server with a hidden quota, with and without pacing.
#include <armor/backoff.hpp>
#include <armor/http.hpp>
#include <armor/pipeline.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;
namespace http = armor::http;

namespace {

__extension__ typedef __int128 i128;

/// One token every horizon / n, rounded up to the nanosecond.
armor::rate every(nanoseconds horizon, std::int64_t n) {
  return {1, nanoseconds{(horizon.count() + n - 1) / n}};
}

http::rate_limit_info info(std::int64_t remaining, nanoseconds reset_after) {
  http::rate_limit_info i;
  i.remaining = remaining;
  i.reset_after = reset_after;
  return i;
}

/// Calls a bucket holding `tokens` and then set to `t` grants strictly
/// before `reset` ns from now: what it keeps (at most the burst, nothing
/// when drained) plus its refill over reset - 1 ns. A call at the reset
/// itself is in the next window.
i128 granted_before(const http::pace_target& t, std::int64_t tokens, std::int64_t reset) {
  const i128 held = t.drain ? 0 : std::min(tokens, t.burst);
  if (reset <= 0) return held;
  return held + static_cast<i128>(reset - 1) * t.rate.count / t.rate.per.count();
}

}  // namespace

TEST_CASE("http pacing: the decision", "[http][pacing]") {
  const http::pacer_options o{.ceiling = {100, 1s}};
  SECTION("spread what remains over the time to the reset plus the margin") {
    const auto t = http::pace(info(100, 60s), o, 1);
    REQUIRE(t);
    CHECK(t->burst == 1);
    CHECK(t->rate == every(61s, 99));  // the token held counts against the 100
    CHECK(http::pace(info(100, 60s), o, 0)->rate == every(61s, 100));
    CHECK(http::pace(info(100, 60s), o, 7)->rate == every(61s, 99));  // only the burst is kept
    CHECK_FALSE(t->drain);
  }
  SECTION("a larger burst is paid for by a lower rate") {
    const auto t = http::pace(info(100, 60s), {.ceiling = {100, 1s}, .max_burst = 10}, 10);
    REQUIRE(t);
    CHECK(t->burst == 10);
    CHECK(t->rate == every(61s, 90));
    // A bucket that holds fewer tokens refills faster, up to the same total.
    CHECK(http::pace(info(100, 60s), {.ceiling = {100, 1s}, .max_burst = 10}, 2)->rate == every(61s, 98));
  }
  SECTION("the burst never exceeds what remains") {
    const auto t = http::pace(info(4, 10s), {.ceiling = {100, 1s}, .max_burst = 10}, 10);
    REQUIRE(t);
    CHECK(t->burst == 4);
    CHECK(t->rate == armor::rate{1, 11s});  // the next token only after the reset
  }
  SECTION("nothing left: drain, and the next token after the reset") {
    const auto t = http::pace(info(0, 30s), o, 5);
    REQUIRE(t);
    CHECK(t->drain);
    CHECK(t->burst == 1);
    CHECK(t->rate == armor::rate{1, 31s});
  }
  SECTION("the reserve is kept back") {
    const auto t = http::pace(info(100, 60s), {.ceiling = {100, 1s}, .reserve = 20}, 1);
    REQUIRE(t);
    CHECK(t->rate == every(61s, 79));
    const auto none = http::pace(info(15, 60s), {.ceiling = {100, 1s}, .reserve = 20}, 1);
    REQUIRE(none);
    CHECK(none->drain);
  }
  SECTION("never faster than the ceiling") {
    const auto t = http::pace(info(1'000'000, 1s), o, 0);
    REQUIRE(t);
    CHECK(t->rate == armor::rate{100, 1s});
    const auto huge = http::pace(info(INT64_MAX, 0s), {.ceiling = {1, 1ns}, .margin = 0s}, INT64_MAX);
    REQUIRE(huge);
    CHECK(huge->rate == armor::rate{1, 1ns});
  }
  SECTION("a reset already due, or very near, divides by at least min_horizon") {
    const auto t = http::pace(info(10, 0s), {.ceiling = {100, 1s}, .margin = 0s, .min_horizon = 500ms}, 1);
    REQUIRE(t);
    CHECK(t->rate == every(500ms, 9));
  }
  SECTION("the burst shrinks until the bucket can hold it") {
    // 1000 calls left for a year: 1000 tokens at once plus a year's
    // interval per token would not fit a bucket's 2^57 ns span.
    const http::pacer_options wide{.ceiling = {100, 1s}, .max_burst = 1000};
    const auto t = http::pace(info(1000, nanoseconds{http::max_server_hint}), wide, 1000);
    REQUIRE(t);
    CHECK(t->burst < 1000);
    CHECK(t->burst >= 1);
    CHECK_NOTHROW(armor::token_bucket<armor::manual_clock>{{.rate = t->rate, .burst = t->burst},
                                                           armor::manual_clock{}});
    const auto w = http::pace(info(1000, nanoseconds{http::max_server_hint}), wide, 1000, 24h * 365);
    REQUIRE(w);
    CHECK(w->burst < t->burst);
    CHECK_NOTHROW(armor::token_bucket<armor::manual_clock>{{.rate = w->rate, .burst = w->burst, .max_wait = 24h * 365},
                                                           armor::manual_clock{}});
    // A max_wait the state cannot hold at all.
    CHECK_FALSE(http::pace(info(1000, 60s), wide, 0, nanoseconds{INT64_MAX}));
  }
  SECTION("too little information: leave the bucket alone") {
    http::rate_limit_info no_reset;
    no_reset.remaining = 5;
    CHECK_FALSE(http::pace(no_reset, o, 0));
    http::rate_limit_info no_remaining;
    no_remaining.reset_after = 5s;
    CHECK_FALSE(http::pace(no_remaining, o, 0));
    CHECK_FALSE(http::pace({}, o, 0));
  }
}

TEST_CASE("http pacing: a bucket set by pace() cannot spend the quota before the reset", "[http][pacing]") {
  // For every combination: a full bucket (or a drained one) plus its refill
  // until the reset (without the margin) grants at most what remains.
  int checked = 0;
  for (const std::int64_t remaining : {0LL, 1LL, 2LL, 3LL, 7LL, 10LL, 99LL, 100LL, 4999LL, 1'000'000LL}) {
    for (const nanoseconds reset : {0ns, nanoseconds{1ms}, nanoseconds{999ms}, nanoseconds{1s},
                                    nanoseconds{60s}, nanoseconds{1h}, nanoseconds{http::max_server_hint}}) {
      for (const std::int64_t max_burst : {1LL, 2LL, 10LL, 1000LL}) {
        for (const std::int64_t held : {0LL, 1LL, 5LL, 1000LL}) {
          for (const nanoseconds margin : {0ns, nanoseconds{1s}}) {
            const http::pacer_options o{.ceiling = {1000, 1ms}, .max_burst = max_burst, .margin = margin};
            const nanoseconds max_wait = margin == 0ns ? 0ns : nanoseconds{1h};
            const auto t = http::pace(info(remaining, reset), o, held, max_wait);
            REQUIRE(t);
            INFO("remaining " << remaining << " reset " << reset.count() << " max_burst " << max_burst << " held "
                              << held << " margin " << margin.count());
            CHECK(granted_before(*t, held, reset.count()) <= remaining);
            CHECK(t->burst >= 1);
            CHECK(t->burst <= max_burst);
            CHECK(t->rate.count >= 1);
            CHECK(t->rate.count <= t->rate.per.count());  // a rate a bucket accepts
            CHECK_NOTHROW(armor::token_bucket<armor::manual_clock>{
                {.rate = t->rate, .burst = t->burst, .max_wait = max_wait}, armor::manual_clock{}});
            ++checked;
          }
        }
      }
    }
  }
  CHECK(checked == 10 * 7 * 4 * 4 * 2);
}

TEST_CASE("http pacing: options are checked", "[http][pacing]") {
  armor::token_bucket<armor::manual_clock> b{{.rate = {10, 1s}}, armor::manual_clock{}};
  CHECK_THROWS_AS(http::pacer(b, {}), armor::error);  // no ceiling
  CHECK_THROWS_AS(http::pacer(b, {.ceiling = {2, 1ns}}), armor::error);
  CHECK_THROWS_AS(http::pacer(b, {.ceiling = {10, 1s}, .max_burst = 0}), armor::error);
  CHECK_THROWS_AS(http::pacer(b, {.ceiling = {10, 1s}, .margin = -1s}), armor::error);
  CHECK_THROWS_AS(http::pacer(b, {.ceiling = {10, 1s}, .reserve = -1}), armor::error);
  CHECK_THROWS_AS(http::pacer(b, {.ceiling = {10, 1s}, .min_horizon = 0s}), armor::error);
  // A ceiling and burst the bucket (with its max_wait) could not take.
  armor::token_bucket<armor::manual_clock> patient{{.rate = {10, 1s}, .max_wait = 24h * 365 * 4}, armor::manual_clock{}};
  CHECK_THROWS_AS(http::pacer(patient, {.ceiling = {1, 24h * 365}, .max_burst = 2}), armor::error);
  CHECK_NOTHROW(http::pacer(patient, {.ceiling = {10, 1s}}));
  try {
    http::pacer(b, {.ceiling = {10, 1s}, .max_burst = 0});
  } catch (const armor::error& e) {
    CHECK(std::string(e.what()).find("max_burst") != std::string::npos);
    CHECK(e.code() == armor::errc::invalid_argument);
  }
}

TEST_CASE("http pacing: the pacer sets the bucket", "[http][pacing]") {
  armor::manual_clock clock;
  armor::token_bucket<armor::manual_clock> bucket{{.rate = {10, 1s}, .burst = 10}, clock};
  http::pacer pacer{bucket, {.ceiling = {10, 1s}, .max_burst = 3}};
  const auto t = pacer.observe(info(40, 9s));
  REQUIRE(t);
  CHECK(bucket.rate() == every(10s, 37));
  CHECK(bucket.burst() == 3);
  CHECK(bucket.available() == 3);  // tokens above the new burst are dropped

  // Nothing left: the bucket is emptied, the next token comes after the reset.
  CHECK(pacer.observe(info(0, 4s)));
  CHECK(bucket.available() == 0);
  clock.advance(4s);
  CHECK(bucket.available() == 0);

  // A response without the numbers changes nothing (before the reset; after
  // it, see the next test).
  CHECK_FALSE(pacer.observe(http::rate_limit_info{}));
  CHECK(bucket.rate() == armor::rate{1, 5s});

  clock.advance(1s);
  CHECK(bucket.available() == 1);
}

TEST_CASE("http pacing: after the reset (plus the margin) the pacer returns the bucket to its ceiling on its own",
          "[http][pacing]") {
  // The server said "nothing left, reset in 60 s", then went down: an outage
  // answering 500s without rate-limit headers. The old numbers must not pace
  // the client beyond the reset.
  armor::manual_clock clock;
  armor::token_bucket<armor::manual_clock> bucket{{.rate = {10, 1s}, .burst = 10, .max_wait = 2min}, clock};
  http::pacer pacer{bucket, {.ceiling = {10, 1s}, .max_burst = 3}};  // margin: 1 s
  const http::rate_limit_info outage{};
  const auto stamp = [&] { return armor::to_timestamp(clock.now()); };
  const auto t = pacer.observe(info(0, 60s));
  REQUIRE(t);
  CHECK(t->horizon == 61s);
  CHECK(bucket.rate() == armor::rate{1, 61s});

  SECTION("responses without headers: paced until reset + margin, at the ceiling from then on") {
    clock.advance(30s);
    CHECK_FALSE(pacer.observe(outage));
    CHECK(bucket.rate() == armor::rate{1, 61s});
    clock.advance(31s - 1ns);  // 1 ns before reset + margin: still paced
    CHECK_FALSE(pacer.observe(outage));
    CHECK_FALSE(pacer.refresh());
    CHECK(bucket.rate() == armor::rate{1, 61s});
    clock.advance(1ns);
    const auto back = pacer.observe(outage);
    REQUIRE(back);
    CHECK(back->rate == armor::rate{10, 1s});
    CHECK(back->burst == 3);  // max_burst
    CHECK_FALSE(back->drain);
    CHECK(bucket.rate() == armor::rate{10, 1s});
    CHECK(bucket.burst() == 3);
    // The token that came at the reset is there; the next ones come at the
    // ceiling's pace, not one a minute.
    CHECK(bucket.try_acquire(1, stamp()));
    const auto next = bucket.try_acquire(1, stamp());
    CHECK_FALSE(next);
    CHECK(next.retry_after() == 100ms);
    // Restored once: later responses without headers change nothing more.
    clock.advance(1h);
    CHECK_FALSE(pacer.observe(outage));
    CHECK(bucket.rate() == armor::rate{10, 1s});
  }
  SECTION("the callers' path: refresh() before taking a token restores the ceiling without a response") {
    clock.advance(61s);
    const auto back = pacer.refresh();
    REQUIRE(back);
    CHECK(back->rate == armor::rate{10, 1s});
    CHECK(bucket.rate() == armor::rate{10, 1s});
    CHECK_FALSE(pacer.refresh());  // once
  }
  SECTION("a new header during the outage still wins") {
    clock.advance(30s);
    REQUIRE(pacer.observe(info(0, 60s)));  // one answer with headers: a new reset, 60 s from now
    clock.advance(31s);                    // the first reset + margin: its numbers are stale, the new ones hold
    CHECK_FALSE(pacer.observe(outage));
    CHECK(bucket.rate() == armor::rate{1, 61s});
    clock.advance(30s - 1ns);
    CHECK_FALSE(pacer.observe(outage));
    clock.advance(1ns);  // the new reset + margin
    REQUIRE(pacer.observe(outage));
    CHECK(bucket.rate() == armor::rate{10, 1s});
  }
  SECTION("a header after the reset is applied as it says") {
    clock.advance(2min);
    const auto again = pacer.observe(info(40, 9s));
    REQUIRE(again);
    CHECK(bucket.rate() == every(10s, 39));  // 40 left, 1 held (the paced bucket's burst was 1)
    CHECK_FALSE(pacer.observe(outage));      // and holds until its own reset + margin
    clock.advance(10s);
    CHECK(pacer.observe(outage));
    CHECK(bucket.rate() == armor::rate{10, 1s});
  }
}

// ---------------------------------------------------------------------------
// The simulation

namespace {

struct sim_response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
};

/// A server with a quota the client is not told about in advance: `quota`
/// requests per fixed window of `window`, windows aligned on the Unix
/// epoch, as GitHub's hourly limit. Every answer carries X-RateLimit-*
/// (Reset as a Unix time); a 429 also carries Retry-After when asked to.
struct quota_server {
  armor::manual_clock clock;  // its time is Unix time
  std::int64_t quota = 100;
  nanoseconds window = 60s;
  bool send_retry_after = true;

  std::int64_t current = -1;
  std::int64_t used = 0;
  int ok = 0;
  int too_many = 0;

  sim_response handle() {
    const std::int64_t t = clock.now().time_since_epoch().count();
    const std::int64_t w = t / window.count();
    if (w != current) {
      current = w;
      used = 0;
    }
    const std::int64_t reset_s = (w + 1) * window.count() / 1'000'000'000;
    const std::int64_t now_s = t / 1'000'000'000;
    sim_response r;
    if (used < quota) {
      ++used;
      ++ok;
      r.status = 200;
    } else {
      ++too_many;
      r.status = 429;
      if (send_retry_after) r.headers.emplace_back("Retry-After", std::to_string(reset_s - now_s));
    }
    r.headers.emplace_back("X-RateLimit-Limit", std::to_string(quota));
    r.headers.emplace_back("X-RateLimit-Remaining", std::to_string(quota - used));
    r.headers.emplace_back("X-RateLimit-Reset", std::to_string(reset_s));
    return r;
  }
};

struct sim_result {
  int done = 0;
  int failed = 0;
  int too_many = 0;
  nanoseconds took{0};
};

enum class client_kind { naive, hints, paced };

/// `jobs` calls, one after another, each through a pipeline of a retry layer
/// and a client-side token bucket at 10/s (the client's own limit); 50 ms
/// per request. `naive` judges by status alone (no server hint), `hints`
/// uses status_classifier (Retry-After, reset), `paced` also paces the
/// bucket from every response (burst 1: calls evenly spread).
sim_result simulate(client_kind kind, int jobs, bool send_retry_after) {
  armor::manual_clock clock{std::chrono::seconds{1'700'000'000}};
  quota_server server{clock};
  server.send_retry_after = send_retry_after;
  armor::token_bucket<armor::manual_clock> bucket{{.rate = {10, 1s}, .burst = 10, .max_wait = 1h}, clock};
  http::pacer pacer{bucket, {.ceiling = {10, 1s}}};
  const armor::backoff_options retry{.max_attempts = 8, .initial = 1s, .max_delay = 30s,
                                     .jitter = armor::jitter_mode::none, .max_retry_after = 2min};
  auto wall = [&] { return http::wall_time{std::chrono::duration_cast<http::wall_time::duration>(clock.now().time_since_epoch())}; };
  auto request = [&] {
    clock.advance(50ms);
    sim_response r = server.handle();
    if (kind == client_kind::paced) pacer.observe(r, wall(), armor::to_timestamp(clock.now()));
    return r;
  };
  const auto by_status = armor::classify{[](const sim_response& r) { return http::classify_status(r.status); }};
  const auto by_headers = armor::classify{[&](const sim_response& r) { return http::status_classifier{}(r, wall()); }};
  const auto naive = armor::pipeline{clock, by_status, armor::backoff{retry}, std::ref(bucket)};
  const auto aware = armor::pipeline{clock, by_headers, armor::backoff{retry}, std::ref(bucket)};

  sim_result out;
  const auto start = clock.now();
  for (int j = 0; j < jobs; ++j) {
    const auto r = kind == client_kind::naive ? naive.try_execute(request) : aware.try_execute(request);
    if (r && r->status == 200) {
      ++out.done;
    } else {
      ++out.failed;
    }
  }
  out.took = clock.now() - start;
  out.too_many = server.too_many;
  return out;
}

}  // namespace

TEST_CASE("http pacing: the same workload against a hidden quota gets far fewer 429s when paced",
          "[http][pacing][simulation]") {
  // 600 jobs against 100 requests a minute: about six windows of work.
  for (const bool retry_after : {true, false}) {
    INFO("server sends Retry-After: " << retry_after);
    const sim_result naive = simulate(client_kind::naive, 600, retry_after);
    const sim_result hints = simulate(client_kind::hints, 600, retry_after);
    const sim_result paced = simulate(client_kind::paced, 600, retry_after);
    auto secs = [](nanoseconds d) { return std::chrono::duration_cast<std::chrono::seconds>(d).count(); };
    INFO("naive:  " << naive.too_many << " 429s, " << naive.failed << " failed, " << secs(naive.took) << " s");
    INFO("hints:  " << hints.too_many << " 429s, " << hints.failed << " failed, " << secs(hints.took) << " s");
    INFO("paced:  " << paced.too_many << " 429s, " << paced.failed << " failed, " << secs(paced.took) << " s");
    // Every variant but the naive one does all the work, or the comparison is unfair.
    CHECK(hints.done == 600);
    CHECK(paced.done == 600);
    // Pacing runs into the quota at most once (at the very start it knows nothing).
    CHECK(paced.too_many <= 1);
    // Honouring the hints alone still hits the wall once per window.
    CHECK(hints.too_many >= 5);
    // Knowing nothing hits it many times per window.
    CHECK(naive.too_many >= 4 * hints.too_many);
    // The price of pacing: calls spread evenly over each window finish a
    // finite batch up to one window later than calls at full speed until
    // the wall, plus the margin (1 s) once per window (six here).
    CHECK(paced.took <= hints.took + 60s + 6 * 1s);
  }
}
