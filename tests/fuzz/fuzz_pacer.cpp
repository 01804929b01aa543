// Fuzzes armor::http::pacer::observe (and pace()) on a token bucket: any
// options the constructors accept, then a series of responses (any
// rate-limit headers) at advancing times.
//
// Properties: observe never throws once the pacer is built (every target is
// one the bucket accepts); the bucket never runs faster than the ceiling nor
// with a burst above max_burst (or below 1); a target's rate and burst obey
// the same bounds; the tokens held never exceed the burst.
#include "fuzz_common.hpp"

#include <armor/http/headers.hpp>
#include <armor/http/pacer.hpp>
#include <armor/token_bucket.hpp>

namespace {
constexpr std::string_view names[] = {"RateLimit",         "RateLimit-Policy",      "RateLimit-Remaining",
                                      "RateLimit-Reset",   "X-RateLimit-Remaining", "X-RateLimit-Reset",
                                      "X-RateLimit-Limit", "X-RateLimit-Reset-After"};

using i128 = armor_fuzz::i128;

/// a <= b as rates.
bool not_faster(const armor::rate& a, const armor::rate& b) {
  return i128{a.count} * b.per.count() <= i128{b.count} * a.per.count();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace http = armor::http;
  using namespace std::chrono;
  armor_fuzz::input in(data, size);
  http::pacer_options o;
  o.ceiling.count = 1 + static_cast<std::int64_t>(static_cast<std::uint64_t>(in.i64()) % 1'000'000);
  o.ceiling.per = nanoseconds{1 + static_cast<std::int64_t>(static_cast<std::uint64_t>(in.i64()) % 3'600'000'000'000)};
  o.max_burst = 1 + in.byte() % 64;
  o.margin = milliseconds{in.byte() * 40};
  o.reserve = in.byte() % 16;
  o.min_horizon = milliseconds{1 + in.byte() * 4};
  const nanoseconds max_wait = seconds{in.byte() % 61};
  armor::manual_clock clock;
  std::optional<armor::token_bucket<armor::manual_clock>> bucket;
  std::optional<http::pacer<armor::token_bucket<armor::manual_clock>>> pacer;
  try {
    bucket.emplace(armor::token_bucket_options{.rate = o.ceiling, .burst = o.max_burst, .max_wait = max_wait}, clock);
    pacer.emplace(*bucket, o);
  } catch (const armor::error& e) {
    ARMOR_FUZZ_CHECK(e.code() == armor::errc::invalid_argument);
    return 0;  // options refused at construction, as documented
  }
  const http::wall_time wall0 = armor_fuzz::wall_time_from(in);
  nanoseconds elapsed{0};
  while (!in.empty()) {
    elapsed += milliseconds{(in.byte() << 8 | in.byte()) * 7};
    const armor::timestamp now{elapsed};
    const int lines = 1 + in.byte() % 4;
    http::header_map h;
    for (int i = 0; i < lines && !in.empty(); ++i) {
      const std::string_view line = in.line();
      if (!line.empty()) h.add(names[static_cast<unsigned char>(line.front()) % std::size(names)], line.substr(1));
    }
    // The wall clock moves with the bucket's, stopping at its end.
    const http::wall_time wall = armor_fuzz::ns_of(wall0) > armor_fuzz::ns_of(http::wall_time::max()) - elapsed.count()
                                     ? http::wall_time::max()
                                     : wall0 + duration_cast<http::wall_time::duration>(elapsed);
    const http::rate_limit_info info = http::read_rate_limit(h, wall);
    const auto direct = http::pace(info, o, bucket->available(now), bucket->max_wait());
    std::optional<http::pace_target> t;
    try {
      t = pacer->observe(h, wall, now);
    } catch (...) {
      ARMOR_FUZZ_CHECK(!"observe threw");
    }
    if (direct) {
      ARMOR_FUZZ_CHECK(t.has_value());
      ARMOR_FUZZ_CHECK(t->rate == direct->rate && t->burst == direct->burst);
    }
    if (t) {
      ARMOR_FUZZ_CHECK(not_faster(t->rate, o.ceiling));
      ARMOR_FUZZ_CHECK(t->burst >= 1 && t->burst <= o.max_burst);
      ARMOR_FUZZ_CHECK(t->horizon.count() >= 0);
    }
    ARMOR_FUZZ_CHECK(not_faster(bucket->rate(), o.ceiling));
    ARMOR_FUZZ_CHECK(bucket->burst() >= 1 && bucket->burst() <= o.max_burst);
    ARMOR_FUZZ_CHECK(bucket->available(now) <= bucket->burst());
    ARMOR_FUZZ_CHECK(bucket->stats(now).available <= bucket->burst());
    (void)bucket->try_acquire(1, now);
  }
  return 0;
}
