// Threads sharing one bulkhead never have more than max_concurrent calls
// inside, and every slot comes back: after every thread has finished, the
// bulkhead is empty and a fresh caller gets a slot. Covered: the fail-fast
// path, the queue (served waits, waits that time out, permits dropped while
// queued or just granted) and exceptions. Run under ThreadSanitizer.
#include <armor/bulkhead.hpp>
#include <armor/deadline.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int threads = 4;

struct boom : std::runtime_error {
  boom() : std::runtime_error("boom") {}
};

// Counts callers inside the protected region and remembers the most seen.
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

}  // namespace

TEST_CASE("fail-fast: threads never exceed max_concurrent and every slot comes back") {
  constexpr std::uint32_t limit = 3;
  constexpr int iterations = 100000;
  armor::bulkhead b{{.max_concurrent = limit}};
  const auto p = armor::pipeline{std::ref(b)};
  occupancy occ;
  std::vector<long> ok(threads), full(threads), thrown(threads);
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937 rng(static_cast<unsigned>(id) + 1);
      for (int i = 0; i < iterations; ++i) {
        const unsigned dice = rng() % 8;
        if (dice == 0) {
          // Direct use: hold a slot for a moment.
          if (auto slot = b.try_acquire()) {
            occ.enter();
            std::this_thread::yield();
            occ.leave();
          }
          continue;
        }
        auto r = p.try_execute([&]() -> int {
          occ.enter();
          if (dice == 1) {
            occ.leave();
            throw boom();
          }
          if (dice == 2) std::this_thread::yield();
          occ.leave();
          return 1;
        });
        if (r) {
          ++ok[static_cast<std::size_t>(id)];
        } else if (r.code() == armor::errc::bulkhead_full) {
          ++full[static_cast<std::size_t>(id)];
        } else {
          ++thrown[static_cast<std::size_t>(id)];
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  long total_ok = 0;
  long total_full = 0;
  for (int id = 0; id < threads; ++id) {
    total_ok += ok[static_cast<std::size_t>(id)];
    total_full += full[static_cast<std::size_t>(id)];
  }
  CAPTURE(total_ok, total_full, occ.most.load());
  CHECK(occ.most.load() <= static_cast<int>(limit));
  CHECK(occ.most.load() >= 1);
  CHECK(total_ok > 0);
  CHECK(b.in_use() == 0);
  CHECK(b.queued() == 0);
  CHECK(b.available() == limit);
}

TEST_CASE("queueing: waits are served or time out, and no slot is lost or doubled") {
  constexpr std::uint32_t limit = 2;
  constexpr int iterations = 3000;
  armor::bulkhead b{{.max_concurrent = limit, .max_queue = 6, .max_wait = 2ms}};
  const auto p = armor::pipeline{std::ref(b)};
  const auto hurried = armor::pipeline{armor::deadline{500us}, std::ref(b)};
  occupancy occ;
  std::atomic<long> ok{0};
  std::atomic<long> full{0};
  std::atomic<long> late{0};
  std::atomic<long> other{0};
  std::vector<std::thread> pool;
  for (int id = 0; id < threads + 2; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937 rng(static_cast<unsigned>(id) + 7);
      for (int i = 0; i < iterations; ++i) {
        const unsigned dice = rng() % 10;
        auto body = [&]() -> int {
          occ.enter();
          if (dice < 3) std::this_thread::sleep_for(std::chrono::microseconds(50 + rng() % 200));
          occ.leave();
          if (dice == 9) throw boom();
          return 1;
        };
        auto r = dice == 8 ? hurried.try_execute(body) : p.try_execute(body);
        if (r) {
          ok.fetch_add(1, std::memory_order_relaxed);
        } else if (r.code() == armor::errc::bulkhead_full) {
          full.fetch_add(1, std::memory_order_relaxed);
        } else if (r.code() == armor::errc::deadline_exceeded) {
          late.fetch_add(1, std::memory_order_relaxed);
        } else if (r.code() == armor::errc::operation_failed) {
          other.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  CAPTURE(ok.load(), full.load(), late.load(), other.load(), occ.most.load());
  CHECK(occ.most.load() <= static_cast<int>(limit));
  CHECK(ok.load() > 0);
  CHECK(ok.load() + full.load() + late.load() + other.load() == (threads + 2) * iterations);
  CHECK(b.in_use() == 0);
  CHECK(b.queued() == 0);
  auto fresh = b.try_acquire();
  CHECK(static_cast<bool>(fresh));
}

TEST_CASE("queue places dropped or abandoned at any moment never lose or double a slot") {
  // Policy level: threads queue their own waiters and give up at random
  // moments (leave_queue, or dropping the permit), racing the releases that
  // hand slots over.
  struct spinning_waiter : armor::queue_waiter {
    spinning_waiter() : armor::queue_waiter(&on_wake) {}
    std::atomic<bool> woken{false};
    static void on_wake(armor::queue_waiter& w) noexcept {
      static_cast<spinning_waiter&>(w).woken.store(true, std::memory_order_release);
    }
  };
  constexpr std::uint32_t limit = 2;
  constexpr int iterations = 20000;
  armor::bulkhead b{{.max_concurrent = limit, .max_queue = 3, .max_wait = 1s}};
  occupancy occ;
  std::atomic<long> served{0};
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937 rng(static_cast<unsigned>(id) + 99);
      armor::context ctx(armor::timestamp{});
      for (int i = 0; i < iterations; ++i) {
        auto a = b.admit(ctx);
        if (a.kind == armor::admission_kind::admitted) {
          occ.enter();
          occ.leave();
          continue;  // the permit is dropped: the slot goes back
        }
        if (a.kind != armor::admission_kind::queue) continue;
        spinning_waiter w;
        auto q = b.enqueue(ctx, w);
        if (q.kind == armor::admission_kind::admitted) {
          occ.enter();
          occ.leave();
          continue;
        }
        if (q.kind != armor::admission_kind::queued) continue;
        const unsigned spins = rng() % 200;
        for (unsigned s = 0; s < spins && !w.woken.load(std::memory_order_acquire); ++s) std::this_thread::yield();
        if (rng() % 4 == 0) continue;  // drop the permit without leave_queue
        if (q.permit.leave_queue()) {
          served.fetch_add(1, std::memory_order_relaxed);
          occ.enter();
          occ.leave();
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  CAPTURE(served.load(), occ.most.load());
  CHECK(occ.most.load() <= static_cast<int>(limit));
  CHECK(b.in_use() == 0);
  CHECK(b.queued() == 0);
  CHECK(b.available() == limit);
}

TEST_CASE("keyed<bulkhead> under threads: per-key limits hold and keys come and go") {
  constexpr std::uint32_t limit = 2;
  armor::keyed<armor::bulkhead<>> per_key{{.max_concurrent = limit}, {.max_keys = 8}};
  const auto p = armor::pipeline{std::ref(per_key)};
  std::vector<occupancy> occ(16);
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937 rng(static_cast<unsigned>(id) + 3);
      for (int i = 0; i < 20000; ++i) {
        const std::size_t k = rng() % occ.size();
        const std::string key = "upstream-" + std::to_string(k);
        (void)p.try_execute(
            [&] {
              occ[k].enter();
              std::this_thread::yield();
              occ[k].leave();
            },
            {.key = key});
      }
    });
  }
  for (auto& t : pool) t.join();
  for (auto& o : occ) CHECK(o.most.load() <= static_cast<int>(limit));
  CHECK(per_key.size() <= 8 + threads);
  per_key.evict_idle();
  CHECK(per_key.size() == 0);  // nobody inside anywhere: every key was idle
}

// ---------------------------------------------------------------------------
// The listener: every refusal and every abandoned wait is heard exactly once.

namespace {

// Counts each kind of event, and the largest counts an event carried.
struct event_counter {
  std::atomic<long> rejected{0};
  std::atomic<long> queued{0};
  std::atomic<long> abandoned{0};
  std::atomic<std::uint32_t> most_in_use{0};
  std::atomic<std::uint32_t> most_queued{0};

  static void raise(std::atomic<std::uint32_t>& m, std::uint32_t v) noexcept {
    std::uint32_t cur = m.load(std::memory_order_relaxed);
    while (v > cur && !m.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
  }

  void operator()(const armor::bulkhead_event& e) noexcept {
    switch (e.kind) {
      case armor::bulkhead_event_kind::rejected: rejected.fetch_add(1, std::memory_order_relaxed); break;
      case armor::bulkhead_event_kind::queued: queued.fetch_add(1, std::memory_order_relaxed); break;
      case armor::bulkhead_event_kind::abandoned: abandoned.fetch_add(1, std::memory_order_relaxed); break;
    }
    raise(most_in_use, e.in_use);
    raise(most_queued, e.queued);
  }
};

}  // namespace

TEST_CASE("listener, fail-fast: each refusal is heard exactly once across threads") {
  constexpr std::uint32_t limit = 2;
  constexpr int iterations = 50000;
  event_counter heard;
  armor::bulkhead b{{.max_concurrent = limit}, std::ref(heard)};
  const auto p = armor::pipeline{std::ref(b)};
  std::vector<long> ok(threads), refused(threads);
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937 rng(static_cast<unsigned>(id) + 31);
      for (int i = 0; i < iterations; ++i) {
        const unsigned dice = rng() % 4;
        if (dice == 0) {
          if (auto slot = b.try_acquire()) {
            std::this_thread::yield();
            ++ok[static_cast<std::size_t>(id)];
          } else {
            ++refused[static_cast<std::size_t>(id)];
          }
          continue;
        }
        auto r = p.try_execute([&] {
          if (dice == 1) std::this_thread::yield();
          return 1;
        });
        ++(r ? ok : refused)[static_cast<std::size_t>(id)];
      }
    });
  }
  for (auto& t : pool) t.join();
  long total_ok = 0;
  long total_refused = 0;
  for (int id = 0; id < threads; ++id) {
    total_ok += ok[static_cast<std::size_t>(id)];
    total_refused += refused[static_cast<std::size_t>(id)];
  }
  CAPTURE(total_ok, total_refused);
  CHECK(total_ok + total_refused == long{threads} * iterations);
  CHECK(total_refused > 0);  // 4 threads on 2 slots: some calls must be refused
  CHECK(heard.rejected.load() == total_refused);
  CHECK(heard.queued.load() == 0);
  CHECK(heard.abandoned.load() == 0);
  CHECK(heard.most_in_use.load() <= limit);
  CHECK(heard.most_queued.load() == 0);
  CHECK(b.in_use() == 0);
}

TEST_CASE("listener, queueing: refusals plus abandoned waits equal the bulkhead_full calls, each heard once") {
  constexpr std::uint32_t limit = 1;
  constexpr std::uint32_t max_queue = 2;
  constexpr int iterations = 2000;
  event_counter heard;
  armor::bulkhead b{{.max_concurrent = limit, .max_queue = max_queue, .max_wait = 300us}, std::ref(heard)};
  const auto p = armor::pipeline{std::ref(b)};
  std::atomic<long> ok{0};
  std::atomic<long> full{0};
  std::atomic<long> other{0};
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      std::mt19937 rng(static_cast<unsigned>(id) + 57);
      for (int i = 0; i < iterations; ++i) {
        const unsigned dice = rng() % 4;
        auto r = p.try_execute([&] {
          if (dice == 0) std::this_thread::sleep_for(std::chrono::microseconds(100 + rng() % 400));
          return 1;
        });
        if (r) {
          ok.fetch_add(1, std::memory_order_relaxed);
        } else if (r.code() == armor::errc::bulkhead_full) {
          full.fetch_add(1, std::memory_order_relaxed);
        } else {
          other.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  CAPTURE(ok.load(), full.load(), other.load(), heard.rejected.load(), heard.queued.load(), heard.abandoned.load());
  CHECK(other.load() == 0);
  CHECK(ok.load() + full.load() == long{threads} * iterations);
  CHECK(full.load() > 0);
  // A bulkhead_full call was either refused (queue full) or gave up after
  // max_wait: heard as exactly one rejected or one abandoned event.
  CHECK(heard.rejected.load() + heard.abandoned.load() == full.load());
  CHECK(heard.queued.load() >= heard.abandoned.load());  // the rest of the queued were served
  CHECK(heard.queued.load() > 0);
  CHECK(heard.most_in_use.load() <= limit);
  CHECK(heard.most_queued.load() <= max_queue);
  CHECK(b.in_use() == 0);
  CHECK(b.queued() == 0);
}
