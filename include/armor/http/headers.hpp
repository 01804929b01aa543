// armor/http/headers.hpp: reading a response's status and headers, whatever
// the response type: the concept armor::http::response, http::header(r, name)
// and http::status(r), and header_map, which collects raw header lines.
//
//     armor::http::header_map h;               // fed by libcurl's CURLOPT_HEADERFUNCTION
//     h.add_line("HTTP/1.1 429 Too Many Requests\r\n");
//     h.add_line("Retry-After: 3\r\n");
//     int code = armor::http::status(h);                     // 429
//     auto retry = armor::http::header(h, "retry-after");    // std::optional: "3"
//
// A type with an `int status` member and a `headers` range of name/value
// pairs (httplib::Response) works as it is; any other type customizes by
// argument-dependent lookup (armor_http_header, armor_http_status below).
// See docs/http.md ("Reading any response type").
#pragma once

#include <armor/detail/http_parse.hpp>

#include <concepts>
#include <cstddef>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace armor::http {

namespace detail {

template <class R>
concept adl_header = requires(const R& r, std::string_view name) {
  { armor_http_header(r, name) } -> std::convertible_to<std::optional<std::string_view>>;
};

template <class R>
concept adl_status = requires(const R& r) {
  { armor_http_status(r) } -> std::convertible_to<int>;
};

template <class R>
concept member_headers = requires(const R& r) {
  std::begin(r.headers);
  std::end(r.headers);
  { std::string_view((*std::begin(r.headers)).first) };
  { std::string_view((*std::begin(r.headers)).second) };
};

template <class R>
concept member_status = requires(const R& r) {
  { r.status } -> std::convertible_to<int>;
};

}  // namespace detail

/// A type armor can read an HTTP status and headers from. Either the type's
/// namespace declares, for argument-dependent lookup,
///
///     std::optional<std::string_view> armor_http_header(const my_response&, std::string_view name);
///     int armor_http_status(const my_response&);
///
/// (each is used when present), or the type has an `int status` member and a
/// `headers` range of pairs whose first and second convert to std::string_view.
template <class R>
concept response = (detail::adl_header<R> || detail::member_headers<R>) &&
                   (detail::adl_status<R> || detail::member_status<R>);

/// The value of the first header called `name` (case-insensitive when armor
/// searches a `headers` range; as the user function decides otherwise).
template <response R>
[[nodiscard]] std::optional<std::string_view> header(const R& r, std::string_view name) {
  if constexpr (detail::adl_header<R>) {
    return armor_http_header(r, name);
  } else {
    for (const auto& field : r.headers) {
      if (armor::detail::http_iequals(std::string_view(field.first), name)) return std::string_view(field.second);
    }
    return std::nullopt;
  }
}

/// The status of a response.
template <response R>
[[nodiscard]] int status(const R& r) {
  if constexpr (detail::adl_status<R>) {
    return armor_http_status(r);
  } else {
    return static_cast<int>(r.status);
  }
}

/// Headers collected one line at a time, as libcurl's CURLOPT_HEADERFUNCTION
/// delivers them (see examples/curl_client.cpp), or added by name.
///
/// A status line ("HTTP/1.1 503 Service Unavailable", "HTTP/2 200") starts
/// a new response: what was collected before (a redirect's, a
/// "100 Continue"'s headers) is dropped and status() is set. Names are
/// looked up case-insensitively; the first field with a name wins. Obsolete
/// line folding is not supported (RFC 9112 deprecates it): a continuation
/// line is ignored.
///
/// Allocation: the map keeps its fields in one std::string and one
/// std::vector, which grow as needed; clear() keeps their capacity, so a
/// map reused for each request of a connection stops allocating.
class header_map {
 public:
  /// Forgets every field and the status; keeps the storage.
  void clear() noexcept {
    text_.clear();
    fields_.clear();
    status_ = 0;
  }

  /// Takes one raw header line ("Name: value\r\n", or a status line).
  /// Lines that are neither (the blank line ending the header block, a
  /// line without a colon, a continuation line) are ignored.
  void add_line(std::string_view line) {
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    if (line.size() >= 5 && line.substr(0, 5) == "HTTP/") {
      clear();
      const std::size_t sp = line.find(' ');
      if (sp != std::string_view::npos && line.size() - sp > 3) {
        const auto code = armor::detail::http_uint(line.substr(sp + 1, 3));
        if (code && (line.size() - sp == 4 || line[sp + 4] == ' ')) status_ = static_cast<int>(*code);
      }
      return;
    }
    if (line.empty() || armor::detail::http_ows(line.front())) return;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return;
    add(line.substr(0, colon), line.substr(colon + 1));
  }

  /// Adds a field (the value is trimmed of blanks).
  void add(std::string_view name, std::string_view value) {
    value = armor::detail::http_trim(value);
    const std::size_t at = text_.size();
    text_.append(name);
    text_.append(value);
    fields_.push_back({at, name.size(), value.size()});
  }

  /// Sets the status (when the headers came without a status line).
  void set_status(int status) noexcept { status_ = status; }
  /// The status of the last status line seen; 0 before any.
  [[nodiscard]] int status() const noexcept { return status_; }

  /// The value of the first field called `name` (any case), or nothing.
  /// The view lives until the map is next changed.
  [[nodiscard]] std::optional<std::string_view> find(std::string_view name) const noexcept {
    for (const field& f : fields_) {
      if (armor::detail::http_iequals(std::string_view(text_).substr(f.at, f.name), name)) {
        return std::string_view(text_).substr(f.at + f.name, f.value);
      }
    }
    return std::nullopt;
  }

  /// The number of fields.
  [[nodiscard]] std::size_t size() const noexcept { return fields_.size(); }

  // The ADL customization: header_map is a response.
  friend std::optional<std::string_view> armor_http_header(const header_map& h, std::string_view name) noexcept {
    return h.find(name);
  }
  friend int armor_http_status(const header_map& h) noexcept { return h.status(); }

 private:
  struct field {
    std::size_t at;
    std::size_t name;
    std::size_t value;
  };
  std::string text_;
  std::vector<field> fields_;
  int status_ = 0;
};

}  // namespace armor::http
