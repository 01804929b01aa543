// scrape.hpp: a tiny HTTP/1.0 client for the loopback Exposer, and a parser
// of the text exposition that compares two of them series by series.
#pragma once

#include <prometheus/exposer.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace armor_test {

/// The test process's one Exposer, on 127.0.0.1 and a port the system
/// chooses: civetweb takes 2 s to stop, so the tests share one and pay
/// that once, at exit. Each test removes the collectables it registers.
inline prometheus::Exposer& shared_exposer() {
  static prometheus::Exposer exposer{"127.0.0.1:0"};
  return exposer;
}

inline int shared_port() { return shared_exposer().GetListeningPorts().at(0); }

/// GET `path` from 127.0.0.1:`port`; the whole response (status line,
/// headers, body), or "" when the connection fails. Every wait is bounded
/// (20 s per read: generous for a loaded machine), so a stuck server fails
/// the test rather than hanging it.
inline std::string http_get(int port, std::string_view path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return {};
  timeval timeout{};
  timeout.tv_sec = 20;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return {};
  }
  std::string request = "GET ";
  request.append(path);
  request.append(" HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  std::size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  std::string response;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;  // closed, or 20 s without a byte
    response.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return response;
}

/// The body of an HTTP response ("" without one).
inline std::string body_of(const std::string& response) {
  const std::size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? std::string{} : response.substr(at + 4);
}

/// A text exposition as families (name -> "type|help") and series
/// (name{labels sorted} -> value), so that two writers that order labels or
/// print numbers differently compare equal when they say the same.
struct exposition {
  std::map<std::string, std::string> families;
  std::map<std::string, double> series;
  std::vector<std::string> errors;
};

inline exposition parse_exposition(std::string_view text) {
  exposition e;
  std::map<std::string, std::string> help;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (line.empty()) continue;
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      const std::string_view rest = line.substr(7);
      const std::size_t sp = rest.find(' ');
      const std::string name(rest.substr(0, sp));
      const std::string what(sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1));
      if (line[2] == 'H') {
        help[name] = what;
      } else {
        e.families[name] = what + "|" + help[name];
      }
      continue;
    }
    if (line[0] == '#') continue;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    std::string key(line.substr(0, i));
    std::vector<std::string> labels;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const std::size_t eq = line.find('=', i);
        if (eq == std::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
          e.errors.push_back("bad labels: " + std::string(line));
          break;
        }
        std::size_t j = eq + 2;
        while (j < line.size() && line[j] != '"') j += line[j] == '\\' ? 2 : 1;
        labels.emplace_back(line.substr(i, j + 1 - i));  // name="escaped value"
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;
    }
    std::sort(labels.begin(), labels.end());
    key += '{';
    for (const std::string& l : labels) key += l + ",";
    key += '}';
    while (i < line.size() && line[i] == ' ') ++i;
    const std::string value(line.substr(i));
    double v = 0;
    if (value == "+Inf") {
      v = 1e308 * 10;
    } else if (value == "-Inf") {
      v = -1e308 * 10;
    } else if (value == "NaN") {
      v = -0.0;  // compared as a marker; armor writes no NaN sample in these tests
    } else {
      char* end = nullptr;
      v = std::strtod(value.c_str(), &end);
      if (end == value.c_str()) e.errors.push_back("bad value: " + std::string(line));
    }
    if (!e.series.emplace(key, v).second) e.errors.push_back("series twice: " + key);
  }
  return e;
}

}  // namespace armor_test
