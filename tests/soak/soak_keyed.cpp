// Soak: many calls through a keyed pipeline (a circuit breaker, a token
// bucket and a quota tracker per key, each in its own bounded map, the
// quotas expiring) over many more distinct keys than the maps hold, so that
// entries are created, evicted and expired all the time. Checked:
//
//   - every call is accounted for: admitted + refused == calls, the
//     operation ran exactly once per admitted call, and each map's refusals
//     are exactly the calls refused with its error code;
//   - each map's counters agree: keys + removed == created, keys within
//     max_keys, every key created at least once, and entries did leave by
//     eviction (and, for the quotas, by expiry);
//   - the resident memory (/proc/self/statm), read after each twentieth of
//     the run, is flat after warm-up: between the reading at 25 % and the
//     last one it grows by less than 8 MiB + 4 bytes per call (see below).
//
// Bounded form (CTest, label soak): 400 000 calls over 100 000 keys.
// Full form (ARMOR_SOAK=full, scripts/soak): 10 million calls over 1 million
// keys. ARMOR_SOAK_CALLS and ARMOR_SOAK_KEYS override either. Figures
// measured: docs/soak.md.
//
// Time is a manual clock that the calling threads advance themselves (1 ms
// every 64 calls of each thread), so the run means the same on any machine;
// threads only ever wait for each other at the joins between segments.
#include <armor/circuit_breaker.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "soak_common.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <numeric>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int threads = 4;
constexpr int segments = 20;
// Keys of the hot set: one call in four goes to one of them, so that the
// buckets and quotas refuse and the breakers of failing hot keys open.
constexpr std::uint64_t hot_keys = 256;
// Resident memory may grow by less than max_growth_mib plus
// growth_per_call_bytes for each call between 25 % and 100 % of the run. A
// leak of the smallest allocation (32 bytes with glibc) per call, or per
// entry created (about 0.75 per call in each map), would exceed it; the
// allocator's own drift over a long run (20 MiB over the 7.5 million calls
// after warm-up of the full form, 2.5 % of its 815 MiB) does not.
constexpr double max_growth_mib = 8.0;
constexpr double growth_per_call_bytes = 4.0;

// Spreads the tail calls over every key: consecutive tail calls visit keys
// `step` apart, step coprime with the number of keys, so each run of `keys`
// tail calls visits every key once.
std::uint64_t step_for(std::uint64_t keys) noexcept {
  std::uint64_t step = 2'654'435'761ULL % keys;
  while (std::gcd(step, keys) != 1) ++step;
  return step;
}

struct alignas(64) tally {
  std::uint64_t calls = 0;
  std::uint64_t admitted = 0;
  std::uint64_t refused = 0;
  std::uint64_t circuit_open = 0;
  std::uint64_t rate_limited = 0;
  std::uint64_t quota_exhausted = 0;
  std::uint64_t other = 0;
  std::uint64_t ran = 0;
  std::uint64_t failed = 0;

  void add(const tally& t) noexcept {
    calls += t.calls;
    admitted += t.admitted;
    refused += t.refused;
    circuit_open += t.circuit_open;
    rate_limited += t.rate_limited;
    quota_exhausted += t.quota_exhausted;
    other += t.other;
    ran += t.ran;
    failed += t.failed;
  }
};

void check_map(const char* name, const armor::keyed_stats& s, std::uint64_t max_keys) {
  INFO(name << ": keys " << s.keys << ", created " << s.created << ", expired " << s.expired << ", evicted idle "
            << s.evicted_idle << ", evicted lru " << s.evicted_lru << ", erased " << s.erased);
  CHECK(s.keys + s.removed() == s.created);
  // Inserts racing in other shards may each overshoot max_keys by one.
  CHECK(s.keys <= max_keys + threads);
  CHECK(s.erased == 0);
  CHECK(s.evicted_idle + s.evicted_lru + s.expired > 0);
}

}  // namespace

