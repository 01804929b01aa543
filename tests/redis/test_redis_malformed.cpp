// The Redis backends against a server that answers their scripts with
// replies the scripts cannot send (issue 26): a fake Redis on loopback that
// loads any script and answers each as the test chooses. Before the readers
// of detail/redis_reply.hpp, a grant of fewer tokens or units than asked
// became a lease of 2^64 - 1, a configure answer with a rate of 0 was taken
// as the bucket's config, and a read at slice INT64_MAX overflowed in
// usage(). Each is now an unanswered call. No redis-server is needed.
// Timeouts are long (a loaded machine may deschedule the fake server), and
// each test checks that Redis did answer (conn.stats().calls), so a timeout
// cannot pass for the refusal.
#include <armor/detail/redis_io.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/redis/fixed_window.hpp>
#include <armor/redis/sliding_window.hpp>
#include <armor/redis/quota_storage.hpp>
#include <armor/redis/token_bucket.hpp>

#include "armor_catch.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

using armor::detail::redis_script;
using command = std::vector<std::string>;

// A Redis that speaks just enough RESP: SCRIPT LOAD of any armor script
// (its SHA names the script), EVALSHA / EVAL answered by `answer`, +OK for
// anything else. One client connection at a time.
class fake_redis {
 public:
  using answer_fn = std::function<std::string(redis_script, const command&)>;

  explicit fake_redis(answer_fn answer) : answer_(std::move(answer)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("fake_redis: socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 4) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ::close(fd_);
      throw std::runtime_error("fake_redis: bind");
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  fake_redis(const fake_redis&) = delete;
  fake_redis& operator=(const fake_redis&) = delete;
  ~fake_redis() {
    stop_.store(true);
    thread_.join();
    ::close(fd_);
  }

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

 private:
  static bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 20) > 0;
  }

  void serve() {
    while (!stop_.load()) {
      if (!readable(fd_)) continue;
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      talk(c);
      ::close(c);
    }
  }

  void talk(int c) {
    std::string in;
    while (!stop_.load()) {
      command cmd;
      const std::size_t used = parse(in, cmd);
      if (used == 0) {
        if (!readable(c)) continue;
        char buf[65536];
        const ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) return;
        in.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      in.erase(0, used);
      const std::string out = respond(cmd);
      std::size_t sent = 0;
      while (sent < out.size()) {
        const ssize_t n = ::write(c, out.data() + sent, out.size() - sent);
        if (n <= 0) return;
        sent += static_cast<std::size_t>(n);
      }
    }
  }

  // One command (an array of bulk strings) off the front of `in`: the bytes
  // it took, or 0 while it is incomplete.
  static std::size_t parse(const std::string& in, command& out) {
    std::size_t at = 0;
    const auto number = [&](char type, long long& v) {
      if (at >= in.size() || in[at] != type) return false;
      const std::size_t end = in.find("\r\n", at);
      if (end == std::string::npos) return false;
      v = std::stoll(in.substr(at + 1, end - at - 1));
      at = end + 2;
      return true;
    };
    long long count = 0;
    if (!number('*', count)) return 0;
    for (long long i = 0; i < count; ++i) {
      long long len = 0;
      if (!number('$', len)) return 0;
      if (in.size() < at + static_cast<std::size_t>(len) + 2) return 0;
      out.push_back(in.substr(at, static_cast<std::size_t>(len)));
      at += static_cast<std::size_t>(len) + 2;
    }
    return at;
  }

