#include "core/random.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <ostream>
#include <sstream>

#include "core/jit.h"
#include "kernels/cpu/random.h"
#if LOOM_CUDA
#include "kernels/cuda/random.h"
#endif

namespace loom::random {
namespace {

namespace rng = cpu::rng;

void check_shape(const Shape& shape, const char* op) {
  for (int64_t d : shape)
    LOOM_CHECK(d >= 0, ShapeError, op, ": negative dimension in shape ", shape_str(shape));
}

void check_floating(DType dtype, const char* op) {
  LOOM_CHECK(is_floating(dtype), DTypeError, op, ": dtype must be floating, got ",
             dtype_name(dtype));
}

/// Rounds `v` to the nearest value (ties to even) with a `bits`-bit significand whose exponent is
/// at least `min_exp` (the subnormal quantum of the format is 2^(min_exp - bits)); `max_finite`
/// bounds the range (larger magnitudes that round past it become infinite).
double round_significand(double v, int bits, int min_exp, double max_finite) {
  if (!std::isfinite(v) || v == 0) return v;
  int e;
  std::frexp(v, &e);  // v = m 2^e with 0.5 <= |m| < 1
  int q = std::max(e, min_exp) - bits;
  double r = std::ldexp(std::nearbyint(std::ldexp(v, -q)), q);
  if (std::abs(r) > max_finite) return std::copysign(INFINITY, v);
  return r;
}

/// A Python float converted to `dtype` as JAX converts it (round to nearest even).
double to_dtype(double v, DType dtype) {
  switch (dtype) {
    case DType::F32: return double(float(v));
    case DType::BF16: return round_significand(v, 8, -125, 3.3895313892515355e38);
    case DType::F16: return round_significand(v, 11, -13, 65504.0);
    default: return v;
  }
}

/// nextafter(x, toward) in `dtype` (x is already a value of that dtype).
double next_toward(double x, double toward, DType dtype) {
  if (dtype == DType::F64) return std::nextafter(x, toward);
  if (dtype == DType::F32) return double(std::nextafter(float(x), float(toward)));
  if (std::isnan(x) || x == toward) return x;
  bool bf16 = dtype == DType::BF16;
  uint16_t b = bf16 ? rng::bf16_bits(float(x)) : rng::f16_bits(float(x));
  bool up = toward > x;
  if (x == 0) b = up ? 0x0001 : 0x8001;
  else if ((x > 0) == up) ++b;
  else --b;
  return bf16 ? rng::bf16_value(b) : rng::f16_value(b);
}

/// erf(x / sqrt2) in `dtype` as XLA evaluates it: the division becomes a multiplication by the
/// constant 1/sqrt2 of the dtype, and erf runs in float32 for f32 and the half types.
double erf_scaled(double x, DType dtype) {
  if (dtype == DType::F64) return std::erf(x * (1.0 / std::sqrt(2.0)));
  // Each operation is rounded to the dtype (exact in double first: the operands are narrower).
  auto r = [dtype](double v) { return to_dtype(v, dtype); };
  double inv_sqrt2 = r(1.0 / r(std::sqrt(2.0)));
  return r(rng::erf_f32(float(r(x * inv_sqrt2))));
}

}  // namespace

bool Key::operator==(const Key& other) const {
  if (on_device() || other.on_device())
    return on_device() && other.on_device() && device_words.raw_data() == other.device_words.raw_data();
  return k0 == other.k0 && k1 == other.k1;
}

std::string Key::str() const {
  std::ostringstream os;
  if (on_device()) os << "Key(on " << device_words.device().str() << ")";
  else os << "Key(" << k0 << ", " << k1 << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Key& key) { return os << key.str(); }

Key key(int64_t seed) { return {0u, uint32_t(uint64_t(seed))}; }

namespace {

#if LOOM_CUDA
cuda::KeyArg key_arg(const Key& key) {
  return {key.k0, key.k1,
          key.on_device() ? static_cast<const uint32_t*>(key.device_words.raw_data()) : nullptr};
}
cuda::Stream key_stream(const Key& key) {
  const int device = key.device_words.device().index;
  cuda::set_device(device);
  return cuda::current_stream(device);
}
#endif

/// The key on its GPU whose words are `words` [2j, 2j + 1].
Key device_key(const Tensor& words, int64_t j) {
  Key k;
  k.device_words = Tensor(words.storage(), {2}, {1}, words.offset() + 2 * j, DType::U32);
  return k;
}

}  // namespace

Key fold_in(Key key, uint32_t data) {
  if (key.on_device()) {
    Tensor words = Tensor::empty({2}, DType::U32, key.device_words.device());
    LOOM_CUDA_ONLY(cuda::random_fold_in(key_arg(key), data, words.data<uint32_t>(), key_stream(key)));
    return device_key(words, 0);
  }
  rng::Pair p = rng::threefry2x32(key.k0, key.k1, 0u, data);
  return {p.a, p.b};
}

std::vector<Key> split(Key key, int64_t n) {
  LOOM_CHECK(n >= 0, ValueError, "random.split: n must be >= 0, got ", n);
  std::vector<Key> keys(static_cast<size_t>(n));
  if (key.on_device()) {
    Tensor words = Tensor::empty({n, 2}, DType::U32, key.device_words.device());
    LOOM_CUDA_ONLY(if (n > 0) cuda::random_split(key_arg(key), n, words.data<uint32_t>(), key_stream(key)));
    for (int64_t j = 0; j < n; ++j) keys[size_t(j)] = device_key(words, j);
    return keys;
  }
  for (int64_t j = 0; j < n; ++j) {
    rng::Pair p = rng::counter_pair(key.k0, key.k1, uint64_t(j));
    keys[size_t(j)] = {p.a, p.b};
  }
  return keys;
}

namespace {

// Where a draw from `key` may run: a usable device; a key on a GPU draws there only; and no
// host key on the GPU inside a loom::jit capture, whose replays would reuse it, so the same
// numbers, every call (a repeated dropout mask).
void check_draw_device(const Key& key, const Device& device, const char* op) {
  check_device_usable(device, op);
  LOOM_CHECK(!key.on_device() || key.device_words.device() == device, DeviceError, op,
             ": the key is on ", key.device_words.device().str(), " and draws there only, not on ",
             device.str(), "; draw on ", key.device_words.device().str(),
             " or use a host key (wrap_key_data of key_data(key).to(cpu))");
  LOOM_CHECK(key.on_device() || !(device.is_cuda() && jit_capturing()), ValueError, op,
             ": a draw from a host key inside a loom::jit step would repeat the same numbers at "
             "every replay; pass the key into the step as a tensor (in[\"rng\"] = "
             "random::key_data(key).to(device), then random::wrap_key_data(in[\"rng\"].tensor()) "
             "inside), or run this step without jit");
}

}  // namespace

Tensor key_data(Key key) {
  if (key.on_device()) return key.device_words;
  return from_vector(std::vector<uint32_t>{key.k0, key.k1}, {2});
}

Key wrap_key_data(const Tensor& data) {
  LOOM_CHECK(data.dtype() == DType::U32 && data.shape() == Shape{2}, ValueError,
             "random.wrap_key_data: expected a uint32 tensor of shape [2], got ",
             dtype_name(data.dtype()), " ", shape_str(data.shape()));
  if (data.is_cuda()) {
    Key k;
    k.device_words = data.detach().contiguous();
    return k;
  }
  std::vector<uint32_t> v = data.to_vector<uint32_t>();
  return {v[0], v[1]};
}

Tensor bits(Key key, const Shape& shape, Device device) {
  check_shape(shape, "random.bits");
  check_draw_device(key, device, "random.bits");
  Tensor out = Tensor::empty(shape, DType::U32, device);
  uint32_t* p = static_cast<uint32_t*>(out.raw_data());
  if (device.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::set_device(device.index);
                   cuda::random_bits(key_arg(key), p, out.numel(),
                                     cuda::current_stream(device.index)));
  } else {
    cpu::random_bits(key.k0, key.k1, p, out.numel());
  }
  return out;
}

