// Several threads share one quota tracker (memory backend) on a manual
// wall clock. Checked afterwards, exactly:
//
//   - threads that consume one unit at a time until refused admit, in all,
//     exactly the smallest limit (fixed and rolling windows alike);
//   - with mixed costs, reservations committed and cancelled, every window's
//     count equals what was finally kept, and never exceeds its limit;
//   - each alert threshold fires exactly once per period, however many
//     threads cross it together, with reservations racing commits and
//     cancels (settled alerts) too;
//   - while another thread moves the clock across period boundaries, no
//     period admits more than its limit.
//
// Run under ThreadSanitizer (each case well under a second natively).
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>

#include "armor_catch.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using namespace std::chrono;
using armor::quota_window;

namespace {

constexpr int threads = 4;

using tracker = armor::quota_tracker<armor::manual_clock>;

armor::manual_clock clock_at(sys_time<nanoseconds> t) {
  armor::manual_clock c;
  c.set(armor::manual_clock::time_point{t.time_since_epoch()});
  return c;
}

/// Runs `body(thread index)` on `threads` threads started together.
template <class F>
void together(F body) {
  std::atomic<int> ready{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < threads) std::this_thread::yield();
      body(t);
    });
  }
  for (auto& th : pool) th.join();
}

/// Every thread consumes one unit at a time until refused.
long drain(tracker& t) {
  std::atomic<long> admitted{0};
  together([&](int) {
    long mine = 0;
    while (t.try_consume(1)) ++mine;
    admitted.fetch_add(mine);
  });
  return admitted.load();
}

struct counting_listener {
  std::array<std::atomic<int>, 3> fired{};
  std::mutex m;
  std::map<std::pair<std::int64_t, double>, int> per_period;  // window 0: (period end, threshold) -> times
  void operator()(const armor::quota_tracker_event& a) noexcept {
    const auto k = a.threshold < 0.85 ? 0 : a.threshold < 0.95 ? 1 : 2;
    fired[static_cast<std::size_t>(k)].fetch_add(1, std::memory_order_relaxed);
    if (a.window != 0) return;
    const std::lock_guard<std::mutex> lock(m);
    ++per_period[{a.resets_at.time_since_epoch().count(), a.threshold}];
  }
};

}  // namespace

