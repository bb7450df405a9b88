// SPDX-License-Identifier: Apache-2.0
#include "engine/plugin_loader.h"

#include "core/samplers/sampler.h"
#include "models/registry.h"
#include "plugins/tessera_plugin.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

namespace tessera {
namespace {

namespace fs = std::filesystem;

struct LoaderState {
  std::mutex mutex;
  std::vector<std::string> vetter;  ///< command of the vetting child (setPluginVetter)
  int vetSeconds = 30;
  std::vector<PluginInfo> loaded;
  std::vector<PluginLoadResult> report;
};

LoaderState& loaderState() {
  static LoaderState state;
  return state;
}

struct DlClose {
  void operator()(void* handle) const { dlclose(handle); }
};
using LibraryHandle = std::unique_ptr<void, DlClose>;

std::string text(const char* s) { return s ? std::string(s) : std::string(); }

/// Collects a plugin's additions against copies of the registries, so that collisions
/// are found by the registries' own rules while nothing is committed yet. Remembers
/// every refusal, so that a plugin ignoring a failed add is still refused.
class StagingRegistrar final : public PluginRegistrar {
public:
  StagingRegistrar() : m_samplerTrial(samplerRegistry()), m_backboneTrial(backboneRegistry()) {}

  Result<void> addSampler(SamplerEntry entry) override {
    if (entry.name.empty()) return refuse("a sampler needs a name");
    if (!entry.make) return refuse("sampler '" + entry.name + "' has no factory (SamplerEntry::make)");
    for (const auto& name : withAliases(entry))
      if (samplerRegistry().find(name))
        return refuse("sampler name '" + name + "' is already registered (built in or by another plugin)");
    if (entry.diffusionGrid != "uniform" && entry.diffusionGrid != "respaced-ddpm" && entry.diffusionGrid != "respaced-ddim")
      return refuse("sampler '" + entry.name + "': unknown diffusionGrid '" + entry.diffusionGrid +
                    "' (expected uniform, respaced-ddpm or respaced-ddim)");
    if (auto ok = m_samplerTrial.add(entry); !ok) return refuse(ok.error().message());
    m_samplers.push_back(std::move(entry));
    return {};
  }

  Result<void> addBackbone(BackboneEntry entry) override {
    if (backboneRegistry().find(entry.name))
      return refuse("backbone '" + entry.name + "' is already registered (built in or by another plugin)");
    if (auto ok = m_backboneTrial.add(entry); !ok) return refuse(ok.error().message());
    m_backbones.push_back(std::move(entry));
    return {};
  }

  std::vector<SamplerEntry>& samplers() { return m_samplers; }
  std::vector<BackboneEntry>& backbones() { return m_backbones; }
  const std::vector<std::string>& refusals() const { return m_refusals; }

private:
  static std::vector<std::string> withAliases(const SamplerEntry& entry) {
    std::vector<std::string> names = entry.aliases;
    names.insert(names.begin(), entry.name);
    return names;
  }
  tl::unexpected<Error> refuse(std::string message) {
    m_refusals.push_back(message);
    return fail(std::move(message));
  }

