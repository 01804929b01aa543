// isolate_until() racing the end of an earlier isolation, and a shorter
// isolate_until() racing the winner of an isolation that has not written its
// end yet (circuit_breaker::isolate, breaker_core::isolate). Whatever order
// the two calls take, the breaker must end the round isolated until an hour
// from now: a timed isolation never shortens another, and an extension is
// never lost to the call that ends the isolation it extended.
//
// Rounds are bounded (about a second plain, two under TSan). Run
// under ThreadSanitizer. No sleeps: the clock is a manual_clock moved only by
// the main thread between rounds.
#include <armor/circuit_breaker.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <thread>

using namespace std::chrono_literals;

namespace {

// Under ThreadSanitizer (several times slower) fewer rounds keep the test
// to a couple of seconds on a loaded machine.
#if defined(__SANITIZE_THREAD__)
constexpr int rounds = 2000;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr int rounds = 2000;
#else
constexpr int rounds = 5000;
#endif
#else
constexpr int rounds = 5000;
#endif

// A reusable meeting point for three threads that spins (yielding) rather
// than sleeps, so that the two racing threads leave it close together.
class meeting {
 public:
  void arrive_and_wait() {
    const int round = round_.load();
    if (arrived_.fetch_add(1) == 2) {
      arrived_.store(0);
      round_.fetch_add(1);
      return;
    }
    while (round_.load() == round) std::this_thread::yield();
  }

 private:
  std::atomic<int> arrived_{0};
  std::atomic<int> round_{0};
};

// What the two racing threads do in one round (`now`: the round's time).
enum class race {
  extend_ended,      // isolated until now (ended, no call yet): one calls, one extends to now + 1h
  shorter_vs_winner,  // closed: one isolates until now + 1h, one until now and then calls
  shorter_vs_forever,  // closed: one isolate()s, one isolates until now and then calls
  two_extenders,     // isolated until now: one extends to now + 1h, one to now + 1 ms, then calls at now + 1 ms
};

int lost_rounds(race mode) {
  armor::manual_clock clock;
  armor::circuit_breaker<armor::manual_clock> b{{}, clock};
  meeting sync;
  armor::timestamp now{};
  auto worker = [&](int id) {
    for (int r = 0; r < rounds; ++r) {
      sync.arrive_and_wait();  // the round is set up
      switch (mode) {
        case race::extend_ended:
          if (id == 0) {
            (void)b.try_acquire(now);
          } else {
            b.isolate_until(now + 1h, now);
          }
          break;
        case race::shorter_vs_winner:
          if (id == 0) {
            b.isolate_until(now + 1h, now);
          } else {
            b.isolate_until(now, now);
            (void)b.try_acquire(now);
          }
          break;
        case race::shorter_vs_forever:
          if (id == 0) {
            b.isolate();
          } else {
            b.isolate_until(now, now);
            (void)b.try_acquire(now);
          }
          break;
        case race::two_extenders:
          if (id == 0) {
            b.isolate_until(now + 1h, now);
          } else {
            b.isolate_until(now + 1ms, now);
            (void)b.try_acquire(now + 1ms);
          }
          break;
      }
      sync.arrive_and_wait();  // the round is over
    }
  };
  std::thread t0(worker, 0);
  std::thread t1(worker, 1);
  int lost = 0;
  for (int r = 0; r < rounds; ++r) {
    b.reset();
    now = armor::to_timestamp(clock.now());
    if (mode == race::extend_ended || mode == race::two_extenders) b.isolate_until(now, now);
    sync.arrive_and_wait();
    sync.arrive_and_wait();
    // Still isolated, and half an hour on a call is refused.
    if (b.state() != armor::breaker_state::isolated || b.try_acquire(now + 30min)) ++lost;
    clock.advance(1ms);
  }
  t0.join();
  t1.join();
  return lost;
}

}  // namespace

TEST_CASE("stress: an isolation's end is never lost or shortened by a race", "[stress][circuit_breaker]") {
  CHECK(lost_rounds(race::extend_ended) == 0);
  CHECK(lost_rounds(race::shorter_vs_winner) == 0);
  CHECK(lost_rounds(race::shorter_vs_forever) == 0);
  CHECK(lost_rounds(race::two_extenders) == 0);
}
