// SPDX-License-Identifier: Apache-2.0
#include "models/probe.h"

#include <ATen/ATen.h>

namespace tessera {

void Probe::requestAttention(std::set<int> layers, std::vector<std::int64_t> heads) {
  m_attentionLayers = std::move(layers);
  m_heads = std::move(heads);
}

void Probe::recordAttention(int layer, const at::Tensor& probs) {
  for (std::int64_t i = 0; i < probs.size(0); ++i) recordAttentionRow(layer, probs[i]);
}

void Probe::recordAttentionRow(int layer, const at::Tensor& probs) {
  at::Tensor kept = probs.detach();
  if (!m_heads.empty()) kept = kept.index_select(0, at::tensor(m_heads, at::kLong).to(kept.device()));
  m_attention[layer].push_back(kept.to(at::kCPU, at::kFloat).contiguous());
}

void Probe::tap(const std::string& name, const at::Tensor& activation) {
  if (!m_stats) return;
  const at::Tensor x = activation.detach().to(at::kDouble);
  Stats s;
  s.name = name;
  s.mean = x.mean().item<double>();
  s.std = x.numel() > 1 ? x.std().item<double>() : 0.0;
  s.rms = x.pow(2).mean().sqrt().item<double>();
  s.absMax = x.abs().max().item<double>();
  m_statsOut.push_back(std::move(s));
}

void Probe::recordTime(const std::string& name, double milliseconds) {
  if (m_timings) m_timingsOut.emplace_back(name, milliseconds);
}

void Probe::clearResults() {
  m_attention.clear();
  m_statsOut.clear();
  m_timingsOut.clear();
}

ProbeTimer::ProbeTimer(Probe* probe, const char* prefix, int index)
    : m_probe(probe && probe->wantsTimings() ? probe : nullptr), m_prefix(prefix), m_index(index) {
  if (m_probe) m_start = std::chrono::steady_clock::now();
}

ProbeTimer::~ProbeTimer() {
  if (!m_probe) return;
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - m_start).count();
  m_probe->recordTime(m_index < 0 ? std::string(m_prefix) : std::string(m_prefix) + "." + std::to_string(m_index), ms);
}

}  // namespace tessera
