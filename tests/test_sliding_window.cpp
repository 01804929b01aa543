// armor::sliding_window: the exact segmented window against a brute-force
// reference (a deque of timestamps), the two-counter approximation against
// its formula and its error against a true sliding log, the pipeline layer,
// keyed, the 429 headers and option checks.
#include <armor/http/rate_limit.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/sliding_window.hpp>

#include "armor_catch.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <random>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {
armor::timestamp at(nanoseconds d) { return armor::timestamp{d}; }
armor::timestamp at(std::int64_t ns) { return armor::timestamp{nanoseconds{ns}}; }
using sliding = armor::sliding_window<armor::manual_clock>;
constexpr auto approximate = armor::sliding_window_algorithm::approximate;

std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - ((a % b != 0 && a < 0) ? 1 : 0); }

/// The exact segmented window, by brute force: every grant kept with its time.
struct reference {
  std::int64_t limit;
  std::int64_t seg;
  std::int64_t segments;
  std::deque<std::pair<std::int64_t, std::int64_t>> log;  // {time, units}

  [[nodiscard]] std::int64_t used_at_segment(std::int64_t s) const {
    std::int64_t u = 0;
    for (const auto& [t, n] : log) {
      if (floor_div(t, seg) > s - segments && floor_div(t, seg) <= s) u += n;
    }
    return u;
  }
  struct answer {
    bool granted;
    std::int64_t remaining;
    std::int64_t retry_after;
    std::int64_t reset;
  };
  answer decide(std::int64_t t, std::int64_t n) {
    const std::int64_t s = floor_div(t, seg);
    const std::int64_t used = used_at_segment(s);
    answer a{n <= limit && used + n <= limit, 0, 0, 0};
    if (a.granted) log.emplace_back(t, n);
    const std::int64_t after = used_at_segment(s);
    a.remaining = limit - after;
    if (!a.granted && n <= limit) {
      for (std::int64_t j = 1;; ++j) {
        if (used_at_segment(s + j) + n <= limit) {
          a.retry_after = (s + j) * seg - t;
          break;
        }
      }
    }
    if (after > 0) {
      for (std::int64_t j = 1;; ++j) {
        if (used_at_segment(s + j) == 0) {
          a.reset = (s + j) * seg - t;
          break;
        }
      }
    }
    while (!log.empty() && floor_div(log.front().first, seg) <= s - segments) log.pop_front();
    return a;
  }
};

}  // namespace

TEST_CASE("exact: 100 per 10 s in 1 s segments, retry_after when enough old segments roll off", "[sliding_window]") {
  sliding w{{.limit = 100, .window = 10s, .segments = 10}, armor::manual_clock{}};
  REQUIRE(w.try_acquire(30, at(0s)));
  REQUIRE(w.try_acquire(50, at(3500ms)));
  REQUIRE(w.try_acquire(20, at(7s)));
  const armor::window_decision d = w.try_acquire(40, at(9500ms));
  REQUIRE_FALSE(d);
  CHECK(d.code() == armor::errc::rate_limited);
  // Segment 0 (30 units) leaves at 10 s: 70 counted, 40 does not fit;
  // segment 3 (50 units) leaves at 13 s: 20 counted, 40 fits.
  CHECK(d.retry_after() == 3500ms);
  CHECK(d.reset() == 7500ms);  // segment 7 leaves at 17 s
  CHECK(d.remaining() == 0);
  CHECK_FALSE(w.try_acquire(40, at(12999ms)));
  CHECK(w.try_acquire(30, at(10s)));  // segment 0 gone: 70 + 30
  CHECK(w.try_acquire(40, at(13s)));  // segments 7 and 10: 20 + 30 + 40
  CHECK_FALSE(w.try_acquire(11, at(13s)));
  CHECK(w.try_acquire(10, at(13s)));
}

