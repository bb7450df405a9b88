// SPDX-License-Identifier: Apache-2.0
#include "widgets/inspector/inspector_panel.h"

#include "widgets/inspector/imgui_widget.h"
#include "widgets/panel.h"

#include <QHBoxLayout>
#include <QGuiApplication>
#include <QLabel>
#include <QOpenGLContext>
#include <QPushButton>
#include <QVBoxLayout>

#include <imgui.h>

#include <algorithm>
#include <cfloat>
#include <cstdio>
#include <string>
#include <vector>

namespace tessera {

namespace {

/// Plots never draw more points than this, whatever the history length.
constexpr std::size_t kMaxPoints = 512;
/// Height of the full-width plots, in logical pixels.
constexpr float kPlotHeight = 44.0f;

const BlockStat* findBlock(const QVector<BlockStat>& blocks, int hint, const QString& name) {
  if (hint >= 0 && hint < blocks.size() && blocks[hint].name == name) return &blocks[hint];
  for (const BlockStat& block : blocks)
    if (block.name == name) return &block;
  return nullptr;
}

}  // namespace

/// The ImGui side of the panel. Everything it plots comes from a cache rebuilt only when
/// the history's revision moved, so idle frames (hover, input) cost only the drawing.
class InspectorView final : public ImGuiWidget {
public:
  InspectorView(const InspectorHistory* history, QWidget* parent)
      : ImGuiWidget(parent), m_history(history) {
    setMinimumSize(240, 200);
    m_sample.reserve(kMaxPoints);
    m_stepMs.reserve(kMaxPoints);
    m_guidance.reserve(kMaxPoints);
  }

protected:
  void drawUi() override;

private:
  void rebuildCache();
  void select(int block, bool scroll);
  void drawHeader(const InspectorStep& newest);
  void drawPerStep();
  void drawLatent(const InspectorStep& newest);
  void drawBlockTimes();
  void drawBlockTable(const InspectorStep& newest);

  const InspectorHistory* m_history;
  quint64 m_cachedRevision = ~quint64(0);

  // Cache, rebuilt on every history revision; O(blocks × kMaxPoints).
  std::vector<std::size_t> m_sample;  ///< history indices plotted (every k-th step)
  std::size_t m_stride = 1;           ///< that k
  std::vector<float> m_stepMs;        ///< per sample
  float m_stepMsMax = 0;
  std::vector<float> m_guidance;      ///< per guided sample (difference ≥ 0)
  std::vector<QString> m_nameKeys;    ///< newest step's block names
  std::vector<std::string> m_names;   ///< the same in UTF-8 for ImGui
  std::vector<float> m_blockStd;      ///< blocks × samples, row-major
  std::vector<float> m_blockMs;       ///< newest step, ms per block (untimed: 0)
  float m_blockMsTotal = 0;
  bool m_anyTimed = false;
  std::vector<float> m_histogram;     ///< newest histogram, at most kMaxPoints bins

