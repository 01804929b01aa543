// armor::keyed over a built-in policy that keeps no per-key state
// (armor::hedge: not built from (options, clock), no idle()).
// expect: armor::keyed<P>: P must be constructible from (const Options&, Clock[, std::string_view key])
#include <armor/hedge.hpp>
#include <armor/keyed.hpp>
#include <armor/token_bucket.hpp>

#include <chrono>

using namespace std::chrono_literals;

int main() {
#ifdef ARMOR_COMPILE_FAIL_FIXED
  armor::keyed<armor::token_bucket<>> per_key{{.rate = {10, 1s}}, {.max_keys = 8}};
#else
  armor::keyed<armor::hedge> per_key{{.max_attempts = 2}, {.max_keys = 8}};
#endif
  return per_key.size() == 0 ? 0 : 1;
}
