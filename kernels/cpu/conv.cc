#include "kernels/cpu/conv.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/blas.h"
#include "kernels/cpu/openblas_kernels.h"

namespace loom {

Shape ConvGeometry::x_shape() const {
  Shape s{batch};
  s.insert(s.end(), in_spatial.begin(), in_spatial.end());
  s.push_back(in_channels);
  return s;
}

Shape ConvGeometry::kernel_shape() const {
  Shape s = kernel_spatial;
  s.push_back(groups > 0 ? in_channels / groups : 0);
  s.push_back(out_channels);
  return s;
}

Shape ConvGeometry::y_shape() const {
  Shape s{batch};
  s.insert(s.end(), out_spatial.begin(), out_spatial.end());
  s.push_back(out_channels);
  return s;
}

namespace cpu {
namespace {

// Every kernel works on three spatial dims: 1-D and 2-D problems get leading size-1 dims, so one
// set of loops serves every rank without per-element index arithmetic.
constexpr int kDims = 3;

struct Canon {
  int64_t n, cin, cout, groups, cg, coutg;
  std::array<int64_t, kDims> in, k, out;
  int64_t ktot, in_size, out_size;  // products over the spatial dims
  // tab[d][o * k[d] + j]: input index read by output o through tap j, or -1 (padding / a hole
  // made by lhs dilation).
  std::array<std::vector<int64_t>, kDims> tab;
  bool direct;  // im2col would copy x unchanged (1x1 taps, unit strides, no padding)
};

Canon canonicalize(const ConvGeometry& g) {
  Canon c;
  c.n = g.batch;
  c.cin = g.in_channels;
  c.cout = g.out_channels;
  c.groups = g.groups;
  c.cg = g.in_channels / g.groups;
  c.coutg = g.out_channels / g.groups;
  int64_t lead = kDims - g.rank();
  LOOM_INTERNAL_ASSERT(lead >= 0);
  c.direct = true;
  for (int d = 0; d < kDims; ++d) {
    bool real = d >= lead;
    size_t s = size_t(d - lead);
    c.in[d] = real ? g.in_spatial[s] : 1;
    c.k[d] = real ? g.kernel_spatial[s] : 1;
    c.out[d] = real ? g.out_spatial[s] : 1;
    int64_t stride = real ? g.strides[s] : 1, lo = real ? g.pad_lo[s] : 0;
    int64_t ld = real ? g.lhs_dilation[s] : 1, rd = real ? g.rhs_dilation[s] : 1;
    c.tab[d].assign(size_t(c.out[d] * c.k[d]), -1);
    for (int64_t o = 0; o < c.out[d]; ++o)
      for (int64_t j = 0; j < c.k[d]; ++j) {
        int64_t pos = o * stride - lo + j * rd;  // in the lhs-dilated input
        if (pos < 0 || pos % ld != 0 || pos / ld >= c.in[d]) continue;
        c.tab[d][size_t(o * c.k[d] + j)] = pos / ld;
      }
    c.direct = c.direct && c.k[d] == 1 && stride == 1 && lo == 0 && ld == 1 && c.in[d] == c.out[d];
  }
  c.ktot = c.k[0] * c.k[1] * c.k[2];
  c.in_size = c.in[0] * c.in[1] * c.in[2];
  c.out_size = c.out[0] * c.out[1] * c.out[2];
  return c;
}

// The im2col matrix has one row per (image, output position) and, per group g, a block of
// ktot * cg columns ordered (tap, channel): exactly the rows of that group's HWIO kernel slice,
// so the product is one GEMM per group with leading dimension ktot * cin.
template <typename T, bool kScatter>
void col_rows(const Canon& c, int64_t o0, int64_t o1, T* x_img, T* col) {
  int64_t kc = c.ktot * c.cin;
  const int64_t* t0 = c.tab[0].data() + o0 * c.k[0];
  const int64_t* t1 = c.tab[1].data() + o1 * c.k[1];
  for (int64_t o2 = 0; o2 < c.out[2]; ++o2) {
    const int64_t* t2 = c.tab[2].data() + o2 * c.k[2];
    T* row = col + o2 * kc;
    for (int64_t g = 0; g < c.groups; ++g) {
      T* dst = row + g * c.ktot * c.cg;
      for (int64_t j0 = 0; j0 < c.k[0]; ++j0)
        for (int64_t j1 = 0; j1 < c.k[1]; ++j1) {
          int64_t i0 = t0[j0], i1 = t1[j1];
          for (int64_t j2 = 0; j2 < c.k[2]; ++j2, dst += c.cg) {
            int64_t i2 = t2[j2];
            if (i0 < 0 || i1 < 0 || i2 < 0) {
              if constexpr (!kScatter) std::fill(dst, dst + c.cg, T(0));
              continue;
            }
            T* src = x_img + ((i0 * c.in[1] + i1) * c.in[2] + i2) * c.cin + g * c.cg;
            if constexpr (kScatter) {
              for (int64_t ch = 0; ch < c.cg; ++ch) src[ch] += dst[ch];
            } else {
              for (int64_t ch = 0; ch < c.cg; ++ch) dst[ch] = src[ch];
            }
          }
        }
    }
  }
}

// col_rows<T, false> for one input channel (a first convolution over grey images): each tap is
// one value, gathered without the group and channel loops, whose per-tap set-up was most of the
// seed CNN's first im2col (4.0 -> 2.2 ms; a cg == 1 branch inside col_rows got only to 3.7).
template <typename T>
void col_rows_one_channel(const Canon& c, int64_t o0, int64_t o1, const T* x_img, T* col) {
  const int64_t* t0 = c.tab[0].data() + o0 * c.k[0];
  const int64_t* t1 = c.tab[1].data() + o1 * c.k[1];
  T* dst = col;
  for (int64_t o2 = 0; o2 < c.out[2]; ++o2) {
    const int64_t* t2 = c.tab[2].data() + o2 * c.k[2];
    for (int64_t j0 = 0; j0 < c.k[0]; ++j0)
      for (int64_t j1 = 0; j1 < c.k[1]; ++j1) {
        const int64_t i0 = t0[j0], i1 = t1[j1];
        if (i0 < 0 || i1 < 0) {
          dst = std::fill_n(dst, c.k[2], T(0));
          continue;
        }
        const T* src = x_img + (i0 * c.in[1] + i1) * c.in[2];
        for (int64_t j2 = 0; j2 < c.k[2]; ++j2) *dst++ = t2[j2] < 0 ? T(0) : src[t2[j2]];
      }
  }
}

// im2col and col2im split their rows across OpenMP's threads only where OpenBLAS's threads are
// OpenMP's too. The pthread build's workers keep spinning for a while after each GEMM, and an
// OpenMP region sharing the cores with them measured ~1.8x slower end to end on 2 cores than a
// serial loop (see the DISABLED_BenchmarkSeedCnn test).
bool split_column_copies(int64_t elements) {
  constexpr int64_t kMinElements = int64_t(1) << 16;  // below it waking the threads costs more
  return elements >= kMinElements && blas_kernels().openmp_threads;
}

template <typename T>
void im2col(const Canon& c, const T* x, int64_t n0, int64_t nb, T* col) {
  int64_t per_img = c.out[0] * c.out[1];
  int64_t total = nb * per_img;
  int64_t kc = c.ktot * c.cin;
#pragma omp parallel for schedule(static) if (split_column_copies(total * kc))
  for (int64_t r = 0; r < total; ++r) {
    int64_t i = r / per_img, rem = r % per_img;
    int64_t o0 = rem / c.out[1], o1 = rem % c.out[1];
    T* x_img = const_cast<T*>(x) + (n0 + i) * c.in_size * c.cin;
    T* rows = col + (i * c.out_size + rem * c.out[2]) * kc;
    if (c.cin == 1) col_rows_one_channel(c, o0, o1, x_img, rows);
    else col_rows<T, false>(c, o0, o1, x_img, rows);
  }
}

// Adds the columns back into dx; images apart on the threads, as they write apart.
template <typename T>
void col2im(const Canon& c, const T* col, int64_t n0, int64_t nb, T* dx) {
  int64_t kc = c.ktot * c.cin;
#pragma omp parallel for schedule(static) if (nb > 1 && split_column_copies(nb * c.out_size * kc))
  for (int64_t i = 0; i < nb; ++i) {
    T* x_img = dx + (n0 + i) * c.in_size * c.cin;
    for (int64_t o0 = 0; o0 < c.out[0]; ++o0)
      for (int64_t o1 = 0; o1 < c.out[1]; ++o1)
        col_rows<T, true>(
            c, o0, o1, x_img,
            const_cast<T*>(col) + (i * c.out_size + (o0 * c.out[1] + o1) * c.out[2]) * kc);
  }
}

// Column-matrix storage. Up to 64 MB it is a per-thread buffer kept between calls: a fresh
// multi-megabyte allocation per call would page-fault its way through every training step.
// Larger requests (one huge image) get a temporary buffer so that memory is not held forever.
class Scratch {
 public:
  template <typename T>
  T* get(size_t count) {
    size_t words = (count * sizeof(T) + sizeof(double) - 1) / sizeof(double);
    thread_local std::vector<double> cached;
    std::vector<double>& buf = words * sizeof(double) <= (size_t(64) << 20) ? cached : owned_;
    if (buf.size() < words) {
      buf.clear();
      buf.shrink_to_fit();
      buf.resize(words);
    }
    return reinterpret_cast<T*>(buf.data());
  }

