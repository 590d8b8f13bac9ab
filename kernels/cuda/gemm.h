// cuBLASLt matrix products (plain C++ interface: includes no CUDA header).
//
// Types: float32 (CUBLAS_COMPUTE_32F, or TF32 tensor cores when `allow_tf32`), float64
// (CUBLAS_COMPUTE_64F), bfloat16 and float16 (tensor cores with float32 accumulation).
// One cuBLASLt handle and a 32 MiB workspace per device, created on first use; the algorithm
// for each distinct problem (shape, layout, dtype, epilogue, pointer alignment) is chosen once
// by cuBLASLt's heuristic and cached. Runs on `stream` with no host synchronisation.
#pragma once
#include "kernels/cpu/gemm.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

/// C = op(A) @ op(B) (+ bias, then ReLU/GELU per `epilogue`) on `device`. `bias` (length n, of
/// p.dtype) is read by the bias epilogues. With Epilogue::BiasGelu, `gelu_input` (a dense
/// [m, n] buffer of p.dtype; unbatched problems with n a multiple of 8) also receives
/// op(A) @ op(B) + bias, the GELU's input, which its gradient needs. Returns false, having
/// launched nothing, when cuBLASLt offers no algorithm for a fused epilogue or a product with
/// an addend (the caller then composes the unfused ops); a plain product without an algorithm
/// throws CudaError.
bool gemm(const GemmProblem& p, int device, bool allow_tf32, Stream stream,
          Epilogue epilogue = Epilogue::None, const void* bias = nullptr,
          void* gelu_input = nullptr);

/// C = op(A) @ op(B) with the sums of op(B) over k (length n, p.dtype) written to `bias_grad`
/// in the same call: a weight gradient x^T @ g and its bias gradient, the column sums of g.
/// Unbatched problems only. Returns false, having launched nothing, when cuBLASLt offers no
/// algorithm (the caller then reduces separately).
bool gemm_bias_grad(const GemmProblem& p, int device, bool allow_tf32, Stream stream,
                    void* bias_grad);

/// C = gelu'(gelu_input) * (op(A) @ op(B)), the derivative of the tanh GELU taken at
/// `gelu_input` (a dense [m, n] buffer of p.dtype, as gemm's Epilogue::BiasGelu keeps it), in
/// cuBLASLt's DGELU epilogue: the gradient of a product's GELU'd left operand taken through the
/// GELU in one call. Unbatched problems with n a multiple of 8. Returns false, having launched
/// nothing, when cuBLASLt offers no algorithm (the caller then applies the derivative itself).
bool gemm_gelu_grad(const GemmProblem& p, int device, bool allow_tf32, Stream stream,
                    const void* gelu_input);

/// Name and text of a cublasStatus_t (for LOOM_CUDA_LIB_CHECK).
const char* cublas_status_string(int status);

}  // namespace loom::cuda
