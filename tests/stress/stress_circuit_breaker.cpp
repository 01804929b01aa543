// One circuit breaker hammered by several threads on a shared manual clock,
// through many rounds of outage and recovery. Checked invariants:
//
//   - half-open never has more than half_open_max_calls probes of one
//     generation admitted at a time;
//   - every transition is heard exactly once (each state is entered and left
//     a matching number of times, opens == times_opened);
//   - no probe slot leaks (probes dropped, cancelled or settled by any thread);
//   - after any round the breaker recovers once the upstream is healthy;
//   - the lock-free windows keep exact totals: after a storm of concurrent
//     writers and resets, N sequential calls leave exactly those N in the
//     window.
//
// Run under ThreadSanitizer. No sleeps: time moves only when a thread
// advances the manual clock.
#include <armor/circuit_breaker.hpp>

#include "armor_catch.hpp"

#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int threads = 4;
constexpr auto relaxed = std::memory_order_relaxed;

// xorshift64*: a per-thread stream, so that threads do not share a generator.
struct rng {
  std::uint64_t s;
  std::uint32_t operator()() noexcept {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return static_cast<std::uint32_t>((s * 0x2545F4914F6CDD1DULL) >> 32);
  }
  bool chance(std::uint32_t percent) noexcept { return (*this)() % 100 < percent; }
};

// The listener: called concurrently, so atomics only.
struct transition_counts {
  std::array<std::atomic<long>, 5> entries{};
  std::array<std::atomic<long>, 5> exits{};
  std::atomic<long> opens{0};

  void operator()(const armor::circuit_breaker_event& e) noexcept {
    entries[static_cast<std::size_t>(e.to)].fetch_add(1, relaxed);
    exits[static_cast<std::size_t>(e.from)].fetch_add(1, relaxed);
    if (e.to == armor::breaker_state::open) opens.fetch_add(1, relaxed);
  }
};

using stressed_breaker = armor::circuit_breaker<armor::manual_clock, std::reference_wrapper<transition_counts>>;

// Rounds of outage then health, four threads; checks listed at the top.
void storm(std::optional<std::chrono::nanoseconds> half_open_timeout) {
  constexpr int rounds = 300;
  constexpr int ops_per_phase = 200;
  constexpr std::uint32_t max_probes = 2;

  armor::manual_clock clock;
  transition_counts heard;
  stressed_breaker b{{.failure_threshold = 3,
                      .failure_rate = 0.5,
                      .slow_call_threshold = 3ms,
                      .slow_call_rate = 0.8,
                      .window_size = 20,
                      .minimum_calls = 10,
                      .open_for = 5ms,
                      .open_for_multiplier = 2.0,
                      .max_open_for = 40ms,
                      .half_open_max_calls = max_probes,
                      .success_threshold = 3,
                      .half_open_timeout = half_open_timeout,
                      .count_calls = true},
                     clock, std::ref(heard)};

  // Probes held by the test, per generation (a generation lasts a few
  // operations here, so 2^16 counters never alias).
  static std::array<std::atomic<int>, 65536> held{};
  for (auto& h : held) h.store(0, relaxed);
  std::atomic<int> max_held{0};
  std::atomic<long> over_limit{0};
  std::atomic<long> probes_seen{0};
  std::atomic<long> leaked_slots{0};
  std::atomic<long> wedged{0};
  std::atomic<long> admitted{0};
  std::atomic<long> rejected{0};

  std::barrier sync(threads);

  auto worker = [&](int id) {
    rng r{0x9E3779B97F4A7C15ULL * static_cast<std::uint64_t>(id + 1)};
    for (int round = 0; round < rounds; ++round) {
      for (int phase = 0; phase < 2; ++phase) {
        const std::uint32_t failure_percent = phase == 0 ? 70 : 3;
        for (int op = 0; op < ops_per_phase; ++op) {
          auto a = b.try_acquire();
          if (!a) {
            rejected.fetch_add(1, relaxed);
            if (r.chance(25)) clock.advance(1ms);  // someone has to move time
            continue;
          }
          admitted.fetch_add(1, relaxed);
          std::atomic<int>* slot = nullptr;
          if (a.permit().probe()) {
            probes_seen.fetch_add(1, relaxed);
            slot = &held[a.permit().generation() & 0xFFFF];
            const int now_held = slot->fetch_add(1, relaxed) + 1;
            if (now_held > static_cast<int>(max_probes)) over_limit.fetch_add(1, relaxed);
            int seen = max_held.load(relaxed);
            while (now_held > seen && !max_held.compare_exchange_weak(seen, now_held, relaxed)) {
            }
          }
          if (r.chance(10)) clock.advance(1ms);  // the call takes time (slow calls)
          if (slot != nullptr && r.chance(50)) std::this_thread::yield();  // let others probe meanwhile
          // Stop counting the probe before its slot can be given back.
          if (slot != nullptr) slot->fetch_sub(1, relaxed);
          const std::uint32_t roll = r() % 100;
          if (roll < 3) {
            continue;  // dropped without an outcome: the permit's destructor releases the slot
          } else if (roll < 5) {
            a.permit().cancel();  // given back without an outcome, explicitly
          } else if (roll < 10) {
            b.record(std::move(a).permit(), armor::verdict{armor::outcome::cancelled, false, std::nullopt,
                                                         armor::errc::cancelled});
          } else if (r.chance(failure_percent)) {
            b.record(std::move(a).permit(), armor::verdict::failure());
          } else {
            b.record(std::move(a).permit(), armor::verdict::success());
          }
        }
      }
      sync.arrive_and_wait();
      if (id == 0) {
        // Quiescent: nobody holds a permit. No slot may still be taken.
        const auto s = b.stats();
        if (s.state == armor::breaker_state::half_open && s.probes_in_flight != 0) leaked_slots.fetch_add(1, relaxed);
        // The upstream is healthy now: the breaker must close by itself.
        for (int step = 0; step < 20 && b.state() != armor::breaker_state::closed; ++step) {
          clock.advance(40ms);
          auto a = b.try_acquire();
          if (a) b.record(std::move(a).permit(), armor::verdict::success());
        }
        if (b.state() != armor::breaker_state::closed) wedged.fetch_add(1, relaxed);
      }
      sync.arrive_and_wait();
    }
  };

  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker, t);
  for (auto& th : pool) th.join();

  const auto s = b.stats();
  CAPTURE(probes_seen.load(), max_held.load(), s.times_opened, admitted.load(), rejected.load());
  CHECK(over_limit.load() == 0);
  CHECK(max_held.load() <= static_cast<int>(max_probes));
  CHECK(max_held.load() >= 1);
  CHECK(leaked_slots.load() == 0);
  CHECK(wedged.load() == 0);
  // The storm really went through open and half-open, many times.
  CHECK(s.times_opened >= static_cast<std::uint64_t>(rounds));
  CHECK(probes_seen.load() >= rounds);
  // Exactly one event per transition.
  CHECK(heard.opens.load() == static_cast<long>(s.times_opened));
  const auto final_state = static_cast<std::size_t>(b.state());
  for (std::size_t st = 0; st < 5; ++st) {
    INFO("state " << st);
    const long initial = st == 0 ? 1 : 0;  // it starts closed
    const long inside = st == final_state ? 1 : 0;
    CHECK(initial + heard.entries[st].load() - heard.exits[st].load() == inside);
  }
  // count_calls: every admission was settled, dropped, or rejected and counted.
  CHECK(s.rejections == static_cast<std::uint64_t>(rejected.load()));
  CHECK(s.calls() <= static_cast<std::uint64_t>(admitted.load()));
}

}  // namespace

