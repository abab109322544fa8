// Fused bias + activation + gain + clamp, and its gradient, as element-wise CUDA kernels.
//
//   forward:  y  = clamp(act(x + b) * gain)             (b broadcast along dimension ``dim``)
//   gradient: dx = dy * d y / d(x + b), from either the saved input x (+ b) or, for the
//             piecewise-linear activations, from the saved output y alone.
// Arithmetic is done in float for half/bfloat16 tensors and in the tensor's own type otherwise.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <optional>

#include "ops_math.h"

namespace {

constexpr int kThreads = 256;

int64_t num_blocks(int64_t numel) {
  // A grid-stride loop covers whatever the grid does not.
  return std::min<int64_t>((numel + kThreads - 1) / kThreads, int64_t(1) << 30);
}

// Channel of flat element i of a contiguous tensor: (i / inner) % channels.
struct ChannelOf {
  int64_t inner, channels;
  __device__ __forceinline__ int64_t operator()(int64_t i) const { return (i / inner) % channels; }
};

template <typename scalar_t>
__global__ void bias_act_forward_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
                                        scalar_t* __restrict__ y, int64_t numel, ChannelOf channel_of, int act,
                                        at::opmath_type<scalar_t> alpha, at::opmath_type<scalar_t> gain,
                                        at::opmath_type<scalar_t> clamp) {
  using T = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel; i += stride) {
    T z = static_cast<T>(x[i]);
    if (b != nullptr) z += static_cast<T>(b[channel_of(i)]);
    y[i] = static_cast<scalar_t>(pti::bias_act_value<T>(act, z, alpha, gain, clamp));
  }
}

template <typename scalar_t>
__global__ void bias_act_grad_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ saved,
                                     const scalar_t* __restrict__ b, scalar_t* __restrict__ dx, int64_t numel,
                                     ChannelOf channel_of, int act, bool saved_is_output,
                                     at::opmath_type<scalar_t> alpha, at::opmath_type<scalar_t> gain,
                                     at::opmath_type<scalar_t> clamp) {
  using T = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel; i += stride) {
    T r = static_cast<T>(saved[i]);
    T slope;
    if (saved_is_output) {
      slope = pti::bias_act_slope_from_output<T>(act, r, alpha, gain, clamp);
    } else {
      if (b != nullptr) r += static_cast<T>(b[channel_of(i)]);
      slope = pti::bias_act_slope_from_input<T>(act, r, alpha, gain, clamp);
    }
    dx[i] = static_cast<scalar_t>(static_cast<T>(dy[i]) * slope);
  }
}

ChannelOf channel_layout(const at::Tensor& x, int64_t dim) {
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  return ChannelOf{std::max<int64_t>(inner, 1), x.dim() > 0 ? std::max<int64_t>(x.size(dim), 1) : 1};
}

void check_bias(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim) {
  if (!b.has_value()) return;
  TORCH_CHECK(b->device() == x.device(), "bias_act: bias is on ", b->device(), " but x is on ", x.device());
  TORCH_CHECK(b->scalar_type() == x.scalar_type(), "bias_act: bias dtype ", b->scalar_type(),
              " differs from x dtype ", x.scalar_type());
  TORCH_CHECK(b->dim() == 1 && x.dim() > dim && b->numel() == x.size(dim), "bias_act: bias of ", b->numel(),
              " elements does not match x.shape[", dim, "]");
}

}  // namespace

at::Tensor bias_act_forward_cuda(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim, int64_t act,
                                 double alpha, double gain, double clamp) {
  TORCH_CHECK(x.is_cuda(), "bias_act: x must be a CUDA tensor");
  TORCH_CHECK(x.dim() == 0 || (dim >= 0 && dim < x.dim()), "bias_act: dim ", dim, " out of range for ", x.dim(),
              "-D input");
  check_bias(x, b, dim);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor xc = x.contiguous();
  at::Tensor bc = b.has_value() ? b->contiguous() : at::Tensor();
  at::Tensor y = at::empty_like(xc);
  const int64_t numel = xc.numel();
  if (numel == 0) return y;
  const ChannelOf channel_of = channel_layout(xc, dim);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "bias_act_forward_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    bias_act_forward_kernel<scalar_t><<<num_blocks(numel), kThreads, 0, stream>>>(
        xc.const_data_ptr<scalar_t>(), bc.defined() ? bc.const_data_ptr<scalar_t>() : nullptr,
        y.mutable_data_ptr<scalar_t>(), numel, channel_of, static_cast<int>(act), static_cast<T>(alpha),
        static_cast<T>(gain), static_cast<T>(clamp));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

at::Tensor bias_act_grad_cuda(const at::Tensor& dy, const at::Tensor& saved, const std::optional<at::Tensor>& b,
                              int64_t dim, int64_t act, bool saved_is_output, double alpha, double gain,
                              double clamp) {
  TORCH_CHECK(dy.is_cuda() && saved.is_cuda(), "bias_act_grad: tensors must be on a CUDA device");
  TORCH_CHECK(dy.sizes() == saved.sizes(), "bias_act_grad: dy ", dy.sizes(), " and saved tensor ", saved.sizes(),
              " differ in shape");
  TORCH_CHECK(dy.scalar_type() == saved.scalar_type(), "bias_act_grad: dy and saved tensor differ in dtype");
  TORCH_CHECK(saved.dim() == 0 || (dim >= 0 && dim < saved.dim()), "bias_act_grad: dim ", dim, " out of range");
  TORCH_CHECK(!(saved_is_output && b.has_value()), "bias_act_grad: no bias goes with a saved output");
  check_bias(saved, b, dim);
  const c10::cuda::CUDAGuard guard(saved.device());
  at::Tensor dyc = dy.contiguous();
  at::Tensor sc = saved.contiguous();
  at::Tensor bc = b.has_value() ? b->contiguous() : at::Tensor();
  at::Tensor dx = at::empty_like(sc);
  const int64_t numel = sc.numel();
  if (numel == 0) return dx;
  const ChannelOf channel_of = channel_layout(sc, dim);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, sc.scalar_type(), "bias_act_grad_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    bias_act_grad_kernel<scalar_t><<<num_blocks(numel), kThreads, 0, stream>>>(
        dyc.const_data_ptr<scalar_t>(), sc.const_data_ptr<scalar_t>(),
        bc.defined() ? bc.const_data_ptr<scalar_t>() : nullptr, dx.mutable_data_ptr<scalar_t>(), numel, channel_of,
        static_cast<int>(act), saved_is_output, static_cast<T>(alpha), static_cast<T>(gain), static_cast<T>(clamp));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dx;
}
