// Soak: 10 000 runtime reconfigurations of token buckets (set_rate,
// set_burst) while threads call through a pipeline that uses them: a shared
// bucket, and a keyed map whose instances are reconfigured one key at a
// time while keys are created and evicted. Checked:
//
//   - every call is accounted for: admitted + refused == calls, the shared
//     bucket (count_calls) decided every call, and the refusals are exactly
//     the shared bucket's plus the map's;
//   - the shared bucket never granted more than its first burst plus the
//     highest rate it was given times the time that passed (a change keeps
//     the tokens, never adds any), and ends with the last rate and burst set;
//   - the resident memory (/proc/self/statm), read by the reconfiguring
//     thread at 25 % and at 100 % of its changes, grows by less than
//     max_growth_mib.
//
// Bounded form (CTest, label soak): 3 x 300 000 calls. Full form
// (ARMOR_SOAK=full, scripts/soak): 3 x 3 million calls. 10 000 changes in
// both (ARMOR_SOAK_RECONFIGURATIONS overrides). Only the token bucket can be
// reconfigured at run time so far. No thread waits for another but at the
// final join.
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "soak_common.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int callers = 3;
constexpr double max_growth_mib = 2.0;
// Rates the reconfiguring thread picks from, in tokens a second, and bursts.
constexpr std::int64_t min_rate = 5'000;
constexpr std::int64_t max_rate = 50'000;
constexpr std::int64_t min_burst = 10;
constexpr std::int64_t max_burst = 200;
constexpr std::int64_t first_burst = 100;

struct alignas(64) tally {
  std::uint64_t calls = 0;
  std::uint64_t admitted = 0;
  std::uint64_t refused = 0;
  std::uint64_t other = 0;
};

}  // namespace

