// SPDX-License-Identifier: Apache-2.0
// What the live inspector shows: one record per denoising step of a running job, built
// on the generation worker from the backbone's probe taps and posted through a queued
// signal. No LibTorch here (widget code).
#pragma once

#include <QMetaType>
#include <QString>
#include <QVector>

#include <cstddef>
#include <deque>

namespace tessera {

/// One block's activation statistics at one step (over the whole batch, cond and uncond).
struct BlockStat {
  QString name;      ///< "x_embedder", "blocks.0", … "final_layer"
  float mean = 0, std = 0, absMax = 0;
  double ms = -1;    ///< time spent in the block at this step; −1 when not timed
};

/// Everything the inspector learns from one step of one job.
struct InspectorStep {
  qint64 job = 0;
  int step = 0;            ///< 0-based step index
  int steps = 0;           ///< steps in the job's grid
  double tau = 0;          ///< progress after the step (0 noise, 1 data)
  double stepMs = 0;       ///< wall time of the step (all its network evaluations)
  QVector<BlockStat> blocks;
  /// Histogram of the current latent (the state after the step, all images of the batch).
  QVector<float> histogram;
  float histogramMin = 0, histogramMax = 0;
  /// Mean |x0(cond) − x0(uncond)| over the batch; −1 when the step was not guided.
  double guidanceDifference = -1;
};

/// Bounded history: the newest `capacity` steps of the newest job (a new job clears it).
class InspectorHistory {
public:
  explicit InspectorHistory(std::size_t capacity = 2000) : m_capacity(capacity) {}
  void add(const InspectorStep& step) {
    if (!m_steps.empty() && m_steps.back().job != step.job) m_steps.clear();
    m_steps.push_back(step);
    while (m_steps.size() > m_capacity) m_steps.pop_front();
    ++m_revision;
  }
  void clear() {
    m_steps.clear();
    ++m_revision;
  }
  const std::deque<InspectorStep>& steps() const { return m_steps; }
  std::size_t capacity() const { return m_capacity; }
  /// Changes on every add() or clear(): the view redraws only when it moved.
  quint64 revision() const { return m_revision; }

private:
  std::deque<InspectorStep> m_steps;
  std::size_t m_capacity;
  quint64 m_revision = 0;
};

}  // namespace tessera

Q_DECLARE_METATYPE(tessera::InspectorStep)
