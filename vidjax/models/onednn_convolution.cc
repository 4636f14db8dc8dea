// A float32 NHWC convolution with an HWIO kernel by oneDNN, as three XLA FFI handlers:
// the forward pass, the input gradient and the kernel gradient. vidjax/models/onednn.py
// compiles this on first use and gives it to the ResNet's convolutions.
#include <map>
#include <string>
#include <mutex>
#include <unordered_map>
#include <tuple>
#include <type_traits>
#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using Dims = ffi::Span<const int64_t>;

static dnnl::engine& Engine() { static dnnl::engine e(dnnl::engine::kind::cpu, 0); return e; }

// Each primitive gets its own scratchpad. With oneDNN's default (the library's, shared per
// thread), a kernel gradient over 1-2 px maps, created on one device's thread and run on
// another's, crashed in its im2col (tests/test_onednn.py, tiny maps on 4 devices).
static dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// One oneDNN call at a time: XLA may run two thunks at once, each call already uses every
// core through OpenMP, and two calls at once hung now and then. Also guards the plan caches.
std::mutex& OneCallAtATime() { static std::mutex mu; return mu; }

struct Shape {  // Of one convolution: input [n, h, w, ci], output [n, ho, wo, co].
  int64_t n, h, w, ci, ho, wo, co, kh, kw, stride, pt, pb, pl, pr;
  auto Key() const { return std::make_tuple(n, h, w, ci, ho, wo, co, kh, kw, stride, pt, pb, pl, pr); }
  memory::desc Src() const { return {{n, ci, h, w}, memory::data_type::f32, memory::format_tag::nhwc}; }
  memory::desc Dst() const { return {{n, co, ho, wo}, memory::data_type::f32, memory::format_tag::nhwc}; }
  memory::desc Hwio() const { return {{co, ci, kh, kw}, memory::data_type::f32, memory::format_tag::hwio}; }
  memory::desc AnyWeights() const { return {{co, ci, kh, kw}, memory::data_type::f32, memory::format_tag::any}; }
  dnnl::convolution_forward::primitive_desc Forward() const {
    return {Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
            Src(), AnyWeights(), Dst(), {stride, stride}, {pt, pl}, {pb, pr}, UserScratchpad()};
  }
};

static Shape MakeShape(Dims x, Dims y, Dims k, int64_t stride, int64_t pt, int64_t pb,
                       int64_t pl, int64_t pr) {
  return {x[0], x[1], x[2], x[3], y[1], y[2], y[3], k[0], k[1], stride, pt, pb, pl, pr};
}

// The primitive of kind Prim (forward, input gradient, kernel gradient) for shape `s`.
template <typename Prim>
static typename Prim::primitive_desc Describe(const Shape& s) {
  if constexpr (std::is_same_v<Prim, dnnl::convolution_forward>) {
    return s.Forward();
  } else {
    return {Engine(), dnnl::algorithm::convolution_direct, s.Src(), s.AnyWeights(), s.Dst(),
            {s.stride, s.stride}, {s.pt, s.pl}, {s.pb, s.pr}, s.Forward(), UserScratchpad()};
  }
}

template <typename Prim>
struct Plan {  // A primitive built once per shape, its kernel layout and its scratchpad.
  Prim prim;
  memory::desc weights_md;
  memory scratchpad;
};

