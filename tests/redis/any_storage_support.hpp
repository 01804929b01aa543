// For the Redis tests of armor::make_quota_storage: a tracker built from a
// redis URL and one on the memory backend, both of the same type, driven
// through the same random sequence, must decide alike.
#pragma once

#include <armor/quota_tracker.hpp>
#include <armor/redis/quota_storage.hpp>
#include <armor/storage/any.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <cstdint>
#include <random>
#include <string>

namespace armor_test {

/// Runs `steps` random consumptions, reservations and clock moves on a
/// tracker built from `url` (which should say time=caller: the periods are
/// then numbered by the test's manual clock) and on one built from memory:.
inline void decides_as_memory(const std::string& url, std::uint64_t seed, int steps) {
  using tracker = armor::quota_tracker<armor::manual_clock, armor::any_quota_storage>;
  const armor::quota_tracker_options options{
      .windows = {armor::quota_window::per_minute(30), armor::quota_window::rolling(80, std::chrono::minutes{10}, 5)}};
  armor::manual_clock clock;
  clock.set(armor::manual_clock::time_point{std::chrono::nanoseconds{1'718'452'800'000'000'000}});
  const armor::any_quota_storage_options how{.backends = {armor::redis_quota_backend}};
  // The same code for both; only the URL differs.
  tracker mem{options, clock, armor::make_quota_storage("memory:", how)};
  tracker red{options, clock, armor::make_quota_storage(url, how)};
  REQUIRE(red.storage().target<armor::redis_quota_storage>() != nullptr);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < steps; ++i) {
    const auto cost = static_cast<std::int64_t>(rng() % 6);
    const auto op = rng() % 8;
    INFO("step " << i << " op " << op << " cost " << cost);
    if (op == 0) {
      clock.advance(std::chrono::nanoseconds{static_cast<std::int64_t>(rng() % 40'000'000'000)});
    } else if (op == 1) {
      auto a = mem.reserve(cost + 1);
      auto b = red.reserve(cost + 1);
      REQUIRE(a.status() == b.status());
      if (a) REQUIRE(a.permit().commit(cost) == b.permit().commit(cost));
    } else {
      const auto a = mem.try_consume(cost);
      const auto b = red.try_consume(cost);
      REQUIRE(a.status() == b.status());
      REQUIRE(a.used() == b.used());
      REQUIRE(a.window() == b.window());
    }
  }
  for (std::size_t w = 0; w < 2; ++w) CHECK(mem.usage(w).used == red.usage(w).used);
  CHECK(mem.stats().exhausted == red.stats().exhausted);
  CHECK(mem.stats().exhausted > 0);
}

}  // namespace armor_test
