// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11) and the normals and uniforms bigstep draws from it.
//
// Stream layout, shared bit-for-bit by the C++, Numba and CUDA backends:
//   key = (seed & 0xffffffff, seed >> 32); counter = (block lo, block hi, stream lo,
//   stream hi), so distinct (seed, stream, block) never share a counter.
//   uniform element i : 53 bits from words (2(i%2), 2(i%2)+1) of block i / 2.
//   normal element i  : Box-Muller, both branches, on block i / 4: words (2h, 2h+1),
//                      h = (i/2)%2, cos for even i, sin for odd i.
// Every element depends on one counter only, so a stream produced in chunks, or by
// any number of threads, has the same bits.  Normals use std::log/std::cos/std::sin in double
// (no fast-math), so the CPU backends agree bit for bit.
#pragma once
#include <cmath>

#include "bigstep/config.hpp"

namespace bigstep {

struct Philox4 {
  std::uint32_t v[4];
};

BIGSTEP_HD void mulhilo32(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}

// Philox4x32 with 10 rounds on counter c and key (k0, k1).
BIGSTEP_HD Philox4 philox4x32_10(Philox4 c, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(M0, c.v[0], hi0, lo0);
    mulhilo32(M1, c.v[2], hi1, lo1);
    Philox4 n;
    n.v[0] = hi1 ^ c.v[1] ^ k0;
    n.v[1] = lo1;
    n.v[2] = hi0 ^ c.v[3] ^ k1;
    n.v[3] = lo0;
    c = n;
    k0 += W0;
    k1 += W1;
  }
  return c;
}

// Key for (seed, stream): the 64-bit seed is the key, the stream goes into the
// upper counter words, so distinct (seed, stream, block) never share a counter.
struct PhiloxStream {
  std::uint32_t k0, k1, s0, s1;
};

BIGSTEP_HD PhiloxStream make_stream(std::uint64_t seed, std::uint64_t stream) {
  return PhiloxStream{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32),
                      static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)};
}

BIGSTEP_HD Philox4 philox_block(const PhiloxStream& s, std::uint64_t block) {
  Philox4 c{{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), s.s0, s.s1}};
  return philox4x32_10(c, s.k0, s.k1);
}

// Uniform in (0, 1) from 32 bits: (w + 0.5) * 2^-32, never 0 or 1 exactly in double.
BIGSTEP_HD double u01_open(std::uint32_t w) { return (static_cast<double>(w) + 0.5) * 2.3283064365386963e-10; }

// Uniform in [0, 1) with 53 random bits from two words.
BIGSTEP_HD double u01_53(std::uint32_t hi, std::uint32_t lo) {
  return static_cast<double>((static_cast<std::uint64_t>(hi) << 21) ^ (lo >> 11)) * 1.1102230246251565e-16;
}

// Element i of the uniform stream, in [0, 1): block i / 2, words (2(i%2), 2(i%2)+1).
BIGSTEP_HD double uniform_at(const PhiloxStream& s, std::uint64_t i) {
  const Philox4 r = philox_block(s, i >> 1);
  const int j = static_cast<int>(i & 1u) * 2;
  return u01_53(r.v[j], r.v[j + 1]);
}

// Element i of the standard normal stream: Box-Muller, both branches, on block i / 4.
// Pair h = (i / 2) % 2 of the block's words, (w_{2h}, w_{2h+1}), gives the two normals
// sqrt(-2 log u(w_{2h})) cos(2 pi u(w_{2h+1})) (even i) and ... sin(...) (odd i), u the
// open uniform above: four normals per block.  Computed in double on every backend so
// that the CPU backends agree bit for bit.
BIGSTEP_HD double box_muller(std::uint32_t w1, std::uint32_t w2, bool sine) {
  const double radius = std::sqrt(-2.0 * std::log(u01_open(w1)));
  const double angle = 6.283185307179586 * u01_open(w2);
  return radius * (sine ? std::sin(angle) : std::cos(angle));
}

// Normal i % 4 of a block's four (r the block's words).
BIGSTEP_HD double block_normal(const Philox4& r, unsigned i) {
  const unsigned h = (i >> 1) & 1u;
  return box_muller(r.v[2 * h], r.v[2 * h + 1], (i & 1u) != 0);
}

BIGSTEP_HD double normal_at(const PhiloxStream& s, std::uint64_t i) {
  return block_normal(philox_block(s, i >> 2), static_cast<unsigned>(i & 3u));
}

}  // namespace bigstep