// Runs the primitive of kind Prim for shape `s` on `args`, with the kernel `hwio` as
// argument `weights_arg` (read, or written when `write_weights`), reordered through a
// temporary when the primitive prefers another layout. A shape oneDNN rejects fails the
// call with its message instead of ending the process.
template <typename Prim>
static ffi::Error Convolve(const Shape& s, void* hwio, int weights_arg, bool write_weights,
                           std::unordered_map<int, void*> buffers) {
  try {
    std::lock_guard<std::mutex> lock(OneCallAtATime());
    static std::map<decltype(s.Key()), Plan<Prim>> plans;
    auto it = plans.find(s.Key());
    if (it == plans.end()) {
      auto pd = Describe<Prim>(s);
      Plan<Prim> plan{Prim(pd), pd.query_md(dnnl::query::exec_arg_md, weights_arg),
                      memory(pd.scratchpad_desc(), Engine())};
      it = plans.emplace(s.Key(), std::move(plan)).first;
    }
    auto& eng = Engine();
    dnnl::stream stream(eng);
    Plan<Prim>& plan = it->second;
    std::unordered_map<int, memory> args{{DNNL_ARG_SCRATCHPAD, plan.scratchpad}};
    for (auto& [arg, data] : buffers) {
      bool is_src = arg == DNNL_ARG_SRC || arg == DNNL_ARG_DIFF_SRC;
      args[arg] = memory(is_src ? s.Src() : s.Dst(), eng, data);
    }
    memory user(s.Hwio(), eng, hwio);
    if (plan.weights_md == s.Hwio()) {
      args[weights_arg] = user;
      plan.prim.execute(stream, args);
    } else {
      memory tmp(plan.weights_md, eng);
      if (!write_weights) dnnl::reorder(user, tmp).execute(stream, user, tmp);
      args[weights_arg] = tmp;
      plan.prim.execute(stream, args);
      if (write_weights) dnnl::reorder(tmp, user).execute(stream, tmp, user);
    }
    stream.wait();
    return ffi::Error::Success();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("oneDNN: ") + e.what());
  }
}

static ffi::Error Forward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> k,
                          ffi::ResultBuffer<ffi::F32> y, int64_t stride, int64_t pt,
                          int64_t pb, int64_t pl, int64_t pr) {
  Shape s = MakeShape(x.dimensions(), y->dimensions(), k.dimensions(), stride, pt, pb, pl, pr);
  return Convolve<dnnl::convolution_forward>(
      s, k.typed_data(), DNNL_ARG_WEIGHTS, false,
      {{DNNL_ARG_SRC, x.typed_data()}, {DNNL_ARG_DST, y->typed_data()}});
}

static ffi::Error InputGradient(ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::F32> k,
                                ffi::ResultBuffer<ffi::F32> dx, int64_t stride, int64_t pt,
                                int64_t pb, int64_t pl, int64_t pr) {
  Shape s = MakeShape(dx->dimensions(), g.dimensions(), k.dimensions(), stride, pt, pb, pl, pr);
  return Convolve<dnnl::convolution_backward_data>(
      s, k.typed_data(), DNNL_ARG_WEIGHTS, false,
      {{DNNL_ARG_DIFF_DST, g.typed_data()}, {DNNL_ARG_DIFF_SRC, dx->typed_data()}});
}

static ffi::Error KernelGradient(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g,
                                 ffi::ResultBuffer<ffi::F32> dk, int64_t stride, int64_t pt,
                                 int64_t pb, int64_t pl, int64_t pr) {
  Shape s = MakeShape(x.dimensions(), g.dimensions(), dk->dimensions(), stride, pt, pb, pl, pr);
  return Convolve<dnnl::convolution_backward_weights>(
      s, dk->typed_data(), DNNL_ARG_DIFF_WEIGHTS, true,
      {{DNNL_ARG_SRC, x.typed_data()}, {DNNL_ARG_DIFF_DST, g.typed_data()}});
}

#define CONVOLUTION_HANDLER(name, impl)                                          \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, impl,                                      \
                                ffi::Ffi::Bind()                                 \
                                    .Arg<ffi::Buffer<ffi::F32>>()                \
                                    .Arg<ffi::Buffer<ffi::F32>>()                \
                                    .Ret<ffi::Buffer<ffi::F32>>()                \
                                    .Attr<int64_t>("stride")                     \
                                    .Attr<int64_t>("pad_top")                    \
                                    .Attr<int64_t>("pad_bottom")                 \
                                    .Attr<int64_t>("pad_left")                   \
                                    .Attr<int64_t>("pad_right"));

CONVOLUTION_HANDLER(ConvForward, Forward)
CONVOLUTION_HANDLER(ConvInputGradient, InputGradient)
CONVOLUTION_HANDLER(ConvKernelGradient, KernelGradient)
