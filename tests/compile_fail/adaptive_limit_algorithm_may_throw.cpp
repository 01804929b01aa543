// A limit algorithm whose step may throw: it runs while a window is being
// closed, with the window claimed; an exception there would leave the claim
// held and the limit never updated again.
// expect: armor::adaptive_limit: Algorithm must meet armor::limit_algorithm
#include <armor/adaptive_limit.hpp>

struct halve_on_drop {
  struct state {};
  void check() const {}
#ifdef ARMOR_COMPILE_FAIL_FIXED
  double next(const armor::adaptive_limit_window& w, state&) const noexcept {
#else
  double next(const armor::adaptive_limit_window& w, state&) const {
#endif
    return w.drops() > 0 ? w.limit / 2 : w.limit + 1;
  }
};

int main() {
  armor::adaptive_limit<halve_on_drop> limit{{}};
  return limit.try_acquire() ? 0 : 1;
}
