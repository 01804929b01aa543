// Clocks: manual_clock semantics and timestamp conversions.
#include <armor/clock.hpp>

#include "armor_catch.hpp"

using namespace std::chrono_literals;

TEST_CASE("a manual clock starts at its epoch or at the given start") {
  CHECK(armor::manual_clock{}.now().time_since_epoch() == 0ns);
  CHECK(armor::manual_clock{5s}.now().time_since_epoch() == 5s);
}

TEST_CASE("copies of a manual clock share one time") {
  armor::manual_clock a;
  const armor::manual_clock b = a;
  a.advance(250ms);
  CHECK(b.now().time_since_epoch() == 250ms);
  CHECK(a == b);
  CHECK_FALSE(a == armor::manual_clock{});
}

TEST_CASE("advance refuses a negative duration") {
  armor::manual_clock c;
  CHECK_THROWS_AS(c.advance(-1ns), armor::error);
  CHECK(c.now().time_since_epoch() == 0ns);
}

TEST_CASE("sleep_until moves time forward only") {
  armor::manual_clock c{10s};
  c.sleep_until(armor::manual_clock::time_point{4s});
  CHECK(c.now().time_since_epoch() == 10s);
  c.sleep_until(armor::manual_clock::time_point{12s});
  CHECK(c.now().time_since_epoch() == 12s);
  c.sleep_for(3s);
  CHECK(c.now().time_since_epoch() == 15s);
}

TEST_CASE("set moves time anywhere, backwards included") {
  armor::manual_clock c{10s};
  c.set(armor::manual_clock::time_point{2s});
  CHECK(c.now().time_since_epoch() == 2s);
}

TEST_CASE("advancing saturates instead of overflowing") {
  armor::manual_clock c;
  c.advance(std::chrono::nanoseconds::max());
  c.advance(1h);
  CHECK(c.now().time_since_epoch() == std::chrono::nanoseconds::max());
}

TEST_CASE("timestamps convert to and from any clock's time points, rounding up") {
  using tp_ms = std::chrono::time_point<armor::manual_clock, std::chrono::milliseconds>;
  CHECK(armor::to_timestamp(tp_ms{3ms}).time_since_epoch() == 3ms);
  struct ms_clock {
    using time_point = std::chrono::time_point<armor::steady_clock::base, std::chrono::milliseconds>;
    time_point now() const { return {}; }
  };
  const auto back = armor::from_timestamp<ms_clock>(armor::timestamp{1500us});
  CHECK(back.time_since_epoch() == 2ms);  // never wake before the timestamp
  CHECK(armor::from_timestamp<armor::manual_clock>(armor::timestamp::max()) == armor::manual_clock::time_point::max());
}

TEST_CASE("the standard clocks read their std::chrono counterparts") {
  const auto a = armor::steady_clock::now();
  const auto b = armor::steady_clock::now();
  CHECK(b >= a);
  const auto wall = armor::system_clock::now();
  CHECK(wall.time_since_epoch() > std::chrono::hours(24 * 365 * 50));  // after 2020
}
