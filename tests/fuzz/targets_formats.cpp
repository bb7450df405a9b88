// SPDX-License-Identifier: Apache-2.0
// Targets for the file formats of core/formats: what `info`, `import`, `forward`, the
// trainer and the studio read from files a user was given.
#include "tests/fuzz/fuzz_support.h"

#include "core/formats/idx.h"
#include "core/formats/image_header.h"
#include "core/formats/png.h"
#include "core/formats/safetensors.h"
#include "core/formats/torch_checkpoint.h"
#include "engine/generated_image.h"

#include <caffe2/serialize/inline_container.h>
#include <nlohmann/json.hpp>

#include <array>

namespace {

using tessera::fuzz::scratchFile;

TESSERA_FUZZ_TARGET(safetensors, "a safetensors file: header, metadata, offsets, then every tensor read") {
  auto file = tessera::SafetensorsFile::open(scratchFile("t.safetensors", bytes));
  if (!file) return;
  (void)file->parameterCount();
  for (const auto& entry : file->entries()) (void)file->load(entry.name);
}

void readCheckpoint(const std::string& path) {
  auto checkpoint = tessera::readTorchCheckpoint(path);
  if (!checkpoint) return;
  (void)tessera::extractStateDict(*checkpoint);
  for (const auto& key : checkpoint->stateDictPaths) (void)tessera::extractStateDict(*checkpoint, key);
}

TESSERA_FUZZ_TARGET(torch_checkpoint, "a torch.save file: the zip archive, its records and the pickle in it") {
  readCheckpoint(scratchFile("c.pt", bytes));
}

// The same path with the fuzzer's bytes as data.pkl of a well-formed archive (with one
// storage record, "0"), so that mutations reach the unpickler and the walk over what it
// builds instead of the zip directory.
TESSERA_FUZZ_TARGET(pickle, "data.pkl of a torch.save archive: the unpickler and the walk over its result") {
  std::string archive;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, std::size_t size) {
      archive.append(static_cast<const char*>(data), size);
      return size;
    });
    writer.writeRecord("data.pkl", bytes.data(), bytes.size());
    static const std::array<char, 256> storage{};
    writer.writeRecord("data/0", storage.data(), storage.size());
    writer.writeRecord("byteorder", "little", 6);
    writer.writeEndOfFile();
  }
  readCheckpoint(scratchFile("p.pt", archive));
}

TESSERA_FUZZ_TARGET(idx, "an IDX file (Fashion-MNIST's format), gzip-compressed or not") {
  (void)tessera::readIdx(scratchFile("i.idx", bytes));
}

TESSERA_FUZZ_TARGET(image_header, "the size a PNG or JPEG declares, read before a training image is decoded") {
  (void)tessera::readImageDimensions(bytes);
}

TESSERA_FUZZ_TARGET(png, "a PNG and its text metadata: the generation settings the studio reads back") {
  auto png = tessera::readPng(scratchFile("i.png", bytes));
  if (!png) return;
  for (const auto& [key, value] : png->text) {
    const auto json = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
    if (json.is_object()) (void)tessera::requestFromMetadata(json);
  }
}

}  // namespace
