// Per-channel sums for BatchNorm on the CPU, as an XLA FFI handler: of a [..., C] array a,
// sum(a) and sum(a * b) over every axis but the last, in one pass, accumulated in double.
// XLA:CPU rewrites such reductions into strided reduce-windows that cost training's step
// more than its 3x3 convolutions' forward passes (docs/experiments.md, "BatchNorm's sums").
#include <omp.h>
#include <algorithm>
#include <mutex>
#include <vector>
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

std::mutex& OneCallAtATime();  // onednn_convolution.cc's: every handler's calls take turns.

static ffi::Error ChannelSums(ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                              ffi::ResultBuffer<ffi::F32> sum_a,
                              ffi::ResultBuffer<ffi::F32> sum_ab) {
  const auto dims = a.dimensions();
  const int64_t channels = dims.size() ? dims.back() : 1;
  const int64_t rows = channels ? a.element_count() / channels : 0;
  const float* pa = a.typed_data();
  const float* pb = b.typed_data();
  std::lock_guard<std::mutex> lock(OneCallAtATime());
  const int threads = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), rows / 256 + 1));
  std::vector<double> partial(2 * channels * threads, 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    double* sa = &partial[2 * channels * t];
    double* sab = sa + channels;
    // Rows in blocks summed in float (vectorised over channels), each block added in double.
    std::vector<float> block_a(channels), block_ab(channels);
#pragma omp for schedule(static)
    for (int64_t start = 0; start < rows; start += 64) {
      const int64_t end = std::min(rows, start + 64);
      std::fill(block_a.begin(), block_a.end(), 0.f);
      std::fill(block_ab.begin(), block_ab.end(), 0.f);
      for (int64_t r = start; r < end; ++r) {
        const float* ra = pa + r * channels;
        const float* rb = pb + r * channels;
        for (int64_t c = 0; c < channels; ++c) {
          block_a[c] += ra[c];
          block_ab[c] += ra[c] * rb[c];
        }
      }
      for (int64_t c = 0; c < channels; ++c) {
        sa[c] += block_a[c];
        sab[c] += block_ab[c];
      }
    }
  }
  float* out_a = sum_a->typed_data();
  float* out_ab = sum_ab->typed_data();
  for (int64_t c = 0; c < channels; ++c) {
    double total_a = 0, total_ab = 0;
    for (int t = 0; t < threads; ++t) {
      total_a += partial[2 * channels * t + c];
      total_ab += partial[2 * channels * t + channels + c];
    }
    out_a[c] = static_cast<float>(total_a);
    out_ab[c] = static_cast<float>(total_ab);
  }
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(ChannelSumsHandler, ChannelSums,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
