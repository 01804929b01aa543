// armor::keyed over breakers whose listener cannot be copied: every key's
// breaker gets a copy of the map's listener.
// expect: armor::keyed<P>: P's listener must be copyable
#include <armor/circuit_breaker.hpp>
#include <armor/keyed.hpp>

#include <functional>
#include <memory>

struct transition_log {
  std::unique_ptr<int> transitions = std::make_unique<int>(0);  // move-only
  void operator()(const armor::circuit_breaker_event&) const noexcept { ++*transitions; }
};

int main() {
  transition_log log;
#ifdef ARMOR_COMPILE_FAIL_FIXED
  using breaker = armor::circuit_breaker<armor::steady_clock, std::reference_wrapper<transition_log>>;
  armor::keyed<breaker> per_host{armor::circuit_breaker_options{}, {.max_keys = 8}, armor::steady_clock{},
                                 std::ref(log)};
#else
  using breaker = armor::circuit_breaker<armor::steady_clock, transition_log>;
  armor::keyed<breaker> per_host{armor::circuit_breaker_options{}, {.max_keys = 8}, armor::steady_clock{},
                                 std::move(log)};
#endif
  return per_host.size() == 0 ? 0 : 1;
}
