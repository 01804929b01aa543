// A backoff whose jitter comes from a 32-bit generator.
// expect: armor::backoff: the random source must produce the full 64-bit range
#include <armor/backoff.hpp>
#include <armor/pipeline.hpp>

#include <functional>
#include <random>

int main() {
#ifdef ARMOR_COMPILE_FAIL_FIXED
  armor::backoff retry{{.max_attempts = 3}, std::mt19937_64{42}};
#else
  armor::backoff retry{{.max_attempts = 3}, std::mt19937{42}};
#endif
  auto p = armor::pipeline{std::ref(retry)};
  return p.execute([] { return 0; });
}
