// SPDX-License-Identifier: Apache-2.0
#include "core/data/image_folder.h"

#include "core/formats/image_header.h"

#include <ATen/ATen.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

namespace tessera {
namespace fs = std::filesystem;

namespace {

/// Reads any image OpenCV knows as 8-bit grey or RGB (alpha dropped, 16-bit scaled). An
/// image that declares more than kMaxImagePixels is skipped before it is decoded (a
/// 20000 × 20000 PNG once took 3.2 GB): PNG and JPEG headers are read here, and OpenCV is
/// told the same limit for the formats it reads itself.
cv::Mat readImage(const std::string& path, std::string& reason) {
  static const bool limited = [] {
    return setenv("OPENCV_IO_MAX_IMAGE_PIXELS", std::to_string(kMaxImagePixels).c_str(), /*overwrite=*/0) == 0;
  }();
  (void)limited;
  // Read once: the header is checked in the same bytes that are then decoded.
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) {
    reason = "cannot read it";
    return {};
  }
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    reason = std::to_string(bytes.size()) + " bytes: larger than any training image OpenCV decodes";
    return {};
  }
  if (const auto size = readImageDimensions(bytes);
      size && size->width * size->height > static_cast<std::int64_t>(kMaxImagePixels)) {
    reason = std::to_string(size->width) + "x" + std::to_string(size->height) + " pixels, more than the " +
             std::to_string(kMaxImagePixels / 1000000) + " megapixels a training image may have; resize it";
    return {};
  }
  cv::Mat m;
  try {
    m = cv::imdecode(cv::_InputArray(bytes.data(), static_cast<int>(bytes.size())), cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    reason = e.what();
    return {};
  }
  if (m.empty()) {
    reason = "OpenCV cannot decode it (corrupt, truncated or not an image)";
    return {};
  }
  if (m.depth() == CV_16U) m.convertTo(m, CV_8U, 1.0 / 257.0);
  else if (m.depth() != CV_8U) m.convertTo(m, CV_8U);
  if (m.channels() == 4) cv::cvtColor(m, m, cv::COLOR_BGRA2BGR);
  if (m.channels() != 1 && m.channels() != 3) {
    reason = std::to_string(m.channels()) + " channels (expected grey or colour)";
    return {};
  }
  return m;
}

bool isColour(const cv::Mat& m) {
  if (m.channels() == 1) return false;
  std::vector<cv::Mat> c;
  cv::split(m, c);
  return cv::countNonZero(c[0] != c[1]) > 0 || cv::countNonZero(c[1] != c[2]) > 0;
}

at::Tensor toTensor(const cv::Mat& m, int channels) {
  cv::Mat out;
  if (channels == 1) {
    if (m.channels() == 3) cv::cvtColor(m, out, cv::COLOR_BGR2GRAY);
    else out = m;
  } else {
    if (m.channels() == 1) cv::cvtColor(m, out, cv::COLOR_GRAY2RGB);
    else cv::cvtColor(m, out, cv::COLOR_BGR2RGB);
  }
  out = out.isContinuous() ? out : out.clone();
  const at::Tensor hwc = at::from_blob(out.data, {out.rows, out.cols, channels}, at::kByte).clone();
  return hwc.permute({2, 0, 1}).contiguous();  // (C, H, W)
}

}  // namespace

Result<ImageFolder> loadImageFolder(const std::string& dir, const ImageFolderOptions& options) {
  if (options.channels != 0 && options.channels != 1 && options.channels != 3)
    return fail("image folder: channels must be 0 (automatic), 1 or 3");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return fail(dir + ": not a folder (expected one sub-folder per class)");
  ImageFolder set;
  // The error_code forms throughout: a symbolic link loop or an unreadable entry is skipped
  // (and named), never an exception that ends the program.
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code entryError;
    if (it->is_directory(entryError) && it->path().filename().string().front() != '.')
      set.classNames.push_back(it->path().filename().string());
    else if (entryError)
      set.skipped.push_back({it->path().string(), entryError.message()});
  }
  if (ec) return fail(dir + ": cannot list the folder: " + ec.message());
  std::sort(set.classNames.begin(), set.classNames.end());
  if (set.classNames.empty()) return fail(dir + ": no class sub-folders (expected DIR/<class name>/<images>)");

  std::vector<cv::Mat> mats;
  bool anyColour = false;
  for (std::size_t k = 0; k < set.classNames.size(); ++k) {
    std::vector<fs::path> files;
    std::error_code listError;
    for (fs::directory_iterator it(fs::path(dir) / set.classNames[k], listError), end; !listError && it != end;
         it.increment(listError)) {
      std::error_code entryError;
      if (it->is_regular_file(entryError) && it->path().filename().string().front() != '.')
        files.push_back(it->path());
      else if (entryError)
        set.skipped.push_back({it->path().string(), entryError.message()});
    }
    if (listError) set.skipped.push_back({(fs::path(dir) / set.classNames[k]).string(), listError.message()});
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::string reason;
      cv::Mat m = readImage(f.string(), reason);
      if (m.empty()) {
        set.skipped.push_back({f.string(), reason});
        continue;
      }
      anyColour = anyColour || isColour(m);
      mats.push_back(std::move(m));
      set.labels.push_back(static_cast<std::int64_t>(k));
      set.files.push_back(f.string());
    }
  }
  if (mats.empty()) return fail(dir + ": no readable image in " + std::to_string(set.classNames.size()) + " class folders (" +
                                std::to_string(set.skipped.size()) + " files skipped)");
  set.channels = options.channels ? options.channels : (anyColour ? 3 : 1);
  for (const auto& m : mats) set.images.push_back(toTensor(m, set.channels));
  return set;
}

nlohmann::json ImageFolder::summary() const {
  std::vector<std::int64_t> counts(classNames.size(), 0);
  std::int64_t minH = INT64_MAX, maxH = 0, minW = INT64_MAX, maxW = 0;
  for (std::size_t i = 0; i < images.size(); ++i) {
    ++counts[static_cast<std::size_t>(labels[i])];
    minH = std::min(minH, images[i].size(1));
    maxH = std::max(maxH, images[i].size(1));
    minW = std::min(minW, images[i].size(2));
    maxW = std::max(maxW, images[i].size(2));
  }
  nlohmann::json classes = nlohmann::json::array();
  for (std::size_t k = 0; k < classNames.size(); ++k) classes.push_back({{"name", classNames[k]}, {"images", counts[k]}});
  nlohmann::json skippedJson = nlohmann::json::array();
  for (const auto& s : skipped) skippedJson.push_back({{"file", s.path}, {"reason", s.reason}});
  return {{"images", images.size()}, {"channels", channels}, {"classes", classes}, {"skipped", skipped.size()},
          {"skipped_files", skippedJson}, {"height", {minH, maxH}}, {"width", {minW, maxW}}};
}

}  // namespace tessera
