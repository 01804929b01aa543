// Several threads share one token bucket over virtual time (a manual clock
// they advance themselves when denied, as a sleeping caller would). Checked
// afterwards, exactly, from what every thread was granted:
//
//   - in any window [t1, t2] of grant times, at most burst + rate * (t2 - t1)
//     tokens were granted (for reservations: counted at the time they are due);
//   - no token is lost: granted + still available == burst + rate * t.
//
// Also: runtime rate changes and a keyed map churning under contention must
// stay race-free. Run under ThreadSanitizer (each case well under a second
// natively).
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

__extension__ typedef __int128 i128;

constexpr int threads = 4;

struct grant {
  std::int64_t t;
  std::int64_t n;
};

/// The largest excess, over all windows [t_i, t_j] of the grants, of
/// (tokens granted in the window - burst) * p - (t_j - t_i) * c. The rate
/// bound holds iff it is <= 0. O(G log G).
i128 worst_window(std::vector<grant> g, std::int64_t c, std::int64_t p, std::int64_t burst) {
  std::sort(g.begin(), g.end(), [](const grant& a, const grant& b) { return a.t < b.t; });
  i128 worst = std::numeric_limits<std::int64_t>::min();
  i128 prefix = 0;                                         // tokens granted before index i
  i128 best_start = std::numeric_limits<std::int64_t>::max();  // min over window starts of prefix*p - t*c
  std::size_t i = 0;
  while (i < g.size()) {
    std::size_t j = i;
    i128 group = 0;
    while (j < g.size() && g[j].t == g[i].t) group += g[j++].n;
    // A window may start at this time: everything from here on is inside it.
    best_start = std::min(best_start, prefix * p - i128{g[i].t} * c);
    prefix += group;
    // ... and end at this time: everything up to here is inside it.
    const i128 excess = (prefix * p - i128{g[i].t} * c) - best_start - i128{burst} * p;
    worst = std::max(worst, excess);
    i = j;
  }
  return worst;
}

}  // namespace

TEST_CASE("threads sharing a bucket never exceed burst + rate * t in any window, and lose no tokens") {
  constexpr std::int64_t burst = 50;
  constexpr int iterations = 100000;
  armor::manual_clock clock;
  armor::token_bucket b{{.rate = {1, 1us}, .burst = burst}, clock};  // one token per 1000 ns
  std::vector<std::vector<grant>> logs(threads);
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 1);
      auto& log = logs[static_cast<std::size_t>(id)];
      for (int i = 0; i < iterations; ++i) {
        const auto now = armor::to_timestamp(clock.now());
        const std::int64_t n = 1 + static_cast<std::int64_t>(rng() % 3);
        if (b.try_acquire(n, now)) {
          log.push_back({now.time_since_epoch().count(), n});
        } else {
          clock.advance(nanoseconds{1 + static_cast<std::int64_t>(rng() % 250)});  // "sleep" a little
        }
      }
    });
  }
  for (auto& th : pool) th.join();

  std::vector<grant> all;
  std::int64_t granted = 0;
  for (const auto& log : logs) {
    all.insert(all.end(), log.begin(), log.end());
    for (const grant& g : log) granted += g.n;
  }
  const std::int64_t end = clock.now().time_since_epoch().count();
  CAPTURE(granted, end, all.size());
  CHECK(worst_window(all, 1, 1000, burst) <= 0);
  // Conservation: the bucket never filled up after the start (callers were
  // always waiting), so every token the rate produced was granted or is
  // still there.
  CHECK(granted + b.available(armor::timestamp{nanoseconds{end}}) == burst + end / 1000);
  CHECK(granted > 1000);
}

