// Which instruction-set variant of varinf's core can this CPU run? Compiled for the baseline
// target and without Eigen, so importing it is safe on any x86-64 (or other) machine.
#include <pybind11/pybind11.h>

namespace {

bool supports_x86_64_v3() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // x86-64-v3 = AVX, AVX2, BMI1, BMI2, F16C, FMA, LZCNT, MOVBE, XSAVE (and v2 below it).
  return __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2") &&
         __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
         __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
         __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("sse4.2");
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "CPU feature detection for choosing varinf's compiled core.";
  m.def("supports_x86_64_v3", &supports_x86_64_v3,
        "True when the CPU runs code compiled with -march=x86-64-v3 (AVX2 + FMA).");
}
