// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "core/samplers/sampler.h"

#include <vector>

namespace tessera {

/// Forwards every event to several observers, in order (null entries are skipped).
class ObserverFanout final : public StepObserver {
public:
  std::vector<StepObserver*> targets;
  void onStart(const at::Tensor& x, double tau, double time) override {
    for (auto* t : targets)
      if (t) t->onStart(x, tau, time);
  }
  void onStep(const StepEvent& e) override {
    for (auto* t : targets)
      if (t) t->onStep(e);
  }
};

}  // namespace tessera
