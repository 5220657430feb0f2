// SPDX-License-Identifier: MIT
// Sampling: greedy tie-breaking, each filter on its own, the repetition penalty, seeding, and the
// sampled distribution against the softmax it should follow (fixed seed, so deterministic).
#include "engine/runtime/sampler.h"

#include <QTest>

#include <cmath>
#include <map>

using namespace kvchat::engine;

namespace {

SamplingParams plain(float temperature, std::uint64_t seed = 1)
{
    SamplingParams p;
    p.temperature = temperature;
    p.topK = 0;
    p.topP = 1.0f;
    p.minP = 0.0f;
    p.repeatPenalty = 1.0f;
    p.seed = seed;
    return p;
}

std::map<TokenId, int> histogram(Sampler &sampler, const std::vector<float> &logits, int draws)
{
    std::map<TokenId, int> counts;
    for (int i = 0; i < draws; ++i)
        ++counts[sampler.sample(logits, {})];
    return counts;
}

} // namespace

class SamplerTest : public QObject
{
    Q_OBJECT

private slots:
    void greedyTakesLowestIdOnTies()
    {
        Sampler s(plain(0.0f));
        const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f};
        QCOMPARE(s.sample(logits, {}), 1);
        QCOMPARE(argmax(logits), 1);
    }

    void followsSoftmaxAtTemperature()
    {
        const std::vector<float> logits = {1.0f, 2.0f, 0.0f, 1.5f};
        const float temperature = 0.7f;
        Sampler s(plain(temperature, 42));
        const int draws = 40000;
        const auto counts = histogram(s, logits, draws);
        double z = 0.0;
        for (float l : logits)
            z += std::exp(l / temperature);
        for (std::size_t i = 0; i < logits.size(); ++i) {
            const double expected = std::exp(logits[i] / temperature) / z;
            const double observed = counts.contains(static_cast<TokenId>(i)) ? counts.at(static_cast<TokenId>(i)) / double(draws) : 0.0;
            // 40,000 draws: the standard error is below 0.0025; allow four of them.
            QVERIFY2(std::abs(observed - expected) < 0.01,
                     qPrintable(QString("token %1: %2 vs %3").arg(i).arg(observed).arg(expected)));
        }
    }

    void topKKeepsOnlyTheBest()
    {
        SamplingParams p = plain(1.0f);
        p.topK = 2;
        Sampler s(p);
        const auto counts = histogram(s, {3.0f, 0.0f, 2.9f, 1.0f}, 2000);
        QCOMPARE(counts.size(), std::size_t(2));
        QVERIFY(counts.contains(0) && counts.contains(2));
    }

    void topPCutsTheTail()
    {
        SamplingParams p = plain(1.0f);
        p.topP = 0.5f; // the first token alone has p > 0.5
        Sampler s(p);
        const auto counts = histogram(s, {5.0f, 1.0f, 1.0f, 0.0f}, 500);
        QCOMPARE(counts.size(), std::size_t(1));
        QVERIFY(counts.contains(0));
    }

    void minPDropsUnlikelyTokens()
    {
        SamplingParams p = plain(1.0f);
        p.minP = 0.2f; // keeps tokens with p >= 0.2 * p(best): logits within ln 5 of the best
        Sampler s(p);
        const auto counts = histogram(s, {2.0f, 1.0f, -2.0f, 0.5f}, 3000);
        QVERIFY(counts.contains(0) && counts.contains(1) && counts.contains(3));
        QVERIFY(!counts.contains(2));
    }

    void repetitionPenaltyChangesGreedyChoice()
    {
        SamplingParams p = plain(0.0f);
        p.repeatPenalty = 1.5f;
        p.repeatLastN = 4;
        Sampler s(p);
        const std::vector<float> logits = {1.0f, 1.2f, -3.0f};
        const std::vector<TokenId> history = {7, 1};
        QCOMPARE(s.sample(logits, history), 0); // 1.2 / 1.5 < 1.0
        const std::vector<TokenId> old = {1, 5, 5, 5, 5}; // outside the window of 4
        QCOMPARE(s.sample(logits, old), 1);
    }

    void candidatesAreTheBestAfterThePenalty()
    {
        // Ids 1 and 3 tie at 2.0 before the penalty; id 3 is penalised (2.0 / 2 = 1.0, tying id 0),
        // and id 4's negative logit is multiplied (-1.0 * 2 = -2.0) once although listed twice.
        std::vector<float> logits = {1.0f, 2.0f, 0.5f, 2.0f, -1.0f};
        CandidateRequest request;
        request.k = 3;
        request.repeatPenalty = 2.0f;
        request.penalised = {3, 4};
        std::vector<TokenCandidate> top;
        selectCandidates(logits, request, top);
        QCOMPARE(top.size(), std::size_t{3});
        QCOMPARE(top[0].id, 1);
        QCOMPARE(top[1].id, 0); // ties at 1.0: the lower id first
        QCOMPARE(top[2].id, 3);
        QCOMPARE(top[2].logit, 1.0f);
        QCOMPARE(logits[4], -2.0f);

        // k beyond the vocabulary: everything, sorted; k = 1: the first maximum.
        std::vector<float> again = {1.0f, 2.0f, 0.5f, 2.0f};
        request = CandidateRequest{};
        request.k = 10;
        selectCandidates(again, request, top);
        QCOMPARE(top.size(), std::size_t{4});
        QCOMPARE(top[0].id, 1);
        QCOMPARE(top[1].id, 3);
        QCOMPARE(top[3].id, 2);
        request.k = 1;
        selectCandidates(again, request, top);
        QCOMPARE(top.size(), std::size_t{1});
        QCOMPARE(top[0].id, 1);
    }

    void requestFollowsTheParams()
    {
        SamplingParams p = plain(0.7f);
        p.topK = 5;
        p.repeatPenalty = 1.3f;
        p.repeatLastN = 3;
        Sampler s(p);
        CandidateRequest request;
        const std::vector<TokenId> history = {9, 4, 2, 4};
        s.candidateRequest(history, 100, request);
        QCOMPARE(request.k, 5);
        QCOMPARE(request.penalised, (std::vector<TokenId>{2, 4})); // the last 3, distinct
        p.topK = 0; // off: the whole vocabulary
        Sampler all(p);
        all.candidateRequest(history, 100, request);
        QCOMPARE(request.k, 100);
        Sampler greedy(plain(0.0f));
        greedy.candidateRequest(history, 100, request);
        QCOMPARE(request.k, 1);
        QVERIFY(request.penalised.empty()); // plain() has no penalty
    }

    void sameSeedSameSequence()
    {
        const std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
        Sampler a(plain(1.0f, 123)), b(plain(1.0f, 123)), c(plain(1.0f, 124));
        std::vector<TokenId> sa, sb, sc;
        for (int i = 0; i < 50; ++i) {
            sa.push_back(a.sample(logits, {}));
            sb.push_back(b.sample(logits, {}));
            sc.push_back(c.sample(logits, {}));
        }
        QCOMPARE(sa, sb);
        QVERIFY(sa != sc);
    }
};

QTEST_GUILESS_MAIN(SamplerTest)
#include "sampler_test.moc"