TEST_CASE("exact: 60 per minute in one segment is a fixed window", "[sliding_window]") {
  sliding w{{.limit = 60, .window = 1min, .segments = 1}, armor::manual_clock{}};
  for (int i = 0; i < 60; ++i) REQUIRE(w.try_acquire(1, at(15s + i * 100ms)));
  const auto d = w.try_acquire(1, at(45s));
  REQUIRE_FALSE(d);
  CHECK(d.retry_after() == 15s);
  CHECK(w.try_acquire(1, at(1min)));
}

TEST_CASE("exact: 2000 per 5 minutes in 10 s segments", "[sliding_window]") {
  sliding w{{.limit = 2000, .window = 5min, .segments = 30}, armor::manual_clock{}};
  for (int i = 0; i < 2000; ++i) REQUIRE(w.try_acquire(1, at(i * 50ms)));  // 100 s
  const auto d = w.try_acquire(1, at(200s));
  REQUIRE_FALSE(d);
  // The first segment [0, 10 s) holds 200 grants; it leaves at 300 s.
  CHECK(d.retry_after() == 100s);
  CHECK(w.try_acquire(200, at(300s)));
  CHECK_FALSE(w.try_acquire(1, at(300s)));
}

TEST_CASE("exact: 0 disagreements with a brute-force reference on random sequences", "[sliding_window]") {
  std::mt19937_64 rng(52411);
  std::int64_t steps = 0;
  for (int round = 0; round < 60; ++round) {
    const std::int64_t limit = 1 + static_cast<std::int64_t>(rng() % 12);
    const std::int64_t segments = 1 + static_cast<std::int64_t>(rng() % 8);
    const std::int64_t seg = 1 + static_cast<std::int64_t>(rng() % 50);
    sliding w{{.limit = limit, .window = nanoseconds{seg * segments}, .segments = segments}, armor::manual_clock{}};
    reference ref{limit, seg, segments, {}};
    std::int64_t t = static_cast<std::int64_t>(rng() % 1000);
    for (int step = 0; step < 1000; ++step, ++steps) {
      t += static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(seg * 2));
      const std::int64_t n = static_cast<std::int64_t>(rng() % (static_cast<std::uint64_t>(limit) + 2));
      const auto want = ref.decide(t, n);
      const auto d = w.try_acquire(n, at(t));
      REQUIRE(static_cast<bool>(d) == want.granted);
      REQUIRE(d.remaining() == want.remaining);
      REQUIRE(d.reset().count() == want.reset);
      if (n > limit) {
        REQUIRE(d.status() == armor::window_status::too_large);
      } else if (!want.granted) {
        REQUIRE(d.retry_after().count() == want.retry_after);
        // A retry at exactly retry_after is granted, one nanosecond earlier is not.
        REQUIRE(w.available(at(t + want.retry_after)) >= n);
        REQUIRE(w.available(at(t + want.retry_after - 1)) < n);
      }
    }
  }
  CHECK(steps == 60'000);
}

TEST_CASE("approximate: prev * (window - elapsed) / window + curr, exactly", "[sliding_window]") {
  sliding w{{.limit = 10, .window = 10s, .algorithm = approximate}, armor::manual_clock{}};
  REQUIRE(w.try_acquire(8, at(5s)));  // window 0: curr 8
  // At 12 s: prev 8 weighs 8 * 8/10 = 6.4; 3 more fit (9.4), 4 would not.
  const auto no = w.try_acquire(4, at(12s));
  REQUIRE_FALSE(no);
  // 8 * (10 - e)/10 + 4 <= 10 -> e >= 2.5 s: at 12.5 s.
  CHECK(no.retry_after() == 500ms);
  CHECK(no.remaining() == 3);
  CHECK(w.try_acquire(3, at(12s)));
  CHECK(w.try_acquire(1, at(12500ms)) );  // 8 * 0.75 + 4 = 10
  const auto d = w.try_acquire(1, at(12500ms));
  REQUIRE_FALSE(d);
  // curr 4: 8 * (10 - e)/10 + 5 <= 10 -> e >= 3.75 s.
  CHECK(d.retry_after() == 1250ms);
  // The reset: curr (4) leaves the estimate at the end of the next window.
  CHECK(d.reset() == 17500ms);
}

