// Native CPU kernels of Glow's fused conditioner (invflow/layers/conv_conditioner.py,
// _GemmConditioner): the same forward and backward as the Python implementation there, with the
// layout glue (im2col, col2im, the ReLU mask with the bias gradient) as single passes over memory
// and the ~120 operator calls per conditioner made from C++ instead of Python.
// Built on first use by conv_conditioner_kernels.py (torch.utils.cpp_extension).
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <array>
#include <vector>

using at::Tensor;

// Hot loops compiled for several instruction sets and chosen at load time (GCC's function
// multiversioning), so the cached library runs on any x86-64 CPU and uses AVX-512 where present.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define INVFLOW_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define INVFLOW_CLONES
#endif

INVFLOW_CLONES static void add_run(float* acc, const float* src, int64_t n) {
  for (int64_t k = 0; k < n; ++k) acc[k] += src[k];
}
static void add_run(double* acc, const double* src, int64_t n) {
  for (int64_t k = 0; k < n; ++k) acc[k] += src[k];
}

INVFLOW_CLONES static void mask_row(float* g, const float* h, float* sums, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    const float v = h[k] <= 0.0f ? 0.0f : g[k];  // threshold_backward's rule: a NaN h passes g
    g[k] = v;
    sums[k] += v;
  }
}
static void mask_row(double* g, const double* h, double* sums, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    const double v = h[k] <= 0.0 ? 0.0 : g[k];
    g[k] = v;
    sums[k] += v;
  }
}

// im2col of a 3x3, padding-1 convolution as rows (H*W*B, 9*C), position-major with the batch
// innermost (row (y*W + x)*B + b) and tap-major (column (3i + j)*C + c holds channel c at offset
// (i - 1, j - 1), zero outside the image): conv_conditioner._rows.
template <typename T>
static void rows_kernel(const Tensor& src, Tensor& out) {
  const int64_t B = src.size(0), C = src.size(1), H = src.size(2), W = src.size(3);
  const int64_t sb = src.stride(0), sc = src.stride(1), sh = src.stride(2), sw = src.stride(3);
  const T* s = src.data_ptr<T>();
  T* o = out.data_ptr<T>();
  at::parallel_for(0, H, 1, [&](int64_t y0, int64_t y1) {
    for (int64_t y = y0; y < y1; ++y) {
      for (int64_t x = 0; x < W; ++x) {
        for (int64_t b = 0; b < B; ++b) {
          T* row = o + ((y * W + x) * B + b) * 9 * C;
          for (int64_t i = 0; i < 3; ++i) {
            for (int64_t j = 0; j < 3; ++j) {
              T* dst = row + (3 * i + j) * C;
              const int64_t yy = y + i - 1, xx = x + j - 1;
              if (yy < 0 || yy >= H || xx < 0 || xx >= W) {
                std::fill(dst, dst + C, T(0));
              } else {
                const T* p = s + b * sb + yy * sh + xx * sw;
                for (int64_t c = 0; c < C; ++c) dst[c] = p[c * sc];
              }
            }
          }
        }
      }
    }
  });
}

Tensor rows(const Tensor& src) {
  TORCH_CHECK(src.dim() == 4, "rows: expected (B, C, H, W), got ", src.sizes());
  Tensor out = at::empty({src.size(2) * src.size(3) * src.size(0), 9 * src.size(1)}, src.options());
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "rows", [&] { rows_kernel<scalar_t>(src, out); });
  return out;
}

// col2im of tap planes (9*C, H*W*B) (tap-major rows (3i + j)*C + c, columns in rows()' order) as
// (B, C, H, W), plus an optional per-channel bias: output position p receives the column of
// position p - (i - 1, j - 1) from plane (i, j): conv_conditioner._col2im. Each (channel, image
// row) is summed over its nine planes in a W*B buffer (batch innermost, contiguous runs), then
// written out transposed.
template <typename T>
static void col2im_kernel(const Tensor& planes, const T* bias, Tensor& out, int64_t B, int64_t H, int64_t W) {
  const int64_t C = planes.size(0) / 9, L = H * W * B;
  const T* p = planes.data_ptr<T>();
  T* o = out.data_ptr<T>();
  at::parallel_for(0, C * H, 1, [&](int64_t r0, int64_t r1) {
    std::vector<T> acc(W * B);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r / H, y = r % H;
      std::fill(acc.begin(), acc.end(), bias ? bias[c] : T(0));
      for (int64_t i = 0; i < 3; ++i) {
        const int64_t ys = y - i + 1;
        if (ys < 0 || ys >= H) continue;
        for (int64_t j = 0; j < 3; ++j) {
          // output column x reads source column x - j + 1
          const int64_t x0 = std::max<int64_t>(0, j - 1), x1 = std::min<int64_t>(W, W + j - 1);
          if (x1 <= x0) continue;
          const T* plane = p + ((3 * i + j) * C + c) * L + ys * W * B;
          add_run(acc.data() + x0 * B, plane + (x0 - j + 1) * B, (x1 - x0) * B);
        }
      }
      for (int64_t b = 0; b < B; ++b) {
        T* dst = o + ((b * C + c) * H + y) * W;
        for (int64_t x = 0; x < W; ++x) dst[x] = acc[x * B + b];
      }
    }
  });
}