TEST_CASE("threads consuming until refused admit exactly the smallest limit") {
  const auto clock = clock_at(sys_days{2024y / June / 15} + 12h);
  SECTION("a fixed window is the smallest") {
    tracker t{{.windows = {quota_window::per_hour(50'000), quota_window::per_day(30'000),
                           quota_window::rolling(40'000, 1h, 60)}},
              clock};
    CHECK(drain(t) == 30'000);
    CHECK(t.usage(0).used == 30'000);
    CHECK(t.usage(1).used == 30'000);
    CHECK(t.usage(2).used == 30'000);
  }
  SECTION("a rolling window is the smallest") {
    tracker t{{.windows = {quota_window::per_day(50'000), quota_window::rolling(20'000, 1h, 60)}}, clock};
    CHECK(drain(t) == 20'000);
    CHECK(t.usage(0).used == 20'000);
  }
  SECTION("every window has the same limit") {
    tracker t{{.windows = {quota_window::per_minute(25'000), quota_window::per_hour(25'000),
                           quota_window::per_month(25'000)}},
              clock};
    CHECK(drain(t) == 25'000);
  }
  SECTION("one window, in a pipeline") {
    tracker t{{.windows = {quota_window::per_day(40'000)}}, clock};
    const auto p = armor::pipeline{clock, std::ref(t)};
    std::atomic<long> admitted{0};
    together([&](int) {
      long mine = 0;
      while (p.try_execute([] { return 1; }).has_value()) ++mine;
      admitted.fetch_add(mine);
    });
    CHECK(admitted.load() == 40'000);
  }
}

TEST_CASE("with mixed costs and reservations every window keeps exactly what was kept, within its limit") {
  const auto clock = clock_at(sys_days{2024y / June / 15} + 12h);
  constexpr std::int64_t limit = 20'000;
  tracker t{{.windows = {quota_window::per_day(limit), quota_window::rolling(limit + 5000, 1h, 12),
                         quota_window::per_hour(limit + 1000)}},
            clock};
  std::atomic<std::int64_t> kept{0};
  std::atomic<bool> done{false};
  std::atomic<long> over_limit{0};
  std::thread watcher([&] {
    while (!done.load(std::memory_order_relaxed)) {
      if (t.usage(0).used > limit) over_limit.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::yield();
    }
  });
  together([&](int id) {
    std::mt19937_64 rng(static_cast<std::uint64_t>(id) * 7919 + 1);
    std::int64_t mine = 0;
    int refusals = 0;
    while (refusals < 200) {
      const auto roll = rng() % 10;
      const auto cost = static_cast<std::int64_t>(rng() % 8);
      if (roll < 4) {
        if (t.try_consume(cost)) {
          mine += cost;
        } else {
          ++refusals;
        }
        continue;
      }
      auto d = t.reserve(cost);
      if (!d) {
        ++refusals;
        continue;
      }
      auto r = std::move(d).permit();
      if (roll < 6) {
        const auto actual = cost == 0 ? 0 : static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(cost + 1));
        (void)r.commit(actual);  // at most the estimate: the limit holds
        mine += actual;
      } else if (roll < 7) {
        r.commit();
        mine += cost;
      } else if (roll < 8) {
        r.cancel();
      }  // else dropped: given back
    }
    kept.fetch_add(mine);
  });
  done.store(true, std::memory_order_relaxed);
  watcher.join();
  CHECK(over_limit.load() == 0);
  CHECK(t.usage(0).used == kept.load());
  CHECK(t.usage(1).used == kept.load());
  CHECK(t.usage(2).used == kept.load());
  CHECK(kept.load() <= limit);
  CHECK(kept.load() > limit - 8 * threads);  // each thread gave up only after 200 refusals
}

TEST_CASE("each threshold fires exactly once per period however many threads cross it") {
  const auto clock = clock_at(sys_days{2024y / June / 15});
  counting_listener heard;
  armor::quota_tracker t{{.windows = {quota_window::per_hour(10'000)}}, clock, armor::memory_quota_storage{},
                         std::ref(heard)};
  for (int hour = 0; hour < 5; ++hour) {
    together([&](int) {
      while (t.try_consume(1)) {
      }
    });
    CHECK(heard.fired[0].load() == hour + 1);
    CHECK(heard.fired[1].load() == hour + 1);
    CHECK(heard.fired[2].load() == hour + 1);
    clock.advance(1h);
  }
}

TEST_CASE("settled alerts: racing reservations, commits and cancels fire each threshold once, at settled use") {
  const auto clock = clock_at(sys_days{2024y / June / 15});
  constexpr std::int64_t limit = 20'000;
  struct checking_listener {
    counting_listener count;
    std::atomic<int> below{0};  // alerts whose use had not reached their threshold
    void operator()(const armor::quota_tracker_event& a) noexcept {
      if (static_cast<double>(a.used) < a.threshold * static_cast<double>(a.limit) - 1e-9) below.fetch_add(1);
      count(a);
    }
  } heard;
  armor::quota_tracker t{{.windows = {quota_window::per_hour(limit)}}, clock, armor::memory_quota_storage{},
                         std::ref(heard)};
  for (int hour = 0; hour < 4; ++hour) {
    std::atomic<std::int64_t> kept{0};
    together([&](int id) {
      std::mt19937_64 rng(static_cast<std::uint64_t>(id) * 104'729 + static_cast<std::uint64_t>(hour));
      std::int64_t mine = 0;
      int refusals = 0;
      while (refusals < 100) {
        const auto roll = rng() % 10;
        const auto cost = static_cast<std::int64_t>(1 + rng() % 40);
        if (roll < 2) {
          if (t.try_consume(cost)) mine += cost; else ++refusals;
          continue;
        }
        auto d = t.reserve(cost);
        if (!d) {
          ++refusals;
          continue;
        }
        auto r = std::move(d).permit();
        if (roll < 5) {
          const auto actual = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(cost + 1));
          (void)r.commit(actual);
          mine += actual;
        } else if (roll < 7) {
          r.commit();
          mine += cost;
        } else if (roll < 9) {
          r.cancel();
        }  // else dropped: given back
      }
      kept.fetch_add(mine);
    });
    CHECK(t.usage(0).used == kept.load());
    while (t.try_consume(1)) {
    }
    CHECK(t.usage(0).used == limit);  // settled use reached every threshold, once
    CHECK(heard.count.fired[0].load() == hour + 1);
    CHECK(heard.count.fired[1].load() == hour + 1);
    CHECK(heard.count.fired[2].load() == hour + 1);
    clock.advance(1h);
  }
  CHECK(heard.below.load() == 0);
  CHECK(t.stats().alerts == 12);
}

TEST_CASE("while the clock crosses period boundaries no period admits more than its limit") {
  const auto start = sys_days{2024y / June / 15} + 12h;
  const auto clock = clock_at(start);
  constexpr std::int64_t limit = 300;
  counting_listener heard;
  armor::quota_tracker t{{.windows = {quota_window::per_minute(limit), quota_window::rolling(3 * limit, 3min, 3)}},
                         clock, armor::memory_quota_storage{}, std::ref(heard)};
  std::atomic<bool> done{false};
  std::mutex m;
  std::map<std::int64_t, std::int64_t> per_minute;  // admissions certainly counted in that minute
  // The clock moves on when the threads have used up what the current time
  // allows (or after a bounded wait), not on a wall-clock beat: a slow or
  // loaded machine (sanitizers, parallel tests) still fills every minute.
  std::thread mover([&] {
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    for (int i = 0; i < 40; ++i) {
      while ((t.usage(0).remaining() > 0 && t.usage(1).remaining() > 0) &&
             std::chrono::steady_clock::now() < give_up)
        std::this_thread::yield();
      std::this_thread::sleep_for(1ms);  // refusals race the move below
      clock.advance(30s);
    }
    done.store(true);
  });
  together([&](int) {
    std::map<std::int64_t, std::int64_t> mine;
    while (!done.load(std::memory_order_relaxed)) {
      const auto before = floor<minutes>(clock.now().time_since_epoch()).count();
      const bool ok = static_cast<bool>(t.try_consume(1));
      const auto after = floor<minutes>(clock.now().time_since_epoch()).count();
      // A window never moves back, and the tracker read the clock between
      // the two readings: if they agree, the unit counted in that minute.
      if (ok && before == after) ++mine[before];
    }
    const std::lock_guard<std::mutex> lock(m);
    for (const auto& [minute, n] : mine) per_minute[minute] += n;
  });
  mover.join();
  std::int64_t worst = 0;
  for (const auto& [minute, n] : per_minute) worst = std::max(worst, n);
  CHECK(worst <= limit);
  CHECK(per_minute.size() >= 10);
  // The minute window's alerts: once per threshold and minute at most.
  int repeats = 0;
  for (const auto& [key, n] : heard.per_period) repeats += n > 1 ? 1 : 0;
  CHECK(repeats == 0);
  CHECK(heard.per_period.size() >= 10);
}

// The packed counters (memory.hpp, "Packed counters": minute, hour and day
// in one 16-byte word): threads consume and reserve (committing or giving
// back) while another moves the clock across minute boundaries, and, in one
// section, raises the limits beyond what the word holds, so that the counts
// move to a word per window mid-race. Afterwards, exactly: the hour and the
// day count what was kept, and no minute admitted more than its limit.
TEST_CASE("packed counters under racing consumes, releases, minute turnovers and a move to a word per window") {
  const auto start = sys_days{2024y / June / 15} + 12h;
  const auto clock = clock_at(start);
  constexpr std::int64_t per_minute = 300;
  constexpr std::int64_t per_hour = 3000;
  const bool move = GENERATE(false, true);
  CAPTURE(move);
  tracker t{{.windows = {quota_window::per_minute(per_minute), quota_window::per_hour(per_hour),
                         quota_window::per_day(100'000)}},
            clock};
  REQUIRE(t.storage().packed());
  std::atomic<bool> done{false};
  std::atomic<std::int64_t> kept{0};
  std::mutex m;
  std::map<std::int64_t, std::int64_t> by_minute;  // units certainly counted in that minute
  std::thread mover([&] {
    // Bounded by the work done, not by time (a preempted thread only slows it).
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    for (int i = 0; i < 30; ++i) {
      while (t.usage(0).remaining() > 0 && t.usage(1).remaining() > 0 && std::chrono::steady_clock::now() < give_up)
        std::this_thread::yield();
      if (move && i == 12) {
        constexpr std::int64_t big = std::int64_t{1} << 32;
        t.reconfigure({.windows = {quota_window::per_minute(per_minute), quota_window::per_hour(per_hour),
                                   quota_window::per_day(big)}});
      }
      clock.advance(20s);  // 10 minutes in all: the hour and the day stay the same
    }
    done.store(true);
  });
  together([&](int id) {
    std::map<std::int64_t, std::int64_t> mine;
    std::int64_t mine_kept = 0;
    std::minstd_rand rng(static_cast<unsigned>(id) + 1);
    while (!done.load(std::memory_order_relaxed)) {
      const auto before = floor<minutes>(clock.now().time_since_epoch()).count();
      std::int64_t counted = 0;
      if (rng() % 4 == 0) {
        auto d = t.reserve(3);
        if (d) {
          const auto r = rng() % 3;
          if (r == 0) {
            d.permit().cancel();
          } else if (r == 1) {
            (void)d.permit().commit(1);
            counted = 1;
          } else {
            d.permit().commit();
            counted = 3;
          }
        }
      } else if (t.try_consume(1)) {
        counted = 1;
      }
      const auto after = floor<minutes>(clock.now().time_since_epoch()).count();
      mine_kept += counted;
      if (counted > 0 && before == after) mine[before] += counted;
    }
    kept.fetch_add(mine_kept);
    const std::lock_guard<std::mutex> lock(m);
    for (const auto& [minute, n] : mine) by_minute[minute] += n;
  });
  mover.join();
  CHECK(t.storage().packed() == !move);
  CHECK(t.usage(1).used == kept.load());
  CHECK(t.usage(2).used == kept.load());
  CHECK(kept.load() <= per_hour);
  std::int64_t worst = 0;
  for (const auto& [minute, n] : by_minute) worst = std::max(worst, n);
  CHECK(worst <= per_minute);
  CHECK(by_minute.size() >= 5);
}
