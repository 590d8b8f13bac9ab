// Typed errors. Every failure in loom is an exception derived from loom::Error; the library never
// calls exit(). Messages name the op (or module path / file) and the shapes, dtypes or devices involved.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace loom {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class ShapeError : public Error { using Error::Error; };
class DTypeError : public Error { using Error::Error; };
class DeviceError : public Error { using Error::Error; };
class ValueError : public Error { using Error::Error; };
class IndexError : public Error { using Error::Error; };
class NotImplementedError : public Error { using Error::Error; };
/// A file could not be read or written, or its contents are malformed (names the file).
class IOError : public Error { using Error::Error; };
class FormatError : public IOError { using IOError::IOError; };
/// A CUDA / cuBLAS / cuDNN / NCCL call failed; the message names the failing call.
class CudaError : public Error { using Error::Error; };
class OutOfMemoryError : public CudaError { using CudaError::CudaError; };

namespace detail {
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
[[noreturn]] void throw_not_compiled_with_cuda(const char* what);
}  // namespace detail

}  // namespace loom

/// LOOM_CHECK(cond, ShapeError, "add: shapes ", a, " and ", b, " do not broadcast");
#define LOOM_CHECK(cond, ErrorType, ...)                                  \
  do {                                                                    \
    if (!(cond)) throw ::loom::ErrorType(::loom::detail::cat(__VA_ARGS__)); \
  } while (0)

#define LOOM_THROW(ErrorType, ...) throw ::loom::ErrorType(::loom::detail::cat(__VA_ARGS__))

/// Invariants of loom itself (a failure is a loom bug, not a user error).
#define LOOM_INTERNAL_ASSERT(cond)                                                       \
  do {                                                                                   \
    if (!(cond))                                                                         \
      throw ::loom::Error(::loom::detail::cat("loom internal error: ", #cond, " at ", \
                                              __FILE__, ":", __LINE__));              \
  } while (0)

/// Wraps a call that exists only in CUDA builds; elsewhere it throws a DeviceError naming the call.
#if LOOM_CUDA
#define LOOM_CUDA_ONLY(...) __VA_ARGS__
#else
#define LOOM_CUDA_ONLY(...) ::loom::detail::throw_not_compiled_with_cuda(#__VA_ARGS__)
#endif
