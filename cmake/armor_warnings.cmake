# armor_set_warnings(<target>)
#
# Warnings for armor's own tests, examples and benchmarks; never for the
# armor::armor interface target, whose users choose their own flags.
# -Werror unless ARMOR_WERROR is OFF (say, for a compiler newer than CI's).
# Also -std=c++20 rather than gnu++20.
#
# It also marks the target as armor's own (ARMOR_DEVELOPER_TARGET), so that it
# sees armor's headers through -I rather than -isystem: otherwise the compiler
# would keep quiet about warnings in exactly the code these flags are for.
function(armor_set_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "^(GNU|Clang|AppleClang)$")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow)
    if(ARMOR_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
  elseif(MSVC)
    target_compile_options(${target} PRIVATE /W4 /permissive-)
    if(ARMOR_WERROR)
      target_compile_options(${target} PRIVATE /WX)
    endif()
  endif()
  # Standard C++ without GNU extensions, so armor's own code stays portable.
  set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF ARMOR_DEVELOPER_TARGET ON)
endfunction()
