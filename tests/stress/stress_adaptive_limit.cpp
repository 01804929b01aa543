// Threads sharing one adaptive limit never have more calls in flight than
// the limit allows, every admission is released exactly once (settled,
// thrown through, dropped), and each window is closed by exactly one thread:
// the algorithm's state is a plain, non-atomic counter, so two closers at
// once, or a closer that does not see its predecessor's writes, is a data
// race ThreadSanitizer reports. Run under ThreadSanitizer.
#include <armor/adaptive_limit.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int threads = 4;

struct boom : std::runtime_error {
  boom() : std::runtime_error("boom") {}
};

struct occupancy {
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  void enter() {
    const int now = inside.fetch_add(1, std::memory_order_acq_rel) + 1;
    int m = most.load(std::memory_order_relaxed);
    while (now > m && !most.compare_exchange_weak(m, now, std::memory_order_relaxed)) {
    }
  }
  void leave() { inside.fetch_sub(1, std::memory_order_acq_rel); }
};

// Keeps the largest value seen in `most`.
void keep_most(std::atomic<std::int64_t>& most, std::int64_t v) {
  std::int64_t m = most.load(std::memory_order_relaxed);
  while (v > m && !most.compare_exchange_weak(m, v, std::memory_order_relaxed)) {
  }
}

// AIMD that also counts its steps in plain memory the policy does not know
// about: only the thread that holds the window's claim may touch it.
struct counting_aimd {
  long* steps = nullptr;
  double last_limit = 0;  // written by each step, read by the next: must be ordered
  armor::aimd_limit inner{.increase = 1, .backoff_ratio = 0.5};
  struct state {
    double seen = 0;
  };
  void check() const { inner.check(); }
  [[nodiscard]] double next(const armor::adaptive_limit_window& w, state& s) const noexcept {
    ++*steps;
    s.seen = w.limit;
    armor::aimd_limit::state none;
    return inner.next(w, none);
  }
};

// Keeps the limit_changed events, which only the window's closer sends (in
// plain memory: two closers at once would be a race), and checks each
// continues from the one before. Refusals come from every thread: ignored.
struct change_log {
  struct log {
    std::vector<std::uint32_t> limits;
    long out_of_order = 0;
  };
  log* out = nullptr;
  void operator()(const armor::adaptive_limit_event& e) const noexcept {
    if (e.kind != armor::adaptive_limit_event_kind::limit_changed) return;
    if (!out->limits.empty() && out->limits.back() != e.previous_limit) ++out->out_of_order;
    try {
      out->limits.push_back(e.limit);
    } catch (...) {
    }
  }
};

}  // namespace

TEST_CASE("adaptive_limit stress: a fixed limit is never exceeded, every slot comes back", "[adaptive_limit]") {
  constexpr std::uint32_t limit = 3;
  constexpr int iterations = 50000;
  // Windows of 1 us on the steady clock: they close alongside the admissions.
  armor::adaptive_limit<armor::aimd_limit> lim{{.initial_limit = limit,
                                                .min_limit = limit,
                                                .max_limit = limit,
                                                .window = 1us,
                                                .min_samples = 1,
                                                .normal_share = 1,
                                                .sheddable_share = 1}};
  const auto p = armor::pipeline{std::ref(lim)};
  occupancy occ;
  std::vector<std::thread> pool;
  std::atomic<long> admitted{0};
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937 rng(static_cast<unsigned>(id) + 1);
      for (int i = 0; i < iterations; ++i) {
        const unsigned dice = rng() % 6;
        if (dice == 0) {
          if (auto d = lim.try_acquire()) {  // dropped unsettled
            occ.enter();
            admitted.fetch_add(1, std::memory_order_relaxed);
            std::this_thread::yield();
            occ.leave();
          }
          continue;
        }
        (void)p.try_execute([&]() -> int {
          occ.enter();
          admitted.fetch_add(1, std::memory_order_relaxed);
          if (dice == 1) {
            occ.leave();
            throw boom();
          }
          if (dice == 2) std::this_thread::yield();
          occ.leave();
          return 1;
        });
      }
    });
  }
  for (auto& t : pool) t.join();
  CHECK(occ.most.load() <= static_cast<int>(limit));
  CHECK(occ.most.load() >= 2);
  CHECK(admitted.load() > 0);
  CHECK(lim.in_flight() == 0);
  CHECK(lim.stats().windows > 0);
  // All `limit` permits held at once, then one more is refused.
  std::vector<armor::adaptive_limit_permit> held;
  for (std::uint32_t i = 0; i < limit; ++i) {
    auto d = lim.try_acquire();
    REQUIRE(d);
    held.push_back(std::move(d).permit());
  }
  CHECK(lim.in_flight() == limit);
  CHECK_FALSE(lim.try_acquire(armor::priority::critical));
}

