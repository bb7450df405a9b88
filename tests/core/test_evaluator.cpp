// SPDX-License-Identifier: Apache-2.0
// The quality measures against closed forms: the Fréchet distance of Gaussians with
// known moments, and k-NN precision/recall of identical and disjoint sets.
#ifndef Q_MOC_RUN  // moc needs only the test class below; LibTorch's headers would cost it seconds
#include "core/eval/evaluator.h"
#include "tests/support/test_main.h"

#include <ATen/ATen.h>
#include <QtTest>
#endif

using namespace tessera;

class TestEvaluator : public QObject {
  Q_OBJECT

private Q_SLOTS:
  void frechetDistanceOfKnownMoments() {
    // Diagonal covariances: FD = |μa − μb|² + Σ (√a_i − √b_i)².
    FeatureStats a, b;
    a.mean = at::tensor({0.0, 1.0, 2.0}, at::kDouble);
    b.mean = at::tensor({1.0, 1.0, 0.0}, at::kDouble);
    a.cov = at::diag(at::tensor({1.0, 4.0, 9.0}, at::kDouble));
    b.cov = at::diag(at::tensor({4.0, 4.0, 1.0}, at::kDouble));
    const double expected = (1.0 + 0.0 + 4.0) + (1.0 + 0.0 + 4.0);
    QVERIFY(std::abs(frechetDistance(a, b) - expected) < 1e-9);
    QVERIFY(std::abs(frechetDistance(a, a)) < 1e-9);
    // Rotating both by the same orthogonal matrix changes nothing.
    const at::Tensor q = std::get<0>(at::linalg_qr(at::randn({3, 3}, at::kDouble)));
    FeatureStats ra{q.mv(a.mean), q.mm(a.cov).mm(q.t())}, rb{q.mv(b.mean), q.mm(b.cov).mm(q.t())};
    QVERIFY(std::abs(frechetDistance(ra, rb) - expected) < 1e-8);
  }

  void statsOfSamples() {
    at::manual_seed(0);
    const at::Tensor x = at::randn({20000, 2}, at::kDouble) * at::tensor({1.0, 3.0}, at::kDouble) + 5.0;
    const FeatureStats s = FeatureStats::of(x);
    QVERIFY(at::allclose(s.mean, at::full({2}, 5.0, at::kDouble), 0, 0.1));
    QVERIFY(std::abs(s.cov[1][1].item<double>() - 9.0) < 0.4);
  }

  void precisionAndRecall() {
    at::manual_seed(1);
    const at::Tensor real = at::randn({500, 4}, at::kDouble);
    PrecisionRecall same = precisionRecall(real, real);
    QCOMPARE(same.precision, 1.0);
    QCOMPARE(same.recall, 1.0);
    // Far away samples are neither precise nor do they recall anything.
    const PrecisionRecall far = precisionRecall(real, real + 100.0);
    QCOMPARE(far.precision, 0.0);
    QCOMPARE(far.recall, 0.0);
    // A collapsed generator (one mode of the data) is precise but recalls little.
    const at::Tensor mode = real.slice(0, 0, 50) * 0.1;
    const PrecisionRecall collapsed = precisionRecall(real, mode);
    QVERIFY(collapsed.precision > 0.9);
    QVERIFY(collapsed.recall < 0.3);
  }

  void evaluatorNetShapes() {
    EvaluatorNet net(10);
    net->eval();
    const at::Tensor x = at::rand({3, 1, 28, 28}) * 2 - 1;
    QCOMPARE(net->features(x).sizes().vec(), (std::vector<std::int64_t>{3, 128}));
    QCOMPARE(net->forward(x).sizes().vec(), (std::vector<std::int64_t>{3, 10}));
  }
};

TESSERA_TEST_MAIN(TestEvaluator, Guiless)
#include "test_evaluator.moc"