 private:
  std::vector<double> owned_;
};

// Images per im2col chunk: one large GEMM per group while the column matrix stays under
// `budget` bytes (kConvColumnsChunkBytes unless said otherwise).
int64_t chunk_images(const Canon& c, size_t elem, size_t budget = kConvColumnsChunkBytes) {
  int64_t per_img = std::max<int64_t>(1, c.out_size * c.ktot * c.cin * int64_t(elem));
  return std::clamp<int64_t>(int64_t(budget) / per_img, 1, std::max<int64_t>(c.n, 1));
}

// The input gradient's column chunks: small enough to stay in a core's L2 between the GEMM that
// writes them (after zeroing them) and col2im, which reads them back. A
// column-matrix element is one dot product whatever the chunk, so the values do not change.
constexpr size_t kInputGradChunkBytes = size_t(1) << 20;

// Rows of y that start as the bias, for the products to add into (beta = 1): the bias then
// costs no pass over y of its own.
template <typename T>
void fill_rows(T* y, int64_t rows, int64_t n, const T* bias) {
#pragma omp parallel for schedule(static) if (rows * n > 32768)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) y[r * n + i] = bias[i];
}

template <typename T>
void forward(const Canon& c, const T* x, const T* w, const T* bias, T* y, T* columns) {
  if (c.n * c.out_size * c.cout == 0) return;
  if (c.ktot * c.cg == 0) {
    if (bias) fill_rows(y, c.n * c.out_size, c.cout, bias);
    else std::fill(y, y + c.n * c.out_size * c.cout, T(0));
    return;
  }
  int64_t kc = c.ktot * c.cin, chunk = chunk_images(c, sizeof(T));
  Scratch scratch;
  LOOM_INTERNAL_ASSERT(!columns || chunk >= c.n);  // kept columns are one piece
  for (int64_t n0 = 0; n0 < c.n; n0 += chunk) {
    int64_t nb = std::min(chunk, c.n - n0), rows = nb * c.out_size;
    const T* col = x + n0 * c.in_size * c.cin;
    if (!c.direct) {
      T* buf = columns ? columns : scratch.get<T>(size_t(rows * kc));
      im2col(c, x, n0, nb, buf);
      col = buf;
    }
    T* y_rows = y + n0 * c.out_size * c.cout;
    if (bias) fill_rows(y_rows, rows, c.cout, bias);
    for (int64_t g = 0; g < c.groups; ++g)
      blas_gemm<T>(false, false, rows, c.coutg, c.ktot * c.cg, col + g * c.ktot * c.cg, kc,
                   w + g * c.coutg, c.cout, bias != nullptr, y_rows + g * c.coutg, c.cout,
                   "conv");
  }
}

template <typename T>
void backward_input(const Canon& c, const T* dy, const T* w, T* dx, bool accumulate) {
  int64_t nx = c.n * c.in_size * c.cin;
  if (nx == 0) return;
  if (c.out_size * c.cout * c.ktot == 0) {
    if (!accumulate) std::fill(dx, dx + nx, T(0));
    return;
  }
  int64_t kc = c.ktot * c.cin;
  int64_t chunk = c.direct ? chunk_images(c, sizeof(T))
                           : chunk_images(c, sizeof(T), kInputGradChunkBytes);
  if (!c.direct && !accumulate) std::fill(dx, dx + nx, T(0));
  Scratch scratch;
  for (int64_t n0 = 0; n0 < c.n; n0 += chunk) {
    int64_t nb = std::min(chunk, c.n - n0), rows = nb * c.out_size;
    // direct: the column matrix is dx itself, so the GEMM writes the gradient in place
    T* dcol = c.direct ? dx + n0 * c.in_size * c.cin : scratch.get<T>(size_t(rows * kc));
    for (int64_t g = 0; g < c.groups; ++g)
      blas_gemm<T>(false, true, rows, c.ktot * c.cg, c.coutg,
                   dy + n0 * c.out_size * c.cout + g * c.coutg, c.cout, w + g * c.coutg, c.cout,
                   c.direct && accumulate, dcol + g * c.ktot * c.cg, kc, "conv");
    if (!c.direct) col2im(c, dcol, n0, nb, dx);
  }
}

template <typename T>
void backward_kernel(const Canon& c, const T* x, const T* dy, T* dw, const T* columns) {
  int64_t nw = c.ktot * c.cg * c.cout;
  if (nw == 0) return;
  if (c.n * c.out_size == 0) {
    std::fill(dw, dw + nw, T(0));
    return;
  }
  int64_t kc = c.ktot * c.cin, chunk = chunk_images(c, sizeof(T));
  Scratch scratch;
  for (int64_t n0 = 0; n0 < c.n; n0 += chunk) {
    int64_t nb = std::min(chunk, c.n - n0), rows = nb * c.out_size;
    const T* col = columns;
    if (columns) {
      LOOM_INTERNAL_ASSERT(!c.direct && chunk >= c.n);
    } else if (c.direct) {
      col = x + n0 * c.in_size * c.cin;
    } else {
      T* buf = scratch.get<T>(size_t(rows * kc));
      im2col(c, x, n0, nb, buf);
      col = buf;
    }
    const bool later = n0 > 0;  // later chunks accumulate
    for (int64_t g = 0; g < c.groups; ++g)
      blas_gemm<T>(true, false, c.ktot * c.cg, c.coutg, rows, col + g * c.ktot * c.cg, kc,
                   dy + n0 * c.out_size * c.cout + g * c.coutg, c.cout, later, dw + g * c.coutg,
                   c.cout, "conv");
  }
}

template <typename Fn>
void visit_blas_dtype(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::F32:
      return fn(float{});
    case DType::F64:
      return fn(double{});
    default:
      LOOM_THROW(DTypeError, op, ": the CPU kernel takes float32 or float64, got ", dtype_name(t));
  }
}

}  // namespace

int64_t conv_columns_size(const ConvGeometry& g) {
  const Canon c = canonicalize(g);
  return c.direct ? 0 : c.n * c.out_size * c.ktot * c.cin;
}

void conv_forward(const ConvGeometry& g, DType dtype, const void* x, const void* w, void* y,
                  void* columns, const void* bias) {
  visit_blas_dtype(dtype, "conv", [&](auto z) {
    using T = decltype(z);
    forward(canonicalize(g), static_cast<const T*>(x), static_cast<const T*>(w),
            static_cast<const T*>(bias), static_cast<T*>(y), static_cast<T*>(columns));
  });
}

void conv_backward_input(const ConvGeometry& g, DType dtype, const void* dy, const void* w,
                         void* dx, bool accumulate) {
  visit_blas_dtype(dtype, "conv backward", [&](auto z) {
    using T = decltype(z);
    backward_input(canonicalize(g), static_cast<const T*>(dy), static_cast<const T*>(w),
                   static_cast<T*>(dx), accumulate);
  });
}

void conv_backward_kernel(const ConvGeometry& g, DType dtype, const void* x, const void* dy,
                          void* dw, const void* columns) {
  visit_blas_dtype(dtype, "conv backward", [&](auto z) {
    using T = decltype(z);
    backward_kernel(canonicalize(g), static_cast<const T*>(x), static_cast<const T*>(dy),
                    static_cast<T*>(dw), static_cast<const T*>(columns));
  });
}

}  // namespace cpu
}  // namespace loom