TEST_CASE("adaptive_limit stress: a moving limit, windows closed once each, every slot comes back",
          "[adaptive_limit]") {
  constexpr int iterations = 40000;
  long steps = 0;
  armor::manual_clock clock;
  counting_aimd algo;
  algo.steps = &steps;
  change_log::log changes;
  armor::adaptive_limit<counting_aimd, armor::manual_clock, change_log> lim{
      {.initial_limit = 4, .min_limit = 1, .max_limit = 6, .window = 5ms, .min_samples = 1, .algorithm = algo},
      clock, change_log{&changes}};
  // The operation answers 2 for a 429: throttled, a signal to reduce.
  const auto p = armor::pipeline{
      clock, armor::classify{[](int answer) { return answer == 2 ? armor::verdict::throttled() : armor::verdict::success(); }},
      std::ref(lim)};
  occupancy occ;
  std::vector<std::thread> pool;
  std::atomic<long> refused{0};
  std::atomic<long> bad_threshold{0};
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937 rng(static_cast<unsigned>(id) + 11);
      for (int i = 0; i < iterations; ++i) {
        const unsigned dice = rng() % 8;
        const auto prio = static_cast<armor::priority>(rng() % 3);
        // The thresholds never pass those of max_limit 6: critical 6, normal 5, sheddable 4.
        const std::uint32_t most_for_prio = 6 - static_cast<std::uint32_t>(prio);
        auto r = p.try_execute(
            [&]() -> int {
              occ.enter();
              const std::uint32_t seen = lim.limit(prio);
              if (seen < 1 || seen > most_for_prio) bad_threshold.fetch_add(1, std::memory_order_relaxed);
              clock.advance(1ms);
              if (dice == 0) {
                occ.leave();
                throw boom();
              }
              if (dice == 1) std::this_thread::yield();
              occ.leave();
              // A throttled answer now and then drives the limit down; successes drive it up.
              return dice == 2 ? 2 : 1;
            },
            {.priority = prio});
        if (!r && r.code() == armor::errc::concurrency_limited) refused.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& t : pool) t.join();
  CHECK(occ.most.load() <= 6);
  CHECK(refused.load() > 0);
  CHECK(lim.in_flight() == 0);
  const auto s = lim.stats();
  CHECK(s.windows > 100);
  CHECK(steps == static_cast<long>(s.windows));  // read after join: no race
  CHECK(bad_threshold.load() == 0);
  // limit_changed events arrive in order: each starts where the last ended.
  CHECK(changes.out_of_order == 0);
  CHECK(changes.limits.size() > 10);
  REQUIRE_FALSE(changes.limits.empty());
  CHECK(changes.limits.back() == lim.limit());
  // The clock moved 1 ms per call: no more windows than 5 ms steps, plus one.
  CHECK(static_cast<long>(s.windows) <= threads * iterations / 5 + 1);
  CHECK(lim.limit() >= 1);
  CHECK(lim.limit() <= 6);
}

namespace {

// Checks each closed window against a fixed latency. Only the closer runs
// next(), so the plain counters need no atomics (ThreadSanitizer checks that).
struct window_probe {
  struct tally {
    long windows = 0;
    long timed = 0;
    long bad_mean = 0;
    long bad_min = 0;
    std::uint64_t samples = 0;
  };
  tally* out = nullptr;
  std::int64_t latency_ns = 0;
  struct state {};
  void check() const {}
  [[nodiscard]] double next(const armor::adaptive_limit_window& w, state&) const noexcept {
    ++out->windows;
    if (w.samples != 0) {
      ++out->timed;
      out->samples += w.samples;
      if (w.mean_latency.count() != latency_ns) ++out->bad_mean;
      if (w.min_latency.count() != latency_ns) ++out->bad_min;
    }
    return w.limit;
  }
};

}  // namespace

