// The demo's SVG timeline, written by hand: phase bands, the breaker's state,
// admitted and rejected calls per time bin, successes and failures of both
// clients per time bin, the adaptive limit and quota use, on one time axis.
// Plain SVG 1.1 that any browser opens; every text is XML-escaped.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

namespace demo {

/// What the SVG shows. Times are seconds since the scenario started.
struct svg_input {
  std::string title;
  double total_seconds = 0;
  struct band {
    double from = 0, to = 0;
    std::string label;
  };
  std::vector<band> phases;
  /// The breaker's state from `at` on: "closed", "open" or "half_open".
  struct state_change {
    double at = 0;
    std::string state;
  };
  std::vector<state_change> breaker;  ///< starts with the state at 0
  double bin_seconds = 0.1;
  std::vector<int> admitted;  ///< per bin: calls that sent at least one request
  std::vector<int> rejected;  ///< per bin: calls armor ended before sending anything
  /// One client's calls per bin (by start time): successes, and every other ending.
  struct outcomes {
    std::string name;
    std::vector<int> ok, failed;
  };
  std::vector<outcomes> clients;  ///< armor, then the plain client
  struct limit_sample {
    double at = 0;
    double limit = 0;
  };
  std::vector<limit_sample> limit;  ///< the adaptive limit over time
  struct sample {
    double at = 0;
    double percent = 0;
  };
  std::vector<sample> quota;  ///< quota use over time
  std::string quota_label;
  struct alert {
    double at = 0;
    double percent = 0;
  };
  std::vector<alert> alerts;
};

/// `s` with &, <, >, " and ' replaced by their XML entities.
inline std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

/// The SVG document for `in`.
inline std::string render_svg(const svg_input& in) {
  constexpr double width = 1200, left = 150, right = 30;
  constexpr double title_y = 28, bands_y = 44;
  constexpr double breaker_y = 82, breaker_h = 26;
  constexpr double calls_y = 130, calls_h = 130;
  constexpr double clients_y = 280, client_h = 60, client_gap = 12;
  const double limit_y = clients_y + static_cast<double>(in.clients.size()) * (client_h + client_gap) + 8;
  constexpr double limit_h = 60;
  const double quota_y = limit_y + limit_h + 20;
  constexpr double quota_h = 110;
  const double axis_y = quota_y + quota_h + 8;
  const double legend_y = axis_y + 40;
  const double height = legend_y + 26;
  const double plot_w = width - left - right;
  const double total = in.total_seconds > 0 ? in.total_seconds : 1;
  const auto x = [&](double t) { return left + plot_w * std::clamp(t, 0.0, total) / total; };

  std::string o;
  auto out = std::back_inserter(o);
  fmt::format_to(out,
                 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
                 "font-family=\"sans-serif\" font-size=\"12\">\n",
                 width, height);
  fmt::format_to(out, "<title>{}</title>\n", xml_escape(in.title));
  fmt::format_to(out, "<rect width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>\n", width, height);
  fmt::format_to(out, "<text x=\"{}\" y=\"{}\" font-size=\"16\" font-weight=\"bold\">{}</text>\n", left, title_y,
                 xml_escape(in.title));

  // Phase bands, behind every lane.
  o += "<g id=\"phases\">\n";
  for (std::size_t i = 0; i < in.phases.size(); ++i) {
    const auto& b = in.phases[i];
    const double x0 = x(b.from), x1 = x(b.to);
    fmt::format_to(out, "<rect x=\"{:.1f}\" y=\"{}\" width=\"{:.1f}\" height=\"{}\" fill=\"{}\"/>\n", x0, bands_y,
                   x1 - x0, axis_y - bands_y, i % 2 == 0 ? "#f3f4f6" : "#e5e7eb");
    fmt::format_to(out, "<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\n",
                   (x0 + x1) / 2, bands_y + 15, xml_escape(b.label));
  }
  o += "</g>\n";

  // Lane labels.
  o += "<g id=\"labels\">\n";
  const auto label = [&](double y, std::string_view text) {
    fmt::format_to(out, "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", left - 10, y, xml_escape(text));
  };
  label(breaker_y + breaker_h / 2 + 4, "circuit breaker");
  label(calls_y + calls_h / 2 - 4, "calls per bin");
  label(calls_y + calls_h / 2 + 12, fmt::format("({:.0f} ms)", in.bin_seconds * 1000));
  for (std::size_t c = 0; c < in.clients.size(); ++c) {
    const double y = clients_y + static_cast<double>(c) * (client_h + client_gap);
    label(y + client_h / 2 - 4, in.clients[c].name);
    label(y + client_h / 2 + 12, "ok / failed per bin");
  }
  label(limit_y + limit_h / 2 + 4, "adaptive limit");
  label(quota_y + quota_h / 2 - 4, "quota used");
  label(quota_y + quota_h / 2 + 12, in.quota_label);
  o += "</g>\n";

  // The breaker's state as coloured segments.
  const auto state_colour = [](std::string_view s) {
    if (s == "open") return "#dc2626";
    if (s == "half_open") return "#f59e0b";
    return "#16a34a";
  };
  o += "<g id=\"breaker\">\n";
  for (std::size_t i = 0; i < in.breaker.size(); ++i) {
    const double from = in.breaker[i].at;
    const double to = i + 1 < in.breaker.size() ? in.breaker[i + 1].at : total;
    if (to <= from) continue;
    fmt::format_to(out,
                   "<rect x=\"{:.2f}\" y=\"{}\" width=\"{:.2f}\" height=\"{}\" fill=\"{}\">"
                   "<title>{} from {:.2f} s to {:.2f} s</title></rect>\n",
                   x(from), breaker_y, std::max(x(to) - x(from), 0.5), breaker_h, state_colour(in.breaker[i].state),
                   xml_escape(in.breaker[i].state), from, to);
  }
  o += "</g>\n";

  // Admitted (bottom) and rejected (stacked on top) calls per bin.
  int peak = 1;
  for (std::size_t i = 0; i < in.admitted.size(); ++i) {
    peak = std::max(peak, in.admitted[i] + (i < in.rejected.size() ? in.rejected[i] : 0));
  }
  const double bin_w = plot_w * in.bin_seconds / total;
  const double unit = calls_h / peak;
  o += "<g id=\"calls\">\n";
  fmt::format_to(out, "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#6b7280\"/>\n", left, calls_y + calls_h,
                 left + plot_w, calls_y + calls_h);
  fmt::format_to(out, "<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#6b7280\">{} calls</text>\n", left + 2,
                 calls_y + 10, peak);
  for (std::size_t i = 0; i < in.admitted.size(); ++i) {
    const int a = in.admitted[i];
    const int r = i < in.rejected.size() ? in.rejected[i] : 0;
    const double bx = left + bin_w * static_cast<double>(i);
    const double bw = std::max(bin_w - 0.6, 0.4);
    const double base = calls_y + calls_h;
    if (a > 0) {
      fmt::format_to(out, "<rect class=\"admitted\" x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" fill=\"#2563eb\"/>\n",
                     bx, base - a * unit, bw, a * unit);
    }
    if (r > 0) {
      fmt::format_to(out, "<rect class=\"rejected\" x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" fill=\"#f97316\"/>\n",
                     bx, base - (a + r) * unit, bw, r * unit);
    }
  }
  o += "</g>\n";

  // Each client's successes (bottom) and failures (stacked on top) per bin,
  // on one scale for both.
  int client_peak = 1;
  for (const auto& c : in.clients) {
    for (std::size_t i = 0; i < c.ok.size(); ++i) {
      client_peak = std::max(client_peak, c.ok[i] + (i < c.failed.size() ? c.failed[i] : 0));
    }
  }
  const double client_unit = client_h / client_peak;
  o += "<g id=\"clients\">\n";
  for (std::size_t c = 0; c < in.clients.size(); ++c) {
    const auto& k = in.clients[c];
    const double base = clients_y + static_cast<double>(c) * (client_h + client_gap) + client_h;
    fmt::format_to(out, "<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#6b7280\"/>\n", left, base,
                   left + plot_w, base);
    for (std::size_t i = 0; i < k.ok.size(); ++i) {
      const int a = k.ok[i];
      const int f = i < k.failed.size() ? k.failed[i] : 0;
      const double bx = left + bin_w * static_cast<double>(i);
      const double bw = std::max(bin_w - 0.6, 0.4);
      if (a > 0) {
        fmt::format_to(out, "<rect class=\"ok\" x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" fill=\"#16a34a\"/>\n",
                       bx, base - a * client_unit, bw, a * client_unit);
      }
      if (f > 0) {
        fmt::format_to(out, "<rect class=\"failed\" x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" fill=\"#dc2626\"/>\n",
                       bx, base - (a + f) * client_unit, bw, f * client_unit);
      }
    }
  }
  o += "</g>\n";

  // The adaptive limit, scaled to its highest value.
  double limit_peak = 1;
  for (const auto& l : in.limit) limit_peak = std::max(limit_peak, l.limit);
  const auto ly = [&](double v) { return limit_y + limit_h - limit_h * std::clamp(v, 0.0, limit_peak) / limit_peak; };
  o += "<g id=\"limit\">\n";
  fmt::format_to(out, "<rect x=\"{}\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#9ca3af\"/>\n",
                 left, limit_y, plot_w, limit_h);
  fmt::format_to(out, "<text x=\"{}\" y=\"{:.1f}\" font-size=\"10\" fill=\"#6b7280\">{:g} in flight</text>\n", left + 2,
                 limit_y + 10, limit_peak);
  if (!in.limit.empty()) {
    o += "<polyline fill=\"none\" stroke=\"#0891b2\" stroke-width=\"2\" points=\"";
    for (const auto& l : in.limit) fmt::format_to(out, "{:.1f},{:.1f} ", x(l.at), ly(l.limit));
    o += "\"/>\n";
  }
  o += "</g>\n";

  // Quota use, with the alert thresholds.
  const auto qy = [&](double percent) { return quota_y + quota_h - quota_h * std::clamp(percent, 0.0, 100.0) / 100.0; };
  o += "<g id=\"quota\">\n";
  fmt::format_to(out, "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#9ca3af\"/>\n", left,
                 quota_y, plot_w, quota_h);
  for (const double level : {80.0, 90.0}) {
    fmt::format_to(out,
                   "<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#9333ea\" stroke-dasharray=\"4 3\"/>"
                   "<text x=\"{}\" y=\"{:.1f}\" font-size=\"10\" fill=\"#9333ea\">{:.0f} %</text>\n",
                   left, qy(level), left + plot_w, qy(level), left + plot_w + 2, qy(level) + 3, level);
  }
  if (!in.quota.empty()) {
    o += "<polyline fill=\"none\" stroke=\"#7c3aed\" stroke-width=\"2\" points=\"";
    for (const auto& s : in.quota) fmt::format_to(out, "{:.1f},{:.1f} ", x(s.at), qy(s.percent));
    o += "\"/>\n";
  }
  for (const auto& a : in.alerts) {
    fmt::format_to(out,
                   "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"#9333ea\"><title>quota alert: {:.0f} % at "
                   "{:.2f} s</title></circle>\n",
                   x(a.at), qy(a.percent), a.percent, a.at);
  }
  o += "</g>\n";

  // The time axis.
  const double step = total <= 12 ? 1 : total <= 60 ? 5 : total <= 300 ? 30 : 60;
  o += "<g id=\"axis\">\n";
  fmt::format_to(out, "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#374151\"/>\n", left, axis_y,
                 left + plot_w, axis_y);
  for (double t = 0; t <= total + 1e-9; t += step) {
    fmt::format_to(out,
                   "<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#374151\"/>"
                   "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\" font-size=\"10\">{4:g} s</text>\n",
                   x(t), axis_y, axis_y + 5, axis_y + 17, t);
  }
  o += "</g>\n";

  // The legend.
  o += "<g id=\"legend\">\n";
  double lx = left;
  const auto key = [&](const char* colour, std::string_view text) {
    fmt::format_to(out, "<rect x=\"{:.0f}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>"
                        "<text x=\"{:.0f}\" y=\"{}\">{}</text>\n",
                   lx, legend_y - 10, colour, lx + 16, legend_y, xml_escape(text));
    lx += 28 + 6.5 * static_cast<double>(text.size());
  };
  key("#16a34a", "breaker closed");
  key("#f59e0b", "half-open");
  key("#dc2626", "open");
  key("#2563eb", "sent upstream");
  key("#f97316", "refused before sending");
  key("#16a34a", "call ok");
  key("#dc2626", "call failed");
  key("#0891b2", "adaptive limit");
  key("#7c3aed", "quota used");
  o += "</g>\n</svg>\n";
  return o;
}

}  // namespace demo
