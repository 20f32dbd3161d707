// Every Philox stream the compiled kernels draw from: one number, one use.  The same
// table as python/bigstep/_streams.py (tests/test_streams.py checks they agree); the
// Python module documents each use.
#pragma once
#include <cstdint>

namespace bigstep::streams {

constexpr std::uint64_t kSamplerInitial = 0;
constexpr std::uint64_t kSamplerSteps = 1;
constexpr std::uint64_t kNetworkInit = 2;
constexpr std::uint64_t kSgdIndex = 3;
constexpr std::uint64_t kSgdNoise = 4;
constexpr std::uint64_t kForwardNoise = 5;
constexpr std::uint64_t kDiffusionTime = 6;
constexpr std::uint64_t kExcessRiskMc = 7;
constexpr std::uint64_t kReproData = 8;
constexpr std::uint64_t kReproGaussianSamples = 9;
constexpr std::uint64_t kRfWeights = 10;
constexpr std::uint64_t kRfNoise = 11;
constexpr std::uint64_t kRfData = 12;
constexpr std::uint64_t kRfMc = 13;
constexpr std::uint64_t kSharpnessMc = 14;
constexpr std::uint64_t kSweepFresh = 15;

}  // namespace bigstep::streams