TEST_CASE("threads reserving, committing and abandoning waits never exceed the rate when the waits end") {
  constexpr std::int64_t burst = 10;
  constexpr int iterations = 50000;
  armor::manual_clock clock;
  armor::token_bucket b{{.rate = {3, 10us}, .burst = burst}, clock};  // interval 3333.33 ns: not whole
  std::vector<std::vector<grant>> logs(threads);
  std::atomic<long> given_back{0};
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 11);
      auto& log = logs[static_cast<std::size_t>(id)];
      for (int i = 0; i < iterations; ++i) {
        const auto now = armor::to_timestamp(clock.now());
        const std::int64_t n = 1 + static_cast<std::int64_t>(rng() % 2);
        auto r = b.reserve(n, 20us, now);
        if (!r) {
          clock.advance(nanoseconds{1 + static_cast<std::int64_t>(rng() % 2000)});
          continue;
        }
        if (rng() % 5 == 0) {
          if (r.permit().cancel()) given_back.fetch_add(1, std::memory_order_relaxed);  // abandoned
          continue;
        }
        r.permit().commit();
        log.push_back({now.time_since_epoch().count() + r.wait().count(), n});  // runs when due
        if (rng() % 3 == 0) clock.advance(nanoseconds{static_cast<std::int64_t>(rng() % 1000)});
      }
    });
  }
  for (auto& th : pool) th.join();
  std::vector<grant> all;
  for (const auto& log : logs) all.insert(all.end(), log.begin(), log.end());
  CAPTURE(all.size(), given_back.load());
  CHECK(worst_window(all, 3, 10'000, burst) <= 0);
  CHECK(all.size() > 1000);
}

TEST_CASE("rate changes under load are race-free and never exceed the larger rate") {
  constexpr int iterations = 60000;
  armor::manual_clock clock;
  armor::token_bucket b{{.rate = {1, 1us}, .burst = 20}, clock};
  std::atomic<bool> done{false};
  std::vector<std::vector<grant>> logs(threads);
  std::vector<std::thread> pool;
  pool.emplace_back([&] {
    std::mt19937_64 rng(99);
    while (!done.load(std::memory_order_relaxed)) {
      const bool fast = rng() % 2 == 0;
      b.set_rate(fast ? armor::rate{1, 1us} : armor::rate{1, 3us}, fast ? 20 : 10);
      std::this_thread::yield();
    }
  });
  for (int id = 0; id < threads - 1; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 21);
      auto& log = logs[static_cast<std::size_t>(id)];
      for (int i = 0; i < iterations; ++i) {
        const auto now = armor::to_timestamp(clock.now());
        if (b.try_acquire(1, now)) {
          log.push_back({now.time_since_epoch().count(), 1});
        } else {
          clock.advance(nanoseconds{1 + static_cast<std::int64_t>(rng() % 300)});
        }
      }
    });
  }
  for (std::size_t i = 1; i < pool.size(); ++i) pool[i].join();
  done.store(true);
  pool[0].join();
  std::vector<grant> all;
  for (const auto& log : logs) all.insert(all.end(), log.begin(), log.end());
  // Tokens are kept across changes, never created: the larger rate and burst bound every window.
  CHECK(worst_window(all, 1, 1000, 20) <= 0);
  CHECK(b.available(armor::to_timestamp(clock.now())) <= b.burst());
}

TEST_CASE("callers preempted across many rate changes never commit a stale decision") {
  // The writer changes the config as fast as it can (no yield), among four
  // configs, so that a caller preempted between reading the state and its
  // CAS sees many generations pass: with a narrow generation tag the state
  // came back to the very value it had read, and the caller's CAS committed
  // a decision made with another config's rate and burst (seen as
  // over-admission). The fastest rate (1 per us) and largest burst (20)
  // bound every window, whatever the interleaving.
  constexpr int iterations = 40000;
  struct config {
    armor::rate r;
    std::int64_t burst;
  };
  const config configs[] = {{{1, 1us}, 20}, {{1, 3us}, 10}, {{2, 5us}, 4}, {{1, 7us}, 1}};
  armor::manual_clock clock;
  armor::token_bucket b{{.rate = {1, 1us}, .burst = 20}, clock};
  std::atomic<bool> done{false};
  std::vector<std::vector<grant>> logs(threads);
  std::vector<std::thread> pool;
  pool.emplace_back([&] {
    std::mt19937_64 rng(7);
    while (!done.load(std::memory_order_relaxed)) {
      const config& c = configs[rng() % 4];
      b.set_rate(c.r, c.burst);
    }
  });
  for (int id = 0; id < threads - 1; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 5);
      auto& log = logs[static_cast<std::size_t>(id)];
      for (int i = 0; i < iterations; ++i) {
        const auto now = armor::to_timestamp(clock.now());
        const std::int64_t n = 1 + static_cast<std::int64_t>(rng() % 3);
        if (b.try_acquire(n, now)) {
          log.push_back({now.time_since_epoch().count(), n});
        } else {
          clock.advance(nanoseconds{1 + static_cast<std::int64_t>(rng() % 500)});
        }
      }
    });
  }
  for (std::size_t i = 1; i < pool.size(); ++i) pool[i].join();
  done.store(true);
  pool[0].join();
  std::vector<grant> all;
  for (const auto& log : logs) all.insert(all.end(), log.begin(), log.end());
  CHECK(worst_window(all, 1, 1000, 20) <= 0);
  CHECK(all.size() > 1000);
}

