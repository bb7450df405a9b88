// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace tessera {

/// Inspection taps. LibTorch modules have no forward hooks, so a backbone calls the
/// probe at block boundaries; with no probe attached (BackboneInput::probe == nullptr)
/// nothing is computed or copied.
class Probe {
public:
  struct Stats {
    std::string name;
    double mean = 0, std = 0, rms = 0, absMax = 0;
  };

  /// Ask for the attention probabilities of these blocks (heads empty = all heads).
  void requestAttention(std::set<int> layers, std::vector<std::int64_t> heads = {});
  void requestActivationStats(bool on) { m_stats = on; }
  void requestTimings(bool on) { m_timings = on; }

  bool wantsAttention(int layer) const { return m_attentionLayers.count(layer) > 0; }
  bool wantsStats() const { return m_stats; }
  bool wantsTimings() const { return m_timings; }

  /// probs: (N, heads, T, T); kept for the requested heads, detached, on the CPU, one
  /// entry per row (image of the batch; with guidance the rows are [cond…; uncond…]).
  void recordAttention(int layer, const at::Tensor& probs);
  /// One row whose sequence has its own length (packed or padded input): (heads, T_i, T_i).
  void recordAttentionRow(int layer, const at::Tensor& probs);
  /// Summary statistics of an activation, e.g. tap("blocks.3", x).
  void tap(const std::string& name, const at::Tensor& activation);
  void recordTime(const std::string& name, double milliseconds);

  /// Per requested layer, one (heads, T_i, T_i) tensor per row, in batch order.
  const std::map<int, std::vector<at::Tensor>>& attention() const { return m_attention; }
  bool anyAttention() const { return !m_attentionLayers.empty(); }
  const std::vector<Stats>& stats() const { return m_statsOut; }
  const std::vector<std::pair<std::string, double>>& timings() const { return m_timingsOut; }
  void clearResults();

private:
  std::set<int> m_attentionLayers;
  std::vector<std::int64_t> m_heads;
  bool m_stats = false;
  bool m_timings = false;
  std::map<int, std::vector<at::Tensor>> m_attention;
  std::vector<Stats> m_statsOut;
  std::vector<std::pair<std::string, double>> m_timingsOut;
};

/// Measures a scope into a probe that asked for timings, named "prefix.index" (or
/// "prefix" for index < 0); costs one branch otherwise (the name is built only when
/// the time is recorded).
class ProbeTimer {
public:
  ProbeTimer(Probe* probe, const char* prefix, int index = -1);
  ~ProbeTimer();
  ProbeTimer(const ProbeTimer&) = delete;
  ProbeTimer& operator=(const ProbeTimer&) = delete;

private:
  Probe* m_probe;
  const char* m_prefix;
  int m_index;
  std::chrono::steady_clock::time_point m_start;
};

}  // namespace tessera