Tensor uniform(Key key, const Shape& shape, DType dtype, double minval, double maxval,
               Device device) {
  check_shape(shape, "random.uniform");
  check_floating(dtype, "random.uniform");
  check_draw_device(key, device, "random.uniform");
  double lo = to_dtype(minval, dtype), hi = to_dtype(maxval, dtype);
  Tensor out = Tensor::empty(shape, dtype, device);
  if (device.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::set_device(device.index);
                   cuda::random_uniform(key_arg(key), out.raw_data(), dtype, lo, hi,
                                        out.numel(), cuda::current_stream(device.index)));
  } else {
    cpu::random_uniform(key.k0, key.k1, out.raw_data(), dtype, lo, hi, out.numel());
  }
  return out;
}

Tensor normal(Key key, const Shape& shape, DType dtype, Device device) {
  check_shape(shape, "random.normal");
  check_floating(dtype, "random.normal");
  check_draw_device(key, device, "random.normal");
  Tensor out = Tensor::empty(shape, dtype, device);
  if (device.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::set_device(device.index);
                   cuda::random_normal(key_arg(key), out.raw_data(), dtype, out.numel(),
                                       cuda::current_stream(device.index)));
  } else {
    cpu::random_normal(key.k0, key.k1, out.raw_data(), dtype, out.numel());
  }
  return out;
}

