// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace tessera {

/// Progress of long work: a redrawn bar on a terminal, JSON lines for machines, or
/// nothing. Bar redraws are throttled to 10 per second.
class Progress {
public:
  enum class Mode { Bar, JsonLines, Silent };

  /// Bar when `stream` is a terminal (stderr), JsonLines when `json`, Silent when `quiet`.
  static Mode chooseMode(bool json, bool quiet, int terminalFd = 2);

  Progress(std::string label, std::int64_t total, Mode mode, std::ostream& out);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// `done` of `total` units finished; `note` is shown after the bar (e.g. "loss 0.031").
  void update(std::int64_t done, const std::string& note = {});
  /// Final line (bar mode ends it with a newline). Called by the destructor if needed.
  void finish();

  /// One bar line: "label  [#####.....]  50/100  1.2 it/s  ETA 0:41  note".
  static std::string renderBar(const std::string& label, std::int64_t done, std::int64_t total,
                               double elapsedSeconds, const std::string& note, int width = 30);
  /// One JSON line (no newline): {"event":"progress","label":…,"done":…,"total":…,"elapsed_s":…,"eta_s":…}.
  static std::string renderJson(const std::string& label, std::int64_t done, std::int64_t total,
                                double elapsedSeconds, const std::string& note);
  /// "1:02:03" or "2:05".
  static std::string formatDuration(double seconds);

private:
  std::string m_label;
  std::int64_t m_total;
  Mode m_mode;
  std::ostream& m_out;
  std::int64_t m_done = 0;
  std::string m_note;
  bool m_finished = false;
  std::chrono::steady_clock::time_point m_start;
  std::chrono::steady_clock::time_point m_lastDraw;
};

}  // namespace tessera
