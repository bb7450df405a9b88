// SPDX-License-Identifier: Apache-2.0
#include "core/util/progress.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unistd.h>

namespace tessera {

Progress::Mode Progress::chooseMode(bool json, bool quiet, int terminalFd) {
  if (json) return Mode::JsonLines;
  if (quiet || !::isatty(terminalFd)) return Mode::Silent;
  return Mode::Bar;
}

Progress::Progress(std::string label, std::int64_t total, Mode mode, std::ostream& out)
    : m_label(std::move(label)), m_total(std::max<std::int64_t>(total, 0)), m_mode(mode), m_out(out),
      m_start(std::chrono::steady_clock::now()), m_lastDraw(m_start - std::chrono::seconds(1)) {}

Progress::~Progress() {
  if (!m_finished) finish();
}

std::string Progress::formatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(std::llround(seconds));
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, (s / 60) % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
  return buf;
}

std::string Progress::renderBar(const std::string& label, std::int64_t done, std::int64_t total,
                                double elapsed, const std::string& note, int width) {
  const double frac = total > 0 ? std::clamp(double(done) / double(total), 0.0, 1.0) : 0.0;
  const int filled = static_cast<int>(frac * width);
  std::string bar = label + "  [" + std::string(static_cast<std::size_t>(filled), '#') +
                    std::string(static_cast<std::size_t>(width - filled), '.') + "]  " + std::to_string(done) + "/" +
                    std::to_string(total);
  if (elapsed > 0 && done > 0) {
    char rate[32];
    std::snprintf(rate, sizeof rate, "  %.2f it/s", double(done) / elapsed);
    bar += rate;
    if (done < total) bar += "  ETA " + formatDuration(elapsed / double(done) * double(total - done));
    else bar += "  " + formatDuration(elapsed);
  }
  if (!note.empty()) bar += "  " + note;
  return bar;
}

std::string Progress::renderJson(const std::string& label, std::int64_t done, std::int64_t total,
                                 double elapsed, const std::string& note) {
  nlohmann::ordered_json j;
  j["event"] = "progress";
  j["label"] = label;
  j["done"] = done;
  j["total"] = total;
  j["elapsed_s"] = std::round(elapsed * 1000.0) / 1000.0;
  if (done > 0 && total >= done) j["eta_s"] = std::round(elapsed / double(done) * double(total - done) * 1000.0) / 1000.0;
  if (!note.empty()) j["note"] = note;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void Progress::update(std::int64_t done, const std::string& note) {
  m_done = done;
  m_note = note;
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - m_start).count();
  switch (m_mode) {
    case Mode::Silent: return;
    case Mode::JsonLines: m_out << renderJson(m_label, done, m_total, elapsed, note) << '\n' << std::flush; return;
    case Mode::Bar:
      if (now - m_lastDraw < std::chrono::milliseconds(100) && done < m_total) return;
      m_lastDraw = now;
      m_out << "\r\033[K" << renderBar(m_label, done, m_total, elapsed, note) << std::flush;
      return;
  }
}

void Progress::finish() {
  if (m_finished) return;
  m_finished = true;
  if (m_mode == Mode::Bar) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
    m_out << "\r\033[K" << renderBar(m_label, m_done, m_total, elapsed, m_note) << '\n' << std::flush;
  }
}

}  // namespace tessera
