// SPDX-License-Identifier: Apache-2.0
#include "core/train/distributed.h"

#include <ATen/ATen.h>
#ifdef TESSERA_HAVE_GLOO
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

namespace tessera {

namespace {

Result<int> intFromEnv(const char* name, int fallback, int min, int max) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long value = std::strtol(v, &end, 10);
  if (*end != '\0' || value < min || value > max)
    return fail(std::string("environment variable ") + name + "=\"" + v + "\": expected an integer in [" +
                std::to_string(min) + ", " + std::to_string(max) + "]");
  return static_cast<int>(value);
}

}  // namespace

Result<DistributedEnv> distributedEnvFromEnvironment() {
  DistributedEnv env;
  auto world = intFromEnv("WORLD_SIZE", 1, 1, 4096);
  if (!world) return fail(world.error());
  env.worldSize = *world;
  auto rank = intFromEnv("RANK", 0, 0, 4095);
  if (!rank) return fail(rank.error());
  env.rank = *rank;
  if (env.rank >= env.worldSize)
    return fail("environment variable RANK=" + std::to_string(env.rank) + ": must be below WORLD_SIZE=" +
                std::to_string(env.worldSize));
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) env.masterAddr = addr;
  auto port = intFromEnv("MASTER_PORT", 29500, 1, 65535);
  if (!port) return fail(port.error());
  env.masterPort = *port;
  return env;
}

#ifdef TESSERA_HAVE_GLOO
struct DataParallel::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};
#else
struct DataParallel::Impl {};
#endif

Result<std::unique_ptr<DataParallel>> DataParallel::join(const DistributedEnv& env) {
  std::unique_ptr<DataParallel> dp(new DataParallel());
  dp->m_env = env;
  dp->m_impl = std::make_unique<Impl>();
  if (!env.active()) return dp;
#ifndef TESSERA_HAVE_GLOO
  return fail("data-parallel: this build has no Gloo (c10d's CPU backend; build with Gloo's headers, Debian: libgloo-dev)");
#else
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(env.masterPort);
    options.isServer = env.rank == 0;
    options.numWorkers = static_cast<std::size_t>(env.worldSize);
    options.waitWorkers = true;
    options.timeout = std::chrono::seconds(300);
    auto tcp = c10::make_intrusive<c10d::TCPStore>(env.masterAddr, options);
    dp->m_impl->store = c10::make_intrusive<c10d::PrefixStore>("tessera", tcp);
    auto groupOptions = c10d::ProcessGroupGloo::Options::create();
    groupOptions->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(env.masterAddr));
    groupOptions->timeout = std::chrono::seconds(300);
    dp->m_impl->group =
        c10::make_intrusive<c10d::ProcessGroupGloo>(dp->m_impl->store, env.rank, env.worldSize, groupOptions);
  } catch (const std::exception& e) {
    return fail("data-parallel: rank " + std::to_string(env.rank) + " of " + std::to_string(env.worldSize) +
                " could not join the group at " + env.masterAddr + ":" + std::to_string(env.masterPort) + ": " +
                e.what());
  }
  return dp;
#endif
}

DataParallel::~DataParallel() = default;

namespace {

/// Runs one collective on all `tensors` at once: flattened into one buffer, then copied back.
template <typename Collective>
void onOneBuffer(const std::vector<at::Tensor>& tensors, Collective&& collective) {
  std::vector<at::Tensor> flat;
  for (const auto& t : tensors) flat.push_back(t.reshape({-1}));
  std::vector<at::Tensor> buffer{at::cat(flat)};
  collective(buffer);
  std::int64_t offset = 0;
  for (const auto& t : tensors) {
    const std::int64_t n = t.numel();
    t.copy_(buffer[0].slice(0, offset, offset + n).view_as(t));
    offset += n;
  }
}

}  // namespace

void DataParallel::allReduceSum(const std::vector<at::Tensor>& tensors) {
  if (!m_env.active() || tensors.empty()) return;
#ifdef TESSERA_HAVE_GLOO
  onOneBuffer(tensors, [&](std::vector<at::Tensor>& buffer) { m_impl->group->allreduce(buffer)->wait(); });
#endif
}

void DataParallel::broadcastFromRankZero(const std::vector<at::Tensor>& tensors) {
  if (!m_env.active() || tensors.empty()) return;
#ifdef TESSERA_HAVE_GLOO
  onOneBuffer(tensors, [&](std::vector<at::Tensor>& buffer) {
    c10d::BroadcastOptions options;
    options.rootRank = 0;
    m_impl->group->broadcast(buffer, options)->wait();
  });
#endif
}

void DataParallel::barrier() {
  if (!m_env.active()) return;
#ifdef TESSERA_HAVE_GLOO
  m_impl->group->barrier()->wait();
#endif
}

int freeLocalPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 29500;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = 29500;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    socklen_t len = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace tessera
