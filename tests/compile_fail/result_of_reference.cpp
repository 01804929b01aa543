// armor::result holding a reference.
// expect: armor::result<T>: T must not be a reference
#include <armor/result.hpp>

int main() {
  int answer = 42;
#ifdef ARMOR_COMPILE_FAIL_FIXED
  armor::result<int*> r(std::in_place, &answer);
#else
  armor::result<int&> r(std::in_place, answer);
#endif
  return r.has_value() ? 0 : 1;
}