TEST_CASE("adaptive_limit stress: a window's count and latency sum are taken together (fixed latencies)",
          "[adaptive_limit]") {
  constexpr std::int64_t latency = 1000;
  constexpr std::int64_t window = 64;
  constexpr int iterations = 100000;
  window_probe::tally tally;
  armor::adaptive_limit<window_probe> lim{{.initial_limit = 64,
                                           .min_limit = 1,
                                           .max_limit = 64,
                                           .window = std::chrono::nanoseconds{window},
                                           .min_samples = 1,
                                           .algorithm = {.out = &tally, .latency_ns = latency}}};
  // Time is a shared counter: each call takes the next nanosecond.
  const std::int64_t t0 = std::chrono::steady_clock::now().time_since_epoch().count() + 1'000'000;
  std::atomic<std::int64_t> t{t0};
  std::atomic<std::uint64_t> timed{0};
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&] {
      for (int i = 0; i < iterations; ++i) {
        const armor::timestamp start{std::chrono::nanoseconds{t.fetch_add(1, std::memory_order_relaxed)}};
        auto d = lim.try_acquire(start);
        if (!d) continue;
        timed.fetch_add(1, std::memory_order_relaxed);
        lim.record(std::move(d).permit(), armor::verdict::success(), start + std::chrono::nanoseconds{latency});
      }
    });
  }
  for (auto& th : pool) th.join();
  // One more call after the window is over closes the last window (a window
  // whose samples' minimum an earlier window took waits for a call like it).
  const std::int64_t end = t.load() + latency + window;
  {
    const armor::timestamp last{std::chrono::nanoseconds{end - latency}};
    auto d = lim.try_acquire(last);
    REQUIRE(d);
    timed.fetch_add(1, std::memory_order_relaxed);
    lim.record(std::move(d).permit(), armor::verdict::success(), last + std::chrono::nanoseconds{latency});
  }
  CHECK(tally.timed > 100);
  CHECK(tally.bad_mean == 0);
  CHECK(tally.bad_min == 0);
  CHECK(tally.samples == timed.load());  // every sample counted once, none lost
  const auto s = lim.stats();
  CHECK(static_cast<long>(s.windows) == tally.windows);
  // No window closed twice: at most one per window length, plus the last.
  CHECK(static_cast<std::int64_t>(s.windows) <= (end - t0) / window + 1);
  CHECK(lim.in_flight() == 0);
}

// ---------------------------------------------------------------------------
// With a queue: threads that block in the sync driver's queue (steady
// clock), waiters that time out or reach their deadline, slots handed over
// on release, critical and normal waiters, permits dropped while queued.

