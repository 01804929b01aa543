// The lease a Redis backend serves from without a round trip (generation +
// units, one 16-byte compare-and-swap). No Redis server is needed: this is
// the in-process word the backends' fast path takes units from.
#include <armor/detail/redis_io.hpp>

#include "armor_catch.hpp"

#include <cstdint>

using armor::detail::redis_lease;

TEST_CASE("redis lease: a taker that read an older generation fails, however many refills ago", "[lease]") {
  redis_lease lease;
  lease.publish(1, 5);
  redis_lease::view stale = lease.load();
  REQUIRE(stale.gen == 1);
  REQUIRE(stale.units == 5);

  // 2^24 refills later, with the same units and the same slot: a 24-bit
  // generation would have come back to 1 here, and the stale taker's
  // compare-and-swap would have succeeded on a slot rewritten meanwhile.
  const std::uint64_t later = 1 + (std::uint64_t{1} << 24);
  lease.publish(later, 5);
  CHECK_FALSE(lease.take(stale, 1));
  CHECK(stale.gen == later);  // the failed take read the lease as it is
  CHECK(stale.units == 5);
  CHECK(lease.take(stale, 1));
  CHECK(lease.units() == 4);

  // And after 2^32 and 2^40 refills.
  for (const unsigned bits : {32U, 40U}) {
    redis_lease::view old = lease.load();
    lease.publish(old.gen + (std::uint64_t{1} << bits), old.units);
    CHECK_FALSE(lease.take(old, 1));
  }
}

TEST_CASE("redis lease: take, empty and publish keep generation and units together", "[lease]") {
  redis_lease lease;
  CHECK(lease.next_gen() == 1);
  lease.publish(lease.next_gen(), 3);
  redis_lease::view v = lease.load();
  CHECK(v.slot() == 1);
  CHECK(lease.take(v, 2));
  v.units -= 2;
  CHECK(lease.units() == 1);
  // A view whose units are out of date fails and is refreshed.
  redis_lease::view outdated{v.gen, 3};
  CHECK_FALSE(lease.take(outdated, 1));
  CHECK(outdated.units == 1);
  const redis_lease::view was = lease.empty();
  CHECK(was.gen == 1);
  CHECK(was.units == 1);
  CHECK(lease.units() == 0);
  CHECK(lease.next_gen() == 2);
  lease.publish(lease.next_gen(), 7);
  CHECK(lease.load().slot() == 0);
  CHECK(lease.units() == 7);
}
