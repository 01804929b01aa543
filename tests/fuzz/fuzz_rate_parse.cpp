// Fuzzes armor::rate::parse and armor::token_bucket_options::parse: any
// bytes. Properties: they either return or throw armor::error with
// errc::invalid_argument (nothing else); a parsed rate and options are
// within the documented ranges (count >= 1, per > 0, burst >= 1, max_wait
// >= 0); a rate that parses alone parses the same as options; the numbers
// written back ("<count>/<per>ns, burst=<b>, max_wait=<w>ns") parse to the
// same values; and a parse that succeeds builds a token bucket, or the
// bucket refuses it at construction with invalid_argument (a rate above one
// per nanosecond, a burst too long for the bucket's span).
#include "fuzz_common.hpp"

#include <armor/rate.hpp>
#include <armor/token_bucket.hpp>

#include <optional>
#include <string>

namespace {
template <class F>
auto parsed(F&& f) -> std::optional<decltype(f())> {
  try {
    return f();
  } catch (const armor::error& e) {
    ARMOR_FUZZ_CHECK(e.code() == armor::errc::invalid_argument);
  }
  return std::nullopt;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto r = parsed([&] { return armor::rate::parse(text); });
  const auto o = parsed([&] { return armor::token_bucket_options::parse(text); });
  if (r) {
    ARMOR_FUZZ_CHECK(r->count >= 1 && r->per.count() >= 1);
    ARMOR_FUZZ_CHECK(o.has_value());  // a rate alone is valid options
    ARMOR_FUZZ_CHECK(o->rate.count == r->count && o->rate.per == r->per);
    ARMOR_FUZZ_CHECK(o->burst == 1 && o->max_wait.count() == 0);
  }
  if (!o) return 0;
  ARMOR_FUZZ_CHECK(o->rate.count >= 1 && o->rate.per.count() >= 1);
  ARMOR_FUZZ_CHECK(o->burst >= 1);
  ARMOR_FUZZ_CHECK(o->max_wait.count() >= 0);
  const std::string again = std::to_string(o->rate.count) + "/" + std::to_string(o->rate.per.count()) +
                            "ns, burst=" + std::to_string(o->burst) +
                            " max_wait=" + std::to_string(o->max_wait.count()) + "ns";
  const auto back = parsed([&] { return armor::token_bucket_options::parse(again); });
  ARMOR_FUZZ_CHECK(back.has_value());
  ARMOR_FUZZ_CHECK(back->rate.count == o->rate.count && back->rate.per == o->rate.per && back->burst == o->burst &&
                   back->max_wait == o->max_wait);
  const auto bucket = parsed([&] {
    armor::token_bucket<armor::manual_clock> b{*o, armor::manual_clock{}};
    return b.burst();
  });
  if (bucket) ARMOR_FUZZ_CHECK(*bucket == o->burst);
  return 0;
}
