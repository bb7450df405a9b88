// SPDX-License-Identifier: Apache-2.0
// Data-parallel training through LibTorch's c10d: a TCP store for the rendezvous and a
// Gloo process group, configured the way torchrun configures its workers (RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT). One process per rank; every rank computes its
// share of the global batch and the gradients are summed with one all-reduce.
#pragma once

#include "core/util/error.h"

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

namespace tessera {

struct DistributedEnv {
  int rank = 0;
  int worldSize = 1;
  std::string masterAddr = "127.0.0.1";
  int masterPort = 29500;
  bool active() const { return worldSize > 1; }
};

/// Reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT. Absent WORLD_SIZE means one
/// process; inconsistent values fail naming the variable.
Result<DistributedEnv> distributedEnvFromEnvironment();

/// A process group of `worldSize` ranks (Gloo). Single-process groups do nothing.
class DataParallel {
public:
  /// Joins the group; blocks until every rank has joined (timeout 300 s).
  static Result<std::unique_ptr<DataParallel>> join(const DistributedEnv& env);
  ~DataParallel();

  int rank() const { return m_env.rank; }
  int worldSize() const { return m_env.worldSize; }

  /// Sums the tensors over all ranks, in place. The tensors are flattened into one
  /// buffer, so there is one collective per call.
  void allReduceSum(const std::vector<at::Tensor>& tensors);
  /// Copies rank 0's tensors to every rank, in place.
  void broadcastFromRankZero(const std::vector<at::Tensor>& tensors);
  /// Waits for every rank.
  void barrier();

private:
  DataParallel() = default;
  struct Impl;
  std::unique_ptr<Impl> m_impl;
  DistributedEnv m_env;
};

/// A free TCP port on 127.0.0.1 (for the --nproc launcher).
int freeLocalPort();

}  // namespace tessera
