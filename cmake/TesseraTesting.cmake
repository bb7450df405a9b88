# SPDX-License-Identifier: Apache-2.0
# tessera_add_test(NAME <name> SOURCES <src...> LABEL unit|integration|gui|slow
#                  [LIBS <targets...>] [TIMEOUT <seconds>] [XVFB])
# One Qt Test program registered with CTest, its label and timeout. Every test runs
# with QT_QPA_PLATFORM=offscreen and knows the source tree (TESSERA_SOURCE_DIR) and
# the built executables (TESSERA_CLI, TESSERA_GUI_EXE). XVFB: the test needs OpenGL, so it
# runs on the xcb platform under a virtual X server (xvfb-run, Debian's xvfb); without
# xvfb-run it is not registered, with a warning.
function(tessera_add_test)
  cmake_parse_arguments(T "XVFB" "NAME;LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT T_LABEL MATCHES "^(unit|integration|gui|slow)$")
    message(FATAL_ERROR "tessera_add_test(${T_NAME}): LABEL must be unit, integration, gui or slow")
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
  add_executable(${T_NAME} ${T_SOURCES})
  set_target_properties(${T_NAME} PROPERTIES AUTOMOC ON)
  target_link_libraries(${T_NAME} PRIVATE tessera_common_cfg Qt6::Test ${T_LIBS})
  # A test of a Tessera library compiles LibTorch code: the shared precompiled header.
  if(T_LIBS MATCHES "(^|;)tessera_")
    tessera_use_pch(${T_NAME})
  endif()
  tessera_skip_pch_for_moc(${T_NAME})
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_definitions(${T_NAME} PRIVATE
    TESSERA_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    TESSERA_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data")
  if(TARGET tessera-cli)
    target_compile_definitions(${T_NAME} PRIVATE TESSERA_CLI="$<TARGET_FILE:tessera-cli>")
  endif()
  if(TARGET tessera)
    target_compile_definitions(${T_NAME} PRIVATE TESSERA_GUI_EXE="$<TARGET_FILE:tessera>")
  endif()
  set(_platform offscreen)
  if(T_XVFB)
    find_program(TESSERA_XVFB_RUN xvfb-run)
    if(NOT TESSERA_XVFB_RUN)
      message(WARNING "${T_NAME} needs xvfb-run (Debian: xvfb, xauth): not registered")
      return()
    endif()
    add_test(NAME ${T_NAME} COMMAND ${TESSERA_XVFB_RUN} -a -s "-screen 0 1280x1024x24" $<TARGET_FILE:${T_NAME}>)
    set(_platform xcb)
  else()
    add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  endif()
  set_tests_properties(${T_NAME} PROPERTIES
    LABELS ${T_LABEL}
    TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "QT_QPA_PLATFORM=${_platform};TESSERA_TEST_TMP=${CMAKE_CURRENT_BINARY_DIR}/tmp")
endfunction()
