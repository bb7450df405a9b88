// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>

namespace tessera {

enum class TensorFileFormat { Safetensors, TorchZip, LegacyTorch, Unknown };

/// What a tensor file is, from its first bytes: a torch.save zip archive ("PK\3\4"), a
/// pre-1.6 torch.save pickle (0x80, protocol), or safetensors (a JSON header after the
/// 8-byte length). A file too short or damaged to tell counts as safetensors when its
/// name says so, so that the safetensors reader can say precisely what is wrong.
TensorFileFormat detectTensorFileFormat(const std::string& path);

}  // namespace tessera