TEST_CASE("adaptive_limit stress with a queue: the limit is never exceeded, every slot and place comes back",
          "[adaptive_limit][queue]") {
  constexpr std::uint32_t limit = 3;
  constexpr int queue_threads = 6;
  constexpr int iterations = 4000;
  armor::adaptive_limit<armor::aimd_limit> lim{{.initial_limit = limit,
                                                .min_limit = limit,
                                                .max_limit = limit,
                                                .window = 50us,
                                                .min_samples = 1,
                                                .normal_share = 1,
                                                .sheddable_share = 1,
                                                .count_calls = true,
                                                .max_queue = 4,
                                                .max_wait = 3s}};
  const auto p = armor::pipeline{std::ref(lim)};
  occupancy occ;
  std::vector<std::thread> pool;
  std::atomic<long> ran{0};
  std::atomic<long> limited{0};
  std::atomic<long> timed_out{0};
  std::atomic<long> over{0};
  std::atomic<std::int64_t> worst_ns{0};
  for (int id = 0; id < queue_threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937 rng(static_cast<unsigned>(id) + 101);
      for (int i = 0; i < iterations; ++i) {
        const unsigned dice = rng() % 10;
        const auto prio = dice < 3 ? armor::priority::critical : armor::priority::normal;
        if (dice == 9) {
          if (auto d = lim.try_acquire(prio)) {  // dropped unsettled
            occ.enter();
            ran.fetch_add(1, std::memory_order_relaxed);
            occ.leave();
          }
          continue;
        }
        armor::call_options o{.priority = prio};
        if (dice == 8) o.timeout = 50us;  // the deadline ends some waits
        const auto t0 = std::chrono::steady_clock::now();
        auto r = p.try_execute(
            [&]() -> int {
              occ.enter();
              ran.fetch_add(1, std::memory_order_relaxed);
              if (lim.in_flight() > limit) over.fetch_add(1, std::memory_order_relaxed);
              if (dice == 1) {
                occ.leave();
                throw boom();
              }
              if (dice == 2) std::this_thread::sleep_for(30us);
              if (dice >= 3) std::this_thread::yield();
              occ.leave();
              return 1;
            },
            o);
        keep_most(worst_ns, (std::chrono::steady_clock::now() - t0).count());
        if (!r && r.code() == armor::errc::concurrency_limited) limited.fetch_add(1, std::memory_order_relaxed);
        if (!r && r.code() == armor::errc::deadline_exceeded) timed_out.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& t : pool) t.join();
  CHECK(occ.most.load() <= static_cast<int>(limit));
  CHECK(over.load() == 0);
  CHECK(ran.load() > 0);
  CHECK(lim.in_flight() == 0);
  CHECK(lim.queued() == 0);
  const auto s = lim.stats();
  INFO("ran " << ran.load() << ", limited " << limited.load() << ", deadline " << timed_out.load() << ", abandoned "
              << s.abandoned << ", admitted " << s.admitted);
  // Every admission ran the operation, except calls whose deadline passed
  // between their admission (a slot handed over late in the wait: the driver
  // passes it on at once) and the attempt.
  CHECK(s.admitted >= static_cast<std::uint64_t>(ran.load()));
  CHECK(s.admitted - static_cast<std::uint64_t>(ran.load()) <= static_cast<std::uint64_t>(timed_out.load()));
  CHECK(s.abandoned > 0);  // some waits ended unserved (their deadline)
  // max_wait is 3 s: a wait that lasts anywhere near it was a lost wake-up.
  INFO("worst call " << worst_ns.load() / 1000 << " us");
  CHECK(worst_ns.load() < std::chrono::nanoseconds{1s}.count());
  // All `limit` slots free: held at once, then the next is refused.
  std::vector<armor::adaptive_limit_permit> held;
  for (std::uint32_t i = 0; i < limit; ++i) {
    auto d = lim.try_acquire();
    REQUIRE(d);
    held.push_back(std::move(d).permit());
  }
  CHECK_FALSE(lim.try_acquire(armor::priority::critical));
}

TEST_CASE("adaptive_limit stress with a queue: a moving limit serves waiters, windows closed once each",
          "[adaptive_limit][queue]") {
  constexpr int iterations = 20000;
  long steps = 0;
  armor::manual_clock clock;
  counting_aimd algo;
  algo.steps = &steps;
  change_log::log changes;
  armor::adaptive_limit<counting_aimd, armor::manual_clock, change_log> lim{
      {.initial_limit = 4, .min_limit = 1, .max_limit = 6, .window = 5ms, .min_samples = 1, .max_queue = 3,
       .max_wait = 2ms, .algorithm = algo},
      clock, change_log{&changes}};
  const auto p = armor::pipeline{
      clock, armor::classify{[](int answer) { return answer == 2 ? armor::verdict::throttled() : armor::verdict::success(); }},
      std::ref(lim)};
  occupancy occ;
  std::vector<std::thread> pool;
  std::atomic<long> over{0};
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937 rng(static_cast<unsigned>(id) + 211);
      for (int i = 0; i < iterations; ++i) {
        const unsigned dice = rng() % 8;
        const auto prio = static_cast<armor::priority>(rng() % 3);
        (void)p.try_execute(
            [&]() -> int {
              occ.enter();
              if (lim.in_flight() > 6) over.fetch_add(1, std::memory_order_relaxed);
              clock.advance(1ms);
              if (dice == 0) {
                occ.leave();
                throw boom();
              }
              if (dice == 1) std::this_thread::yield();
              occ.leave();
              return dice == 2 ? 2 : 1;
            },
            {.priority = prio});
      }
    });
  }
  for (auto& t : pool) t.join();
  CHECK(occ.most.load() <= 6);
  CHECK(over.load() == 0);
  CHECK(lim.in_flight() == 0);
  CHECK(lim.queued() == 0);
  const auto s = lim.stats();
  CHECK(s.windows > 100);
  CHECK(steps == static_cast<long>(s.windows));
  CHECK(changes.out_of_order == 0);
}

