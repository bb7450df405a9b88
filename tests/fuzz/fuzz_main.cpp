// SPDX-License-Identifier: Apache-2.0
// tessera_fuzz --target=NAME [libFuzzer options] [CORPUS...]   (fuzz preset: libFuzzer)
// tessera_fuzz --target=NAME FILE_OR_FOLDER...                  (other builds: replay)
// tessera_fuzz --list
#include "tests/fuzz/fuzz_support.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

namespace tessera::fuzz {
namespace {

struct Target {
  std::string name, what;
  TargetFunction run = nullptr;
};

std::vector<Target>& targets() {
  static std::vector<Target> all;
  return all;
}

const Target* g_target = nullptr;

std::string listing() {
  std::vector<Target> sorted = targets();
  std::sort(sorted.begin(), sorted.end(), [](const Target& a, const Target& b) { return a.name < b.name; });
  std::string out;
  for (const auto& t : sorted)
    out += "  " + t.name + std::string(t.name.size() < 20 ? 20 - t.name.size() : 1, ' ') + t.what + "\n";
  return out;
}

/// The target named by --target=NAME among the arguments (libFuzzer ignores options that
/// start with two dashes), or null after saying what is wrong.
const Target* chooseTarget(int argc, char** argv) {
  std::string name;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--target=", 9) == 0) name = argv[i] + 9;
  if (name.empty()) {
    std::cerr << "tessera_fuzz: --target=NAME is required; the targets:\n" << listing();
    return nullptr;
  }
  for (const auto& t : targets())
    if (t.name == name) return &t;
  std::cerr << "tessera_fuzz: no target '" << name << "'; the targets:\n" << listing();
  return nullptr;
}

void removeScratch() {
  std::error_code ec;
  std::filesystem::remove_all(scratchFolder(), ec);
}

}  // namespace

TargetRegistration::TargetRegistration(const char* name, const char* what, TargetFunction run) {
  targets().push_back({name, what, run});
}

const std::string& scratchFolder() {
  // Never destroyed: the exit handler that removes it runs after static destructors would.
  static const std::string* const folder = [] {
    // In memory where there is a tmpfs for it: the targets that parse files write one per
    // input (a gallery's database, with SQLite's journal beside it).
    std::error_code ec;
    const std::filesystem::path base = std::filesystem::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK) == 0
                                           ? std::filesystem::path("/dev/shm")
                                           : std::filesystem::temp_directory_path();
    const auto path = base / ("tessera-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
    auto* name = new std::string(path.string());
    std::atexit(removeScratch);
    return name;
  }();
  return *folder;
}

std::string scratchFile(const std::string& name, std::string_view bytes) {
  const std::string path = scratchFolder() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::cerr << "tessera_fuzz: cannot write " << path << "\n";
    std::abort();  // the harness itself failed: not a finding in the parser
  }
  return path;
}

}  // namespace tessera::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  tessera::fuzz::g_target->run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}

#ifdef TESSERA_LIBFUZZER
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  for (int i = 1; i < *argc; ++i)
    if (std::strcmp((*argv)[i], "--list") == 0) {
      std::cout << tessera::fuzz::listing();
      std::exit(0);
    }
  tessera::fuzz::g_target = tessera::fuzz::chooseTarget(*argc, *argv);
  if (!tessera::fuzz::g_target) std::exit(2);
  return 0;
}
#else
// Replays files through a target: the seed corpus and the inputs of past findings, in
// every build (the unit label runs it), so that a finding fixed stays fixed.
int main(int argc, char** argv) {
  using namespace tessera::fuzz;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--list") == 0) {
      std::cout << listing();
      return 0;
    }
  g_target = chooseTarget(argc, argv);
  if (!g_target) return 2;
  std::vector<std::filesystem::path> files;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--", 2) == 0) continue;
    const std::filesystem::path p(argv[i]);
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (std::filesystem::is_regular_file(p, ec)) {
      files.push_back(p);
    } else {
      std::cerr << "tessera_fuzz: " << p << ": no such file or folder\n";
      return 2;
    }
  }
  if (files.empty()) {
    std::cerr << "tessera_fuzz: no inputs to replay (give files or folders)\n";
    return 2;
  }
  std::sort(files.begin(), files.end());
  std::uintmax_t bytes = 0;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    bytes += data.size();
    std::cerr << "tessera_fuzz: " << g_target->name << " <- " << f.string() << "\n";
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
  }
  std::cout << g_target->name << ": replayed " << files.size() << " inputs (" << bytes << " bytes), all handled\n";
  return 0;
}
#endif