TEST_CASE("soak: a keyed breaker, bucket and quota over many keys with eviction keep counts exact and memory flat") {
  const bool full = soak::full();
  const std::uint64_t calls = soak::size_from_env("ARMOR_SOAK_CALLS", full ? 10'000'000 : 400'000);
  const std::uint64_t keys = soak::size_from_env("ARMOR_SOAK_KEYS", full ? 1'000'000 : 100'000);
  REQUIRE(keys > hot_keys);
  // Each map holds a fraction of the keys, so entries come and go.
  const std::uint64_t breaker_max = keys / 20;
  const std::uint64_t bucket_max = keys / 10;
  const std::uint64_t quota_max = keys / 3;
  // Quotas expire after the time of keys / 5 calls (1 ms every 64 calls):
  // about 0.15 * keys tail keys are live then, under quota_max, so the
  // quota map mostly forgets keys by expiry.
  const auto expire_after = std::chrono::milliseconds{std::max<std::uint64_t>(keys / 5 / 64, 1)};

  armor::manual_clock clock{24h};
  armor::keyed<armor::circuit_breaker<armor::manual_clock>> breakers{
      {.failure_threshold = 3, .open_for = 1s}, {.max_keys = breaker_max}, clock};
  armor::keyed<armor::token_bucket<armor::manual_clock>> buckets{
      {.rate = {10, 1s}, .burst = 5}, {.max_keys = bucket_max}, clock};
  armor::keyed<armor::quota_tracker<armor::manual_clock>> quotas{
      {.windows = {armor::quota_window::fixed(8, 1s)}, .alerts = {}},
      {.max_keys = quota_max, .expire_after = expire_after},
      clock};
  const std::uint64_t step = step_for(keys);
  const auto p = armor::pipeline{clock, std::ref(breakers), std::ref(buckets), std::ref(quotas)};

  const std::uint64_t rss_start = soak::resident_bytes();
  std::array<std::uint64_t, segments + 1> rss{};
  rss[0] = rss_start;
  std::array<tally, threads> tallies{};
  const auto started = std::chrono::steady_clock::now();

  // Call i goes to hot key i/4 * 7 mod 256 when i is a multiple of 4, else
  // to tail key (j * stride) mod keys, j counting the tail calls. Keys of
  // the form "h<n>" and "u<n>". Hot keys with n % 8 == 0 and tail keys with
  // n % 16 == 0 fail (the operation returns an error code).
  const auto run = [&](std::uint64_t begin, std::uint64_t end, tally& t) {
    char buf[32];
    std::uint64_t mine = 0;
    for (std::uint64_t i = begin; i < end; ++i) {
      std::string_view key;
      bool failing = false;
      if (i % 4 == 0) {
        const std::uint64_t n = (i / 4 * 7) % hot_keys;
        key = soak::make_key(buf, "h", n);
        failing = n % 8 == 0;
      } else {
        const std::uint64_t j = 3 * (i / 4) + i % 4 - 1;
        const std::uint64_t n = (j % keys) * step % keys;
        key = soak::make_key(buf, "u", n);
        failing = n % 16 == 0;
      }
      const auto r = p.try_execute(
          [&]() -> std::error_code {
            ++t.ran;
            if (failing) {
              ++t.failed;
              return armor::errc::operation_failed;
            }
            return {};
          },
          {.key = key});
      ++t.calls;
      if (r.has_value()) {
        ++t.admitted;
      } else {
        ++t.refused;
        const std::error_code c = r.code();
        if (c == armor::errc::circuit_open) {
          ++t.circuit_open;
        } else if (c == armor::errc::rate_limited) {
          ++t.rate_limited;
        } else if (c == armor::errc::quota_exhausted) {
          ++t.quota_exhausted;
        } else {
          ++t.other;
        }
      }
      if (++mine % 64 == 0) clock.advance(1ms);
    }
  };

  const std::uint64_t per_segment = calls / segments;
  for (int seg = 0; seg < segments; ++seg) {
    const std::uint64_t seg_begin = per_segment * static_cast<std::uint64_t>(seg);
    const std::uint64_t seg_end = seg + 1 == segments ? calls : seg_begin + per_segment;
    const std::uint64_t share = (seg_end - seg_begin + threads - 1) / threads;
    std::vector<std::thread> pool;
    for (int id = 0; id < threads; ++id) {
      const std::uint64_t b = std::min(seg_end, seg_begin + share * static_cast<std::uint64_t>(id));
      const std::uint64_t e = std::min(seg_end, b + share);
      pool.emplace_back(run, b, e, std::ref(tallies[static_cast<std::size_t>(id)]));
    }
    for (auto& th : pool) th.join();
    rss[static_cast<std::size_t>(seg) + 1] = soak::resident_bytes();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  tally total;
  for (const auto& t : tallies) total.add(t);
  const armor::keyed_stats bs = breakers.stats();
  const armor::keyed_stats ts = buckets.stats();
  const armor::keyed_stats qs = quotas.stats();

  const std::uint64_t rss_warm = rss[segments / 4];
  const std::uint64_t rss_end = rss[segments];
  const double growth = soak::mib(rss_end) - soak::mib(rss_warm);
  const double bound_mib = max_growth_mib + soak::mib(static_cast<std::uint64_t>(
                                                 growth_per_call_bytes * static_cast<double>(calls - calls / 4)));
  std::printf(
      "soak keyed: %llu calls over %llu keys in %.1f s (%d threads): admitted %llu, refused %llu (circuit_open %llu, "
      "rate_limited %llu, quota_exhausted %llu)\n",
      static_cast<unsigned long long>(total.calls), static_cast<unsigned long long>(keys), seconds, threads,
      static_cast<unsigned long long>(total.admitted), static_cast<unsigned long long>(total.refused),
      static_cast<unsigned long long>(total.circuit_open), static_cast<unsigned long long>(total.rate_limited),
      static_cast<unsigned long long>(total.quota_exhausted));
  const auto print_map = [](const char* name, const armor::keyed_stats& s) {
    std::printf("  %-8s max_keys %7llu keys %7llu created %8llu expired %8llu evicted_idle %8llu evicted_lru %8llu\n",
                name, static_cast<unsigned long long>(s.max_keys), static_cast<unsigned long long>(s.keys),
                static_cast<unsigned long long>(s.created), static_cast<unsigned long long>(s.expired),
                static_cast<unsigned long long>(s.evicted_idle), static_cast<unsigned long long>(s.evicted_lru));
  };
  print_map("breakers", bs);
  print_map("buckets", ts);
  print_map("quotas", qs);
  std::printf("  resident MiB:");
  for (std::size_t i = 0; i <= segments; ++i) std::printf(" %.1f", soak::mib(rss[i]));
  std::printf("\n  resident: start %.1f MiB, at 25 %% %.1f MiB, end %.1f MiB, growth after warm-up %+.2f MiB%s\n",
              soak::mib(rss_start), soak::mib(rss_warm), soak::mib(rss_end), growth,
              soak::sanitized ? " (sanitizer build: not checked)" : "");
  std::fflush(stdout);

  // Every call accounted for.
  CHECK(total.calls == calls);
  CHECK(total.admitted + total.refused == calls);
  CHECK(total.ran == total.admitted);
  CHECK(total.other == 0);
  CHECK(total.circuit_open == bs.rejected);
  CHECK(total.rate_limited == ts.rejected);
  CHECK(total.quota_exhausted == qs.rejected);
  // Each layer refused something, and the failing keys failed.
  CHECK(total.circuit_open > 0);
  CHECK(total.rate_limited > 0);
  CHECK(total.quota_exhausted > 0);
  CHECK(total.failed > 0);

  // Every call meets the breakers, so every key was created there at least once.
  CHECK(bs.created >= keys);
  check_map("breakers", bs, breaker_max);
  check_map("buckets", ts, bucket_max);
  check_map("quotas", qs, quota_max);
  CHECK(qs.expired > 0);

  if (!soak::sanitized && rss_start != 0) {
    INFO("resident memory grew by " << growth << " MiB between 25 % and 100 % of the run (bound " << bound_mib
                                    << " MiB)");
    CHECK(growth < bound_mib);
  }
}
