// SPDX-License-Identifier: Apache-2.0
// main() of tessera_tests: runs the one test program named by the first argument, with the
// application object Qt Test's own main macro would have made for it.
#include "tests/support/test_main.h"

#include <QCoreApplication>
#include <QtTest>
#ifdef QT_WIDGETS_LIB
#include <QApplication>
#endif

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace tessera::testing {
namespace {

struct Entry {
  App app;
  MakeTest make;
};

std::map<std::string, Entry>& programs() {
  static std::map<std::string, Entry> all;
  return all;
}

std::string baseName(const char* path) {
  std::string name = path;
  const std::size_t slash = name.find_last_of('/');
  if (slash != std::string::npos) name.erase(0, slash + 1);
  const std::size_t dot = name.find('.');
  if (dot != std::string::npos) name.erase(dot);
  return name;
}

int usage(const char* self, const char* complaint) {
  if (complaint) std::fprintf(stderr, "%s: %s\n", self, complaint);
  std::fprintf(stderr, "usage: %s <test program> [Qt Test options]   (--list names the programs)\n", self);
  return 2;
}

template <typename Application>
int runWith(int argc, char** argv, const Entry& e) {
  Application app(argc, argv);
  app.setAttribute(Qt::AA_Use96Dpi, true);
  const std::unique_ptr<QObject> test = e.make();
  return QTest::qExec(test.get(), argc, argv);
}

}  // namespace

int timeScale() {
  static const int scale = [] {
    const char* v = std::getenv("TESSERA_TEST_TIME_SCALE");
    const int n = v ? std::atoi(v) : 1;
    return n >= 1 ? n : 1;
  }();
  return scale;
}

bool registerTest(const char* sourceFile, App app, MakeTest make) {
  const std::string name = baseName(sourceFile);
  if (!programs().emplace(name, Entry{app, make}).second) {
    std::fprintf(stderr, "tessera_tests: two test programs named %s\n", name.c_str());
    std::abort();
  }
  return true;
}

}  // namespace tessera::testing

int main(int argc, char** argv) {
  using namespace tessera::testing;
  if (argc < 2) return usage(argv[0], "name the test program to run");
  if (std::strcmp(argv[1], "--list") == 0) {
    for (const auto& [name, entry] : programs()) std::printf("%s\n", name.c_str());
    return 0;
  }
  const auto it = programs().find(argv[1]);
  if (it == programs().end()) {
    const std::string complaint = std::string("no test program named '") + argv[1] + "' (see --list)";
    return usage(argv[0], complaint.c_str());
  }
  // Qt Test reads the rest of the command line, behind the program's own path.
  std::vector<char*> args{argv[0]};
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);
  switch (it->second.app) {
    case App::Appless: {
      const std::unique_ptr<QObject> test = it->second.make();
      return QTest::qExec(test.get(), n, args.data());
    }
    case App::Guiless:
      return runWith<QCoreApplication>(n, args.data(), it->second);
    case App::Gui:
#ifdef QT_WIDGETS_LIB
      return runWith<QApplication>(n, args.data(), it->second);
#else
      std::fprintf(stderr, "%s: %s needs Qt Widgets, which this build leaves out\n", argv[0], argv[1]);
      return 2;
#endif
  }
  return 2;
}
