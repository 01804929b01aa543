// Runs the same work in several forked processes and adds up what they
// report: how the Redis tests check that processes sharing one limit admit
// exactly that limit. Each child runs `work()`, which returns
// {units admitted, whether the refusal that ended its loop was the expected
// one}; the parent checks every child exited cleanly. CHECKs stay in the
// parent (a child only reports through its pipe and its exit status).
#pragma once

#include "armor_catch.hpp"

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace armor_test {

/// What one child reports: the units it got, and whether it then saw the
/// refusal it expected.
struct child_report {
  std::int64_t units = 0;
  bool refused_as_expected = false;
};

template <class Work>
std::int64_t sum_over_children(int children, Work work) {
  std::vector<std::pair<pid_t, int>> kids;
  for (int c = 0; c < children; ++c) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      int status = 0;
      try {
        const child_report r = work();
        if (!r.refused_as_expected) status = 4;
        if (::write(fds[1], &r.units, sizeof r.units) != static_cast<ssize_t>(sizeof r.units)) status = 2;
      } catch (...) {
        status = 3;
      }
      ::_exit(status);
    }
    ::close(fds[1]);
    kids.emplace_back(pid, fds[0]);
  }
  std::int64_t total = 0;
  for (auto [pid, fd] : kids) {
    std::int64_t n = 0;
    CHECK(::read(fd, &n, sizeof n) == static_cast<ssize_t>(sizeof n));
    total += n;
    ::close(fd);
    int status = 0;
    ::waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  return total;
}

}  // namespace armor_test