  int m_selected = 0;
  QString m_selectedName;  ///< survives new jobs and history clears
  bool m_scrollToSelected = false;
};

void InspectorView::rebuildCache() {
  const std::deque<InspectorStep>& steps = m_history->steps();
  const std::size_t n = steps.size();
  m_sample.clear();
  m_stepMs.clear();
  m_guidance.clear();
  m_blockStd.clear();
  m_blockMs.clear();
  m_histogram.clear();
  m_stepMsMax = 0;
  m_blockMsTotal = 0;
  m_anyTimed = false;
  if (n == 0) {
    m_nameKeys.clear();
    m_names.clear();
    return;
  }

  // Every k-th step, aligned so that the newest step is always plotted.
  m_stride = (n + kMaxPoints - 1) / kMaxPoints;
  for (std::size_t i = (n - 1) % m_stride; i < n; i += m_stride) m_sample.push_back(i);
  for (const std::size_t i : m_sample) {
    const InspectorStep& s = steps[i];
    m_stepMs.push_back(static_cast<float>(s.stepMs));
    m_stepMsMax = std::max(m_stepMsMax, static_cast<float>(s.stepMs));
    if (s.guidanceDifference >= 0) m_guidance.push_back(static_cast<float>(s.guidanceDifference));
  }

  const InspectorStep& newest = steps.back();
  const int blockCount = newest.blocks.size();
  const std::size_t count = static_cast<std::size_t>(blockCount);
  m_nameKeys.resize(count);
  m_names.resize(count);
  for (std::size_t b = 0; b < count; ++b) {
    const QString& name = newest.blocks[static_cast<int>(b)].name;
    if (m_nameKeys[b] != name) {
      m_nameKeys[b] = name;
      m_names[b] = name.toStdString();
    }
  }

  // Each block's std across the sampled steps (blocks matched by name; a block missing
  // from an older step repeats its previous value).
  const std::size_t samples = m_sample.size();
  m_blockStd.assign(count * samples, 0.0f);
  for (std::size_t s = 0; s < samples; ++s) {
    const QVector<BlockStat>& blocks = steps[m_sample[s]].blocks;
    for (std::size_t b = 0; b < count; ++b) {
      float& out = m_blockStd[b * samples + s];
      if (const BlockStat* stat = findBlock(blocks, static_cast<int>(b), m_nameKeys[b]))
        out = stat->std;
      else if (s > 0)
        out = m_blockStd[b * samples + s - 1];
    }
  }

  m_blockMs.reserve(count);
  for (const BlockStat& stat : newest.blocks) {
    m_anyTimed = m_anyTimed || stat.ms >= 0;
    const float ms = static_cast<float>(std::max(stat.ms, 0.0));
    m_blockMs.push_back(ms);
    m_blockMsTotal += ms;
  }

  const int bins = newest.histogram.size();
  if (bins > 0) {
    const int group = (bins + static_cast<int>(kMaxPoints) - 1) / static_cast<int>(kMaxPoints);
    m_histogram.reserve(static_cast<std::size_t>((bins + group - 1) / group));
    for (int i = 0; i < bins; i += group) {
      float sum = 0;
      for (int j = i; j < std::min(bins, i + group); ++j) sum += newest.histogram[j];
      m_histogram.push_back(sum);
    }
  }

  // Keep the chosen block when it still exists (by name), otherwise clamp.
  int selected = -1;
  if (!m_selectedName.isEmpty())
    for (int b = 0; b < blockCount; ++b)
      if (newest.blocks[b].name == m_selectedName) {
        selected = b;
        break;
      }
  m_selected = selected >= 0 ? selected : std::clamp(m_selected, 0, std::max(0, blockCount - 1));
}

void InspectorView::select(int block, bool scroll) {
  if (block < 0 || block >= static_cast<int>(m_nameKeys.size())) return;
  m_selected = block;
  m_selectedName = m_nameKeys[static_cast<std::size_t>(block)];
  m_scrollToSelected = scroll;
}

void InspectorView::drawUi() {
  if (m_history->revision() != m_cachedRevision) {
    rebuildCache();
    m_cachedRevision = m_history->revision();
  }
  const ImGuiIO& io = ImGui::GetIO();
  ImGui::SetNextWindowPos(ImVec2(0, 0));
  ImGui::SetNextWindowSize(io.DisplaySize);
  // No decoration, but keep the scrollbar for small docks.
  const ImGuiWindowFlags flags = (ImGuiWindowFlags_NoDecoration & ~ImGuiWindowFlags_NoScrollbar) |
                                 ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoResize |
                                 ImGuiWindowFlags_NoSavedSettings |
                                 ImGuiWindowFlags_NoBringToFrontOnFocus;
  if (ImGui::Begin("##inspector", nullptr, flags)) {
    const std::deque<InspectorStep>& steps = m_history->steps();
    if (steps.empty()) {
      ImGui::TextWrapped(
          "Start a generation with this panel open: every step's block statistics appear "
          "here.");
    } else {
      const InspectorStep& newest = steps.back();
      drawHeader(newest);
      if (io.DisplaySize.x >= 540.0f) {
        // Wide docks: plots on the left, the block table on the right, so a short bottom
        // dock shows everything without scrolling.
        if (ImGui::BeginTable("##layout", 2, ImGuiTableFlags_SizingStretchProp | ImGuiTableFlags_BordersInnerV)) {
          ImGui::TableSetupColumn("plots", ImGuiTableColumnFlags_WidthStretch, 1.0f);
          ImGui::TableSetupColumn("blocks", ImGuiTableColumnFlags_WidthStretch, 1.3f);
          ImGui::TableNextRow();
          ImGui::TableSetColumnIndex(0);
          drawPerStep();
          drawLatent(newest);
          drawBlockTimes();
          ImGui::TableSetColumnIndex(1);
          drawBlockTable(newest);
          ImGui::EndTable();
        }
      } else {
        drawPerStep();
        drawLatent(newest);
        drawBlockTimes();
        drawBlockTable(newest);
      }
    }
  }
  ImGui::End();
}

void InspectorView::drawHeader(const InspectorStep& newest) {
  ImGui::Text("job %lld   step %d/%d   tau %.3f   %.1f ms", static_cast<long long>(newest.job),
              newest.step + 1, newest.steps, newest.tau, newest.stepMs);
  char kept[64];
  std::snprintf(kept, sizeof kept, "%zu steps kept", m_history->steps().size());
  const float width = ImGui::CalcTextSize(kept).x;
  const float right = ImGui::GetContentRegionMax().x - width;
  if (right > ImGui::GetCursorPosX() + 200.0f) {  // only when it fits beside the header
    ImGui::SameLine(right);
    ImGui::TextDisabled("%s", kept);
  }
}

void InspectorView::drawPerStep() {
  if (!ImGui::CollapsingHeader("Per step", ImGuiTreeNodeFlags_DefaultOpen)) return;
  const ImVec2 size(ImGui::GetContentRegionAvail().x, kPlotHeight);
  const int samples = static_cast<int>(m_sample.size());
  if (m_stride > 1) ImGui::TextDisabled("every %zu-th step of %zu", m_stride, m_history->steps().size());

  char overlay[160];
  std::snprintf(overlay, sizeof overlay, "step time: %.1f ms (max %.1f)",
                m_stepMs.empty() ? 0.0 : static_cast<double>(m_stepMs.back()),
                static_cast<double>(m_stepMsMax));
  ImGui::PlotLines("##stepms", m_stepMs.data(), samples, 0, overlay, 0.0f, FLT_MAX, size);

  if (m_guidance.empty()) {
    ImGui::TextDisabled("guidance |cond - uncond|: not guided");
  } else {
    std::snprintf(overlay, sizeof overlay, "guidance |cond - uncond|: %.4g",
                  static_cast<double>(m_guidance.back()));
    ImGui::PlotLines("##guidance", m_guidance.data(), static_cast<int>(m_guidance.size()), 0,
                     overlay, 0.0f, FLT_MAX, size);
  }

  const std::size_t count = m_names.size();
  if (count == 0 || samples == 0) {
    ImGui::TextDisabled("no block statistics at this step");
    return;
  }
  const std::size_t b = static_cast<std::size_t>(m_selected);
  const float* row = m_blockStd.data() + b * m_sample.size();
  std::snprintf(overlay, sizeof overlay, "std of %s: %.4g", m_names[b].c_str(),
                static_cast<double>(row[samples - 1]));
  ImGui::PlotLines("##blockstd", row, samples, 0, overlay, FLT_MAX, FLT_MAX, size);
}

void InspectorView::drawLatent(const InspectorStep& newest) {
  if (!ImGui::CollapsingHeader("Latent histogram", ImGuiTreeNodeFlags_DefaultOpen)) return;
  if (m_histogram.empty()) {
    ImGui::TextDisabled("no histogram at this step");
    return;
  }
  ImGui::PlotHistogram("##histogram", m_histogram.data(), static_cast<int>(m_histogram.size()),
                       0, nullptr, 0.0f, FLT_MAX, ImVec2(ImGui::GetContentRegionAvail().x, kPlotHeight));
  char low[32], high[32];
  std::snprintf(low, sizeof low, "%.4g", static_cast<double>(newest.histogramMin));
  std::snprintf(high, sizeof high, "%.4g", static_cast<double>(newest.histogramMax));
  ImGui::TextUnformatted(low);
  const float right = ImGui::GetContentRegionMax().x - ImGui::CalcTextSize(high).x;
  ImGui::SameLine(std::max(right, ImGui::GetCursorPosX()));
  ImGui::TextUnformatted(high);
}

void InspectorView::drawBlockTimes() {
  if (!ImGui::CollapsingHeader("Time per block", ImGuiTreeNodeFlags_DefaultOpen)) return;
  if (!m_anyTimed || m_blockMs.empty()) {
    ImGui::TextDisabled("blocks are not timed at this step");
    return;
  }
  char overlay[64];
  std::snprintf(overlay, sizeof overlay, "%.1f ms in blocks", static_cast<double>(m_blockMsTotal));
  const int count = static_cast<int>(m_blockMs.size());
  ImGui::PlotHistogram("##blockms", m_blockMs.data(), count, 0, overlay, 0.0f, FLT_MAX,
                       ImVec2(ImGui::GetContentRegionAvail().x, kPlotHeight));
  if (ImGui::IsItemHovered()) {
    // Same bar lookup as ImGui's plot: the inner rectangle is the frame less its padding.
    const ImGuiStyle& style = ImGui::GetStyle();
    const float x0 = ImGui::GetItemRectMin().x + style.FramePadding.x;
    const float x1 = ImGui::GetItemRectMax().x - style.FramePadding.x;
    if (x1 > x0) {
      const float t = std::clamp((ImGui::GetIO().MousePos.x - x0) / (x1 - x0), 0.0f, 0.9999f);
      const int bar = std::clamp(static_cast<int>(t * static_cast<float>(count)), 0, count - 1);
      ImGui::SetTooltip("%s: %.3f ms (click to plot its std)",
                        m_names[static_cast<std::size_t>(bar)].c_str(),
                        static_cast<double>(m_blockMs[static_cast<std::size_t>(bar)]));
      if (ImGui::IsItemClicked()) select(bar, true);
    }
  }
}

void InspectorView::drawBlockTable(const InspectorStep& newest) {
  const int count = static_cast<int>(m_names.size());
  if (count == 0) return;
  const ImGuiIO& io = ImGui::GetIO();
  if (ImGui::IsWindowFocused(ImGuiFocusedFlags_RootAndChildWindows) && !io.WantTextInput) {
    if (ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_DownArrow)))
      select(std::min(count - 1, m_selected + 1), true);
    if (ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_UpArrow)))
      select(std::max(0, m_selected - 1), true);
  }

  ImGui::Spacing();
  ImGui::TextUnformatted("Blocks at the newest step (click a row to plot its std per step)");
  const float rowHeight = ImGui::GetFrameHeight();
  const float height = std::max(ImGui::GetContentRegionAvail().y, rowHeight * 8.0f);
  const ImGuiTableFlags tableFlags = ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV |
                                     ImGuiTableFlags_BordersOuter | ImGuiTableFlags_ScrollY |
                                     ImGuiTableFlags_Resizable |
                                     ImGuiTableFlags_SizingStretchProp;
  if (!ImGui::BeginTable("##blocks", 6, tableFlags, ImVec2(0.0f, height))) return;
  ImGui::TableSetupScrollFreeze(0, 1);
  ImGui::TableSetupColumn("Block", ImGuiTableColumnFlags_WidthStretch, 2.0f);
  ImGui::TableSetupColumn("mean", ImGuiTableColumnFlags_WidthStretch, 1.0f);
  ImGui::TableSetupColumn("std", ImGuiTableColumnFlags_WidthStretch, 1.0f);
  ImGui::TableSetupColumn("max |x|", ImGuiTableColumnFlags_WidthStretch, 1.0f);
  ImGui::TableSetupColumn("ms", ImGuiTableColumnFlags_WidthStretch, 0.8f);
  ImGui::TableSetupColumn("std per step", ImGuiTableColumnFlags_WidthStretch, 2.0f);
  ImGui::TableHeadersRow();

  const std::size_t samples = m_sample.size();
  ImGui::PushStyleVar(ImGuiStyleVar_SelectableTextAlign, ImVec2(0.0f, 0.5f));
  ImGuiListClipper clipper;
  clipper.Begin(count);
  if (m_scrollToSelected) clipper.ForceDisplayRangeByIndices(m_selected, m_selected + 1);
  while (clipper.Step()) {
    for (int b = clipper.DisplayStart; b < clipper.DisplayEnd; ++b) {
      const BlockStat& stat = newest.blocks[b];
      const std::size_t index = static_cast<std::size_t>(b);
      ImGui::TableNextRow(ImGuiTableRowFlags_None, rowHeight);
      ImGui::PushID(b);
      ImGui::TableSetColumnIndex(0);
      if (ImGui::Selectable(m_names[index].c_str(), b == m_selected,
                            ImGuiSelectableFlags_SpanAllColumns |
                                ImGuiSelectableFlags_AllowItemOverlap,
                            ImVec2(0.0f, rowHeight)))
        select(b, false);
      if (m_scrollToSelected && b == m_selected) {
        ImGui::SetScrollHereY();
        m_scrollToSelected = false;
      }
      ImGui::TableSetColumnIndex(1);
      ImGui::AlignTextToFramePadding();
      ImGui::Text("%.3g", static_cast<double>(stat.mean));
      ImGui::TableSetColumnIndex(2);
      ImGui::AlignTextToFramePadding();
      ImGui::Text("%.3g", static_cast<double>(stat.std));
      ImGui::TableSetColumnIndex(3);
      ImGui::AlignTextToFramePadding();
      ImGui::Text("%.3g", static_cast<double>(stat.absMax));
      ImGui::TableSetColumnIndex(4);
      ImGui::AlignTextToFramePadding();
      if (stat.ms >= 0)
        ImGui::Text("%.2f", stat.ms);
      else
        ImGui::TextDisabled("-");
      ImGui::TableSetColumnIndex(5);
      if (samples > 0)
        ImGui::PlotLines("##spark", m_blockStd.data() + index * samples,
                         static_cast<int>(samples), 0, nullptr, FLT_MAX, FLT_MAX,
                         ImVec2(ImGui::GetContentRegionAvail().x, rowHeight));
      ImGui::PopID();
    }
  }
  ImGui::PopStyleVar();
  ImGui::EndTable();
}

