// SPDX-License-Identifier: Apache-2.0
#include "models/autoencoders/autoencoder.h"

#include "core/config/config.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cmath>

namespace tessera {

#define TESSERA_AUTOENCODER(name) void registerAutoencoder_##name(AutoencoderRegistry&);
#include "models/autoencoders/autoencoders.def"
#undef TESSERA_AUTOENCODER

at::Tensor LatentScaling::toBackbone(const at::Tensor& z) const { return (z - shift) * scale; }
at::Tensor LatentScaling::fromBackbone(const at::Tensor& latent) const { return latent / scale + shift; }

Result<void> AutoencoderRegistry::add(AutoencoderEntry entry) {
  if (entry.name.empty() || !entry.factory) return fail("an autoencoder needs a name and a factory");
  const std::string name = entry.name;
  if (!m_entries.emplace(name, std::move(entry)).second) return fail("autoencoder '" + name + "' is registered twice");
  return {};
}

const AutoencoderEntry* AutoencoderRegistry::find(const std::string& name) const {
  auto it = m_entries.find(name);
  return it == m_entries.end() ? nullptr : &it->second;
}

std::vector<std::string> AutoencoderRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : m_entries) out.push_back(name);
  return out;
}

Result<std::shared_ptr<AutoencoderImpl>> AutoencoderRegistry::create(const std::string& kind,
                                                                     const nlohmann::json& config) const {
  const AutoencoderEntry* entry = find(kind);
  if (!entry) {
    std::string known;
    for (const auto& n : names()) known += (known.empty() ? "" : ", ") + n;
    return fail("unknown autoencoder kind '" + kind + "' (known: " + known + ")");
  }
  nlohmann::json c = config;
  if (c.is_object() && !c.contains("kind")) c["kind"] = kind;
  if (c.is_object() && c["kind"] != kind)
    return fail("autoencoder.config.kind " + c["kind"].dump() + " differs from the kind '" + kind + "'");
  return entry->factory(c);
}

std::vector<const AutoencoderEntry*> AutoencoderRegistry::recognise(const TensorShapes& shapes) const {
  std::vector<const AutoencoderEntry*> out;
  std::vector<std::string> families;
  for (const auto& [name, e] : m_entries) {
    if (!e.importer || std::find(families.begin(), families.end(), e.family) != families.end()) continue;
    if (e.importer.recognises(shapes)) {
      out.push_back(&e);
      families.push_back(e.family);
    }
  }
  return out;
}

const AutoencoderRegistry& autoencoderRegistry() {
  static const AutoencoderRegistry registry = [] {
    AutoencoderRegistry r;
#define TESSERA_AUTOENCODER(name) registerAutoencoder_##name(r);
#include "models/autoencoders/autoencoders.def"
#undef TESSERA_AUTOENCODER
    return r;
  }();
  return registry;
}

NamedTensors autoencoderTensors(const NamedTensors& tensors, std::int64_t* dropped) {
  const NamedTensors all = stripWrapperPrefixes(tensors);
  for (const char* prefix : {"first_stage_model.", "vae."}) {
    const std::string p = prefix;
    NamedTensors inside;
    for (const auto& [name, t] : all)
      if (name.rfind(p, 0) == 0) inside.emplace_back(name.substr(p.size()), t);
    if (!inside.empty()) {
      if (dropped) *dropped = static_cast<std::int64_t>(all.size() - inside.size());
      return inside;
    }
  }
  if (dropped) *dropped = 0;
  return all;
}

double heldWeights(const TensorShapes& shapes) {
  double held = 0;
  for (const auto& [name, shape] : shapes) {
    double n = 1;
    for (auto d : shape) n *= static_cast<double>(d);
    held += n;
  }
  return held;
}

