// What the one type for every URL costs on the memory backend, in one run:
// token_bucket::try_acquire against any_token_bucket::try_acquire built from
// memory: (one virtual call more), granted, with the time given; and a keyed
// call (a held key) through keyed<token_bucket<>> against the same through
// any_token_bucket. Single thread. Run with --benchmark_repetitions and read
// medians on shared machines.
#include <armor/any_token_bucket.hpp>
#include <armor/keyed.hpp>
#include <armor/token_bucket.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <string_view>

namespace {

using namespace std::chrono_literals;

// A rate so high that nothing is ever denied: every call is a grant.
const armor::token_bucket_options fast{.rate = {1'000'000'000, 1s}, .burst = 1'000'000};

void token_bucket_grant(benchmark::State& state) {
  armor::token_bucket<> b{fast};
  std::int64_t t = 0;
  for (auto _ : state) {
    t += 1000;
    benchmark::DoNotOptimize(b.try_acquire(1, armor::timestamp{std::chrono::nanoseconds{t}}));
  }
}
BENCHMARK(token_bucket_grant);

void any_token_bucket_grant(benchmark::State& state) {
  armor::any_token_bucket<> b = armor::make_token_bucket("memory:", fast);
  std::int64_t t = 0;
  for (auto _ : state) {
    t += 1000;
    benchmark::DoNotOptimize(b.try_acquire(1, armor::timestamp{std::chrono::nanoseconds{t}}));
  }
}
BENCHMARK(any_token_bucket_grant);

constexpr std::string_view key = "10.0.0.7";

void keyed_token_bucket_held_key(benchmark::State& state) {
  armor::keyed<armor::token_bucket<>> m{fast};
  std::int64_t t = 0;
  for (auto _ : state) {
    t += 1000;
    const armor::timestamp now{std::chrono::nanoseconds{t}};
    benchmark::DoNotOptimize(m.get(key, now)->try_acquire(1, now));
  }
}
BENCHMARK(keyed_token_bucket_held_key);

void any_token_bucket_held_key(benchmark::State& state) {
  armor::any_token_bucket<> b = armor::make_token_bucket("memory:", fast);
  std::int64_t t = 0;
  for (auto _ : state) {
    t += 1000;
    benchmark::DoNotOptimize(b.try_acquire(key, 1, armor::timestamp{std::chrono::nanoseconds{t}}));
  }
}
BENCHMARK(any_token_bucket_held_key);

}  // namespace

BENCHMARK_MAIN();