  SamplerRegistry m_samplerTrial;
  BackboneRegistry m_backboneTrial;
  std::vector<SamplerEntry> m_samplers;
  std::vector<BackboneEntry> m_backbones;
  std::vector<std::string> m_refusals;
};

/// Calls the plugin's registration with a staging registrar and, when everything was
/// accepted, commits it. Returns the refusal ("" when committed). `committedPartly` is
/// set when a commit failed half way, which the staging makes impossible unless the
/// registries changed meanwhile: the plugin must then stay loaded.
std::string registerPlugin(const TesseraPluginDescriptor& d, PluginInfo& info, bool& committedPartly) {
  StagingRegistrar staging;
  std::string refusal;
  try {
    // Copied at once: the message lives in the plugin.
    if (const char* message = d.registerAll(staging)) refusal = message[0] ? message : "registration failed";
  } catch (const c10::Error& e) {
    refusal = std::string("registration threw: ") + e.what_without_backtrace();
  } catch (const std::exception& e) {
    refusal = std::string("registration threw: ") + e.what();
  } catch (...) {
    refusal = "registration threw an unknown exception";
  }
  if (refusal.empty() && !staging.refusals().empty()) refusal = staging.refusals().front();
  if (!refusal.empty()) return refusal;  // the staged entries, plugin code, go before the library does
  for (auto& entry : staging.samplers()) {
    const std::string name = entry.name;
    if (auto ok = addPluginSampler(std::move(entry)); !ok) {
      committedPartly = !info.samplers.empty();
      return ok.error().message();
    }
    info.samplers.push_back(name);
  }
  for (auto& entry : staging.backbones()) {
    const std::string name = entry.name;
    if (auto ok = addPluginBackbone(std::move(entry)); !ok) {
      committedPartly = !info.samplers.empty() || !info.backbones.empty();
      return ok.error().message();
    }
    info.backbones.push_back(name);
  }
  return {};
}

extern "C" char** environ;

/// Runs the vetter on `path` in a child process (stdout and stderr into one pipe) and
/// says what became of it.
Result<void> vetInChild(const LoaderState& state, const std::string& path) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return fail(std::string("cannot vet it: pipe: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDERR_FILENO);
  std::vector<std::string> args = state.vetter;
  args.push_back(path);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t child = 0;
  const int spawned = posix_spawn(&child, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  if (spawned != 0) {
    close(out[0]);
    return fail("cannot vet it: cannot start " + args[0] + ": " + std::strerror(spawned));
  }
  // Read what it says until it closes its end or the time is up.
  std::string said;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(state.vetSeconds);
  bool hung = false;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      hung = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000))) < 0 && errno != EINTR) break;
    if (p.revents & (POLLIN | POLLHUP)) {
      char buffer[4096];
      const ssize_t n = read(out[0], buffer, sizeof buffer);
      if (n <= 0) break;
      if (said.size() < 65536) said.append(buffer, static_cast<std::size_t>(n));
    }
  }
  close(out[0]);
  // It may have closed its output and still be running: wait for it within the same time.
  int status = 0;
  for (;;) {
    const pid_t done = hung ? 0 : waitpid(child, &status, WNOHANG);
    if (done == child || (done < 0 && errno != EINTR)) break;
    if (hung || std::chrono::steady_clock::now() >= deadline) {
      hung = true;
      kill(child, SIGKILL);
      while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Its last line that says something: the refusal, or the end of a crash report.
  std::string last;
  for (std::size_t end = said.size(); end > 0 && last.empty();) {
    const std::size_t begin = said.rfind('\n', end - 1);
    const std::size_t from = begin == std::string::npos ? 0 : begin + 1;
    last = said.substr(from, end - from);
    if (begin == std::string::npos) break;
    end = begin;
  }
  if (hung)
    return fail("did not finish loading within " + std::to_string(state.vetSeconds) +
                " s in a separate process (it hangs at load); refused without loading it here");
  if (WIFSIGNALED(status))
    return fail(std::string("crashed while loading in a separate process (signal ") + std::to_string(WTERMSIG(status)) +
                ", " + strsignal(WTERMSIG(status)) + "); refused without loading it here" +
                (last.empty() ? "" : ": " + last));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    // The child's refusal names the plugin, as this process's will: keep only the reason.
    const std::string prefix = "plugin " + path + ": ";
    if (last.rfind(prefix, 0) == 0) last.erase(0, prefix.size());
    return fail(last.empty() ? "refused in a separate process (exit " + std::to_string(WEXITSTATUS(status)) + ")"
                             : last);
  }
  return {};
}

