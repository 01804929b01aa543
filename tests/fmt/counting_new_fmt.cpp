// The allocation counter of tests/alloc, built into armor_fmt_tests too, so
// that test_prometheus.cpp can hold the exporter to "no allocation beyond the
// output buffer". It counts per thread and changes nothing else.
#include "alloc/counting_new.cpp"  // NOLINT(bugprone-suspicious-include)
