// SPDX-License-Identifier: Apache-2.0
#pragma once
// The test programs are Qt Test classes compiled into one executable, tessera_tests, so that
// LibTorch's headers and the project's libraries are compiled and linked once, not once per
// program. Each source file registers its class in place of QTEST_MAIN, under the file's
// name; CTest runs `tessera_tests <name> [Qt Test options]`, one process per program, as
// before. `tessera_tests --list` names them all.
#include <QObject>

#include <memory>

namespace tessera::testing {

/// What the test class needs around it, as Qt Test's three main macros provide it.
enum class App {
  Appless,  ///< QTEST_APPLESS_MAIN: no application object
  Guiless,  ///< QTEST_GUILESS_MAIN: a QCoreApplication (event loop, no GUI)
  Gui,      ///< QTEST_MAIN: a QApplication (widgets)
};

using MakeTest = std::unique_ptr<QObject> (*)();

/// How many times longer than usual this build's tests may take: the TESSERA_TEST_TIME_SCALE
/// that CTest passes (the sanitizer presets set 6), 1 when unset. Scales the tests' own waits.
int timeScale();

/// Registers the test program named after `sourceFile` (its base name without extension).
/// Returns true; two files of the same name abort at start-up.
bool registerTest(const char* sourceFile, App app, MakeTest make);

}  // namespace tessera::testing

/// In place of QTEST_MAIN(TestClass) & co: TESSERA_TEST_MAIN(TestClass, Appless|Guiless|Gui).
#define TESSERA_TEST_MAIN(TestClass, app)                                                                           \
  namespace {                                                                                                       \
  const bool tesseraTestRegistered##TestClass =                                                                     \
      ::tessera::testing::registerTest(__FILE__, ::tessera::testing::App::app,                                      \
                                       []() -> std::unique_ptr<QObject> { return std::make_unique<TestClass>(); }); \
  }