// --- InspectorPanel -------------------------------------------------------------------

InspectorPanel::InspectorPanel(QWidget* parent) : QWidget(parent) {
  m_summary = new QLabel(this);
  m_summary->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
  m_summary->setTextInteractionFlags(Qt::TextSelectableByMouse);
  m_clear = new QPushButton(tr("Clear"), this);
  m_clear->setToolTip(tr("Forget the steps shown"));
  // A QOpenGLWidget on a platform without OpenGL (the offscreen platform, a remote
  // session without GLX) takes the whole window down when it is flushed: look first.
  const QString glProblem = openGLProblem();
  QWidget* body = nullptr;
  if (glProblem.isEmpty()) {
    m_view = new InspectorView(&m_history, this);
    body = m_view;
  } else {
    auto* note = new QLabel(tr("The live inspector draws with OpenGL, which is not available here: %1. "
                               "Its data is still collected (block statistics, timings, histograms).")
                                .arg(glProblem),
                            this);
    note->setWordWrap(true);
    note->setAlignment(Qt::AlignCenter);
    note->setObjectName(QStringLiteral("inspectorNoGl"));
    body = note;
  }

  auto* header = new QHBoxLayout;
  header->setContentsMargins(6, 4, 6, 4);
  header->addWidget(m_summary, 1);
  header->addWidget(m_clear);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->setSpacing(0);
  layout->addLayout(header);
  layout->addWidget(body, 1);

  m_summaryTimer.setSingleShot(true);
  m_summaryTimer.setInterval(100);
  connect(&m_summaryTimer, &QTimer::timeout, this, &InspectorPanel::refreshSummary);
  connect(m_clear, &QPushButton::clicked, this, &InspectorPanel::clear);
  refreshSummary();
}

