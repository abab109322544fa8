// Python bindings of the CUDA kernels in bias_act.cu and upfirdn2d.cu.
//
// The autograd wiring (which kernel computes which gradient) lives in
// pti/stylegan2/ops/_cuda_ops.py; these functions only compute values.
#include <ATen/core/Tensor.h>
#include <torch/csrc/utils/pybind.h>

#include <optional>

at::Tensor bias_act_forward_cuda(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim, int64_t act,
                                 double alpha, double gain, double clamp);
at::Tensor bias_act_grad_cuda(const at::Tensor& dy, const at::Tensor& saved, const std::optional<at::Tensor>& b,
                              int64_t dim, int64_t act, bool saved_is_output, double alpha, double gain,
                              double clamp);
at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, int64_t up_x, int64_t up_y, int64_t down_x,
                          int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1,
                          bool flip_filter);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "pti: CUDA kernels for StyleGAN2's bias_act and upfirdn2d";
  m.def("bias_act", &bias_act_forward_cuda,
        "y = clamp(act(x + b) * gain), b broadcast along dim; a negative clamp disables clamping",
        py::arg("x"), py::arg("b"), py::arg("dim"), py::arg("act"), py::arg("alpha"), py::arg("gain"),
        py::arg("clamp"));
  m.def("bias_act_grad", &bias_act_grad_cuda,
        "dx = dy * d bias_act / d(x + b), from the saved input x (+ b) or, when saved_is_output, the output y",
        py::arg("dy"), py::arg("saved"), py::arg("b"), py::arg("dim"), py::arg("act"), py::arg("saved_is_output"),
        py::arg("alpha"), py::arg("gain"), py::arg("clamp"));
  m.def("upfirdn2d", &upfirdn2d_cuda,
        "upsample (zero insertion), pad, filter with a 2-D float32 FIR filter and downsample an NCHW tensor",
        py::arg("x"), py::arg("f"), py::arg("up_x"), py::arg("up_y"), py::arg("down_x"), py::arg("down_y"),
        py::arg("pad_x0"), py::arg("pad_x1"), py::arg("pad_y0"), py::arg("pad_y1"), py::arg("flip_filter"));
}