TEST_CASE("soak: 10 000 token bucket reconfigurations under load keep counts exact, limits kept and memory flat") {
  const bool full = soak::full();
  const std::uint64_t calls_each = soak::size_from_env("ARMOR_SOAK_RECONFIGURE_CALLS", full ? 3'000'000 : 300'000);
  const std::uint64_t changes = soak::size_from_env("ARMOR_SOAK_RECONFIGURATIONS", 10'000);

  armor::manual_clock clock{24h};
  const auto start = clock.now();
  armor::token_bucket<armor::manual_clock> shared{
      {.rate = {20'000, 1s}, .burst = first_burst, .count_calls = true}, clock};
  armor::keyed<armor::token_bucket<armor::manual_clock>> per_key{{.rate = {10, 1s}, .burst = 5}, {.max_keys = 2048},
                                                                 clock};
  const auto p = armor::pipeline{clock, std::ref(shared), std::ref(per_key)};

  std::array<tally, callers + 1> tallies{};
  const auto call = [&](std::uint64_t i, tally& t, char (&buf)[32]) {
    const auto r = p.try_execute([] { return 1; }, {.key = soak::make_key(buf, "k", i % 1024)});
    ++t.calls;
    if (r.has_value()) {
      ++t.admitted;
    } else {
      ++t.refused;
      if (r.code() != armor::errc::rate_limited) ++t.other;
    }
  };

  std::uint64_t rss_start = 0;
  std::uint64_t rss_quarter = 0;
  std::uint64_t rss_end = 0;
  std::int64_t last_rate = 20'000;
  std::int64_t last_burst = first_burst;
  const auto started = std::chrono::steady_clock::now();

  std::vector<std::thread> pool;
  for (int id = 0; id < callers; ++id) {
    pool.emplace_back([&, id] {
      tally& t = tallies[static_cast<std::size_t>(id)];
      char buf[32];
      for (std::uint64_t i = 0; i < calls_each; ++i) {
        call(i * callers + static_cast<std::uint64_t>(id), t, buf);
        if (i % 16 == 15) clock.advance(1ms);
      }
    });
  }
  // The reconfiguring thread: a change, then a few calls of its own, so
  // that changes and calls interleave whatever the scheduler does.
  pool.emplace_back([&] {
    tally& t = tallies[callers];
    char buf[32];
    rss_start = soak::resident_bytes();
    std::uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (std::uint64_t n = 0; n < changes; ++n) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      const std::int64_t rate = min_rate + static_cast<std::int64_t>(x % (max_rate - min_rate + 1));
      const std::int64_t burst = min_burst + static_cast<std::int64_t>((x >> 32) % (max_burst - min_burst + 1));
      switch (n % 4) {
        case 0:
          shared.set_rate({rate, 1s}, burst);
          last_rate = rate;
          last_burst = burst;
          break;
        case 1:
          shared.set_rate({rate, 1s});
          last_rate = rate;
          break;
        case 2:
          shared.set_burst(burst);
          last_burst = burst;
          break;
        default: {
          // One key's own bucket (keys the callers do not use, 4096 of them,
          // so that the map evicts): it is never idle again.
          auto h = per_key.get(soak::make_key(buf, "r", x % 4096));
          h->set_rate({rate / 1000, 1s}, burst / 10);
          break;
        }
      }
      for (int k = 0; k < 4; ++k) call(x + static_cast<std::uint64_t>(k), t, buf);
      if (n + 1 == changes / 4) rss_quarter = soak::resident_bytes();
    }
    rss_end = soak::resident_bytes();
  });
  for (auto& th : pool) th.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  tally total;
  for (const auto& t : tallies) {
    total.calls += t.calls;
    total.admitted += t.admitted;
    total.refused += t.refused;
    total.other += t.other;
  }
  const armor::token_bucket_stats ss = shared.stats();
  const armor::keyed_stats ks = per_key.stats();
  const auto elapsed = clock.now() - start;
  const double growth = soak::mib(rss_end) - soak::mib(rss_quarter);
  std::printf(
      "soak reconfigure: %llu changes, %llu calls in %.1f s (%d threads + 1): admitted %llu, refused %llu (shared "
      "bucket %llu, per key %llu); per-key map: created %llu, evicted %llu\n",
      static_cast<unsigned long long>(changes), static_cast<unsigned long long>(total.calls), seconds, callers,
      static_cast<unsigned long long>(total.admitted), static_cast<unsigned long long>(total.refused),
      static_cast<unsigned long long>(ss.rejected), static_cast<unsigned long long>(ks.rejected),
      static_cast<unsigned long long>(ks.created), static_cast<unsigned long long>(ks.removed()));
  std::printf("  resident: start %.1f MiB, at 25 %% %.1f MiB, end %.1f MiB, growth after warm-up %+.2f MiB%s\n",
              soak::mib(rss_start), soak::mib(rss_quarter), soak::mib(rss_end), growth,
              soak::sanitized ? " (sanitizer build: not checked)" : "");
  std::fflush(stdout);

  const std::uint64_t calls = calls_each * callers + changes * 4;
  CHECK(total.calls == calls);
  CHECK(total.admitted + total.refused == calls);
  CHECK(total.other == 0);
  CHECK(ss.counting);
  CHECK(ss.granted + ss.rejected == calls);
  CHECK(ss.too_large == 0);
  CHECK(total.refused == ss.rejected + ks.rejected);
  CHECK(ss.rejected > 0);
  CHECK(ks.rejected > 0);
  // No change adds tokens: at most the first burst, plus the highest rate
  // over the whole run.
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
  CHECK(ss.granted <= static_cast<std::uint64_t>(first_burst + max_rate * ms / 1000 + 1));
  // rate() reads back in lowest terms: {20000, 1s} as {1, 50us}.
  CHECK(shared.rate().count * 1'000'000'000 == last_rate * shared.rate().per.count());
  CHECK(shared.burst() == last_burst);
  CHECK(ks.keys + ks.removed() == ks.created);
  CHECK(ks.removed() > 0);

  if (!soak::sanitized && rss_start != 0) {
    INFO("resident memory grew by " << growth << " MiB between 25 % and 100 % of the changes (bound " << max_growth_mib
                                    << " MiB)");
    CHECK(growth < max_growth_mib);
  }
}
