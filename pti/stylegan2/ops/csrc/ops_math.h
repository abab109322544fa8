// Per-element math shared by the CUDA kernels (bias_act.cu, upfirdn2d.cu) and by the
// CPU test harness (tests/ops_host_harness.cpp), so that the index arithmetic and the
// activation formulas that run on the GPU can also be checked on a machine without one.
//
// Everything here is a plain function of its arguments: no globals, no allocation.
#pragma once

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define PTI_HD __host__ __device__ __forceinline__
#else
#define PTI_HD inline
#endif

namespace pti {

// Activation ids; they equal ``Activation.cuda_ref`` in pti/stylegan2/ops/bias_act.py.
enum ActivationId : int {
  kLinear = 1,
  kRelu = 2,
  kLrelu = 3,
  kTanh = 4,
  kSigmoid = 5,
  kElu = 6,
  kSelu = 7,
  kSoftplus = 8,
  kSwish = 9,
};

// float / double overloads of the few transcendental functions we need.
PTI_HD float fn_exp(float v) { return expf(v); }
PTI_HD double fn_exp(double v) { return exp(v); }
PTI_HD float fn_expm1(float v) { return expm1f(v); }
PTI_HD double fn_expm1(double v) { return expm1(v); }
PTI_HD float fn_log1p(float v) { return log1pf(v); }
PTI_HD double fn_log1p(double v) { return log1p(v); }
PTI_HD float fn_tanh(float v) { return tanhf(v); }
PTI_HD double fn_tanh(double v) { return tanh(v); }
PTI_HD float fn_abs(float v) { return fabsf(v); }
PTI_HD double fn_abs(double v) { return fabs(v); }

template <typename T>
PTI_HD T fn_sigmoid(T z) {
  return T(1) / (T(1) + fn_exp(-z));
}

// SELU constants (Klambauer et al. 2017), as used by torch.nn.functional.selu.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
// torch.nn.functional.softplus switches to the identity above this input (beta = 1).
constexpr double kSoftplusThreshold = 20.0;

// act(z). ``alpha`` is only used by lrelu (negative slope), like the reference.
template <typename T>
PTI_HD T activation(int act, T z, T alpha) {
  switch (act) {
    case kRelu: return z > T(0) ? z : T(0);
    case kLrelu: return z > T(0) ? z : z * alpha;
    case kTanh: return fn_tanh(z);
    case kSigmoid: return fn_sigmoid(z);
    case kElu: return z > T(0) ? z : fn_expm1(z);
    case kSelu: return z > T(0) ? T(kSeluScale) * z : T(kSeluScale * kSeluAlpha) * fn_expm1(z);
    case kSoftplus: return z > T(kSoftplusThreshold) ? z : fn_log1p(fn_exp(z));
    case kSwish: return z * fn_sigmoid(z);
    default: return z;  // linear
  }
}

// d act(z) / dz, with PyTorch's choice at the kinks (relu'(0) = 0, lrelu'(0) = alpha).
template <typename T>
PTI_HD T activation_slope(int act, T z, T alpha) {
  switch (act) {
    case kRelu: return z > T(0) ? T(1) : T(0);
    case kLrelu: return z > T(0) ? T(1) : alpha;
    case kTanh: {
      T t = fn_tanh(z);
      return T(1) - t * t;
    }
    case kSigmoid: {
      T s = fn_sigmoid(z);
      return s * (T(1) - s);
    }
    case kElu: return z > T(0) ? T(1) : fn_exp(z);
    case kSelu: return z > T(0) ? T(kSeluScale) : T(kSeluScale * kSeluAlpha) * fn_exp(z);
    case kSoftplus: return z > T(kSoftplusThreshold) ? T(1) : fn_sigmoid(z);
    case kSwish: {
      T s = fn_sigmoid(z);
      return s + z * s * (T(1) - s);
    }
    default: return T(1);  // linear
  }
}

// clamp(act(z) * gain, -clamp, clamp); a negative ``clamp`` means no clamping. NaN stays NaN.
template <typename T>
PTI_HD T bias_act_value(int act, T z, T alpha, T gain, T clamp) {
  T v = activation(act, z, alpha) * gain;
  if (clamp >= T(0)) v = v > clamp ? clamp : (v < -clamp ? -clamp : v);
  return v;
}

// d bias_act_value / dz, from the pre-activation z = x + b. The clamp passes the gradient
// where -clamp <= act(z) * gain <= clamp (inclusive, like torch.clamp).
template <typename T>
PTI_HD T bias_act_slope_from_input(int act, T z, T alpha, T gain, T clamp) {
  T s = activation_slope(act, z, alpha) * gain;
  if (clamp >= T(0)) {
    T v = activation(act, z, alpha) * gain;
    if (!(v >= -clamp && v <= clamp)) s = T(0);
  }
  return s;
}

// d bias_act_value / dz recovered from the output y alone. Valid only for linear, relu and
// lrelu with alpha >= 0 and gain > 0 (then sign(y) = sign(z)); the caller guarantees it.
// Outputs that sit exactly on the clamp limit are treated as clamped.
template <typename T>
PTI_HD T bias_act_slope_from_output(int act, T y, T alpha, T gain, T clamp) {
  if (clamp >= T(0) && !(fn_abs(y) < clamp)) return T(0);
  if (act == kLinear) return gain;
  if (y > T(0)) return gain;
  return act == kRelu ? T(0) : alpha * gain;
}

// Geometry of one upfirdn2d pass on planes of [in_h, in_w] -> [out_h, out_w].
struct UpFirDnGeometry {
  int in_h, in_w, out_h, out_w;
  int up_x, up_y, down_x, down_y;
  int pad_x0, pad_y0;  // the far-side padding only shows in out_h / out_w
  int f_h, f_w;
  bool flip_filter;  // false: true convolution with f; true: correlation with f
};

// First tap j >= 0 of a filter whose tap 0 lands on upsampled coordinate k0, such that
// k0 + j is a non-negative multiple of ``up`` (i.e. lands on a real, non-inserted sample).
PTI_HD int first_live_tap(int k0, int up) {
  int j = k0 < 0 ? -k0 : 0;
  int r = (k0 + j) % up;
  return r == 0 ? j : j + (up - r);
}

// One output sample of upfirdn2d on one plane:
//   out[oy, ox] = sum_{jy, jx} g[jy, jx] * u[oy * down_y + jy - pad_y0, ox * down_x + jx - pad_x0]
// where u is the plane after zero insertion (u[k] = x[k / up] when k % up == 0, else 0; zero
// outside) and g is f (flip_filter) or f rotated by 180 degrees (true convolution).
// ``plane`` is [in_h, in_w] row-major; ``f`` is [f_h, f_w] row-major float32.
template <typename T, typename scalar_t>
PTI_HD T upfirdn2d_sample(const scalar_t* plane, const float* f, const UpFirDnGeometry& g, int oy, int ox) {
  const int ky0 = oy * g.down_y - g.pad_y0;
  const int kx0 = ox * g.down_x - g.pad_x0;
  const int jy_begin = first_live_tap(ky0, g.up_y);
  const int jx_begin = first_live_tap(kx0, g.up_x);
  const int jy_limit = g.in_h * g.up_y - ky0;  // taps with k0 + j >= in * up fall off the end
  const int jx_limit = g.in_w * g.up_x - kx0;
  const int jy_end = jy_limit < g.f_h ? jy_limit : g.f_h;
  const int jx_end = jx_limit < g.f_w ? jx_limit : g.f_w;
  T acc = T(0);
  for (int jy = jy_begin; jy < jy_end; jy += g.up_y) {
    const int iy = (ky0 + jy) / g.up_y;
    const int fy = g.flip_filter ? jy : g.f_h - 1 - jy;
    const scalar_t* row = plane + static_cast<int64_t>(iy) * g.in_w;
    const float* frow = f + static_cast<int64_t>(fy) * g.f_w;
    for (int jx = jx_begin; jx < jx_end; jx += g.up_x) {
      const int ix = (kx0 + jx) / g.up_x;
      const int fx = g.flip_filter ? jx : g.f_w - 1 - jx;
      acc += static_cast<T>(row[ix]) * static_cast<T>(frow[fx]);
    }
  }
  return acc;
}

}  // namespace pti
