// Which instruction-set variant of varinf's core can this CPU run? Compiled for the baseline
// target and without Eigen, so importing it is safe on any x86-64 (or other) machine.
#include <pybind11/pybind11.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

namespace {

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// ECX of CPUID leaf `leaf` (0 when the CPU does not have that leaf).
unsigned cpuid_ecx(unsigned leaf) {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(leaf, &eax, &ebx, &ecx, &edx) ? ecx : 0u;
}
#endif

// x86-64-v3 (the x86-64 psABI's microarchitecture levels) is AVX, AVX2, BMI1, BMI2, F16C, FMA,
// LZCNT, MOVBE and OSXSAVE, on top of v2 (CMPXCHG16B, LAHF-SAHF, POPCNT, SSE3, SSE4.1, SSE4.2,
// SSSE3). Every one of them is tested: the names __builtin_cpu_supports knows in every gcc and
// clang version, the others from their CPUID bits (Intel SDM vol. 2A, CPUID): leaf 1 ECX
// bit 13 CMPXCHG16B, bit 22 MOVBE, bit 26 XSAVE, bit 27 OSXSAVE; leaf 0x80000001 ECX bit 0
// LAHF-SAHF, bit 5 LZCNT. "avx" is reported only when the OS saves the AVX state (XGETBV).
bool supports_x86_64_v3() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool builtin = __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2") &&
                       __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
                       __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
                       __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("sse3") &&
                       __builtin_cpu_supports("ssse3") && __builtin_cpu_supports("sse4.1") &&
                       __builtin_cpu_supports("sse4.2");
  const unsigned leaf1 = cpuid_ecx(1), ext1 = cpuid_ecx(0x80000001u);
  const auto has = [](unsigned ecx, int bit) { return ((ecx >> bit) & 1u) != 0; };
  return builtin && has(leaf1, 13) && has(leaf1, 22) && has(leaf1, 26) && has(leaf1, 27) &&
         has(ext1, 0) && has(ext1, 5);
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