TEST_CASE("approximate: a window full on its own waits for the next window", "[sliding_window]") {
  sliding w{{.limit = 10, .window = 10s, .algorithm = approximate}, armor::manual_clock{}};
  REQUIRE(w.try_acquire(10, at(1s)));
  const auto d = w.try_acquire(4, at(2s));
  REQUIRE_FALSE(d);
  // Next window: 10 * (10 - e)/10 + 4 <= 10 -> e >= 4 s: at 14 s.
  CHECK(d.retry_after() == 12s);
  CHECK_FALSE(w.try_acquire(4, at(14s - 1ns)));
  CHECK(w.try_acquire(4, at(14s)));
}

TEST_CASE("approximate: decisions equal the integer formula on random sequences", "[sliding_window]") {
  std::mt19937_64 rng(1729);
  for (int round = 0; round < 40; ++round) {
    const std::int64_t limit = 1 + static_cast<std::int64_t>(rng() % 20);
    const std::int64_t len = 1 + static_cast<std::int64_t>(rng() % 1000);
    sliding w{{.limit = limit, .window = nanoseconds{len}, .algorithm = approximate}, armor::manual_clock{}};
    std::int64_t cur = 0;
    std::int64_t curr = 0;
    std::int64_t prev = 0;
    std::int64_t t = 0;
    for (int step = 0; step < 1000; ++step) {
      t += static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(len / 2 + 1));
      const std::int64_t idx = t / len;
      if (idx != cur) {
        prev = idx == cur + 1 ? curr : 0;
        curr = 0;
        cur = idx;
      }
      const std::int64_t n = static_cast<std::int64_t>(rng() % 4);
      const std::int64_t e = t - idx * len;
      const bool want = n <= limit && prev * (len - e) + (curr + n) * len <= limit * len;
      const auto d = w.try_acquire(n, at(t));
      REQUIRE(static_cast<bool>(d) == want);
      if (want) curr += n;
      if (!want && n <= limit) {
        REQUIRE(w.available(at(t + d.retry_after().count())) >= n);
        REQUIRE(w.available(at(t + d.retry_after().count() - 1)) < n);
      }
    }
  }
}

