// Which instruction-set variant of varinf's core can this CPU run? Compiled for the baseline
// target and without Eigen, so importing it is safe on any x86-64 (or other) machine.
//
// A level is usable when the CPU has every one of its instructions (CPUID) and the OS saves
// the registers they use on a context switch (XCR0, read with XGETBV). Both tests come from
// the CPUID bits themselves rather than __builtin_cpu_supports, whose list of names differs
// between gcc and clang versions. Bits: Intel SDM vol. 2A (CPUID) and vol. 1 ch. 13 (XCR0).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define VARINF_X86_CPUID 1
#include <cpuid.h>
#endif

namespace {

#ifdef VARINF_X86_CPUID
enum class Reg { ebx, ecx };

// One instruction-set feature: bit `bit` of register `reg` of CPUID leaf `leaf` (subleaf 0).
struct Feature {
  unsigned leaf;
  Reg reg;
  int bit;
};

bool cpu_has(Feature f) {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  // __get_cpuid_count returns 0 when the CPU has no such leaf.
  if (!__get_cpuid_count(f.leaf, 0, &eax, &ebx, &ecx, &edx)) return false;
  return (((f.reg == Reg::ebx ? ebx : ecx) >> f.bit) & 1u) != 0;
}

bool cpu_has_all(std::initializer_list<Feature> features) {
  for (Feature f : features)
    if (!cpu_has(f)) return false;
  return true;
}

// Whether the OS saves every register state of `mask` (XCR0 bits). XGETBV faults unless the
// OS has enabled it, which OSXSAVE (leaf 1 ECX bit 27) reports.
bool os_saves(std::uint64_t mask) {
  if (!cpu_has({1, Reg::ecx, 27})) return false;
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));  // no -mxsave needed, unlike _xgetbv
  const std::uint64_t xcr0 = (std::uint64_t{hi} << 32) | lo;
  return (xcr0 & mask) == mask;
}

// XCR0 bits 1 SSE (XMM), 2 AVX (upper halves of YMM); 5 opmask (k0-k7), 6 ZMM_Hi256 (upper
// halves of ZMM0-15), 7 Hi16_ZMM (ZMM16-31).
constexpr std::uint64_t kYmmState = (1u << 1) | (1u << 2);
constexpr std::uint64_t kZmmState = kYmmState | (1u << 5) | (1u << 6) | (1u << 7);
#endif

// x86-64-v3 (the x86-64 psABI's microarchitecture levels) is v2 (CMPXCHG16B, LAHF-SAHF,
// POPCNT, SSE3, SSE4.1, SSE4.2, SSSE3) plus AVX, AVX2, BMI1, BMI2, F16C, FMA, LZCNT, MOVBE and
// OSXSAVE, with the YMM state enabled.
bool supports_x86_64_v3() {
#ifdef VARINF_X86_CPUID
  return cpu_has_all({
             {1, Reg::ecx, 0},             // SSE3
             {1, Reg::ecx, 9},             // SSSE3
             {1, Reg::ecx, 12},            // FMA
             {1, Reg::ecx, 13},            // CMPXCHG16B
             {1, Reg::ecx, 19},            // SSE4.1
             {1, Reg::ecx, 20},            // SSE4.2
             {1, Reg::ecx, 22},            // MOVBE
             {1, Reg::ecx, 23},            // POPCNT
             {1, Reg::ecx, 26},            // XSAVE
             {1, Reg::ecx, 28},            // AVX
             {1, Reg::ecx, 29},            // F16C
             {7, Reg::ebx, 3},             // BMI1
             {7, Reg::ebx, 5},             // AVX2
             {7, Reg::ebx, 8},             // BMI2
             {0x80000001u, Reg::ecx, 0},   // LAHF-SAHF
             {0x80000001u, Reg::ecx, 5},   // LZCNT
         }) &&
         os_saves(kYmmState);
#else
  return false;
#endif
}

// x86-64-v4 is v3 plus AVX512F, AVX512BW, AVX512CD, AVX512DQ and AVX512VL, with the opmask
// and ZMM states enabled (an OS may leave them off while it enables AVX).
bool supports_x86_64_v4() {
#ifdef VARINF_X86_CPUID
  return supports_x86_64_v3() &&
         cpu_has_all({
             {7, Reg::ebx, 16},  // AVX512F
             {7, Reg::ebx, 17},  // AVX512DQ
             {7, Reg::ebx, 28},  // AVX512CD
             {7, Reg::ebx, 30},  // AVX512BW
             {7, Reg::ebx, 31},  // AVX512VL
         }) &&
         os_saves(kZmmState);
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "CPU feature detection for choosing varinf's compiled core.";
  m.def("supports_x86_64_v3", &supports_x86_64_v3,
        "True when the CPU and OS run code compiled with -march=x86-64-v3 (AVX2 + FMA).");
  m.def("supports_x86_64_v4", &supports_x86_64_v4,
        "True when the CPU and OS run code compiled with -march=x86-64-v4 (AVX-512 F/BW/CD/DQ/VL).");
}
