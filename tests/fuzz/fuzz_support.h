// SPDX-License-Identifier: Apache-2.0
// The fuzzing harness: every parser of untrusted bytes is a target of one executable,
// tessera_fuzz, chosen with --target=NAME. Built with the fuzz preset (clang, libFuzzer,
// AddressSanitizer and UndefinedBehaviorSanitizer) it mutates inputs; built by any other
// preset it replays files (the seed corpus and every input a finding left behind), which
// the unit tests do on every build. See tests/fuzz/README.md.
#pragma once

#include <string>
#include <string_view>

namespace tessera::fuzz {

/// Runs one input through a parser. A target must return normally for every input: a crash,
/// a sanitizer report, an exception escaping it, a hang or unbounded memory is a finding.
using TargetFunction = void (*)(std::string_view bytes);

/// Registers a target at static initialisation (the executable holds every target).
struct TargetRegistration {
  TargetRegistration(const char* name, const char* what, TargetFunction run);
};

/// Writes `bytes` to the file `name` in this process's scratch folder (removed at exit) and
/// returns its path: the parsers read files, as the programs do.
std::string scratchFile(const std::string& name, std::string_view bytes);
/// This process's scratch folder.
const std::string& scratchFolder();

}  // namespace tessera::fuzz

/// Defines target NAME: TESSERA_FUZZ_TARGET(idx, "an IDX file") { ... uses `bytes` ... }
#define TESSERA_FUZZ_TARGET(NAME, WHAT)                                                                              \
  static void tesseraFuzz_##NAME(std::string_view bytes);                                                            \
  static const ::tessera::fuzz::TargetRegistration tesseraFuzzRegistration_##NAME(#NAME, WHAT, &tesseraFuzz_##NAME); \
  static void tesseraFuzz_##NAME(std::string_view bytes)