TEST_CASE("approximate: every number as the formula at offsets, negative times, reconfigurations and where the index "
          "outgrows the tag",
          "[sliding_window]") {
  // The head word holds its window's index modulo 2^tag_bits; a call in that
  // window or the next decides without dividing, and a call that curr alone
  // refuses does not read the previous window's count. These runs cross both
  // ends of that range (t - offset = 0, and 2^tag_bits windows later), lower
  // and raise the limit on the way (a lowered limit finds curr >= limit
  // with prev > 0), and check remaining, reset and retry_after.
  __extension__ typedef __int128 wide;
  std::mt19937_64 rng(2123);
  const std::vector<std::int64_t> lengths{1, 7, 1000, 999'999'937, 1'000'000'000, 86'400'000'000'000};
  int refused_by_curr = 0;
  for (int round = 0; round < 48; ++round) {
    const std::int64_t len = lengths[static_cast<std::size_t>(round / 2) % lengths.size()];
    const unsigned count_bits =
        std::min(63U, static_cast<unsigned>(std::bit_width(static_cast<std::uint64_t>(len))) - 1 + 3);
    const std::int64_t edge = static_cast<std::int64_t>((wide{1} << (64 - count_bits)) * len);
    const std::int64_t offset = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(len));
    const std::uint64_t most = std::min<std::uint64_t>(12, (std::uint64_t{1} << count_bits) - 1);
    std::int64_t limit = 1 + static_cast<std::int64_t>(rng() % most);
    const armor::sliding_window_options options{
        .limit = limit, .window = nanoseconds{len}, .algorithm = approximate, .offset = nanoseconds{offset}};
    sliding w{options, armor::manual_clock{}};
    std::int64_t t = (round % 2 == 0 ? 0 : edge) + offset - 3 * len -
                     static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(len));
    std::int64_t cur = floor_div(t - offset, len);
    std::int64_t curr = 0;
    std::int64_t prev = 0;
    for (int step = 0; step < 400; ++step) {
      t += static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(len / 3 + 2));
      if (step % 37 == 36) {
        limit = 1 + static_cast<std::int64_t>(rng() % most);
        armor::sliding_window_options o = options;
        o.limit = limit;
        w.reconfigure(o);
      }
      const std::int64_t idx = floor_div(t - offset, len);
      if (idx != cur) {
        prev = idx == cur + 1 ? curr : 0;
        curr = 0;
        cur = idx;
      }
      const std::int64_t e = t - offset - idx * len;
      const std::int64_t n = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(limit + 2));
      const bool want = n <= limit && wide{prev} * (len - e) + wide{curr + n} * len <= wide{limit} * len;
      const armor::window_decision d = w.try_acquire(n, at(t));
      INFO("round " << round << " step " << step << " t " << t << " n " << n << " prev " << prev << " curr " << curr
                    << " limit " << limit);
      REQUIRE(static_cast<bool>(d) == want);
      if (n > limit) REQUIRE(d.status() == armor::window_status::too_large);
      if (want) curr += n;
      const wide room = wide{limit - curr} * len - wide{prev} * (len - e);
      REQUIRE(d.remaining() == (room <= 0 ? 0 : static_cast<std::int64_t>(room / len)));
      REQUIRE(d.reset().count() == (curr > 0 ? len - e + len : (prev > 0 ? len - e : 0)));
      if (!want && n >= 1 && n <= limit) {
        if (curr >= limit) ++refused_by_curr;
        REQUIRE(w.available(at(t + d.retry_after().count())) >= n);
        REQUIRE(w.available(at(t + d.retry_after().count() - 1)) < n);
      }
    }
  }
  CHECK(refused_by_curr > 500);
}

TEST_CASE("approximate: its error against a true sliding log on random traffic", "[sliding_window]") {
  // Poisson arrivals at 0.5x to 4x the limit. For every call, the true
  // sliding log (grants in (t - window, t]) says whether it would admit; we
  // count the disagreements and the most grants ever seen in one window.
  std::mt19937_64 rng(86400);
  const std::int64_t limit = 100;
  const std::int64_t len = 1'000'000'000;
  for (const double load : {0.5, 1.0, 1.5, 2.0, 4.0}) {
    sliding w{{.limit = limit, .window = nanoseconds{len}, .algorithm = approximate}, armor::manual_clock{}};
    std::exponential_distribution<double> gap(load * static_cast<double>(limit) / static_cast<double>(len));
    std::deque<std::int64_t> granted;
    std::int64_t t = 0;
    std::int64_t calls = 0;
    std::int64_t more = 0;  // admitted where the log would refuse
    std::int64_t less = 0;  // refused where the log would admit
    std::int64_t peak = 0;
    for (; calls < 200'000; ++calls) {
      t += static_cast<std::int64_t>(gap(rng)) + 1;
      while (!granted.empty() && granted.front() <= t - len) granted.pop_front();
      const bool log_admits = static_cast<std::int64_t>(granted.size()) + 1 <= limit;
      const bool ok = static_cast<bool>(w.try_acquire(1, at(t)));
      if (ok) granted.push_back(t);
      if (ok && !log_admits) ++more;
      if (!ok && log_admits) ++less;
      peak = std::max(peak, static_cast<std::int64_t>(granted.size()));
    }
    // The proven bound (docs/rate_windows.md): fewer than 2 * limit in any window.
    CHECK(peak < 2 * limit);
    if (std::getenv("ARMOR_PRINT_WINDOW_ERROR") != nullptr) {
      std::printf("load %.1fx: %lld calls, admitted over the log %lld (%.3f%%), refused under it %lld (%.3f%%), "
                  "peak %lld per window (limit %lld)\n",
                  load, static_cast<long long>(calls), static_cast<long long>(more),
                  100.0 * static_cast<double>(more) / static_cast<double>(calls), static_cast<long long>(less),
                  100.0 * static_cast<double>(less) / static_cast<double>(calls), static_cast<long long>(peak),
                  static_cast<long long>(limit));
    }
  }
}