Tensor col2im(const Tensor& planes, const c10::optional<Tensor>& bias, int64_t B, int64_t H, int64_t W) {
  TORCH_CHECK(planes.dim() == 2 && planes.size(0) % 9 == 0 && planes.size(1) == H * W * B,
              "col2im: expected planes (9*C, H*W*B), got ", planes.sizes());
  Tensor contiguous = planes.contiguous();
  const int64_t C = contiguous.size(0) / 9;
  Tensor out = at::empty({B, C, H, W}, contiguous.options());
  Tensor bias_c;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->numel() == C, "col2im: bias has ", bias->numel(), " entries for ", C, " channels");
    bias_c = bias->to(contiguous.scalar_type()).contiguous();
  }
  AT_DISPATCH_FLOATING_TYPES(contiguous.scalar_type(), "col2im", [&] {
    col2im_kernel<scalar_t>(contiguous, bias_c.defined() ? bias_c.data_ptr<scalar_t>() : nullptr, out, B, H, W);
  });
  return out;
}

// The ReLU's backward in place, g = 0 where h <= 0 (as threshold_backward: a NaN in h keeps g, so a
// NaN is not hidden), for a ReLU output h, and the column sums of the result (the bias gradient) in
// the same pass: blocks of 64 rows summed in T, the block sums added in double (a column of 12,544
// float32 numbers summed in order would lose digits a blocked BLAS sum keeps); one partial sum per
// thread, added in thread order.
template <typename T>
static void relu_mask_and_sum_kernel(Tensor& g, const Tensor& h, Tensor& sums) {
  constexpr int64_t kBlock = 64;
  const int64_t N = g.size(0), K = g.size(1);
  T* gp = g.data_ptr<T>();
  const T* hp = h.data_ptr<T>();
  const int64_t threads = at::get_num_threads();
  std::vector<double> partial(threads * K, 0.0);
  at::parallel_for(0, N, kBlock, [&](int64_t n0, int64_t n1) {
    double* part = partial.data() + at::get_thread_num() * K;
    std::vector<T> block(K);
    for (int64_t b0 = n0; b0 < n1; b0 += kBlock) {
      std::fill(block.begin(), block.end(), T(0));
      for (int64_t n = b0; n < std::min(n1, b0 + kBlock); ++n) mask_row(gp + n * K, hp + n * K, block.data(), K);
      for (int64_t k = 0; k < K; ++k) part[k] += block[k];
    }
  });
  T* s = sums.data_ptr<T>();
  for (int64_t k = 0; k < K; ++k) {
    double total = 0;
    for (int64_t t = 0; t < threads; ++t) total += partial[t * K + k];
    s[k] = static_cast<T>(total);
  }
}

Tensor relu_mask_and_sum(Tensor g, const Tensor& h) {
  TORCH_CHECK(g.dim() == 2 && g.sizes() == h.sizes() && g.is_contiguous() && h.is_contiguous() &&
                  g.scalar_type() == h.scalar_type(),
              "relu_mask_and_sum: expected two contiguous matrices of one shape and dtype");
  Tensor sums = at::empty({g.size(1)}, g.options());
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "relu_mask_and_sum",
                             [&] { relu_mask_and_sum_kernel<scalar_t>(g, h, sums); });
  return sums;
}