TEST_CASE("the first rate changes of a fresh bucket never let a decision mix the old config with the new state") {
  // A fresh bucket grants with one 8-byte CAS until its first rate change
  // moves it, for good, to the generation-checked 16-byte pair. This case
  // makes that move (and the next changes, which rewrite the first config's
  // slot) happen under contention, many times over: a writer changes the
  // rate three times, in random moments, while three callers take tokens
  // with the time given. A caller that has seen change k complete must be
  // answered with config k or a later one (a grant measured with the old
  // rate and burst against the new state would show the old config), and
  // the grants of callers that began after the last change obey its rate
  // and burst (an old-burst grant of 20 tokens against a burst of 4 shows
  // there). Configs all differ, so each decision names the one it used.
  constexpr int rounds = 120;
  constexpr int iterations = 1500;
  struct config {
    armor::rate r;
    std::int64_t burst;
  };
  const config configs[] = {{{1, 1us}, 20}, {{1, 2us}, 2}, {{1, 3us}, 3}, {{1, 4us}, 4}};
  constexpr int last = 3;
  long stale = 0;
  long after_last = 0;
  for (int round = 0; round < rounds; ++round) {
    armor::manual_clock clock;
    armor::token_bucket b{{.rate = configs[0].r, .burst = configs[0].burst}, clock};
    std::atomic<int> stage{0};  // the last change completed
    std::atomic<long> wrong{0};
    std::vector<std::vector<grant>> logs(threads);  // grants of calls begun after the last change
    std::vector<std::vector<grant>> every(threads);
    std::vector<std::thread> pool;
    pool.emplace_back([&, round] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(round) + 1000);
      for (int k = 1; k <= last; ++k) {
        const auto pause = rng() % 40;
        for (std::uint64_t i = 0; i < pause; ++i) std::this_thread::yield();
        b.set_rate(configs[k].r, configs[k].burst);
        stage.store(k, std::memory_order_release);
      }
    });
    for (int id = 0; id < threads - 1; ++id) {
      pool.emplace_back([&, id, round] {
        std::mt19937_64 rng(static_cast<std::uint64_t>(round * threads + id) + 41);
        for (int i = 0; i < iterations; ++i) {
          const int seen = stage.load(std::memory_order_acquire);  // before the clock: now >= that change
          const auto now = armor::to_timestamp(clock.now());
          const std::int64_t n = 1 + static_cast<std::int64_t>(rng() % 2);
          const auto d = b.try_acquire(n, now);
          int used = -1;
          for (int k = 0; k <= last; ++k) {
            if (d.rate() == configs[k].r && d.limit() == configs[k].burst) used = k;
          }
          if (used < seen) wrong.fetch_add(1, std::memory_order_relaxed);
          if (d) {
            const grant g{now.time_since_epoch().count(), n};
            every[static_cast<std::size_t>(id)].push_back(g);
            if (seen == last) logs[static_cast<std::size_t>(id)].push_back(g);
          } else {
            clock.advance(nanoseconds{1 + static_cast<std::int64_t>(rng() % 400)});
          }
        }
      });
    }
    for (auto& th : pool) th.join();
    std::vector<grant> after;
    std::vector<grant> all;
    for (const auto& log : logs) after.insert(after.end(), log.begin(), log.end());
    for (const auto& log : every) all.insert(all.end(), log.begin(), log.end());
    CAPTURE(round, after.size(), all.size());
    stale += wrong.load();
    after_last += static_cast<long>(after.size());
    CHECK(worst_window(after, 1, 4000, configs[last].burst) <= 0);
    CHECK(worst_window(all, 1, 1000, configs[0].burst) <= 0);  // the fastest rate and largest burst
    CHECK(b.rate() == configs[last].r);
    CHECK(b.burst() == configs[last].burst);
    CHECK(b.available(armor::to_timestamp(clock.now())) <= configs[last].burst);
  }
  CHECK(stale == 0);
  CHECK(after_last > 0);
}

