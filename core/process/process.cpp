// SPDX-License-Identifier: Apache-2.0
#include "core/process/process.h"

namespace tessera {

nlohmann::json Process::toJson() const { return diffusion ? diffusion->config().toJson() : interpolant->config().toJson(); }

Result<Process> processFromConfig(const Config& config, const std::string& path) {
  const std::string at = path.empty() ? "" : path + ".";
  auto kind = config.string(at + "kind", std::nullopt, {"gaussian_diffusion", "interpolant"});
  if (!kind) return fail(kind.error());
  Process p;
  if (*kind == "gaussian_diffusion") {
    auto c = GaussianDiffusionConfig::fromConfig(config, path);
    if (!c) return fail(c.error());
    auto d = GaussianDiffusion::create(*c);
    if (!d) return fail(d.error().withContext(config.source()));
    p.diffusion = std::move(*d);
  } else {
    auto c = InterpolantConfig::fromConfig(config, path);
    if (!c) return fail(c.error());
    auto i = Interpolant::create(*c);
    if (!i) return fail(i.error().withContext(config.source()));
    p.interpolant = std::move(*i);
  }
  return p;
}

}  // namespace tessera
