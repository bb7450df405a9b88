# SPDX-License-Identifier: Apache-2.0
# Project-wide build setup: compiler cache, the common configuration target every
# target links, and LibTorch behind one INTERFACE target.

set(CMAKE_EXPORT_COMPILE_COMMANDS ON)

# ccache: precompiled headers need 'pch_defines,time_macros' sloppiness to hit.
find_program(TESSERA_CCACHE ccache)
if(TESSERA_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      ${TESSERA_CCACHE})
  message(STATUS "Tessera: using ccache (${TESSERA_CCACHE})")
endif()

# Unity builds: each target's sources compiled a batch at a time, one translation unit per
# batch. Most of a Tessera translation unit's compile time is LibTorch's inline templates,
# instantiated and code-generated once per unit: three CLI commands compiled separately
# took 97 s, as one unit 39 s. TESSERA_UNITY_BUILD=OFF gives one unit per file (quicker
# rebuilds of a single edited file).
option(TESSERA_UNITY_BUILD "Compile each target's sources in batches (unity build)" ON)
set(CMAKE_UNITY_BUILD ${TESSERA_UNITY_BUILD})
set(CMAKE_UNITY_BUILD_BATCH_SIZE 8)
# AUTOMOC needs nothing that a target's dependencies generate: let each target's moc
# start without waiting for its libraries to link.
set(CMAKE_AUTOGEN_ORIGIN_DEPENDS OFF)

# --- tessera_common_cfg: standard, warnings and strict Qt defines for everyone.
add_library(tessera_common_cfg INTERFACE)
target_compile_features(tessera_common_cfg INTERFACE cxx_std_17)
set(CMAKE_CXX_EXTENSIONS OFF)
target_compile_options(tessera_common_cfg INTERFACE -Wall -Wextra
                       $<$<BOOL:${TESSERA_WERROR}>:-Werror>
                       # The programs' copies of inline functions (Qt 6's among them) stay
                       # out of their dynamic symbol tables, where they would take the
                       # place of Qt 5's own in the Qt 5 libraries Debian's LibTorch loads
                       # (cmake/plugin_exports.list).
                       -fvisibility-inlines-hidden)
target_compile_definitions(tessera_common_cfg INTERFACE
  QT_NO_KEYWORDS                       # LibTorch's ivalue.h has a member named slots()
  QT_NO_CAST_FROM_ASCII
  QT_NO_NARROWING_CONVERSIONS_IN_CONNECT
  QT_NO_URL_CAST_FROM_STRING
  TESSERA_VERSION_STRING="${PROJECT_VERSION}")

# --- tessera_torch: LibTorch as one INTERFACE target (includes as SYSTEM so that
# -Wall -Wextra judge only our code).
find_package(Torch REQUIRED)
add_library(tessera_torch INTERFACE)
target_include_directories(tessera_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
target_link_libraries(tessera_torch INTERFACE ${TORCH_LIBRARIES})
if(TORCH_CXX_FLAGS)
  separate_arguments(_tessera_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
  target_compile_options(tessera_torch INTERFACE ${_tessera_torch_flags})
endif()
# Position-independent code for every LibTorch user: the plugins need it, Qt adds it to
# everything that links Qt, and with one setting everywhere one precompiled header fits all
# (GCC ignores a header built with other -fPIC/-fPIE settings). On x86-64 it costs nothing
# measurable: the code addresses its data relative to the instruction pointer either way.
target_compile_options(tessera_torch INTERFACE -fPIC)
message(STATUS "Tessera: LibTorch ${Torch_VERSION} from ${Torch_DIR}")

# tessera_read_def(<file> <MACRO> <out>): the names a .def file lists, one line MACRO(name)
# each, in order (the registries #include the same file); CMake reconfigures when it changes.
function(tessera_read_def file macro out)
  file(STRINGS ${file} _lines REGEX "^${macro}\\(")
  set(_names)
  foreach(_line IN LISTS _lines)
    string(REGEX REPLACE "^${macro}\\(([a-z0-9_]+)\\).*" "\\1" _name "${_line}")
    list(APPEND _names ${_name})
  endforeach()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${file})
  set(${out} ${_names} PARENT_SCOPE)
endfunction()

# tessera_folder_sources(<VAR> <out> <folder...>): the sources of folders that each list
# their own in <folder>/sources.cmake (as VAR, relative to the folder), paths from here.
function(tessera_folder_sources var out)
  set(_all)
  foreach(_folder IN LISTS ARGN)
    set(${var})
    include(${CMAKE_CURRENT_SOURCE_DIR}/${_folder}/sources.cmake)
    list(TRANSFORM ${var} PREPEND "${_folder}/")
    list(APPEND _all ${${var}})
  endforeach()
  set(${out} ${_all} PARENT_SCOPE)
endfunction()

# tessera_use_pch(<target>): compile <target> with the project's one precompiled LibTorch
# header (core/pch.h, built by tessera_pch in core/CMakeLists.txt).
# tessera_export_for_plugins(<executable>): plugins call Tessera's functions, which live in
# the executable (the libraries are static): put those, and only those, in its dynamic
# symbol table (cmake/plugin_exports.list says why not everything).
function(tessera_export_for_plugins target)
  target_link_options(${target} PRIVATE "LINKER:--dynamic-list=${PROJECT_SOURCE_DIR}/cmake/plugin_exports.list")
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS "${PROJECT_SOURCE_DIR}/cmake/plugin_exports.list")
endfunction()

