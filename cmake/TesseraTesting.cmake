# SPDX-License-Identifier: Apache-2.0
# The test programs are Qt Test classes, one source file each, compiled into one executable,
# tessera_tests (tests/support/test_main.cpp), so that LibTorch's headers and the project's
# libraries are compiled and linked once for all of them: with the unity build, a few
# translation units instead of one per program. Each program is still its own CTest test and
# its own process: `tessera_tests <name> [Qt Test options]`.
#
# tessera_add_test(NAME <name> SOURCES <src...> LABEL unit|integration|gui|slow
#                  [LIBS <targets...>] [TIMEOUT <seconds>] [XVFB])
# Adds the program <name> (its first source is <name>.cpp, which registers its class with
# TESSERA_TEST_MAIN) and registers it with CTest under its label and timeout. Every test runs
# with QT_QPA_PLATFORM=offscreen and knows the source tree (TESSERA_SOURCE_DIR) and the built
# executables (TESSERA_CLI, TESSERA_GUI_EXE). XVFB: the test needs OpenGL, so it runs on the
# xcb platform under a virtual X server (xvfb-run, Debian's xvfb); without xvfb-run it is not
# registered, with a warning. Call tessera_finish_tests() after the last one.
set(TESSERA_TEST_TIME_SCALE 1 CACHE STRING "Multiplies every test's time limits (the sanitizer presets raise it)")

function(tessera_add_test)
  cmake_parse_arguments(T "XVFB" "NAME;LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT T_LABEL MATCHES "^(unit|integration|gui|slow)$")
    message(FATAL_ERROR "tessera_add_test(${T_NAME}): LABEL must be unit, integration, gui or slow")
  endif()
  list(GET T_SOURCES 0 _main)
  get_filename_component(_main_name "${_main}" NAME_WE)
  if(NOT _main_name STREQUAL T_NAME)
    message(FATAL_ERROR "tessera_add_test(${T_NAME}): the first source must be ${T_NAME}.cpp (the program is named after its file)")
  endif()
  if(NOT T_TIMEOUT)
    if(T_LABEL STREQUAL "unit")
      set(T_TIMEOUT 60)
    elseif(T_LABEL STREQUAL "slow")
      set(T_TIMEOUT 3600)
    else()
      set(T_TIMEOUT 300)
    endif()
  endif()
  # Sanitizer builds run several times slower: their presets scale every limit (CTest's and
  # the tests' own waits on child processes, through TESSERA_TEST_TIME_SCALE).
  math(EXPR T_TIMEOUT "${T_TIMEOUT} * ${TESSERA_TEST_TIME_SCALE}")
  # Qt Test's own limit per test function (5 min by default) is never tighter than the
  # test's: a slow training function may take most of its hour.
  math(EXPR _function_ms "${T_TIMEOUT} * 1000")
  if(NOT TARGET tessera_tests)
    add_executable(tessera_tests ${PROJECT_SOURCE_DIR}/tests/support/test_main.cpp
                   ${PROJECT_SOURCE_DIR}/tests/support/test_main.h)
    set_target_properties(tessera_tests PROPERTIES AUTOMOC ON)
    target_link_libraries(tessera_tests PRIVATE tessera_common_cfg Qt6::Test)
    target_include_directories(tessera_tests PRIVATE ${PROJECT_SOURCE_DIR})
    target_compile_definitions(tessera_tests PRIVATE
      TESSERA_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
      TESSERA_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data")
    if(TARGET tessera-cli)
      target_compile_definitions(tessera_tests PRIVATE TESSERA_CLI="$<TARGET_FILE:tessera-cli>")
    endif()
    if(TARGET tessera)
      target_compile_definitions(tessera_tests PRIVATE TESSERA_GUI_EXE="$<TARGET_FILE:tessera>")
    endif()
  endif()
  target_sources(tessera_tests PRIVATE ${T_SOURCES})
  target_link_libraries(tessera_tests PRIVATE ${T_LIBS})

  set(_platform offscreen)
  if(T_XVFB)
    find_program(TESSERA_XVFB_RUN xvfb-run)
    if(NOT TESSERA_XVFB_RUN)
      message(WARNING "${T_NAME} needs xvfb-run (Debian: xvfb, xauth): not registered")
      return()
    endif()
    add_test(NAME ${T_NAME} COMMAND ${TESSERA_XVFB_RUN} -a -s "-screen 0 1280x1024x24" $<TARGET_FILE:tessera_tests> ${T_NAME})
    set(_platform xcb)
  else()
    add_test(NAME ${T_NAME} COMMAND tessera_tests ${T_NAME})
  endif()
  set_tests_properties(${T_NAME} PROPERTIES
    LABELS ${T_LABEL}
    TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "QT_QPA_PLATFORM=${_platform};TESSERA_TEST_TMP=${CMAKE_CURRENT_BINARY_DIR}/tmp;TESSERA_TEST_TIME_SCALE=${TESSERA_TEST_TIME_SCALE};QTEST_FUNCTION_TIMEOUT=${_function_ms}")
endfunction()

# tessera_finish_tests(): after the last tessera_add_test(): the precompiled header, kept out
# of AUTOMOC's own file.
function(tessera_finish_tests)
  tessera_use_pch(tessera_tests)
  tessera_skip_pch_for_moc(tessera_tests)
endfunction()
