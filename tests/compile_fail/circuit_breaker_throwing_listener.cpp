// A circuit breaker listener that may throw.
// expect: armor::circuit_breaker: Listener must be no_listener or callable as listener(const armor::circuit_breaker_event&) noexcept
#include <armor/circuit_breaker.hpp>
#include <armor/clock.hpp>

#include <chrono>

using namespace std::chrono_literals;

int main() {
  int opened = 0;
#ifdef ARMOR_COMPILE_FAIL_FIXED
  auto on_transition = [&](const armor::circuit_breaker_event& e) noexcept {
    if (e.to == armor::breaker_state::open) ++opened;
  };
#else
  auto on_transition = [&](const armor::circuit_breaker_event& e) {
    if (e.to == armor::breaker_state::open) ++opened;
  };
#endif
  armor::circuit_breaker breaker{{.failure_threshold = 5, .open_for = 30s}, armor::steady_clock{}, on_transition};
  return breaker.try_acquire() ? 0 : 1;
}