Result<PluginInfo> loadLocked(LoaderState& state, const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return fail("no such file");
  if (fs::is_directory(path, ec)) return fail("is a directory, expected a plugin (.so)");
  const std::string canonical = fs::canonical(path, ec).string();
  if (ec) return fail("cannot resolve the path: " + ec.message());
  for (const auto& p : state.loaded)
    if (p.path == canonical) return p;

  if (!state.vetter.empty())
    if (auto ok = vetInChild(state, canonical); !ok) return fail(ok.error());
  dlerror();
  LibraryHandle library(dlopen(canonical.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (!library) {
    std::string why = text(dlerror());
    if (why.rfind(canonical + ": ", 0) == 0) why.erase(0, canonical.size() + 2);  // we name the file already
    return fail("cannot load: " + why);
  }
  dlerror();
  void* symbol = dlsym(library.get(), TESSERA_PLUGIN_ENTRY_POINT);
  if (!symbol) return fail("not a Tessera plugin: no " TESSERA_PLUGIN_ENTRY_POINT);
  const TesseraPluginDescriptor* d = nullptr;
  try {
    d = reinterpret_cast<TesseraPluginEntryPoint>(symbol)();
  } catch (...) {
    return fail(TESSERA_PLUGIN_ENTRY_POINT " threw");
  }
  if (!d) return fail("not a Tessera plugin: " TESSERA_PLUGIN_ENTRY_POINT " returned null");
  const std::string name = d->name && d->name[0] ? d->name : fs::path(canonical).filename().string();
  if (auto ok = checkPluginDescriptor(*d, name); !ok) return fail(ok.error());
  for (const auto& p : state.loaded)
    if (p.name == name) return fail("a plugin named '" + name + "' is already loaded from " + p.path);

  PluginInfo info;
  info.path = canonical;
  info.name = name;
  info.version = text(d->version);
  info.description = text(d->description);
  info.torchVersion = text(d->torchVersion);
  info.tesseraVersion = text(d->tesseraVersion);
  bool committedPartly = false;
  const std::string refusal = registerPlugin(*d, info, committedPartly);
  if (!refusal.empty()) {
    // Part of it is in the registries: its code must stay (never expected; see registerPlugin).
    if (committedPartly) (void)library.release();
    return fail("plugin '" + name + "' refused: " + refusal);
  }
  // Never unloaded: the registries hold its code from now on.
  (void)library.release();
  state.loaded.push_back(info);
  return info;
}

}  // namespace

Result<void> checkPluginDescriptor(const TesseraPluginDescriptor& d, const std::string& name) {
  const std::string who = "plugin '" + name + "'";
  if (d.abi != TESSERA_PLUGIN_ABI)
    return fail(who + " was built for plugin interface " + std::to_string(d.abi) + ", this Tessera has " +
                std::to_string(TESSERA_PLUGIN_ABI) + " (rebuild it against this Tessera's plugins/tessera_plugin.h)");
  if (d.size != sizeof(TesseraPluginDescriptor))
    return fail(who + " has a descriptor of " + std::to_string(d.size) + " bytes, plugin interface " +
                std::to_string(TESSERA_PLUGIN_ABI) + " has " + std::to_string(sizeof(TesseraPluginDescriptor)) +
                " (was tessera_plugin.h changed without bumping TESSERA_PLUGIN_ABI?)");
  if (text(d.torchVersion) != TORCH_VERSION)
    return fail(who + " was built against LibTorch " + text(d.torchVersion) + ", this Tessera uses " TORCH_VERSION);
  if (d.cxx11Abi != TESSERA_PLUGIN_CXX11_ABI)
    return fail(who + " was built with _GLIBCXX_USE_CXX11_ABI=" + std::to_string(d.cxx11Abi) + ", this Tessera with " +
                std::to_string(TESSERA_PLUGIN_CXX11_ABI) + " (std::string would not match)");
  if (!d.registerAll) return fail(who + " has no registration function");
  return {};
}

nlohmann::json PluginInfo::toJson() const {
  return {{"name", name},
          {"version", version},
          {"description", description},
          {"path", path},
          {"samplers", samplers},
          {"backbones", backbones},
          {"built_with", {{"libtorch", torchVersion}, {"tessera", tesseraVersion}}}};
}

Result<PluginInfo> loadPlugin(const std::string& path) {
  LoaderState& state = loaderState();
  std::lock_guard<std::mutex> lock(state.mutex);
  Result<PluginInfo> result = loadLocked(state, path);
  if (!result) result = fail(result.error().withContext("plugin " + path));
  auto same = std::find_if(state.report.begin(), state.report.end(), [&](const PluginLoadResult& r) { return r.path == path; });
  if (same != state.report.end()) same->plugin = result;
  else state.report.push_back({path, result});
  return result;
}

void setPluginVetter(std::vector<std::string> command, int seconds) {
  LoaderState& state = loaderState();
  std::lock_guard<std::mutex> lock(state.mutex);
  state.vetter = std::move(command);
  state.vetSeconds = std::max(1, seconds);
}

int vetPluginMain(const std::string& path) {
  setPluginVetter({});
  auto loaded = loadPlugin(path);
  if (!loaded) {
    std::fprintf(stderr, "%s\n", loaded.error().message().c_str());
    return 2;
  }
  return 0;
}

std::vector<PluginLoadResult> loadPluginsFrom(const std::vector<std::string>& directories) {
  std::vector<PluginLoadResult> results;
  for (const auto& dir : directories) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> files;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      if (it->path().extension() == ".so" && !it->is_directory(ec)) files.push_back(it->path());
    std::sort(files.begin(), files.end());
    for (const auto& file : files) results.push_back({file.string(), loadPlugin(file.string())});
  }
  return results;
}

std::vector<std::string> pluginSearchPath() {
  std::vector<std::string> dirs;
  auto add = [&dirs](const std::string& dir) {
    if (!dir.empty() && std::find(dirs.begin(), dirs.end(), dir) == dirs.end()) dirs.push_back(dir);
  };
  if (const char* env = std::getenv("TESSERA_PLUGIN_PATH")) {
    const std::string list = env;
    for (std::size_t begin = 0; begin <= list.size();) {
      std::size_t end = list.find(':', begin);
      if (end == std::string::npos) end = list.size();
      add(list.substr(begin, end - begin));
      begin = end + 1;
    }
  }
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) add((exe.parent_path() / ".." / "lib" / "tessera" / "plugins").lexically_normal().string());
  return dirs;
}

std::vector<PluginInfo> loadedPlugins() {
  LoaderState& state = loaderState();
  std::lock_guard<std::mutex> lock(state.mutex);
  return state.loaded;
}

std::vector<PluginLoadResult> pluginLoadReport() {
  LoaderState& state = loaderState();
  std::lock_guard<std::mutex> lock(state.mutex);
  return state.report;
}

}  // namespace tessera
