// SPDX-License-Identifier: Apache-2.0
#include "engine/latent_cache.h"

#include "core/formats/safetensors.h"

#include <ATen/ATen.h>
#include <openssl/evp.h>
#include <torch/utils.h>

#include <chrono>
#include <filesystem>
#include <iomanip>
#include <memory>
#include <sstream>

namespace tessera {
namespace {

constexpr const char* kLatentsMetadataKey = "tessera.latents";
constexpr std::int64_t kEncodeChunk = 256;

/// Incremental SHA-256 (OpenSSL's EVP).
class Sha256 {
public:
  Sha256() : m_ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free) { EVP_DigestInit_ex(m_ctx.get(), EVP_sha256(), nullptr); }
  void add(const void* data, std::size_t size) { EVP_DigestUpdate(m_ctx.get(), data, size); }
  void add(const std::string& s) { add(s.data(), s.size()); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(m_ctx.get(), md, &len);
    std::ostringstream out;
    for (unsigned int i = 0; i < len; ++i) out << std::hex << std::setw(2) << std::setfill('0') << int(md[i]);
    return out.str();
  }

private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> m_ctx;
};

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// The posterior of a batch: mean and std (KL), or the pre-quantisation latent and 0 (VQ).
std::pair<at::Tensor, at::Tensor> posterior(AutoencoderImpl& ae, const at::Tensor& x) {
  const Encoded e = ae.encode(x);
  if (e.mean.defined()) return {e.mean, e.std};
  const at::Tensor z = ae.latentOf(e);
  return {z, at::zeros_like(z)};
}

/// Why a cache file cannot be used ("" when it can).
std::string mismatch(const SafetensorsFile& file, const nlohmann::json& expected) {
  auto it = file.metadata().find(kLatentsMetadataKey);
  if (it == file.metadata().end()) return "it has no '" + std::string(kLatentsMetadataKey) + "' record";
  const nlohmann::json got = nlohmann::json::parse(it->second, nullptr, false);
  if (got.is_discarded()) return "its record is not JSON";
  for (const char* key : {"autoencoder_sha256", "data", "items", "flips"})
    if (got.value(key, nlohmann::json()) != expected[key])
      return std::string("its ") + key + " differs (" + got.value(key, nlohmann::json()).dump() + ", expected " +
             expected[key].dump() + ")";
  return "";
}

}  // namespace

std::string autoencoderSha256(const LoadedAutoencoder& ae) {
  Sha256 h;
  h.add(nlohmann::json({{"kind", ae.description.value("kind", std::string())},
                        {"config", ae.description.value("config", nlohmann::json())}})
            .dump());
  for (const auto& [name, t] : stateDict(*ae.network)) {
    const at::Tensor c = t.detach().to(at::kCPU).to(at::kFloat).contiguous();
    h.add(name);
    h.add(c.data_ptr(), static_cast<std::size_t>(c.numel()) * sizeof(float));
  }
  return h.hex();
}

Result<LatentSet> cachedLatents(const LoadedAutoencoder& ae, const std::string& aeSha, const ItemSource& items,
                                std::int64_t count, bool flips, const std::string& dir, const nlohmann::json& dataKey,
                                const std::function<void(std::int64_t, std::int64_t)>& progress) {
  namespace fs = std::filesystem;
  const auto start = std::chrono::steady_clock::now();
  const nlohmann::json record = {{"autoencoder_sha256", aeSha}, {"data", dataKey}, {"items", count}, {"flips", flips}};
  Sha256 key;
  key.add(record.dump());
  const fs::path path = fs::path(dir) / ("latents-" + key.hex().substr(0, 24) + ".safetensors");
  LatentSet out;
  out.path = path.string();
  std::error_code ec;
  if (fs::exists(path, ec)) {
    auto file = SafetensorsFile::open(path.string());
    std::string why = file ? mismatch(*file, record) : file.error().message();
    if (why.empty()) {
      std::vector<std::pair<const char*, at::Tensor*>> wanted = {{"mean", &out.mean}, {"std", &out.std}};
      if (flips) wanted.insert(wanted.end(), {{"mean_flipped", &out.meanFlipped}, {"std_flipped", &out.stdFlipped}});
      for (auto& [name, target] : wanted) {
        auto t = file->load(name);
        if (!t || t->dim() != 4 || t->size(0) != count) {
          why = std::string("tensor '") + name + "' is " + (t ? "mis-shaped" : "missing");
          break;
        }
        *target = t->to(at::kFloat);
      }
    }
    if (why.empty()) {
      out.reused = true;
      out.seconds = secondsSince(start);
      return out;
    }
    out.note = path.string() + " was not reused: " + why + "; encoding again";
    out.mean = out.std = out.meanFlipped = out.stdFlipped = at::Tensor();
  }
  fs::create_directories(dir, ec);
  if (ec) return fail("data.latents: cannot create the cache folder " + dir + ": " + ec.message());
  torch::NoGradGuard noGrad;
  AutoencoderImpl& net = *ae.network;
  std::vector<at::Tensor> means, stds, meansF, stdsF;
  for (std::int64_t begin = 0; begin < count; begin += kEncodeChunk) {
    const std::int64_t end = std::min(count, begin + kEncodeChunk);
    std::vector<at::Tensor> parts;
    for (std::int64_t i = begin; i < end; ++i) parts.push_back(items(i));
    const at::Tensor x = at::stack(parts);
    if (x.size(1) != net.imageChannels())
      return fail("model.autoencoder: the autoencoder takes " + std::to_string(net.imageChannels()) +
                  "-channel images but the data has " + std::to_string(x.size(1)));
    if (x.size(2) % net.downsampling() != 0 || x.size(3) % net.downsampling() != 0)
      return fail("data.size: " + std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)) +
                  " is not a multiple of the autoencoder's downsampling " + std::to_string(net.downsampling()));
    auto [m, s] = posterior(net, x);
    means.push_back(m.contiguous());
    stds.push_back(s.contiguous());
    if (flips) {
      auto [mf, sf] = posterior(net, x.flip({3}));
      meansF.push_back(mf.contiguous());
      stdsF.push_back(sf.contiguous());
    }
    if (progress) progress(end, count);
  }
  out.mean = at::cat(means);
  out.std = at::cat(stds);
  NamedTensors tensors = {{"mean", out.mean}, {"std", out.std}};
  if (flips) {
    out.meanFlipped = at::cat(meansF);
    out.stdFlipped = at::cat(stdsF);
    tensors.emplace_back("mean_flipped", out.meanFlipped);
    tensors.emplace_back("std_flipped", out.stdFlipped);
  }
  if (auto ok = writeSafetensors(path.string(), tensors, {{kLatentsMetadataKey, record.dump()}}); !ok)
    return fail(ok.error().withContext("data.latents"));
  out.seconds = secondsSince(start);
  return out;
}

}  // namespace tessera
