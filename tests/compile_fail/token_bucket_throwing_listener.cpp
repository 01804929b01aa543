// A token bucket listener that may throw.
// expect: armor::token_bucket: Listener must be no_listener or callable as
// expect: listener(const armor::token_bucket_event&) noexcept
#include <armor/clock.hpp>
#include <armor/token_bucket.hpp>

#include <chrono>

using namespace std::chrono_literals;

int main() {
  int refusals = 0;
#ifdef ARMOR_COMPILE_FAIL_FIXED
  auto on_refusal = [&](const armor::token_bucket_event&) noexcept { ++refusals; };
#else
  auto on_refusal = [&](const armor::token_bucket_event&) { ++refusals; };
#endif
  armor::token_bucket bucket{{.rate = {10, 1s}, .burst = 5}, armor::steady_clock{}, on_refusal};
  return bucket.try_acquire() ? 0 : 1;
}
