// upfirdn2d: zero-insertion upsampling, padding/cropping, 2-D FIR filtering and decimation of
// every [H, W] plane of an NCHW tensor, in one gather pass (one thread per output sample).
//
// Each output sample visits only the filter taps that land on real (not inserted) input
// samples, so upsampling by ``up`` costs ceil(taps / up) reads per axis. Separable filters are
// handled by the Python wrapper as two passes with [1, taps] and [taps, 1] filters.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstdlib>
#include <limits>

#include "ops_math.h"

namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void upfirdn2d_kernel(const scalar_t* __restrict__ x, const float* __restrict__ f,
                                 scalar_t* __restrict__ y, int64_t numel, pti::UpFirDnGeometry g) {
  using T = at::opmath_type<scalar_t>;
  const int64_t in_plane = static_cast<int64_t>(g.in_h) * g.in_w;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel; i += stride) {
    const int ox = static_cast<int>(i % g.out_w);
    const int64_t rest = i / g.out_w;
    const int oy = static_cast<int>(rest % g.out_h);
    const int64_t plane = rest / g.out_h;
    y[i] = static_cast<scalar_t>(pti::upfirdn2d_sample<T, scalar_t>(x + plane * in_plane, f, g, oy, ox));
  }
}

// Output length of one axis: floor((in * up + pad0 + pad1 - taps) / down) + 1, or <= 0 if empty.
int64_t output_length(int64_t in, int64_t up, int64_t pad0, int64_t pad1, int64_t taps, int64_t down) {
  const int64_t span = in * up + pad0 + pad1 - taps;
  return span < 0 ? 0 : span / down + 1;
}

}  // namespace

at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, int64_t up_x, int64_t up_y, int64_t down_x,
                          int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1,
                          bool flip_filter) {
  TORCH_CHECK(x.is_cuda(), "upfirdn2d: x must be a CUDA tensor");
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be [N, C, H, W], got ", x.sizes());
  TORCH_CHECK(f.device() == x.device(), "upfirdn2d: filter is on ", f.device(), " but x is on ", x.device());
  TORCH_CHECK(f.scalar_type() == at::kFloat && f.dim() == 2 && f.numel() > 0,
              "upfirdn2d: filter must be a non-empty 2-D float32 tensor, got ", f.scalar_type(), " ", f.sizes());
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up and down must be >= 1");
  const int64_t in_h = x.size(2), in_w = x.size(3), f_h = f.size(0), f_w = f.size(1);
  const int64_t out_h = output_length(in_h, up_y, pad_y0, pad_y1, f_h, down_y);
  const int64_t out_w = output_length(in_w, up_x, pad_x0, pad_x1, f_w, down_x);
  TORCH_CHECK(out_h > 0 && out_w > 0, "upfirdn2d: the filter (", f_h, "x", f_w, ") is larger than the padded ",
              "upsampled input (", in_h * up_y + pad_y0 + pad_y1, "x", in_w * up_x + pad_x0 + pad_x1, ")");
  constexpr int64_t kIntMax = std::numeric_limits<int>::max() / 4;
  for (int64_t v : {in_h * up_y, in_w * up_x, out_h * down_y, out_w * down_x, std::abs(pad_x0), std::abs(pad_y0),
                    f_h, f_w}) {
    TORCH_CHECK(v < kIntMax, "upfirdn2d: spatial sizes, padding and factors must stay below ", kIntMax);
  }

  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor xc = x.contiguous();
  at::Tensor fc = f.contiguous();
  at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, xc.options());
  const int64_t numel = y.numel();
  if (numel == 0) return y;

  // Every value was checked above to fit comfortably in an int.
  const auto i32 = [](int64_t v) { return static_cast<int>(v); };
  const pti::UpFirDnGeometry g{i32(in_h),   i32(in_w),   i32(out_h),  i32(out_w), i32(up_x),
                               i32(up_y),   i32(down_x), i32(down_y), i32(pad_x0), i32(pad_y0),
                               i32(f_h),    i32(f_w),    flip_filter};

  const int64_t blocks = std::min<int64_t>((numel + kThreads - 1) / kThreads, int64_t(1) << 30);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "upfirdn2d_cuda", [&] {
    upfirdn2d_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(xc.const_data_ptr<scalar_t>(),
                                                                 fc.const_data_ptr<float>(),
                                                                 y.mutable_data_ptr<scalar_t>(), numel, g);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}