TEST_CASE("in a pipeline a sliding window refuses with rate_limited and retry_after", "[sliding_window]") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, sliding{{.limit = 2, .window = 2s, .segments = 2}, clock}};
  auto op = [] { return 1; };
  REQUIRE(p.try_execute(op).has_value());
  clock.advance(1s);
  REQUIRE(p.try_execute(op).has_value());
  clock.advance(500ms);
  auto r = p.try_execute(op);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::rate_limited);
  CHECK(r.retry_after() == std::optional<nanoseconds>{500ms});
  CHECK(p.try_execute(op, {.cost = 3}).code() == armor::errc::request_too_large);
  clock.advance(500ms);
  CHECK(p.try_execute(op).has_value());
}

TEST_CASE("keyed sliding windows, idle once everything rolled off", "[sliding_window]") {
  armor::manual_clock clock;
  armor::keyed<sliding> per_ip{{.limit = 100, .window = 10s, .segments = 10}, {.max_keys = 8}, clock};
  for (int i = 0; i < 100; ++i) REQUIRE(per_ip.get("a")->try_acquire());
  CHECK_FALSE(per_ip.get("a")->try_acquire());
  clock.advance(9s);
  CHECK(per_ip.evict_idle() == 0);
  clock.advance(1s);
  CHECK(per_ip.evict_idle() == 1);
  armor::keyed<sliding> approx{{.limit = 5, .window = 10s, .algorithm = approximate}, {.max_keys = 8}, clock};
  CHECK(approx.get("b")->try_acquire());
  clock.advance(10s);
  CHECK(approx.evict_idle() == 0);  // still weighs in the next window
  clock.advance(10s);
  CHECK(approx.evict_idle() == 1);
}

TEST_CASE("a sliding window's decision writes the 429 headers", "[sliding_window]") {
  sliding w{{.limit = 100, .window = 10s, .segments = 10}, armor::manual_clock{}};
  REQUIRE(w.try_acquire(100, at(0s)));
  const auto h = armor::http::rate_limit_headers(w.try_acquire(1, at(4500ms)));
  CHECK(h.find("RateLimit-Limit") == "100");
  CHECK(h.find("RateLimit-Remaining") == "0");
  CHECK(h.find("RateLimit-Reset") == "6");
  CHECK(h.find("RateLimit-Policy") == "100;w=10");
  CHECK(h.find("Retry-After") == "6");
}

TEST_CASE("sliding window stats and listener", "[sliding_window]") {
  int heard = 0;
  auto listen = [&](const armor::window_event& e) noexcept { heard += e.status == armor::window_status::denied; };
  armor::sliding_window<armor::manual_clock, true, decltype(listen)> w{
      {.limit = 3, .window = 3s, .segments = 3, .count_calls = true}, armor::manual_clock{}, listen};
  (void)w.try_acquire(2, at(0s));
  (void)w.try_acquire(1, at(1s));
  (void)w.try_acquire(1, at(2s));
  (void)w.try_acquire(4, at(2s));
  const armor::sliding_window_stats s = w.stats(at(2s));
  CHECK(s.used == 3);
  CHECK(s.reset == 2s);
  CHECK(s.granted == 2);
  CHECK(s.rejected == 1);
  CHECK(s.too_large == 1);
  CHECK(heard == 1);
  CHECK(w.algorithm() == armor::sliding_window_algorithm::exact);
}

