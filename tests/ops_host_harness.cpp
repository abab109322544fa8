// Test harness: the per-element code of the CUDA kernels (pti/stylegan2/ops/csrc/ops_math.h)
// run on CPU tensors, with the same Python signatures as the CUDA extension. It lets
// tests/test_ops.py check the kernels' index arithmetic and activation formulas, and the
// autograd wrappers in _cuda_ops.py, on a machine without a GPU. Not part of the package.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/csrc/utils/pybind.h>

#include <optional>

#include "ops_math.h"

namespace {

int64_t inner_size(const at::Tensor& x, int64_t dim) {
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  return inner;
}

}  // namespace

at::Tensor bias_act_host(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim, int64_t act,
                         double alpha, double gain, double clamp) {
  TORCH_CHECK(x.device().is_cpu(), "harness runs on CPU tensors");
  at::Tensor xc = x.contiguous();
  at::Tensor bc = b.has_value() ? b->contiguous() : at::Tensor();
  at::Tensor y = at::empty_like(xc);
  const int64_t inner = inner_size(xc, dim), channels = xc.size(dim);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "bias_act_host", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    const scalar_t* bp = bc.defined() ? bc.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    for (int64_t i = 0; i < xc.numel(); ++i) {
      T z = static_cast<T>(xp[i]);
      if (bp != nullptr) z += static_cast<T>(bp[(i / inner) % channels]);
      yp[i] = static_cast<scalar_t>(pti::bias_act_value<T>(static_cast<int>(act), z, static_cast<T>(alpha),
                                                           static_cast<T>(gain), static_cast<T>(clamp)));
    }
  });
  return y;
}

at::Tensor bias_act_grad_host(const at::Tensor& dy, const at::Tensor& saved, const std::optional<at::Tensor>& b,
                              int64_t dim, int64_t act, bool saved_is_output, double alpha, double gain,
                              double clamp) {
  TORCH_CHECK(dy.sizes() == saved.sizes(), "dy and saved differ in shape");
  at::Tensor dyc = dy.contiguous(), sc = saved.contiguous();
  at::Tensor bc = b.has_value() ? b->contiguous() : at::Tensor();
  at::Tensor dx = at::empty_like(sc);
  const int64_t inner = inner_size(sc, dim), channels = sc.size(dim);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, sc.scalar_type(), "bias_act_grad_host", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t* dyp = dyc.const_data_ptr<scalar_t>();
    const scalar_t* sp = sc.const_data_ptr<scalar_t>();
    const scalar_t* bp = bc.defined() ? bc.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* dxp = dx.mutable_data_ptr<scalar_t>();
    for (int64_t i = 0; i < sc.numel(); ++i) {
      T r = static_cast<T>(sp[i]);
      T slope;
      if (saved_is_output) {
        slope = pti::bias_act_slope_from_output<T>(static_cast<int>(act), r, static_cast<T>(alpha),
                                                   static_cast<T>(gain), static_cast<T>(clamp));
      } else {
        if (bp != nullptr) r += static_cast<T>(bp[(i / inner) % channels]);
        slope = pti::bias_act_slope_from_input<T>(static_cast<int>(act), r, static_cast<T>(alpha),
                                                  static_cast<T>(gain), static_cast<T>(clamp));
      }
      dxp[i] = static_cast<scalar_t>(static_cast<T>(dyp[i]) * slope);
    }
  });
  return dx;
}

at::Tensor upfirdn2d_host(const at::Tensor& x, const at::Tensor& f, int64_t up_x, int64_t up_y, int64_t down_x,
                          int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1,
                          bool flip_filter) {
  TORCH_CHECK(x.dim() == 4 && f.dim() == 2 && f.scalar_type() == at::kFloat, "bad shapes");
  const int64_t in_h = x.size(2), in_w = x.size(3), f_h = f.size(0), f_w = f.size(1);
  const int64_t span_h = in_h * up_y + pad_y0 + pad_y1 - f_h, span_w = in_w * up_x + pad_x0 + pad_x1 - f_w;
  TORCH_CHECK(span_h >= 0 && span_w >= 0, "upfirdn2d: the filter is larger than the padded upsampled input");
  const int64_t out_h = span_h / down_y + 1, out_w = span_w / down_x + 1;
  at::Tensor xc = x.contiguous(), fc = f.contiguous();
  at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, xc.options());
  pti::UpFirDnGeometry g{static_cast<int>(in_h), static_cast<int>(in_w), static_cast<int>(out_h),
                         static_cast<int>(out_w), static_cast<int>(up_x), static_cast<int>(up_y),
                         static_cast<int>(down_x), static_cast<int>(down_y), static_cast<int>(pad_x0),
                         static_cast<int>(pad_y0), static_cast<int>(f_h), static_cast<int>(f_w), flip_filter};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "upfirdn2d_host", [&] {
    using T = at::opmath_type<scalar_t>;
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const int64_t planes = x.size(0) * x.size(1);
    for (int64_t p = 0; p < planes; ++p) {
      for (int oy = 0; oy < out_h; ++oy) {
        for (int ox = 0; ox < out_w; ++ox) {
          yp[(p * out_h + oy) * out_w + ox] = static_cast<scalar_t>(
              pti::upfirdn2d_sample<T, scalar_t>(xp + p * in_h * in_w, fc.const_data_ptr<float>(), g, oy, ox));
        }
      }
    }
  });
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bias_act", &bias_act_host);
  m.def("bias_act_grad", &bias_act_grad_host);
  m.def("upfirdn2d", &upfirdn2d_host);
}