Result<LoadedAutoencoder> loadAutoencoder(const SafetensorsFile& file, const nlohmann::json& description,
                                          const std::string& prefix, const std::string& where) {
  const Config d = Config::fromJson(description, where);
  auto kind = d.string("kind");
  if (!kind) return fail(kind.error());
  if (!description.contains("config") || !description["config"].is_object())
    return fail(where + ": field 'config': expected an object");
  auto scale = d.number("scale_factor", 1.0, 1e-6, 1e6);
  if (!scale) return fail(scale.error());
  auto shift = d.number("shift_factor", 0.0, -1e6, 1e6);
  if (!shift) return fail(shift.error());
  TensorShapes present;
  for (const auto& e : file.entries())
    if (e.name.rfind(prefix, 0) == 0) present.emplace_back(e.name, e.shape);
  const double held = heldWeights(present);
  const AutoencoderEntry* entry = autoencoderRegistry().find(*kind);
  if (entry && entry->minimumWeights && entry->minimumWeights(description["config"]) > 2 * held + 1e6)
    return fail(where + ": the autoencoder's config describes a network far larger than the " +
                std::to_string(static_cast<std::int64_t>(held)) +
                " weights the file holds (a damaged or hostile description)");
  auto network = autoencoderRegistry().create(*kind, description["config"]);
  if (!network) return fail(network.error().withContext(where));
  NamedTensors targets = stateDict(**network);
  TensorShapes expected;
  for (const auto& [name, t] : targets) expected.emplace_back(prefix + name, t.sizes().vec());
  if (auto ok = checkStateDictShapes(expected, present); !ok) return fail(ok.error().withContext(where));
  {
    torch::NoGradGuard noGrad;
    for (auto& [name, target] : targets)
      if (auto ok = file.readInto(prefix + name, target); !ok) return fail(ok.error());
  }
  (*network)->eval();
  LoadedAutoencoder out;
  out.network = *network;
  out.scaling = {*scale, *shift};
  out.description = description;
  if (auto it = description.find("preview"); it != description.end() && it->is_array()) {
    const auto rows = static_cast<std::int64_t>(it->size());
    const std::int64_t cols = (*network)->latentChannels() + 1;
    std::vector<float> values;
    bool ok = rows == (*network)->imageChannels();
    for (const auto& row : *it) {
      if (!ok || !row.is_array() || static_cast<std::int64_t>(row.size()) != cols) {
        ok = false;
        break;
      }
      for (const auto& v : row) {
        if (!v.is_number()) {
          ok = false;
          break;
        }
        values.push_back(v.get<float>());
      }
    }
    // A malformed preview map is not a reason to refuse the model: previews then use the full decode.
    if (ok) out.preview = at::tensor(values).reshape({rows, cols});
  }
  return out;
}

Result<LoadedAutoencoder> loadAutoencoderFile(const std::string& path) {
  auto file = SafetensorsFile::open(path);
  if (!file) return fail(file.error());
  auto meta = file->metadata().find(kAutoencoderMetadataKey);
  if (meta == file->metadata().end())
    return fail(path + ": not a Tessera autoencoder (no '" + std::string(kAutoencoderMetadataKey) +
                "' metadata); convert official autoencoders with 'tessera-cli import --from autoencoder'");
  nlohmann::json description = nlohmann::json::parse(meta->second, nullptr, false);
  if (description.is_discarded() || !description.is_object())
    return fail(path + ": the '" + std::string(kAutoencoderMetadataKey) + "' metadata is not a JSON object");
  if (description.value("format", 1) > 1) return fail(path + ": autoencoder format newer than this Tessera reads (1)");
  return loadAutoencoder(*file, description, "", path);
}

Result<void> writeAutoencoderFile(const std::string& path, const nlohmann::json& description,
                                  const NamedTensors& weights) {
  nlohmann::json d = description;
  d["format"] = 1;
  return writeSafetensors(path, weights, {{kAutoencoderMetadataKey, d.dump()}});
}