TEST_CASE("sliding window options are checked, naming the option", "[sliding_window]") {
  auto message = [](const armor::sliding_window_options& o) {
    try {
      sliding w{o, armor::manual_clock{}};
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(message({.limit = 0, .window = 1s}).find("limit") != std::string::npos);
  CHECK(message({.limit = 1, .window = 0s}).find("window") != std::string::npos);
  CHECK(message({.limit = 1, .window = 1s, .segments = 0}).find("segments") != std::string::npos);
  CHECK(message({.limit = 1, .window = 1s, .segments = 5000}).find("segments") != std::string::npos);
  CHECK(message({.limit = 1, .window = 1s, .segments = 7}).find("segments") != std::string::npos);
  CHECK(message({.limit = 1, .window = 1s, .segments = 10, .offset = 100ms}).find("offset") != std::string::npos);
  CHECK(message({.limit = 1, .window = 1s, .algorithm = static_cast<armor::sliding_window_algorithm>(9)})
            .find("algorithm") != std::string::npos);
  CHECK(message({.limit = 1, .window = 1s, .cost = armor::cost_source::slot(99)}).find("cost") != std::string::npos);
  CHECK(message({.limit = 1, .window = 1s, .segments = 7, .algorithm = approximate}).empty());
}

TEST_CASE("sliding window: a fresh window counts in the clock's period at any epoch (no phantom future period)") {
  // As the fixed window's test: 10 s periods at 2024-06-15 12:00:00.07 UTC
  // have the top bit of their tag set; the fresh state's empty words (head
  // and archive) once read as periods 30 years ahead.
  const armor::manual_clock clock{nanoseconds{1'718'452'800'074'979'872}};
  sliding a{{.limit = 100, .window = 10s, .algorithm = approximate}, clock};
  sliding x{{.limit = 100, .window = 100s, .segments = 10}, clock};
  const armor::window_decision d = a.try_acquire(100);
  REQUIRE(d);
  CHECK(d.reset() == nanoseconds{19'925'020'128});  // the rest of this window and the next
  const armor::window_decision e = x.try_acquire(100);
  REQUIRE(e);
  CHECK(e.reset() == nanoseconds{99'925'020'128});  // until its segment rolls off
  clock.advance(nanoseconds{99'925'020'128});
  CHECK(x.try_acquire(100));
  CHECK(a.try_acquire(100));
}

TEST_CASE("approximate: long windows, large limits, offsets and negative times decide as the exact formula",
          "[sliding_window]") {
  // The products reach 2^95 here (24 h windows, limits near 2^48): both the
  // counts-alone shortcuts and the 128-bit comparison are exercised.
  __extension__ typedef __int128 wide;
  std::mt19937_64 rng(8191);
  const std::vector<std::int64_t> lengths{1, 7, 1000, 999'999'937, 1'000'000'000, 86'400'000'000'000};
  for (int round = 0; round < 60; ++round) {
    const std::int64_t len = lengths[static_cast<std::size_t>(round) % lengths.size()];
    const unsigned count_bits = static_cast<unsigned>(std::bit_width(static_cast<std::uint64_t>(len))) - 1 + 3;
    const std::uint64_t max_limit = (std::uint64_t{1} << count_bits) - 1;
    const std::int64_t limit = 1 + static_cast<std::int64_t>(rng() % (round % 2 == 0 ? max_limit : std::min<std::uint64_t>(max_limit, 50)));
    const std::int64_t offset = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(len));
    sliding w{{.limit = limit, .window = nanoseconds{len}, .algorithm = approximate, .offset = nanoseconds{offset}},
              armor::manual_clock{}};
    std::int64_t t = -5 * len - static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(len));
    std::int64_t cur = floor_div(t - offset, len);
    std::int64_t curr = 0;
    std::int64_t prev = 0;
    for (int step = 0; step < 400; ++step) {
      t += static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(len / 2 + 1));
      const std::int64_t idx = floor_div(t - offset, len);
      if (idx != cur) {
        prev = idx == cur + 1 ? curr : 0;
        curr = 0;
        cur = idx;
      }
      const std::int64_t n = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(limit / 3 + 2));
      const std::int64_t e = t - offset - idx * len;
      const bool want = n <= limit && wide{prev} * (len - e) + wide{curr + n} * len <= wide{limit} * len;
      const auto d = w.try_acquire(n, at(t));
      REQUIRE(static_cast<bool>(d) == want);
      if (want) curr += n;
    }
  }
}
