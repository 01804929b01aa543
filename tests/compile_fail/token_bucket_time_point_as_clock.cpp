// A time point given where the token bucket wants its clock.
// expect: armor::token_bucket: Clock must have now() returning its time_point
#include <armor/clock.hpp>
#include <armor/token_bucket.hpp>

#include <chrono>

using namespace std::chrono_literals;

int main() {
#ifdef ARMOR_COMPILE_FAIL_FIXED
  armor::token_bucket bucket{{.rate = {10, 1s}, .burst = 5}, armor::steady_clock{}};
#else
  armor::token_bucket bucket{{.rate = {10, 1s}, .burst = 5}, armor::steady_clock::now()};
#endif
  return bucket.try_acquire() ? 0 : 1;
}
