// dL/dkernel [KH, KW, Ci, Co] of a float32 NHWC convolution, by oneDNN, as an XLA FFI
// handler: the prototype bench/onednn_kernel_gradient.py builds and measures.
#include <map>
#include <mutex>
#include <tuple>
#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

struct Plan {
  dnnl::convolution_backward_weights prim;
  memory::desc src_md, diff_dst_md, wei_md, hwio_md;
  bool reorder;
};

static dnnl::engine& Engine() { static dnnl::engine e(dnnl::engine::kind::cpu, 0); return e; }

using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;
static Plan& GetPlan(int64_t n, int64_t h, int64_t w, int64_t ci, int64_t ho, int64_t wo,
                     int64_t co, int64_t kh, int64_t kw, int64_t stride, int64_t pt, int64_t pb,
                     int64_t pl, int64_t pr) {
  static std::map<Key, Plan> plans;  // Read and filled under WgradImpl's lock.
  auto key = std::make_tuple(n, h, w, ci, ho, wo, co, kh, kw, stride, pt, pb, pl, pr);
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;
  auto f32 = memory::data_type::f32;
  memory::desc src_md({n, ci, h, w}, f32, memory::format_tag::nhwc);
  memory::desc dst_md({n, co, ho, wo}, f32, memory::format_tag::nhwc);
  memory::desc any_md({co, ci, kh, kw}, f32, memory::format_tag::any);
  memory::desc hwio_md({co, ci, kh, kw}, f32, memory::format_tag::hwio);
  memory::dims strides{stride, stride}, pad_l{pt, pl}, pad_r{pb, pr};
  auto fwd = dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      src_md, any_md, dst_md, strides, pad_l, pad_r);
  auto bwd = dnnl::convolution_backward_weights::primitive_desc(
      Engine(), dnnl::algorithm::convolution_direct, src_md, any_md, dst_md, strides, pad_l, pad_r,
      fwd);
  Plan plan{dnnl::convolution_backward_weights(bwd), src_md, dst_md, bwd.diff_weights_desc(),
            hwio_md, bwd.diff_weights_desc() != hwio_md};
  return plans.emplace(key, plan).first->second;
}

static ffi::Error WgradImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g,
                            ffi::ResultBuffer<ffi::F32> dw, int64_t stride, int64_t pt,
                            int64_t pb, int64_t pl, int64_t pr) {
  auto xd = x.dimensions(), gd = g.dimensions(), wd = dw->dimensions();
  if (xd.size() != 4 || gd.size() != 4 || wd.size() != 4)
    return ffi::Error::InvalidArgument("conv_kernel_gradient: expected rank-4 operands");
  int64_t n = xd[0], h = xd[1], w = xd[2], ci = xd[3], ho = gd[1], wo = gd[2], co = gd[3];
  // One oneDNN call at a time: XLA may run two thunks at once, and each call already
  // uses every core through OpenMP.
  static std::mutex exec_mu;
  std::lock_guard<std::mutex> exec_lock(exec_mu);
  Plan& plan = GetPlan(n, h, w, ci, ho, wo, co, wd[0], wd[1], stride, pt, pb, pl, pr);
  auto& eng = Engine();
  dnnl::stream stream(eng);
  memory src(plan.src_md, eng, x.typed_data());
  memory diff_dst(plan.diff_dst_md, eng, g.typed_data());
  memory out(plan.hwio_md, eng, dw->typed_data());
  if (plan.reorder) {
    memory tmp(plan.wei_md, eng);
    plan.prim.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst},
                               {DNNL_ARG_DIFF_WEIGHTS, tmp}});
    dnnl::reorder(tmp, out).execute(stream, tmp, out);
  } else {
    plan.prim.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst},
                               {DNNL_ARG_DIFF_WEIGHTS, out}});
  }
  stream.wait();
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvKernelGradient, WgradImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_bottom")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("pad_right"));
