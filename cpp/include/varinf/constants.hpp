// Mathematical constants shared by the core.
#pragma once

namespace varinf {

// log(2 pi): a Gaussian density in k dimensions carries -k/2 log 2pi (docs/math.md sections
// 4.1, 5.2, 6.2, 7.6 and 8.3).
inline constexpr double kLog2Pi = 1.8378770664093454835606594728112;
// log sqrt(2 pi) = kLog2Pi / 2 (halving is exact): the standard normal density's constant
// (docs/math.md section 7.8).
inline constexpr double kLogSqrt2Pi = 0.5 * kLog2Pi;

}  // namespace varinf