at::Tensor fitPreviewMap(AutoencoderImpl& ae, std::int64_t samples, std::uint64_t seed) {
  // 8×8 latent cells per image; 4×4 for the deep compressors (f32: DC-AE), whose encoder is
  // costly at 256 pixels a side and whose 16 cells per image still give 16 times more rows
  // than a 32-channel latent has unknowns.
  const std::int64_t f = ae.downsampling(), side = (f >= 16 ? 4 : 8) * f, c = ae.imageChannels();
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  // Smooth random colour fields (a 4×4 grid of colours, bilinearly enlarged): colour
  // over areas larger than one latent cell, which is what a preview has to get right.
  at::Tensor coarse = at::rand({samples, c, 4, 4}, generator) * 2 - 1;
  return fitPreviewMapOn(ae, at::upsample_bilinear2d(coarse, {side, side}, false).clamp(-1, 1));
}

at::Tensor fitPreviewMapOn(AutoencoderImpl& ae, const at::Tensor& images) {
  torch::NoGradGuard noGrad;
  const std::int64_t f = ae.downsampling(), c = ae.imageChannels();
  const at::Tensor x = images.to(at::kFloat);
  const Encoded encoded = ae.encode(x);
  const at::Tensor z = ae.latentOf(encoded).to(at::kCPU);                    // (n, C, h, w)
  const at::Tensor target = at::avg_pool2d(x, {f, f}, {f, f}).to(at::kCPU);  // (n, c, h, w)
  const std::int64_t lc = z.size(1);
  at::Tensor design = at::cat({z.permute({0, 2, 3, 1}).reshape({-1, lc}), at::ones({z.numel() / lc, 1})}, 1);
  at::Tensor y = target.permute({0, 2, 3, 1}).reshape({-1, c});
  const at::Tensor gram = at::mm(design.t(), design) + 1e-4 * at::eye(lc + 1);
  const at::Tensor solution = at::linalg_solve(gram, at::mm(design.t(), y));  // (C + 1, c)
  return solution.t().contiguous();
}

nlohmann::json previewMapJson(const at::Tensor& map) {
  const at::Tensor m = map.to(at::kCPU).to(at::kDouble).contiguous();
  nlohmann::json rows = nlohmann::json::array();
  for (std::int64_t r = 0; r < m.size(0); ++r) {
    nlohmann::json row = nlohmann::json::array();
    for (std::int64_t k = 0; k < m.size(1); ++k) row.push_back(m[r][k].item<double>());
    rows.push_back(row);
  }
  return rows;
}

at::Tensor previewDecode(const at::Tensor& map, const at::Tensor& z) {
  const std::int64_t lc = map.size(1) - 1;
  const at::Tensor w = map.narrow(1, 0, lc).to(z.scalar_type()), b = map.select(1, lc).to(z.scalar_type());
  return (at::einsum("oc,nchw->nohw", {w, z}) + b.view({1, -1, 1, 1})).clamp(-1, 1);
}

namespace {

/// The fewest tiles of at most `tile` cells that cover [0, size) with neighbours
/// overlapping by at least `overlap`, all of one length and evenly placed (a last tile
/// squeezed against the end would redo most of its neighbour's work). Returns the starts
/// and sets `length`.
std::vector<std::int64_t> tileStarts(std::int64_t size, std::int64_t tile, std::int64_t overlap, std::int64_t& length) {
  if (size <= tile) {
    length = size;
    return {0};
  }
  const std::int64_t n = (size - overlap + (tile - overlap) - 1) / (tile - overlap);
  length = std::min(tile, (size + (n - 1) * overlap + n - 1) / n);
  std::vector<std::int64_t> starts;
  for (std::int64_t i = 0; i < n; ++i) starts.push_back(i * (size - length) / (n - 1));
  return starts;
}

/// Weights along one axis of a tile: a linear ramp over the overlap on each side that
/// has a neighbour, 1 elsewhere.
at::Tensor ramp(std::int64_t length, std::int64_t fade, bool before, bool after) {
  at::Tensor w = at::ones({length});
  if (fade <= 0) return w;
  const at::Tensor r = (at::arange(fade, at::kFloat) + 0.5) / static_cast<double>(fade);
  if (before) w.narrow(0, 0, fade).mul_(r);
  if (after) w.narrow(0, length - fade, fade).mul_(r.flip(0));
  return w;
}

}  // namespace