function(tessera_use_pch target)
  target_precompile_headers(${target} REUSE_FROM tessera_pch)
endfunction()

# tessera_skip_pch_for_moc(<target>): AUTOMOC's mocs_compilation.cpp holds only Qt code
# (or nothing, where the sources include their .moc): loading the 600 MB precompiled header
# for it would cost more than compiling it.
function(tessera_skip_pch_for_moc target)
  get_target_property(_bin ${target} BINARY_DIR)
  set_source_files_properties("${_bin}/${target}_autogen/mocs_compilation.cpp"
    TARGET_DIRECTORY ${target} PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
endfunction()

# --- Qt: Core+Test for the test programs (also with TESSERA_GUI=OFF), Widgets & co
# for the studio.
set(TESSERA_QT_TEST_FOUND OFF)
if(TESSERA_GUI)
  find_package(Qt6 6.4 REQUIRED COMPONENTS Core Gui Widgets OpenGLWidgets Charts
               Concurrent Sql Test)
  set(TESSERA_QT_TEST_FOUND ON)
elseif(TESSERA_TESTS)
  find_package(Qt6 6.2 QUIET COMPONENTS Core Test)
  if(Qt6Test_FOUND)
    set(TESSERA_QT_TEST_FOUND ON)
  endif()
endif()

# --- Libraries every layer may use (found once here so their imported targets are
# visible in every directory).
find_package(nlohmann_json 3.10 REQUIRED)
find_package(tl-expected REQUIRED)
find_package(ZLIB REQUIRED)
find_package(PNG REQUIRED)
find_package(SQLiteCpp REQUIRED)  # Debian: libsqlitecpp-dev (pulls in SQLite3)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)  # SHA-256 of model files and images
# OpenCV: only core, imgproc and imgcodecs (Debian's per-module -dev packages, which
# ship no CMake package file; libopencv-dev would pull in some 65 packages more).
find_path(TESSERA_OPENCV_INCLUDE opencv2/core.hpp PATH_SUFFIXES opencv4 REQUIRED)
add_library(tessera_opencv INTERFACE)
target_include_directories(tessera_opencv SYSTEM INTERFACE ${TESSERA_OPENCV_INCLUDE})
foreach(_module core imgproc imgcodecs videoio)
  find_library(TESSERA_OPENCV_${_module} opencv_${_module} REQUIRED)
  target_link_libraries(tessera_opencv INTERFACE ${TESSERA_OPENCV_${_module}})
endforeach()
# Dear ImGui (Debian's libimgui.a, which carries the OpenGL 3 renderer; its fonts use
# libstb): the live inspector's immediate-mode drawing inside a QOpenGLWidget.
if(TESSERA_GUI)
  find_path(TESSERA_IMGUI_INCLUDE imgui.h PATH_SUFFIXES imgui REQUIRED)
  find_library(TESSERA_IMGUI_LIB NAMES libimgui.a imgui REQUIRED)
  find_library(TESSERA_STB_LIB stb REQUIRED)
  add_library(tessera_imgui INTERFACE)
  target_include_directories(tessera_imgui SYSTEM INTERFACE ${TESSERA_IMGUI_INCLUDE})
  target_link_libraries(tessera_imgui INTERFACE ${TESSERA_IMGUI_LIB} ${TESSERA_STB_LIB} ${CMAKE_DL_LIBS})
endif()
find_package(CLI11 REQUIRED)
find_package(spdlog REQUIRED)