namespace {

// A waiter that only notes its wake-up: the policy-level callers below drop
// their permit instead of blocking.
struct silent_waiter : armor::queue_waiter {
  silent_waiter() : armor::queue_waiter(&on_wake) {}
  std::atomic<bool> woken{false};
  static void on_wake(armor::queue_waiter& w) noexcept {
    static_cast<silent_waiter&>(w).woken.store(true, std::memory_order_relaxed);
  }
};

}  // namespace

// The wake-ups themselves: a limit that moves (AIMD, throttled answers) with
// a different threshold per priority, waits long enough (max_wait 3 s) that
// none ends unserved unless lost, places dropped on purpose, and standalone
// try_acquire mixed in. A lost wake-up (at a release, at a window's close, or
// after a waiter leaves) shows as an abandoned wait beyond the dropped ones
// or a long stall; a queue bit left set shows at the end, when slots that
// are free are refused.
TEST_CASE("adaptive_limit stress with a queue: a moving limit with distinct shares loses no wake-up",
          "[adaptive_limit][queue]") {
  constexpr int queue_threads = 6;
  constexpr int iterations = 2500;
  constexpr std::uint32_t max_limit = 6;
  armor::adaptive_limit<armor::aimd_limit> lim{{.initial_limit = 3,
                                                .min_limit = 1,
                                                .max_limit = max_limit,
                                                .window = 100us,
                                                .min_samples = 1,
                                                .normal_share = 0.7,
                                                .sheddable_share = 0.5,
                                                .count_calls = true,
                                                .max_queue = 64,  // never full: every thread waits at most once
                                                .max_wait = 3s,
                                                .algorithm = {.increase = 1, .backoff_ratio = 0.5}}};
  const auto p = armor::pipeline{
      armor::classify{[](int answer) { return answer == 2 ? armor::verdict::throttled() : armor::verdict::success(); }},
      std::ref(lim)};
  occupancy occ;
  std::atomic<long> over{0};
  std::atomic<long> ran{0};
  std::atomic<long> dropped{0};  // places dropped unserved
  std::atomic<long> unserved{0};  // a normal or critical call refused: only a wait that ended at max_wait
  std::atomic<std::int64_t> worst_ns{0};
  std::vector<std::thread> pool;
  for (int id = 0; id < queue_threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937 rng(static_cast<unsigned>(id) + 307);
      for (int i = 0; i < iterations; ++i) {
        const unsigned dice = rng() % 16;
        const auto prio = static_cast<armor::priority>(rng() % 3);
        if (dice == 15) {  // a place taken and dropped without leave_queue (or a slot, if it entered)
          armor::context ctx(armor::to_timestamp(std::chrono::steady_clock::now()), {.priority = prio});
          silent_waiter w;
          bool queued = false;
          {
            auto a = lim.enqueue(ctx, w);
            queued = a.kind == armor::admission_kind::queued;
          }  // dropped: out of the queue, or (served meanwhile) its slot passed on
          // Both under the queue's mutex: the wake-up, if any, came first.
          if (queued && !w.woken.load(std::memory_order_relaxed)) dropped.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        if (dice == 14) {
          if (auto d = lim.try_acquire(prio)) std::this_thread::yield();  // dropped unsettled
          continue;
        }
        const auto t0 = std::chrono::steady_clock::now();
        auto r = p.try_execute(
            [&]() -> int {
              occ.enter();
              ran.fetch_add(1, std::memory_order_relaxed);
              if (lim.in_flight() > max_limit) over.fetch_add(1, std::memory_order_relaxed);
              std::this_thread::yield();
              occ.leave();
              return dice < 2 ? 2 : 1;
            },
            {.priority = prio});
        keep_most(worst_ns, (std::chrono::steady_clock::now() - t0).count());
        if (!r && prio != armor::priority::sheddable) unserved.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& t : pool) t.join();
  const auto s = lim.stats();
  INFO("ran " << ran.load() << ", dropped while queued " << dropped.load() << ", abandoned " << s.abandoned
              << ", windows " << s.windows << ", worst call " << worst_ns.load() / 1000 << " us");
  CHECK(occ.most.load() <= static_cast<int>(max_limit));
  CHECK(over.load() == 0);
  CHECK(ran.load() > 0);
  CHECK(s.windows > 10);
  CHECK(dropped.load() > 0);
  CHECK(unserved.load() == 0);
  CHECK(s.abandoned == static_cast<std::uint64_t>(dropped.load()));
  CHECK(worst_ns.load() < std::chrono::nanoseconds{1s}.count());
  CHECK(lim.in_flight() == 0);
  CHECK(lim.queued() == 0);
  // Nothing in flight, nobody waits: each priority's threshold is free to
  // the lock-free path (a stuck queue bit would refuse it).
  for (const auto prio : {armor::priority::sheddable, armor::priority::normal, armor::priority::critical}) {
    std::vector<armor::adaptive_limit_permit> held;
    for (std::uint32_t i = 0; i < lim.limit(prio); ++i) {
      auto d = lim.try_acquire(prio);
      REQUIRE(d);
      held.push_back(std::move(d).permit());
    }
    CHECK_FALSE(lim.try_acquire(prio));
  }
}

namespace {

// A caller of the arrival-order test. Its flags: the joiner has put the
// admission in place (flag_stored), it may run (flag_granted), a worker runs it (flag_taken).
constexpr int flag_stored = 1;
constexpr int flag_granted = 2;
constexpr int flag_taken = 4;
struct ordered_caller : armor::queue_waiter {
  ordered_caller() : armor::queue_waiter(&on_wake) {}
  std::atomic<std::int64_t>* clock = nullptr;
  std::int64_t grant = -1;  // written once: by the joiner, or by the wake (under the queue's mutex)
  std::atomic<int> flags{0};
  std::optional<armor::admission<armor::adaptive_limit_permit>> a;
  armor::priority prio = armor::priority::normal;
  static void on_wake(armor::queue_waiter& w) noexcept {
    auto& c = static_cast<ordered_caller&>(w);
    c.grant = c.clock->fetch_add(1, std::memory_order_relaxed);
    c.flags.fetch_or(flag_granted, std::memory_order_release);
  }
};

}  // namespace

// Arrival order: one thread joins the queue in a known order (critical and
// normal mixed) while two threads run what it was granted. Within each
// priority the grants follow the joins, whether a caller entered at once or
// was woken later by a release on another thread.
TEST_CASE("adaptive_limit stress with a queue: grants follow arrival order within each priority",
          "[adaptive_limit][queue]") {
  constexpr int callers = 3000;
  armor::adaptive_limit<armor::aimd_limit> lim{{.initial_limit = 4,
                                                .min_limit = 4,
                                                .max_limit = 4,
                                                .window = 1s,
                                                .normal_share = 0.5,
                                                .sheddable_share = 0.5,
                                                .max_queue = callers,
                                                .max_wait = 10s}};
  std::atomic<std::int64_t> next_grant{0};
  std::vector<ordered_caller> all(callers);
  std::atomic<int> done{0};
  std::vector<std::thread> workers;
  // A lost wake-up would stall the run: the workers give up after 5 s.
  const auto give_up = std::chrono::steady_clock::now() + 5s;
  for (int id = 0; id < 2; ++id) {
    workers.emplace_back([&, id] {
      int scan = id;
      while (done.load(std::memory_order_relaxed) < callers && std::chrono::steady_clock::now() < give_up) {
        bool found = false;
        for (int k = 0; k < callers; ++k) {
          ordered_caller& c = all[static_cast<std::size_t>((scan + k) % callers)];
          int f = flag_stored | flag_granted;
          if (!c.flags.compare_exchange_strong(f, f | flag_taken, std::memory_order_acq_rel)) continue;
          found = true;
          auto& permit = c.a->permit;
          if (permit.queued()) (void)permit.leave_queue();
          std::this_thread::yield();  // hold the slot a moment: others queue meanwhile
          permit.release();
          done.fetch_add(1, std::memory_order_relaxed);
          scan = (scan + k + 1) % callers;
          break;
        }
        if (!found) std::this_thread::yield();
      }
    });
  }
  int queued_count = 0;
  int rejected = 0;
  for (int i = 0; i < callers; ++i) {
    ordered_caller& c = all[static_cast<std::size_t>(i)];
    c.clock = &next_grant;
    c.prio = i % 3 == 0 ? armor::priority::critical : armor::priority::normal;
    armor::context ctx(armor::to_timestamp(std::chrono::steady_clock::now()), {.priority = c.prio});
    auto a = lim.enqueue(ctx, c);
    int add = flag_stored;
    if (a.kind == armor::admission_kind::rejected) {
      ++rejected;  // never (the queue holds every caller): no slot, runs nothing
      add |= flag_granted;
    } else if (a.kind == armor::admission_kind::admitted) {
      c.grant = next_grant.fetch_add(1, std::memory_order_relaxed);
      add |= flag_granted;
    } else {
      ++queued_count;
    }
    c.a.emplace(std::move(a));
    c.flags.fetch_or(add, std::memory_order_release);
  }
  for (auto& t : workers) t.join();
  INFO("queued " << queued_count << " of " << callers << ", done " << done.load());
  CHECK(rejected == 0);
  CHECK(done.load() == callers);
  CHECK(queued_count > callers / 10);
  std::int64_t last[2] = {-1, -1};
  long out_of_order = 0;
  for (const ordered_caller& c : all) {
    const int level = c.prio == armor::priority::critical ? 0 : 1;
    if (c.grant <= last[level]) ++out_of_order;
    last[level] = c.grant;
  }
  CHECK(out_of_order == 0);
  for (auto& c : all) c.a.reset();  // after a stall: the places left, dropped
  CHECK(lim.in_flight() == 0);
  CHECK(lim.queued() == 0);
}

// A rise of the limit at a window's close is the only thing that can serve
// the second waiter here: the slot holders park until two of them are inside
// at once. Waiters block in the sync driver (steady clock); the release that
// ends the window hands its slot to the first waiter, and the close that
// follows raises the limit from 1 to 2 and must wake the second.
TEST_CASE("adaptive_limit stress with a queue: the room a window's close makes wakes blocked waiters",
          "[adaptive_limit][queue]") {
  constexpr int rounds = 20;
  constexpr int waiters = 4;
  for (int round = 0; round < rounds; ++round) {
    armor::adaptive_limit<armor::aimd_limit> lim{{.initial_limit = 1,
                                                  .min_limit = 1,
                                                  .max_limit = 8,
                                                  .window = 100us,
                                                  .min_samples = 1,
                                                  .normal_share = 1,
                                                  .sheddable_share = 1,
                                                  .max_queue = waiters,
                                                  .max_wait = 3s,
                                                  .algorithm = {.increase = 1}}};
    const auto p = armor::pipeline{std::ref(lim)};
    auto held = lim.try_acquire();
    REQUIRE(held);
    occupancy occ;
    std::atomic<bool> two_inside{false};
    std::atomic<bool> stalled{false};
    std::atomic<int> ran{0};
    std::vector<std::thread> pool;
    for (int id = 0; id < waiters; ++id) {
      pool.emplace_back([&] {
        auto r = p.try_execute([&]() -> int {
          occ.enter();
          ran.fetch_add(1, std::memory_order_relaxed);
          if (occ.inside.load() >= 2) two_inside.store(true);
          // Park until a second call is inside; after 1 s, give up: that
          // call was never woken (leaving serves it, so the run ends).
          const auto until = std::chrono::steady_clock::now() + 1s;
          while (!two_inside.load()) {
            if (std::chrono::steady_clock::now() > until) {
              stalled.store(true);
              break;
            }
            std::this_thread::yield();
          }
          occ.leave();
          return 1;
        });
        (void)r;
      });
    }
    while (lim.queued() < static_cast<std::uint32_t>(waiters)) std::this_thread::yield();
    std::this_thread::sleep_for(200us);  // the window is over: the next settle closes it
    lim.record(std::move(held).permit(), armor::verdict::success());
    for (auto& t : pool) t.join();
    INFO("round " << round << ", limit " << lim.limit() << ", most inside " << occ.most.load());
    CHECK_FALSE(stalled.load());
    CHECK(two_inside.load());
    CHECK(ran.load() == waiters);
    CHECK(lim.in_flight() == 0);
    CHECK(lim.queued() == 0);
    CHECK(lim.stats().abandoned == 0);
    if (stalled.load() || !two_inside.load()) break;  // one failed round is enough
  }
}
