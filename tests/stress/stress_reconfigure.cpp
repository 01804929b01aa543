// Runtime reconfiguration under load (docs/reconfiguration.md): one thread
// reconfigures a policy 10 000 times, alternating two configurations A and
// B whose mixture would be visible, while other threads make decisions
// and read the configuration. Checked:
//
//   - config_cell itself: a three-word value {i, 7i, 13i} is never read torn;
//   - circuit_breaker: open_time(3) is A's (1 s) or B's (8 s), never a mix
//     of their open_for, open_for_multiplier and max_open_for (2 s or 4 s);
//   - bulkhead: stats() shows A's or B's (max_concurrent, max_queue) pair,
//     and never more calls inside than the larger maximum;
//   - fixed and sliding windows: every decision reports A's or B's limit
//     and never more remaining than its limit;
//   - memory stays flat: resident pages (/proc/self/statm) grow by at most
//     64 KiB over the 40 000 reconfigurations (a leak of one smallest heap
//     block, 32 bytes, per reconfiguration would be 1.25 MiB).
//
// The readers stop when the writer has finished; nobody waits for anybody
// else. Run under ThreadSanitizer.
#include <armor/bulkhead.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/fixed_window.hpp>
#include <armor/sliding_window.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

constexpr int reconfigurations = 10'000;
constexpr int readers = 3;

armor::timestamp at(nanoseconds d) { return armor::timestamp{d}; }

// Resident pages now (the second field of /proc/self/statm); 0 if unknown.
long resident_pages() {
  std::ifstream statm("/proc/self/statm");
  long size = 0;
  long resident = 0;
  statm >> size >> resident;
  return resident;
}

// Runs `write(i)` for i in [0, reconfigurations) on one thread while
// `readers` threads run `read(thread)` until it is done. Returns the number
// of reads that found a mixed configuration (read returns false).
template <class Write, class Read>
long run(Write write, Read read) {
  std::atomic<bool> done{false};
  std::atomic<long> mixed{0};
  std::vector<std::thread> pool;
  pool.reserve(readers);
  for (int r = 0; r < readers; ++r) {
    pool.emplace_back([&, r] {
      long bad = 0;
      do {
        for (int k = 0; k < 16; ++k) {
          if (!read(r)) ++bad;
        }
      } while (!done.load(std::memory_order_acquire));
      mixed.fetch_add(bad, std::memory_order_relaxed);
    });
  }
  for (int i = 0; i < reconfigurations; ++i) {
    write(i);
    if (i % 64 == 0) std::this_thread::yield();  // let the readers in on a loaded machine
  }
  done.store(true, std::memory_order_release);
  for (auto& t : pool) t.join();
  return mixed.load();
}

struct triple {
  std::int64_t a = 0;
  std::int64_t b = 0;
  std::int64_t c = 0;
};

}  // namespace

TEST_CASE("reconfiguring 10 000 times under load: no decision sees a mixed configuration, memory flat",
          "[stress][reconfigure]") {
  // A first run spawns and joins the threads once, so that the measured run
  // finds the thread stacks and allocator arenas it needs already there.
  armor::detail::config_cell<triple> warm{{}};
  (void)run([&](int i) { warm.store({i, 7 * i, 13 * i}); }, [&](int) { return warm.load().b % 7 == 0; });
  const long before = resident_pages();

  // ---- config_cell: a three-word value, never torn.
  {
    armor::detail::config_cell<triple> cell{{}};
    const long mixed = run([&](int i) { cell.store({i, 7 * i, 13 * i}); },
                           [&](int) {
                             const triple v = cell.load();
                             return v.b == 7 * v.a && v.c == 13 * v.a;
                           });
    CHECK(mixed == 0);
    CHECK(cell.load().a == reconfigurations - 1);
  }

  // ---- circuit_breaker: thresholds and open times.
  {
    const armor::circuit_breaker_options a{
        .failure_threshold = 3, .open_for = 1s, .open_for_multiplier = 1.0, .max_open_for = 1s};
    const armor::circuit_breaker_options b{.failure_threshold = 5,
                                           .open_for = 2s,
                                           .open_for_multiplier = 2.0,
                                           .max_open_for = 8s,
                                           .half_open_max_calls = 2};
    armor::circuit_breaker<armor::manual_clock> cb{a, armor::manual_clock{}};
    std::atomic<std::int64_t> clock{0};
    const long mixed = run([&](int i) { cb.reconfigure(i % 2 == 0 ? b : a); },
                           [&](int r) {
                             const nanoseconds open = cb.open_time(3);
                             // Decisions too, on a shared virtual clock: they read the configuration as they go.
                             const auto t = at(nanoseconds{clock.fetch_add(50'000'000, std::memory_order_relaxed)});
                             if (auto d = cb.try_acquire(t)) {
                               cb.record(std::move(d).permit(),
                                         r == 0 ? armor::verdict::success() : armor::verdict::failure(), t);
                             }
                             return open == 1s || open == 8s;
                           });
    CHECK(mixed == 0);
    CHECK(cb.stats(at(nanoseconds{clock.load()})).times_opened > 0);
  }

  // ---- bulkhead: (max_concurrent, max_queue) pairs and the calls inside.
  {
    const armor::bulkhead_options a{.max_concurrent = 1, .max_queue = 0};
    const armor::bulkhead_options b{.max_concurrent = 3, .max_queue = 2, .max_wait = 1s};
    armor::bulkhead bh{a};
    const long mixed = run([&](int i) { bh.reconfigure(i % 2 == 0 ? b : a); },
                           [&](int) {
                             const armor::bulkhead_stats s = bh.stats();
                             bool ok = (s.max_concurrent == 1 && s.max_queue == 0) ||
                                       (s.max_concurrent == 3 && s.max_queue == 2);
                             if (auto d = bh.try_acquire()) ok = ok && bh.in_use() <= 3;
                             return ok;
                           });
    CHECK(mixed == 0);
    CHECK(bh.in_use() == 0);
  }

  // ---- fixed and sliding windows: the limit each decision reports.
  {
    armor::fixed_window<armor::manual_clock> fw{{.limit = 5, .window = 1s}, armor::manual_clock{}};
    armor::sliding_window<armor::manual_clock> sw{{.limit = 5, .window = 1s, .segments = 4}, armor::manual_clock{}};
    std::atomic<std::int64_t> clock{0};
    const long mixed = run(
        [&](int i) {
          const std::int64_t limit = i % 2 == 0 ? 9 : 5;
          fw.reconfigure({.limit = limit, .window = 1s});
          sw.reconfigure({.limit = limit, .window = 1s, .segments = 4});
        },
        [&](int) {
          const auto t = at(nanoseconds{clock.fetch_add(1'000'000, std::memory_order_relaxed)});
          const armor::window_decision f = fw.try_acquire(1, t);
          const armor::window_decision s = sw.try_acquire(1, t);
          return (f.limit() == 5 || f.limit() == 9) && f.remaining() <= f.limit() &&
                 (s.limit() == 5 || s.limit() == 9) && s.remaining() <= s.limit();
        });
    CHECK(mixed == 0);
  }

  // ---- memory: 40 000 reconfigurations allocated nothing that stayed.
  const long after = resident_pages();
  INFO("resident pages before " << before << ", after " << after);
  if (before > 0) CHECK(after - before <= 16);  // 16 pages of 4 KiB = 64 KiB
}