at::Tensor decodeTiled(AutoencoderImpl& ae, const at::Tensor& z, std::int64_t tile, std::int64_t overlap,
                       bool quantize) {
  const std::int64_t h = z.size(2), w = z.size(3);
  if (tile <= 0 || (h <= tile && w <= tile)) return ae.decode(z, quantize);
  overlap = std::clamp<std::int64_t>(overlap, 0, tile / 2);
  const std::int64_t f = ae.downsampling();
  std::int64_t th = 0, tw = 0;
  const auto ys = tileStarts(h, tile, overlap, th), xs = tileStarts(w, tile, overlap, tw);
  at::Tensor out, weight = at::zeros({1, 1, h * f, w * f}, z.options());
  for (std::size_t a = 0; a < ys.size(); ++a) {
    for (std::size_t b = 0; b < xs.size(); ++b) {
      // Each tile is decoded with `overlap` latent cells of context on every side that has
      // them, which are cut off again: the decoder's zero padding at a tile's edge then
      // never reaches the pixels kept.
      const std::int64_t y0 = std::max<std::int64_t>(0, ys[a] - overlap),
                         x0 = std::max<std::int64_t>(0, xs[b] - overlap);
      const std::int64_t y1 = std::min(h, ys[a] + th + overlap), x1 = std::min(w, xs[b] + tw + overlap);
      const at::Tensor part = ae.decode(z.narrow(2, y0, y1 - y0).narrow(3, x0, x1 - x0), quantize)
                                  .narrow(2, (ys[a] - y0) * f, th * f)
                                  .narrow(3, (xs[b] - x0) * f, tw * f);
      if (!out.defined()) out = at::zeros({z.size(0), part.size(1), h * f, w * f}, part.options());
      // Overlap actually shared with the neighbour (the last tile may overlap more).
      const std::int64_t fadeTop = a > 0 ? (ys[a - 1] + th - ys[a]) * f : 0;
      const std::int64_t fadeLeft = b > 0 ? (xs[b - 1] + tw - xs[b]) * f : 0;
      const std::int64_t fadeBottom = a + 1 < ys.size() ? (ys[a] + th - ys[a + 1]) * f : 0;
      const std::int64_t fadeRight = b + 1 < xs.size() ? (xs[b] + tw - xs[b + 1]) * f : 0;
      at::Tensor wy = at::ones({th * f}), wx = at::ones({tw * f});
      if (fadeTop) wy.narrow(0, 0, fadeTop).mul_(ramp(fadeTop, fadeTop, true, false));
      if (fadeBottom) wy.narrow(0, th * f - fadeBottom, fadeBottom).mul_(ramp(fadeBottom, fadeBottom, false, true));
      if (fadeLeft) wx.narrow(0, 0, fadeLeft).mul_(ramp(fadeLeft, fadeLeft, true, false));
      if (fadeRight) wx.narrow(0, tw * f - fadeRight, fadeRight).mul_(ramp(fadeRight, fadeRight, false, true));
      const at::Tensor mask = at::outer(wy, wx).to(part.options()).view({1, 1, th * f, tw * f});
      out.narrow(2, ys[a] * f, th * f).narrow(3, xs[b] * f, tw * f).add_(part * mask);
      weight.narrow(2, ys[a] * f, th * f).narrow(3, xs[b] * f, tw * f).add_(mask.to(weight.options()));
    }
  }
  return out / weight;
}

}  // namespace tessera