QString openGLProblem() {
  static const QString problem = [] {
    QOpenGLContext context;
    if (!context.create()) return QObject::tr("no OpenGL context can be created on the '%1' platform").arg(QGuiApplication::platformName());
    return QString();
  }();
  return problem;
}

InspectorPanel::~InspectorPanel() {
  // The view reads m_history: destroy it (and its GL resources) while the history lives.
  delete m_view;
  m_view = nullptr;
}

ImGuiWidget* InspectorPanel::view() const { return m_view; }

QString InspectorPanel::summaryText() const {
  const std::deque<InspectorStep>& steps = m_history.steps();
  if (steps.empty()) return tr("No steps yet");
  const InspectorStep& s = steps.back();
  return tr("job %1 · step %2/%3 · %4 blocks")
      .arg(s.job)
      .arg(s.step + 1)
      .arg(s.steps)
      .arg(s.blocks.size());
}

void InspectorPanel::refreshSummary() { m_summary->setText(summaryText()); }

void InspectorPanel::addStep(const tessera::InspectorStep& step) {
  m_history.add(step);  // QVector members are implicitly shared: the copy is cheap
  if (!m_summaryTimer.isActive()) m_summaryTimer.start();
  if (m_view) m_view->requestRedraw();
}

void InspectorPanel::clear() {
  m_summaryTimer.stop();
  m_history.clear();
  refreshSummary();
  if (m_view) m_view->requestRedraw();
}

PanelDescriptor describePanel_inspector() {
  PanelDescriptor d;
  d.title = InspectorPanel::tr("Live inspector");
  d.area = Qt::BottomDockWidgetArea;
  d.tabbedWith = QStringLiteral("timeline");
  d.create = [](const PanelContext& c) { return new InspectorPanel(c.parent); };
  return d;
}

}  // namespace tessera