Tensor truncated_normal(Key key, double lower, double upper, const Shape& shape, DType dtype,
                        Device device) {
  check_shape(shape, "random.truncated_normal");
  check_floating(dtype, "random.truncated_normal");
  check_draw_device(key, device, "random.truncated_normal");
  LOOM_CHECK(lower < upper, ValueError, "random.truncated_normal: need lower < upper, got lower=",
             lower, " upper=", upper);
  double lo = to_dtype(lower, dtype), hi = to_dtype(upper, dtype);
  double a = erf_scaled(lo, dtype), b = erf_scaled(hi, dtype);
  double clip_lo = next_toward(lo, INFINITY, dtype), clip_hi = next_toward(hi, -INFINITY, dtype);
  Tensor out = Tensor::empty(shape, dtype, device);
  if (device.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::set_device(device.index);
                   cuda::random_truncated_normal(key_arg(key), out.raw_data(), dtype, a, b,
                                                 clip_lo, clip_hi, out.numel(),
                                                 cuda::current_stream(device.index)));
  } else {
    cpu::random_truncated_normal(key.k0, key.k1, out.raw_data(), dtype, a, b, clip_lo, clip_hi,
                                 out.numel());
  }
  return out;
}

Tensor bernoulli(Key key, double p, const Shape& shape, Device device) {
  check_shape(shape, "random.bernoulli");
  check_draw_device(key, device, "random.bernoulli");
  LOOM_CHECK(p >= 0.0 && p <= 1.0, ValueError, "random.bernoulli: p must be in [0, 1], got ", p);
  Tensor out = Tensor::empty(shape, DType::Bool, device);
  bool* o = static_cast<bool*>(out.raw_data());
  float pf = float(p);
  if (device.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::set_device(device.index);
                   cuda::random_bernoulli(key_arg(key), o, pf, out.numel(),
                                          cuda::current_stream(device.index)));
  } else {
    cpu::random_bernoulli(key.k0, key.k1, o, pf, out.numel());
  }
  return out;
}

Tensor bernoulli_bits(Key key, double p, int64_t n, Device device) {
  LOOM_CHECK(n >= 0, ValueError, "random.bernoulli_bits: n must be >= 0, got ", n);
  check_draw_device(key, device, "random.bernoulli_bits");
  LOOM_CHECK(p >= 0.0 && p <= 1.0, ValueError, "random.bernoulli_bits: p must be in [0, 1], got ", p);
  Tensor out = Tensor::empty({(n + 31) / 32}, DType::U32, device);
  uint32_t* words = out.data<uint32_t>();
  const float pf = float(p);
  if (device.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::set_device(device.index);
                   cuda::random_bernoulli_bits(key_arg(key), words, pf, n,
                                               cuda::current_stream(device.index)));
  } else {
    cpu::random_bernoulli_bits(key.k0, key.k1, words, pf, n);
  }
  return out;
}

Tensor permutation(Key key, int64_t n, Device device) {
  LOOM_CHECK(n >= 0 && n <= std::numeric_limits<int32_t>::max(), ValueError,
             "random.permutation: n must be in [0, 2^31 - 1] (the result is int32), got ", n);
  LOOM_CHECK(!key.on_device(), ValueError, "random.permutation: it sorts on the host, so it takes "
             "a host key, got ", key.str(), " (wrap_key_data of key_data(key).to(cpu) makes one)");
  check_draw_device(key, device, "random.permutation");
  // jax/_src/random.py _shuffle: enough rounds that all sort keys are distinct with high
  // probability; each round splits the key and stably sorts by fresh 32-bit keys.
  const double uint32max = 4294967295.0;
  int rounds = int(std::ceil(3.0 * std::log(double(std::max<int64_t>(1, n))) / std::log(uint32max)));
  std::vector<int32_t> x(static_cast<size_t>(n));
  std::iota(x.begin(), x.end(), 0);
  std::vector<uint32_t> sort_keys(static_cast<size_t>(n));
  std::vector<std::pair<uint32_t, int32_t>> pairs(static_cast<size_t>(n));
  for (int r = 0; r < rounds; ++r) {
    std::vector<Key> ks = split(key);
    key = ks[0];
    cpu::random_bits(ks[1].k0, ks[1].k1, sort_keys.data(), n);
    for (size_t i = 0; i < size_t(n); ++i) pairs[i] = {sort_keys[i], x[i]};
    std::stable_sort(pairs.begin(), pairs.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < size_t(n); ++i) x[i] = pairs[i].second;
  }
  return from_vector(x, {n}).to(device);
}

}  // namespace loom::random
