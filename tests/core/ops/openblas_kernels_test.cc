// kernels/cpu/openblas_kernels.h: OpenBLAS runs kernels of the CPU's instruction set even on a
// CPU newer than its model table, and a core it chose well is kept.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include "kernels/cpu/openblas_kernels.h"

namespace loom::cpu {
namespace {

TEST(OpenblasKernels, CoreNamesHaveTheirInstructionSets) {
  EXPECT_EQ(openblas_core_level("Prescott"), SimdLevel::Sse);
  EXPECT_EQ(openblas_core_level("prescott"), SimdLevel::Sse);  // any case
  EXPECT_EQ(openblas_core_level("Nehalem"), SimdLevel::Sse);
  EXPECT_EQ(openblas_core_level("Sandybridge"), SimdLevel::Avx);
  EXPECT_EQ(openblas_core_level("Haswell"), SimdLevel::Avx2);
  EXPECT_EQ(openblas_core_level("ZEN"), SimdLevel::Avx2);
  EXPECT_EQ(openblas_core_level("SkylakeX"), SimdLevel::Avx512);
  EXPECT_EQ(openblas_core_level("SapphireRapids"), SimdLevel::Avx512);
  EXPECT_EQ(openblas_core_level("Skylake"), SimdLevel::Unknown);  // a prefix is not a name
  EXPECT_EQ(openblas_core_level("Zen5"), SimdLevel::Unknown);
  EXPECT_EQ(openblas_core_level(""), SimdLevel::Unknown);
}

TEST(OpenblasKernels, AFallbackBelowTheCpusInstructionSetIsReplaced) {
  // Debian 12's OpenBLAS on an Emerald Rapids Xeon: Prescott on an AVX-512 CPU.
  EXPECT_EQ(better_openblas_core("Prescott", SimdLevel::Avx512, false), "SkylakeX");
  EXPECT_EQ(better_openblas_core("Prescott", SimdLevel::Avx2, false), "Haswell");
  EXPECT_EQ(better_openblas_core("Prescott", SimdLevel::Avx2, true), "Zen");
  EXPECT_EQ(better_openblas_core("Nehalem", SimdLevel::Avx, false), "Sandybridge");
  // An AVX-512 AMD CPU that an older OpenBLAS gives its AVX2 Zen kernels, as newer ones do not.
  EXPECT_EQ(better_openblas_core("Zen", SimdLevel::Avx512, true), "SkylakeX");
}

TEST(OpenblasKernels, AChoiceAtTheCpusLevelOrUnknownIsKept) {
  EXPECT_EQ(better_openblas_core("Haswell", SimdLevel::Avx2, false), std::nullopt);
  EXPECT_EQ(better_openblas_core("Zen", SimdLevel::Avx2, true), std::nullopt);
  EXPECT_EQ(better_openblas_core("Cooperlake", SimdLevel::Avx512, false), std::nullopt);
  EXPECT_EQ(better_openblas_core("SkylakeX", SimdLevel::Avx2, false), std::nullopt);
  EXPECT_EQ(better_openblas_core("Prescott", SimdLevel::Sse, false), std::nullopt);
  EXPECT_EQ(better_openblas_core("Prescott", SimdLevel::Unknown, false), std::nullopt);
  EXPECT_EQ(better_openblas_core("NewCore2030", SimdLevel::Avx512, false), std::nullopt);
}

TEST(OpenblasKernels, AfterLoadTheKernelsMatchThisCpu) {
  const BlasKernels& k = blas_kernels();
  if (k.openblas_choice.empty()) GTEST_SKIP() << "the BLAS does not pick its kernels at run time";
  if (k.user_choice) GTEST_SKIP() << "OPENBLAS_CORETYPE=" << std::getenv("OPENBLAS_CORETYPE");
  const SimdLevel in_use = openblas_core_level(k.in_use);
  if (in_use == SimdLevel::Unknown) GTEST_SKIP() << "OpenBLAS chose a core loom does not know";
  EXPECT_GE(int(in_use), int(std::min(cpu_simd_level(), SimdLevel::Avx512))) << k.describe();
  EXPECT_NE(k.describe().find("OpenBLAS " + k.in_use + " kernels"), std::string::npos);
}

TEST(OpenblasKernels, DescriptionSaysWhoChose) {
  EXPECT_EQ(BlasKernels{}.describe(), "");
  EXPECT_EQ((BlasKernels{.openblas_choice = "Haswell", .in_use = "Haswell"}).describe(),
            "OpenBLAS Haswell kernels");
  EXPECT_EQ((BlasKernels{.openblas_choice = "Prescott", .in_use = "SkylakeX"}).describe(),
            "OpenBLAS SkylakeX kernels "
            "(OpenBLAS chose Prescott, below this CPU's instruction set)");
  const BlasKernels user{.openblas_choice = "Zen", .in_use = "Zen", .user_choice = true};
  EXPECT_EQ(user.describe(), "OpenBLAS Zen kernels (OPENBLAS_CORETYPE)");
}

}  // namespace
}  // namespace loom::cpu