  static std::string bulk(const std::string& s) { return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n"; }

  std::string respond(const command& cmd) {
    const auto count = static_cast<std::size_t>(redis_script::count);
    if (cmd.size() == 3 && cmd[0] == "SCRIPT" && cmd[1] == "LOAD") {
      for (std::size_t i = 0; i < count; ++i) {
        if (armor::detail::redis_script_body(static_cast<redis_script>(i)) == cmd[2]) {
          std::string sha(40, '0');
          sha.back() = static_cast<char>('0' + i);
          return bulk(sha);
        }
      }
      return "-ERR unknown script\r\n";
    }
    if (cmd.size() >= 3 && cmd[0] == "EVALSHA" && cmd[1].size() == 40) {
      const auto i = static_cast<std::size_t>(cmd[1].back() - '0');
      if (i < count) return answer_(static_cast<redis_script>(i), cmd);
    }
    if (cmd.size() >= 3 && cmd[0] == "EVAL") {
      for (std::size_t i = 0; i < count; ++i) {
        if (armor::detail::redis_script_body(static_cast<redis_script>(i)) == cmd[1]) {
          return answer_(static_cast<redis_script>(i), cmd);
        }
      }
    }
    return "+OK\r\n";
  }

  answer_fn answer_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string ints(const std::vector<std::int64_t>& v) {
  std::string s = "*" + std::to_string(v.size()) + "\r\n";
  for (const std::int64_t x : v) {
    s += ':';
    s += std::to_string(x);
    s += "\r\n";
  }
  return s;
}

// ARGV[i] (1-based) of an EVALSHA / EVAL command.
std::int64_t argv(const command& cmd, std::size_t i) {
  const std::size_t keys = std::stoul(cmd[2]);
  return std::stoll(cmd.at(2 + keys + i));
}

armor::redis_options fake_options(std::uint16_t port) {
  armor::redis_options o;
  o.host = "127.0.0.1";
  o.port = port;
  o.connections = 1;
  o.connect_timeout = 10s;
  o.command_timeout = 10s;
  return o;
}

constexpr std::int64_t tick = 100'000'000;  // 10 tokens per second: 1 tick each of 1e8 ns

}  // namespace

TEST_CASE("redis malformed: a bucket grant of fewer tokens than asked is no lease", "[redis][reply]") {
  fake_redis server([](redis_script id, const command&) -> std::string {
    if (id == redis_script::bucket_acquire) return ints({0, tick, -9 * tick, 0, 1, tick, 10, 1, tick});  // granted 0
    return ":0\r\n";
  });
  const armor::redis_connection conn{fake_options(server.port())};
  armor::redis_token_bucket<armor::manual_clock> bucket{
      {.rate = {10, 1s}, .burst = 10}, conn, {.name = "b", .lease = 4, .time = armor::redis_time_source::caller}};
  const auto d = bucket.try_acquire(1);
  CHECK_FALSE(d);
  CHECK(d.code() == armor::errc::storage_unavailable);  // fail_closed
  CHECK(bucket.leased() == 0);  // was 2^64 - 1 (read as -1)
  CHECK(bucket.stats().unanswered == 1);
  CHECK(conn.stats().calls >= 1);  // Redis answered: the reply was refused, not missed
}

TEST_CASE("redis malformed: a configure answer with a rate of 0 is refused", "[redis][reply]") {
  fake_redis server([](redis_script id, const command&) -> std::string {
    if (id == redis_script::bucket_configure) return ints({0, 0, 1, 1});
    return ":0\r\n";
  });
  const armor::redis_connection conn{fake_options(server.port())};
  armor::redis_token_bucket<armor::manual_clock> bucket{
      {.rate = {10, 1s}, .burst = 10}, conn, {.name = "c", .time = armor::redis_time_source::caller}};
  try {
    bucket.set_rate({20, 1s});
    FAIL("set_rate accepted a config of rate 0");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::storage_unavailable);
  }
  CHECK(bucket.stats().unanswered == 1);
  CHECK(conn.stats().calls >= 1);
  // The config it reports stays usable: a refusal's reset() divides by its count.
  const auto d = bucket.try_acquire(1);
  CHECK(d.reset() >= 0ns);
}

TEST_CASE("redis malformed: a quota grant of fewer units than asked is no lease", "[redis][reply]") {
  fake_redis server([](redis_script id, const command&) -> std::string {
    if (id == redis_script::quota_consume) return ints({0, 0, 0, 0, 1});  // granted 0 of a lease of 8
    return ":0\r\n";
  });
  const armor::redis_connection conn{fake_options(server.port())};
  armor::quota_tracker<armor::manual_clock, armor::redis_quota_storage> tracker{
      {.windows = {armor::quota_window::per_day(100)}},
      armor::manual_clock{},
      armor::redis_quota_storage{conn, {.tracker = "q", .lease = 8, .time = armor::redis_time_source::caller}}};
  const auto d = tracker.try_consume(1);
  CHECK_FALSE(d);
  CHECK(tracker.storage().leased() == 0);  // was 2^64 - 1 (read as -1)
  CHECK(tracker.storage().stats().unanswered == 1);
  CHECK(conn.stats().calls >= 1);
}

TEST_CASE("redis malformed: a quota read at slice INT64_MAX is refused", "[redis][reply]") {
  fake_redis server([](redis_script id, const command& cmd) -> std::string {
    if (id != redis_script::quota_read) return ":0\r\n";
    std::vector<std::int64_t> v{std::numeric_limits<std::int64_t>::max()};
    v.resize(static_cast<std::size_t>(argv(cmd, 3)) + 2, 0);  // ARGV[3]: the buckets
    return ints(v);
  });
  const armor::redis_connection conn{fake_options(server.port())};
  armor::quota_tracker<armor::manual_clock, armor::redis_quota_storage> tracker{
      {.windows = {armor::quota_window::rolling(15, 10min, 10)}},
      armor::manual_clock{},
      armor::redis_quota_storage{conn, {.tracker = "r", .time = armor::redis_time_source::caller}}};
  // usage() formed slice + 1 with it (signed overflow).
  try {
    (void)tracker.usage(0);
    FAIL("usage accepted slice INT64_MAX");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::storage_unavailable);
  }
  CHECK(conn.stats().calls >= 1);
}

