// A program using armor::fmt.
#include <armor/armor.hpp>
#if __has_include(<armor/fmt.hpp>)
#include <armor/fmt.hpp>
#endif

#include <fmt/format.h>

int main() { return fmt::format("{}", ARMOR_VERSION_MAJOR).empty() ? 1 : 0; }
