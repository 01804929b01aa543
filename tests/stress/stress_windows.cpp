// Several threads share one window limiter over virtual time, in rounds: in
// each round every thread makes calls at the same clock reading, then one
// thread moves the clock on. Checked afterwards, exactly, from what every
// thread was granted:
//
//   - fixed_window: at most `limit` units in each window;
//   - sliding_window exact: at most `limit` units in any `segments`
//     consecutive segments;
//   - sliding_window approximate: prev * (window - e) + curr * window <=
//     limit * window at every round's time;
//   - no room is lost: a round in which some call was refused ends with
//     less room than the smallest refused request.
//
// Also a fixed window shared by threads whose clock readings lag each other
// (each grant counted in its own window or a newer one), and a keyed map of
// windows churning under contention. Run under ThreadSanitizer.
#include <armor/fixed_window.hpp>
#include <armor/keyed.hpp>
#include <armor/sliding_window.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

__extension__ typedef __int128 i128;

constexpr int threads = 4;
constexpr int rounds = 400;
constexpr int calls_per_round = 40;

struct round_log {
  std::int64_t t = 0;
  std::int64_t granted = 0;
  bool refused = false;
  std::int64_t smallest_refused = 0;
  std::int64_t room_after = 0;
};

/// Runs the rounds against `limiter` and returns one log per round.
template <class L>
std::vector<round_log> run(L& limiter, std::int64_t max_step_ns, std::int64_t max_n) {
  std::vector<round_log> log(rounds);
  std::vector<std::atomic<std::int64_t>> granted(rounds);
  std::vector<std::atomic<std::int64_t>> smallest(rounds);
  for (auto& s : smallest) s.store(INT64_MAX);
  std::atomic<std::int64_t> now{1'000'000'000};
  std::mt19937_64 leader_rng(99);
  int round = 0;
  auto next_round = [&]() noexcept {
    // Completion step: runs on one thread while the others wait.
    log[static_cast<std::size_t>(round)].t = now.load();
    log[static_cast<std::size_t>(round)].room_after = limiter.available(armor::timestamp{nanoseconds{now.load()}});
    ++round;
    now.fetch_add(1 + static_cast<std::int64_t>(leader_rng() % static_cast<std::uint64_t>(max_step_ns)));
  };
  std::barrier sync(threads, next_round);
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 7);
      for (int r = 0; r < rounds; ++r) {
        const armor::timestamp t{nanoseconds{now.load()}};
        for (int i = 0; i < calls_per_round; ++i) {
          const std::int64_t n = 1 + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(max_n));
          const armor::window_decision d = limiter.try_acquire(n, t);
          if (d) {
            granted[static_cast<std::size_t>(r)].fetch_add(n);
          } else if (d.status() == armor::window_status::denied) {
            std::int64_t cur = smallest[static_cast<std::size_t>(r)].load();
            while (n < cur && !smallest[static_cast<std::size_t>(r)].compare_exchange_weak(cur, n)) {
            }
          }
        }
        sync.arrive_and_wait();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (std::size_t r = 0; r < log.size(); ++r) {
    log[r].granted = granted[r].load();
    log[r].smallest_refused = smallest[r].load();
    log[r].refused = log[r].smallest_refused != INT64_MAX;
  }
  return log;
}

void check_no_room_lost(const std::vector<round_log>& log) {
  for (const round_log& r : log) {
    if (r.refused) REQUIRE(r.room_after < r.smallest_refused);
  }
}

}  // namespace

TEST_CASE("threads sharing a fixed window never exceed the limit in any window, and lose no room", "[stress]") {
  constexpr std::int64_t limit = 500;
  constexpr std::int64_t len = 1'000'000;
  armor::fixed_window<armor::manual_clock> w{{.limit = limit, .window = nanoseconds{len}}, armor::manual_clock{}};
  const auto log = run(w, len / 4, 5);
  std::map<std::int64_t, std::int64_t> per_window;
  for (const round_log& r : log) per_window[r.t / len] += r.granted;
  for (const auto& [k, sum] : per_window) REQUIRE(sum <= limit);
  check_no_room_lost(log);
}

TEST_CASE("threads sharing an exact sliding window never exceed the limit in any window, and lose no room",
          "[stress]") {
  constexpr std::int64_t limit = 500;
  constexpr std::int64_t segments = 8;
  constexpr std::int64_t seg = 125'000;
  armor::sliding_window<armor::manual_clock> w{
      {.limit = limit, .window = nanoseconds{seg * segments}, .segments = segments}, armor::manual_clock{}};
  const auto log = run(w, seg, 5);
  std::map<std::int64_t, std::int64_t> per_segment;
  for (const round_log& r : log) per_segment[r.t / seg] += r.granted;
  for (const auto& [s, sum0] : per_segment) {
    std::int64_t sum = 0;
    for (std::int64_t k = s - segments + 1; k <= s; ++k) {
      const auto it = per_segment.find(k);
      if (it != per_segment.end()) sum += it->second;
    }
    REQUIRE(sum <= limit);
  }
  check_no_room_lost(log);
}