TEST_CASE("a keyed map churning under contention stays race-free and bounded") {
  constexpr int iterations = 20000;
  armor::manual_clock clock;
  armor::keyed<armor::token_bucket<armor::manual_clock>> per_key{
      {.rate = {1, 1us}, .burst = 3, .max_wait = 2us}, {.max_keys = 16}, clock};
  auto p = armor::pipeline{clock, std::ref(per_key)};
  std::atomic<long> ok{0};
  std::atomic<long> limited{0};
  std::atomic<long> oversize{0};
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 31);
      for (int i = 0; i < iterations; ++i) {
        const std::string key = "client-" + std::to_string(rng() % 40);
        switch (rng() % 10) {
          case 0:
            per_key.erase(key);
            break;
          case 1:
            (void)per_key.evict_idle();
            break;
          case 2: {
            auto h = per_key.get(key);
            (void)h->try_acquire(1);
            break;
          }
          default: {
            auto r = p.try_execute([&] { return per_key.size(); }, {.key = key});
            if (r.has_value()) {
              ok.fetch_add(1, std::memory_order_relaxed);
              // Entries in flight can push a shard past its share; never by more than the callers.
              if (*r > 16 + threads) oversize.fetch_add(1, std::memory_order_relaxed);
            } else {
              limited.fetch_add(1, std::memory_order_relaxed);
            }
          }
        }
        if (rng() % 4 == 0) clock.advance(nanoseconds{static_cast<std::int64_t>(rng() % 500)});
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(ok.load() > 0);
  CHECK(limited.load() > 0);
  CHECK(oversize.load() == 0);
  CHECK(per_key.size() <= 16);
}

TEST_CASE("a bucket's listener hears each refusal exactly once under contention") {
  struct counter {
    std::atomic<long> denied{0};
    std::atomic<long> too_large{0};
    void operator()(const armor::token_bucket_event& e) noexcept {
      (e.status == armor::token_bucket_status::too_large ? too_large : denied).fetch_add(1, std::memory_order_relaxed);
    }
  };
  counter heard;
  armor::manual_clock clock;
  armor::token_bucket b{{.rate = {1, 1us}, .burst = 4, .count_calls = true}, clock, std::ref(heard)};
  std::vector<long> refused(threads, 0);
  std::vector<long> oversize(threads, 0);
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 77);
      for (int i = 0; i < 20000; ++i) {
        const std::int64_t n = 1 + static_cast<std::int64_t>(rng() % 5);  // 5 > burst: too large
        const auto d = b.try_acquire(n);
        if (d.status() == armor::token_bucket_status::too_large) {
          ++oversize[static_cast<std::size_t>(id)];
        } else if (!d) {
          ++refused[static_cast<std::size_t>(id)];
          clock.advance(nanoseconds{static_cast<std::int64_t>(rng() % 700)});
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  long total_refused = 0;
  long total_oversize = 0;
  for (int id = 0; id < threads; ++id) {
    total_refused += refused[static_cast<std::size_t>(id)];
    total_oversize += oversize[static_cast<std::size_t>(id)];
  }
  CHECK(total_refused > 100);
  CHECK(heard.denied.load() == total_refused);
  CHECK(heard.too_large.load() == total_oversize);
  const auto s = b.stats();
  CHECK(static_cast<long>(s.rejected) == total_refused);
  CHECK(static_cast<long>(s.too_large) == total_oversize);
  CHECK(static_cast<long>(s.granted) == threads * 20000L - total_refused - total_oversize);
}