TEST_CASE("under contention half-open admits at most half_open_max_calls probes and the breaker always recovers") {
  storm(std::nullopt);
}

TEST_CASE("the same with half_open_timeout: timed-out probes never break the limit") { storm(20ms); }

TEST_CASE("the count window keeps exact totals through concurrent writers and resets") {
  constexpr int ops = 20000;
  constexpr std::uint32_t size = 64;
  armor::manual_clock clock;
  armor::circuit_breaker b{{.failure_threshold = 0, .failure_rate = 1.0, .slow_call_threshold = 1ms,
                            .window_size = size, .minimum_calls = size},
                           clock};
  // Opening needs 64 failures (or slow calls) of 64: it never happens here.
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      rng r{0xD1B54A32D192ED03ULL * static_cast<std::uint64_t>(t + 7)};
      while (!go.load(std::memory_order_acquire)) {
      }
      for (int i = 0; i < ops; ++i) {
        auto a = b.try_acquire(armor::timestamp{});
        const bool slow = r.chance(30);
        b.record(std::move(a).permit(), r.chance(50) ? armor::verdict::failure() : armor::verdict::success(),
                 armor::timestamp{slow ? 2ms : 0ms});
        // One thread clears the window now and then, racing the writers.
        if (t == 0 && i % 101 == 0) b.reset();
        if (t == 1 && i % 1499 == 0) (void)b.stats(armor::timestamp{});
      }
    });
  }
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();

  const auto mid = b.stats(armor::timestamp{});
  CHECK(mid.window_calls <= size);
  CHECK(mid.window_failures <= mid.window_calls);
  // N sequential successes replace every slot: nothing may be left over.
  for (std::uint32_t i = 0; i < size; ++i) {
    auto a = b.try_acquire(armor::timestamp{});
    b.record(std::move(a).permit(), armor::verdict::success(), armor::timestamp{});
  }
  const auto s = b.stats(armor::timestamp{});
  CHECK(s.window_calls == size);
  CHECK(s.window_failures == 0);
  CHECK(s.window_slow_calls == 0);
}

TEST_CASE("the time window keeps exact totals through concurrent writers, resets and time passing") {
  constexpr int ops = 20000;
  armor::manual_clock clock;
  armor::circuit_breaker b{{.failure_threshold = 0, .failure_rate = 1.0, .window = armor::breaker_window::time,
                            .window_duration = 100ms, .window_buckets = 10, .minimum_calls = 100000},
                           clock};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      rng r{0xA0761D6478BD642FULL * static_cast<std::uint64_t>(t + 3)};
      while (!go.load(std::memory_order_acquire)) {
      }
      for (int i = 0; i < ops; ++i) {
        auto a = b.try_acquire();
        b.record(std::move(a).permit(), r.chance(20) ? armor::verdict::failure() : armor::verdict::success());
        if (t == 0 && i % 50 == 0) clock.advance(3ms);
        if (t == 1 && i % 1777 == 0) b.reset();
      }
    });
  }
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  CHECK(b.state() == armor::breaker_state::closed);

  // A window later, a known sequence is all the window holds.
  clock.advance(100ms);
  for (int i = 0; i < 30; ++i) {
    auto a = b.try_acquire();
    b.record(std::move(a).permit(), i % 3 == 0 ? armor::verdict::failure() : armor::verdict::success());
  }
  const auto s = b.stats();
  CHECK(s.window_calls == 30);
  CHECK(s.window_failures == 10);
}