TEST_CASE("redis malformed: window answers the scripts cannot send are refused", "[redis][reply]") {
  // Each reply below breaks one rule of detail::redis_window_reply; the
  // caller's window index and offset are ARGV[2] and ARGV[3].
  struct bad {
    const char* what;
    redis_script script;
    std::function<std::vector<std::int64_t>(std::int64_t i, std::int64_t e)> reply;
  };
  const std::vector<bad> cases{
      {"another window index than the caller's", redis_script::window_fixed,
       [](std::int64_t i, std::int64_t e) { return std::vector<std::int64_t>{0, i + 1, e, i + 1, 0}; }},
      {"an offset of a whole window", redis_script::window_fixed,
       [](std::int64_t i, std::int64_t) { return std::vector<std::int64_t>{0, i, 1'000'000'000, i, 0}; }},
      {"a grant beyond the limit", redis_script::window_fixed,
       [](std::int64_t i, std::int64_t e) { return std::vector<std::int64_t>{0, i, e, i, 5}; }},
      {"a denial with room", redis_script::window_fixed,
       [](std::int64_t i, std::int64_t e) { return std::vector<std::int64_t>{1, i, e, i, 0}; }},
      {"a negative count", redis_script::window_fixed,
       [](std::int64_t i, std::int64_t e) { return std::vector<std::int64_t>{0, i, e, i, -1}; }},
      {"a window far ahead (overflow of reset)", redis_script::window_fixed,
       [](std::int64_t i, std::int64_t e) { return std::vector<std::int64_t>{0, i, e, INT64_MAX, 0}; }},
      {"too large for a small call", redis_script::window_fixed,
       [](std::int64_t i, std::int64_t e) { return std::vector<std::int64_t>{2, i, e, i, 0}; }},
      {"a fixed answer of six numbers", redis_script::window_fixed,
       [](std::int64_t i, std::int64_t e) { return std::vector<std::int64_t>{0, i, e, i, 0, 0}; }},
      {"an exact denial with nothing to wait for", redis_script::window_exact,
       [](std::int64_t i, std::int64_t e) { return std::vector<std::int64_t>{1, i, e, i, 5, 2, 0}; }},
      {"an exact roll-off past the segments", redis_script::window_exact,
       [](std::int64_t i, std::int64_t e) { return std::vector<std::int64_t>{0, i, e, i, 1, 11, 0}; }},
      {"an exact grant counting less than itself", redis_script::window_exact,
       [](std::int64_t i, std::int64_t e) { return std::vector<std::int64_t>{0, i, e, i, 0, 1, 0}; }},
      {"an approximate denial of a call that fits", redis_script::window_approx,
       [](std::int64_t i, std::int64_t e) { return std::vector<std::int64_t>{1, i, e, i, 0, 0}; }},
      {"an approximate grant over the limit", redis_script::window_approx,
       [](std::int64_t i, std::int64_t e) { return std::vector<std::int64_t>{0, i, e, i, 5, 4}; }},
  };
  for (const bad& c : cases) {
    INFO(c.what);
    fake_redis server([&](redis_script id, const command& cmd) -> std::string {
      if (id == c.script) return ints(c.reply(argv(cmd, 2), argv(cmd, 3)));
      return ":0\r\n";
    });
    const armor::redis_connection conn{fake_options(server.port())};
    const armor::manual_clock clock{std::chrono::nanoseconds{1'718'452'800'123'456'789}};
    const armor::redis_window_options o{.name = "w", .time = armor::redis_time_source::caller};
    armor::window_decision d = armor::redis_fixed_window<armor::manual_clock>{
        {.limit = 5, .window = 1s}, conn, o, clock}.try_acquire(1);
    if (c.script == redis_script::window_exact) {
      armor::redis_sliding_window<armor::manual_clock> w{{.limit = 5, .window = 10s, .segments = 10}, conn, o, clock};
      d = w.try_acquire(1);
      CHECK(w.stats().unanswered == 1);
    } else if (c.script == redis_script::window_approx) {
      armor::redis_sliding_window<armor::manual_clock> w{
          {.limit = 5, .window = 1s, .algorithm = armor::sliding_window_algorithm::approximate}, conn, o, clock};
      d = w.try_acquire(1);
      CHECK(w.stats().unanswered == 1);
    }
    CHECK_FALSE(d);
    CHECK(d.code() == armor::errc::storage_unavailable);  // fail_closed
    CHECK(d.retry_after() == std::chrono::nanoseconds{0});
    CHECK(conn.stats().calls >= 1);  // Redis answered: the reply was refused, not missed
  }
}
