// armor::keyed over a type that does not speak the policy protocol (it has
// no settle()).
// expect: armor::keyed<P>: P must be an armor::policy (admit and settle)
#include <armor/clock.hpp>
#include <armor/keyed.hpp>
#include <armor/policy.hpp>

struct call_counter_options {
  long limit = 100;
};

struct call_counter {
  using permit_type = armor::no_permit;
  using options_type = call_counter_options;
  using clock_type = armor::steady_clock;

  call_counter(const call_counter_options& options, armor::steady_clock) : limit(options.limit) {}
  armor::admission<> admit(armor::context&) noexcept { return armor::admission<>::admit(); }
#ifdef ARMOR_COMPILE_FAIL_FIXED
  void settle(armor::context&, armor::no_permit, const armor::verdict&) noexcept {}
#endif
  bool idle(armor::timestamp) const noexcept { return true; }

  long limit;
};

int main() {
  armor::keyed<call_counter> per_user{{.limit = 10}, {.max_keys = 8}};
  return per_user.get("alice")->limit == 10 ? 0 : 1;
}