TEST_CASE("threads sharing an approximate sliding window keep the estimate within the limit", "[stress]") {
  constexpr std::int64_t limit = 500;
  constexpr std::int64_t len = 1'000'000;
  armor::sliding_window<armor::manual_clock> w{
      {.limit = limit, .window = nanoseconds{len}, .algorithm = armor::sliding_window_algorithm::approximate},
      armor::manual_clock{}};
  const auto log = run(w, len / 4, 5);
  std::map<std::int64_t, std::int64_t> per_window;
  for (const round_log& r : log) {
    per_window[r.t / len] += r.granted;
    const std::int64_t k = r.t / len;
    const std::int64_t e = r.t - k * len;
    const auto prev = per_window.find(k - 1);
    const i128 estimate = i128{prev == per_window.end() ? 0 : prev->second} * (len - e) +
                              i128{per_window[k]} * len;
    REQUIRE(estimate <= i128{limit} * len);
  }
  check_no_room_lost(log);
}

TEST_CASE("threads whose clock readings lag each other: a fixed window counts each grant in its own window or a "
          "newer one, and never more than the limit in one",
          "[stress]") {
  // Each thread reads the shared virtual time late by up to half a window,
  // so calls on both sides of a turn interleave: the word's window is then
  // t's own, the one before it (the call divides) or the one after it (a
  // late call counts in the newer window). A grant's reset() tells the
  // window it was counted in: its end is t + reset().
  constexpr std::int64_t limit = 200;
  constexpr std::int64_t len = 1'000'000;
  constexpr std::int64_t offset = 123'457;
  armor::fixed_window<armor::manual_clock> w{
      {.limit = limit, .window = nanoseconds{len}, .offset = nanoseconds{offset}}, armor::manual_clock{}};
  struct grant {
    std::int64_t end;
    std::int64_t n;
  };
  std::vector<std::vector<grant>> grants(threads);
  std::atomic<std::int64_t> now{1'000'000'000};
  std::atomic<int> bad{0};
  std::mt19937_64 leader_rng(5);
  std::barrier sync(threads, [&]() noexcept { now.fetch_add(1 + static_cast<std::int64_t>(leader_rng() % (len / 4))); });
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 31);
      for (int r = 0; r < rounds; ++r) {
        for (int i = 0; i < calls_per_round; ++i) {
          const std::int64_t t = now.load() - static_cast<std::int64_t>(rng() % (len / 2));
          const std::int64_t n = 1 + static_cast<std::int64_t>(rng() % 3);
          const std::int64_t own_end = ((t - offset) / len + 1) * len + offset;  // t - offset > 0 here
          const armor::window_decision d = w.try_acquire(n, armor::timestamp{nanoseconds{t}});
          if (d) {
            const std::int64_t end = t + d.reset().count();
            if (end < own_end || (end - own_end) % len != 0) bad.fetch_add(1);
            grants[static_cast<std::size_t>(id)].push_back({end, n});
          } else if (d.retry_after().count() <= 0 || (t + d.retry_after().count() - own_end) % len != 0) {
            bad.fetch_add(1);
          }
        }
        sync.arrive_and_wait();
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(bad.load() == 0);
  std::map<std::int64_t, std::int64_t> per_window;
  std::int64_t total = 0;
  for (const auto& list : grants) {
    for (const grant& g : list) {
      per_window[g.end] += g.n;
      total += g.n;
    }
  }
  for (const auto& [end, sum] : per_window) REQUIRE(sum <= limit);
  CHECK(total > limit);  // the windows filled and turned
}

TEST_CASE("a keyed map of windows churns safely under contention", "[stress]") {
  armor::manual_clock clock;
  armor::keyed<armor::sliding_window<armor::manual_clock>> per_key{
      {.limit = 10, .window = 1ms, .segments = 4}, {.max_keys = 16}, clock};
  std::vector<std::thread> pool;
  std::atomic<std::int64_t> granted{0};
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 11);
      for (int i = 0; i < 20000; ++i) {
        std::string key = "k";  // appended, not "k" + ...: GCC 12 -O3 warns (-Wrestrict, a false positive)
        key += std::to_string(rng() % 40);
        if (per_key.get(key)->try_acquire()) granted.fetch_add(1);
        if (i % 64 == 0) clock.advance(100us);
        if (i % 512 == 0) (void)per_key.evict_idle();
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(granted.load() > 0);
}
