// SPDX-License-Identifier: Apache-2.0
// tessera-cli bench decode --model AE|sd-kl-f8|dc-f32c32 --size WxH [--tile N]: an
// autoencoder's decode time and peak memory, as JSON lines (one per size). "sd-kl-f8" is
// Stable Diffusion's KL-f8 architecture and "dc-f32c32" DC-AE's sana f32c32 (NiT's), both
// with random weights, for timing without a download.
#include "app/cli/command.h"
#include "core/system/blas.h"
#include "core/system/system_info.h"
#include "engine/checkpoint_import.h"
#include "models/autoencoders/autoencoder.h"
#include "models/autoencoders/dcae/dcae.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <iostream>
#include <regex>

namespace tessera::cli {
namespace {

struct BenchDecodeOptions {
  std::string model;
  std::vector<std::string> sizes{"256x256"};
  std::int64_t tile = 0, overlap = 8, repeats = 3, batch = 1;
};

Result<LoadedAutoencoder> benchAutoencoder(const std::string& model) {
  if (model == "sd-kl-f8") {
    auto net = autoencoderRegistry().create("kl", nlohmann::json::object());  // the defaults are SD's VAE
    if (!net) return fail(net.error());
    (*net)->eval();
    LoadedAutoencoder ae;
    ae.network = *net;
    ae.scaling = {0.18215, 0.0};
    return ae;
  }
  if (model == "dc-f32c32") {
    auto net = autoencoderRegistry().create("dc", DcAeConfig::f32c32("sana").toJson());
    if (!net) return fail(net.error());
    (*net)->eval();
    LoadedAutoencoder ae;
    ae.network = *net;
    ae.scaling = {0.41407, 0.0};
    return ae;
  }
  return loadAnyAutoencoder(model);
}

CommandResult runBenchDecode(const BenchDecodeOptions& o) {
  auto ae = benchAutoencoder(o.model);
  if (!ae) return badInput("bench decode: " + ae.error().message());
  AutoencoderImpl& net = *ae->network;
  const std::int64_t f = net.downsampling();
  static const std::regex sizeRe(R"(^(\d{1,5})x(\d{1,5})$)");
  c10::InferenceMode inference;
  for (const auto& size : o.sizes) {
    std::smatch m;
    if (!std::regex_match(size, m, sizeRe))
      return badInput("bench decode: --size " + size + ": expected WxH in pixels");
    const std::int64_t w = std::stoll(m[1].str()), h = std::stoll(m[2].str());
    if (w % f || h % f || w < f || h < f)
      return badInput("bench decode: --size " + size + " is not a multiple of the autoencoder's downsampling " +
                      std::to_string(f));
    auto g = at::make_generator<at::CPUGeneratorImpl>(0);
    const at::Tensor z = at::randn({o.batch, net.latentChannels(), h / f, w / f}, g);
    (void)decodeTiled(
        net, z.narrow(2, 0, std::min<std::int64_t>(z.size(2), 4)).narrow(3, 0, std::min<std::int64_t>(z.size(3), 4)), 0,
        0);  // warm-up: first-call allocations and kernel choice
    std::vector<double> times;
    resetPeakRss();
    for (std::int64_t r = 0; r < o.repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      const at::Tensor x = decodeTiled(net, z, o.tile, o.overlap);
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      (void)x;
    }
    std::sort(times.begin(), times.end());
    nlohmann::ordered_json j;
    j["bench"] = "decode";
    j["model"] = o.model;
    j["kind"] = net.kind();
    j["width"] = w;
    j["height"] = h;
    j["batch"] = o.batch;
    j["tile"] = o.tile;
    j["overlap"] = o.tile > 0 ? o.overlap : 0;
    j["seconds_min"] = times.front();
    j["seconds_median"] = times[times.size() / 2];
    j["peak_rss_mib"] = peakRssMiB();
    j["torch_threads"] = at::get_num_threads();
    j["kernel"] = blas::kernelState().active;
    std::cout << j.dump() << std::endl;
  }
  return {};
}

}  // namespace

Command addBenchDecode(CLI::App& bench, const GlobalOptions&) {
  auto* sub = bench.add_subcommand("decode", "An autoencoder's decode: seconds and peak memory per picture size");
  auto o = std::make_shared<BenchDecodeOptions>();
  sub->add_option("--model", o->model,
                  "Autoencoder file, model file with one, official checkpoint, sd-kl-f8 (SD's VAE) or dc-f32c32 "
                  "(DC-AE sana f32c32, NiT's), the last two with random weights")
      ->required();
  sub->add_option("--size", o->sizes, "Picture sizes WxH in pixels")->delimiter(',')->capture_default_str();
  addDecodeTileOptions(sub, o->tile, o->overlap);
  sub->add_option("--repeats", o->repeats, "Timed decodes per size (after one small warm-up)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  sub->add_option("--batch", o->batch, "Pictures per decode")->check(CLI::Range(1, 64))->capture_default_str();
  return {sub, [o]() { return runBenchDecode(*o); }};
}

}  // namespace tessera::cli
