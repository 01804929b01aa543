// A load shedder fed by two sampler threads (one resource each) while
// threads admit calls of every priority: every refusal was decided on a
// word that refuses its priority, critical calls are never refused by the
// default ladder, and the level changes are heard in order (each one's
// `from` the previous one's `to`), as many as stats() counts. And a drain
// with calls in flight: start() while threads keep calling, the wait ends
// (the last settle wakes the drainer: no lost wake-up) with nothing inside
// and no operation starting after; resumed, and again, many times. Run
// under ThreadSanitizer.
#include <armor/drain.hpp>
#include <armor/load_shedder.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int admitters = 3;

struct shed_watch {
  std::atomic<long> bad_refusals{0};
  std::atomic<long> refusals{0};
  // Level changes are told under the writers' mutex: plain data is enough.
  long changes = 0;
  long broken_chain = 0;
  armor::load_level last = armor::load_level::normal;
};

struct shed_listener {
  shed_watch* w;
  void operator()(const armor::load_shedder_event& e) const noexcept {
    switch (e.kind) {
      case armor::load_shedder_event_kind::level_changed:
        ++w->changes;
        if (e.from != w->last) ++w->broken_chain;
        w->last = e.to;
        break;
      case armor::load_shedder_event_kind::mode_changed: break;
      case armor::load_shedder_event_kind::refused: {
        w->refusals.fetch_add(1, std::memory_order_relaxed);
        // The word the decision read: does that level refuse this priority?
        const bool ok = (e.priority == armor::priority::sheddable && e.to >= armor::load_level::degraded) ||
                        (e.priority == armor::priority::normal && e.to == armor::load_level::shedding);
        if (!ok) w->bad_refusals.fetch_add(1, std::memory_order_relaxed);
        break;
      }
    }
  }
};

}  // namespace

TEST_CASE("stress: samplers move the level while threads admit; decisions follow the word") {
  shed_watch watch;
  armor::load_shedder s{{.resources = {{.name = "memory"}, {.name = "cpu"}}, .count_calls = true},
                        armor::steady_clock{}, shed_listener{&watch}};
  const auto p = armor::pipeline{std::ref(s)};
  std::atomic<bool> stop{false};
  std::atomic<long> critical_refused{0};
  std::atomic<long> admitted{0};
  std::vector<std::thread> pool;
  for (int id = 0; id < admitters; ++id) {
    pool.emplace_back([&, id] {
      long i = id;
      while (!stop.load(std::memory_order_relaxed)) {
        const auto pr = static_cast<armor::priority>(i++ % 3);
        auto r = p.try_execute([] { return 1; }, {.priority = pr});
        if (r.ok()) {
          admitted.fetch_add(1, std::memory_order_relaxed);
        } else if (pr == armor::priority::critical) {
          critical_refused.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  const double readings[] = {0.1, 0.81, 0.91, 0.96, 0.85, 0.79, 0.5, 0.99, 0.2, 0.93, 0.7};
  std::vector<std::thread> samplers;
  for (std::size_t r = 0; r < 2; ++r) {
    samplers.emplace_back([&, r] {
      for (int round = 0; round < 2000; ++round) {
        for (double v : readings) s.update(r, r == 0 ? v : 1.0 - v);
      }
    });
  }
  for (auto& t : samplers) t.join();
  stop.store(true);
  for (auto& t : pool) t.join();
  CHECK(critical_refused.load() == 0);
  CHECK(watch.bad_refusals.load() == 0);
  CHECK(watch.broken_chain == 0);
  CHECK(watch.changes == static_cast<long>(s.stats().level_changes));
  CHECK(watch.refusals.load() == static_cast<long>(s.stats().refused));
  CHECK(admitted.load() > 0);
  CHECK(s.level() == std::max(s.resource_level(0), s.resource_level(1)));
}

TEST_CASE("stress: drain with calls in flight ends when the last one settles, every round") {
  armor::drain<> d;
  armor::load_shedder<> shedder{{.resources = {{.name = "memory"}}}};
  const auto p = armor::pipeline{std::ref(d), std::ref(shedder)};
  std::atomic<bool> stop{false};
  std::atomic<int> running{0};
  std::atomic<bool> drained_flag{false};
  std::atomic<long> started_after_drain{0};
  std::atomic<long> calls{0};
  std::vector<std::thread> pool;
  for (int id = 0; id < admitters; ++id) {
    pool.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        (void)p.try_execute([&] {
          running.fetch_add(1, std::memory_order_acq_rel);
          if (drained_flag.load(std::memory_order_acquire)) started_after_drain.fetch_add(1);
          std::this_thread::yield();
          calls.fetch_add(1, std::memory_order_relaxed);
          running.fetch_sub(1, std::memory_order_acq_rel);
          return 1;
        });
      }
    });
  }
  constexpr int rounds = 100;
  int drained_rounds = 0;
  for (int round = 0; round < rounds; ++round) {
    const long before = calls.load();
    while (calls.load() < before + 20) std::this_thread::yield();  // calls are flowing
    d.start();
    const bool ok = d.wait_for(30s);  // never reached unless a wake-up is lost
    if (ok) {
      ++drained_rounds;
      drained_flag.store(true, std::memory_order_release);
      CHECK(running.load() == 0);  // (in_flight() may count a call refused while racing start(), for a moment)
    }
    for (int i = 0; i < 50; ++i) std::this_thread::yield();  // refusals while drained
    drained_flag.store(false, std::memory_order_release);
    d.resume();
  }
  stop.store(true);
  for (auto& t : pool) t.join();
  CHECK(drained_rounds == rounds);
  CHECK(started_after_drain.load() == 0);
  CHECK(d.stats().refused > 0);
  CHECK(d.in_flight() == 0);
}