// a^T b for rows a (N, m), b (N, n) with a long N: with T > 1 threads a batched product over T
// blocks of rows, summed (conv_conditioner._weight_gradient).
static Tensor weight_gradient(const Tensor& a, const Tensor& b) {
  const int64_t blocks = at::get_num_threads();
  if (blocks < 2 || a.size(0) % blocks || a.size(0) < 1024 * blocks) return a.t().mm(b);
  return at::bmm(a.view({blocks, -1, a.size(1)}).transpose(1, 2), b.view({blocks, -1, b.size(1)})).sum(0);
}

// relu(x W^T + b): oneDNN's product with fused bias and ReLU in float32 where this torch has it
// (conv_conditioner._linear_relu), else addmm and an in-place ReLU.
static Tensor linear_relu(const Tensor& x, const Tensor& w, const Tensor& b) {
  using Signature = Tensor(const Tensor&, const Tensor&, const c10::optional<Tensor>&, c10::string_view,
                           c10::List<c10::optional<c10::Scalar>>, c10::optional<c10::string_view>);
  static const auto schema = c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
  if (schema.has_value() && x.scalar_type() == at::kFloat) {
    static const auto op = schema->typed<Signature>();
    return op.call(x, w, b, "relu", c10::List<c10::optional<c10::Scalar>>(), c10::string_view(""));
  }
  return at::addmm(b, x, w.t()).relu_();
}

// The forward: returns (out, rows, h1, h2, first, last), the last five saved for the backward.
std::vector<Tensor> forward(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2,
                            const Tensor& b2, const Tensor& w3, const Tensor& b3) {
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  Tensor r = rows(x);
  Tensor first = w1.permute({0, 2, 3, 1}).reshape({w1.size(0), -1});            // tap-major (hidden, 9*C_in)
  Tensor last = w3.flip({2, 3}).permute({2, 3, 0, 1}).reshape({-1, w3.size(1)});  // flipped taps (9*C_out, hidden)
  Tensor h1 = linear_relu(r, first, b1);
  Tensor h2 = linear_relu(h1, w2.reshape({w2.size(0), -1}), b2);
  Tensor out = col2im(last.mm(h2.t()), b3, B, H, W);
  return {out, r, h1, h2, first, last};
}

// The backward of forward() for an output gradient `grad`; `needs` are autograd's
// needs_input_grad for (x, w1, b1, w2, b2, w3, b3). Gradients not needed are undefined (None).
std::vector<Tensor> backward(const Tensor& grad, const Tensor& x, const Tensor& w2, const Tensor& w3,
                             const Tensor& r, const Tensor& h1, const Tensor& h2, const Tensor& first,
                             const Tensor& last, std::array<bool, 7> needs) {
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  Tensor per_tap = rows(grad);  // (H*W*B, 9*C_out): the gradient each tap's partial output receives
  Tensor g_x, g_w1, g_b1, g_w2, g_b2, g_w3, g_b3;
  if (needs[5]) {
    g_w3 = weight_gradient(per_tap, h2).view({3, 3, w3.size(0), w3.size(1)}).permute({2, 3, 0, 1}).flip({2, 3});
  }
  if (needs[6]) g_b3 = grad.sum({0, 2, 3});
  Tensor g_h = per_tap.mm(last);
  Tensor sums = relu_mask_and_sum(g_h, h2);
  if (needs[4]) g_b2 = sums;
  if (needs[3]) g_w2 = weight_gradient(g_h, h1).view(w2.sizes());
  g_h = g_h.mm(w2.reshape({w2.size(0), -1}));
  sums = relu_mask_and_sum(g_h, h1);
  if (needs[2]) g_b1 = sums;
  if (needs[1]) {
    g_w1 = weight_gradient(r, g_h).t().reshape({first.size(0), 3, 3, -1}).permute({0, 3, 1, 2});
  }
  // the first convolution's transpose: tap (i, j) of w1 scatters to offset (i - 1, j - 1)
  if (needs[0]) g_x = col2im(first.t().mm(g_h.t()), c10::nullopt, B, H, W);
  return {g_x, g_w1, g_b1, g_w2, g_b2, g_w3, g_b3};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rows", &rows, "im2col rows (H*W*B, 9*C) of (B, C, H, W)");
  m.def("col2im", &col2im, "col2im of tap planes (9*C, H*W*B) to (B, C, H, W), plus a bias");
  m.def("relu_mask_and_sum", &relu_mask_and_sum, "g *= (h > 0) in place; returns g's column sums");
  m.def("forward", &forward, "the conditioner's forward");
  m.def("backward", &backward, "the conditioner's backward");
}
