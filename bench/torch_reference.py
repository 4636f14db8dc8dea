r"""A PyTorch reference of vidjax's train step (vidjax/step.py), for speed comparisons.

Same model (vidjax/models: ResNet with cifar_stem, the configs' gradient stem
(--no-gradient_stem: RGB), width multiplier, zero-init last BN scale per block; MLP
projector, SimSiam's predictor; ImageNet input normalisation), same heads and optimisers as
configs/simsiam.py and configs/npair.py had (METHODS), same photometric augmentation on the
device (vidjax/data/augment.py, ported op for op), same losses. PyTorch is not a dependency
of vidjax: pip install -r bench/requirements.txt.

  python bench/torch_reference.py --model=resnet10 --width=0.25 --image_size=32 --batch=256 \
      --method=simsiam --steps=30 --warmup=5 --json
  python bench/torch_reference.py --method=npair --no-compile --json         # eager
  python bench/torch_reference.py --model=resnet18 --width=1.0 --image_size=96 --batch=64 \
      --device=cuda --dtype=bfloat16 --json

The batch, uint8 [B, 2, S, S, 3], is made once on the device; each step converts it to float,
augments it (--no-augment: vidjax's data.photometric.on_device=False), runs forward (SimSiam:
one pass per view, BN statistics per view, as bn_per_view), loss, backward, the grad norm and
embed_std metrics, and the optimiser update (SimSiam: fused SGD; N-pair: LARS as optax.lars).
With --compile (default) torch.compile takes forward+loss (its backward too) and LARS. The
last stdout line is one JSON object (--json); a summary goes to stderr.

Differences from vidjax's step, none of which changes the cost: a constant learning rate
(vidjax's schedule is one scalar per step), PyTorch's default initialisers, symmetric padding
of stride-2 convolutions (Flax 'SAME' pads bottom/right only: same shapes and FLOPs), and
NT-Xent's positive as the other view's index (vidjax's video-id mask, distinct videos).
One that does: today's configs add HOG as a teacher (targets computed on the device),
RDM's whitened targets (an SVD) and a 2x2-pooled feature, which vidjax's step pays for and
this one does not, so the ratio it gives is, if anything, in PyTorch's favour.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# vidjax/models/resnet.py: name -> (stage sizes, bottleneck).
ARCHITECTURES = {'resnet10': ((1, 1, 1, 1), False), 'resnet18': ((2, 2, 2, 2), False),
                 'resnet34': ((3, 4, 6, 3), False), 'resnet50': ((3, 4, 6, 3), True)}
# configs/simsiam.py and configs/npair.py as they were when the README's speed table was
# measured (SimSiam with the paper's learned predictor, both solarising); kept so that the
# comparison stays the measured one.
METHODS = {
    'simsiam': dict(proj_dim=256, proj_hidden_dim=256, proj_layers=2, output_norm=True,
                    pred_hidden_dim=64, bn_per_view=True, optim='sgd', lr=0.05 / 256,
                    weight_decay=5e-4, solarize_prob=0.5),
    'npair': dict(proj_dim=128, proj_hidden_dim=256, proj_layers=2, output_norm=False,
                  pred_hidden_dim=0, bn_per_view=False, optim='lars', lr=0.075,
                  weight_decay=1e-6, solarize_prob=0.8, temperature=0.1, trust_coefficient=0.02),
}
MOMENTUM = 0.9
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def batch_norm(channels):  # Flax momentum 0.9 = PyTorch momentum 0.1; eps 1e-5 in both.
  return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


def conv(cin, cout, kernel, stride=1):
  return nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False)


class Block(nn.Module):
  """BasicBlock (two 3x3) or BottleneckBlock (1x1, 3x3, 1x1 x4); projection shortcut when
  the shape changes; the last BN scale starts at zero."""

  def __init__(self, cin, filters, stride, bottleneck):
    super().__init__()
    cout = filters * 4 if bottleneck else filters
    if bottleneck:
      layers = [conv(cin, filters, 1), batch_norm(filters), nn.ReLU(inplace=True),
                conv(filters, filters, 3, stride), batch_norm(filters), nn.ReLU(inplace=True),
                conv(filters, cout, 1), batch_norm(cout)]
    else:
      layers = [conv(cin, filters, 3, stride), batch_norm(filters), nn.ReLU(inplace=True),
                conv(filters, cout, 3), batch_norm(cout)]
    nn.init.zeros_(layers[-1].weight)
    self.residual = nn.Sequential(*layers)
    self.shortcut = nn.Identity()
    if stride != 1 or cin != cout:
      self.shortcut = nn.Sequential(conv(cin, cout, 1, stride), batch_norm(cout))
    self.out_channels = cout

  def forward(self, x):
    return F.relu(self.shortcut(x) + self.residual(x))


# vidjax/models/resnet.py's gradient stem, NCHW: fixed local histograms of oriented gradients.
ORIENTATIONS, SMOOTH, NORM_WINDOW, NORM_EPS = 9, 3, 8, 1e-4


def _avg_pool_same(x, window):  # Flax's avg_pool with padding='SAME' (zeros counted).
  before = (window - 1) // 2
  after = window - 1 - before
  return F.avg_pool2d(F.pad(x, (before, after, before, after)), window, 1)


class OrientedGradients(nn.Module):
  """[N, C, H, W] normalised images -> [N, 9, H, W], no gradient (vidjax.hog's votes)."""

  @torch.no_grad()
  def forward(self, x):
    x = x.float()
    g_row = F.pad(x[:, :, 2:] - x[:, :, :-2], (0, 0, 1, 1))
    g_col = F.pad(x[..., 2:] - x[..., :-2], (1, 1))
    magnitude = torch.hypot(g_row, g_col)
    strongest = magnitude.argmax(1, keepdim=True)
    g_row, g_col, magnitude = (t.gather(1, strongest) for t in (g_row, g_col, magnitude))
    degrees = torch.rad2deg(torch.atan2(g_row, g_col)) % 180.0
    degrees = torch.where(degrees > 180.0 - 1e-3, degrees - 180.0, degrees)
    bins = (degrees / (180.0 / ORIENTATIONS)).floor().clamp(0, ORIENTATIONS - 1)
    votes = magnitude * (bins == torch.arange(ORIENTATIONS, device=x.device).view(1, -1, 1, 1))
    votes = _avg_pool_same(votes, SMOOTH)
    energy = _avg_pool_same((votes ** 2).sum(1, keepdim=True), NORM_WINDOW)
    return votes / torch.sqrt(energy + NORM_EPS)


def resnet(name, width, cifar_stem, gradient_stem):
  stage_sizes, bottleneck = ARCHITECTURES[name]
  base = max(8, int(64 * width))
  cin = ORIENTATIONS if gradient_stem else 3
  if cifar_stem:
    layers = [conv(cin, base, 3), batch_norm(base), nn.ReLU(inplace=True)]
  else:
    layers = [nn.Conv2d(cin, base, 7, 2, 3, bias=False), batch_norm(base),
              nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
  if gradient_stem:
    layers.insert(0, OrientedGradients())
  cin = base
  for stage, num_blocks in enumerate(stage_sizes):
    for b in range(num_blocks):
      layers.append(Block(cin, base * 2**stage, 2 if stage > 0 and b == 0 else 1, bottleneck))
      cin = layers[-1].out_channels
  return nn.Sequential(*layers), cin


def mlp(cin, hidden, out, num_layers, output_norm):
  layers = []
  for _ in range(num_layers - 1):
    layers += [nn.Linear(cin, hidden, bias=False), nn.BatchNorm1d(hidden, momentum=0.1),
               nn.ReLU(inplace=True)]
    cin = hidden
  layers.append(nn.Linear(cin, out, bias=not output_norm))
  if output_norm:
    layers.append(nn.BatchNorm1d(out, momentum=0.1, affine=False))
  return nn.Sequential(*layers)


class SSLModel(nn.Module):
  """Images [N, 3, S, S] in [0, 1] -> (feature, z, p or None), outputs in float32."""

  def __init__(self, model, width, cifar_stem, gradient_stem, m):
    super().__init__()
    self.encoder, dim = resnet(model, width, cifar_stem, gradient_stem)
    self.projector = mlp(dim, m['proj_hidden_dim'], m['proj_dim'], m['proj_layers'],
                         m['output_norm'])
    self.predictor = None
    if m['pred_hidden_dim']:
      self.predictor = mlp(m['proj_dim'], m['pred_hidden_dim'], m['proj_dim'], 2, False)
    self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
    self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

  def forward(self, images):
    feature = self.encoder((images - self.mean) / self.std).float().mean((2, 3))
    z = self.projector(feature).float()
    return feature, z, None if self.predictor is None else self.predictor(z).float()


# vidjax/data/augment.py's photometric(), NHWC float in [0, 1], u [N, 10] uniforms.
_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def photometric(x, u, solarize_prob, jitter_prob=0.8, brightness=0.4, contrast=0.4,
                saturation=0.8, hue=0.5, grayscale_prob=0.5, invert_prob=0.0):
  luma_w = x.new_tensor(_LUMA)
  luma = lambda x: (x * luma_w).sum(-1, keepdim=True)
  jitter = u[:, 0] < jitter_prob
  factor = lambda s, d: torch.where(jitter, 1 + s * (2 * d - 1), 1.0).view(-1, 1, 1, 1)
  per_image = lambda mask: mask.view(-1, 1, 1, 1)
  x = x * factor(brightness, u[:, 1])
  mean = luma(x).mean((1, 2, 3), keepdim=True)
  x = (x - mean) * factor(contrast, u[:, 2]) + mean
  gray = luma(x)
  x = gray + (x - gray) * factor(saturation, u[:, 3])
  angle = 2 * math.pi * torch.where(jitter, hue * (2 * u[:, 4] - 1), 0.0)
  cos, sin, one, zero = angle.cos(), angle.sin(), torch.ones_like(angle), torch.zeros_like(angle)
  rotation = torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, cos, -sin], -1),
                          torch.stack([zero, sin, cos], -1)], -2)  # [N, 3, 3]
  to_yiq = x.new_tensor(_RGB_TO_YIQ)
  matrix = torch.linalg.inv(to_yiq) @ rotation @ to_yiq
  x = torch.einsum('nij,nhwj->nhwi', matrix, x).clamp(0.0, 1.0)
  x = torch.where(per_image(u[:, 5] < grayscale_prob), luma(x).expand_as(x), x)
  x = torch.where(per_image(u[:, 8] < solarize_prob) & (x >= 0.5), 1.0 - x, x)
  return torch.where(per_image(u[:, 9] < invert_prob), 1.0 - x, x)


def simsiam_loss(p, z):  # [B, 2, D]; stop-gradient on z.
  z = z.detach()
  return -0.5 * (F.cosine_similarity(p[:, 0], z[:, 1]).mean() +
                 F.cosine_similarity(p[:, 1], z[:, 0]).mean())


def info_nce_loss(z, temperature):
  """SimCLR's NT-Xent over the B*2 views; each view's positive is its sample's other view
  (vidjax's video-id mask with distinct videos)."""
  z = F.normalize(z.reshape(-1, z.shape[-1]), dim=-1)  # sample-major: b0v0, b0v1, b1v0, ...
  logits = (z @ z.T / temperature).masked_fill(
      torch.eye(len(z), dtype=torch.bool, device=z.device), -1e9)
  return F.cross_entropy(logits, torch.arange(len(z), device=z.device) ^ 1)


def make_lars(params, lr, weight_decay, trust_coefficient, momentum):
  """optax.lars as vidjax configures it (weight decay and trust ratio on kernels only; then
  lr; then momentum), in a handful of vectorised _foreach ops."""
  kernels = [p for p in params if p.ndim > 1]
  bufs = [torch.zeros_like(p) for p in params]

  @torch.no_grad()
  def step():
    grads = [p.grad for p in kernels]
    torch._foreach_add_(grads, kernels, alpha=weight_decay)
    w_norm = torch.stack(torch._foreach_norm(kernels))
    g_norm = torch.stack(torch._foreach_norm(grads))
    ratio = torch.where((w_norm > 0) & (g_norm > 0), trust_coefficient * w_norm / g_norm, 1.0)
    torch._foreach_mul_(grads, list(ratio.unbind(0)))
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_add_(bufs, [p.grad for p in params], alpha=lr)
    torch._foreach_sub_(params, bufs)

  return step


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', default='resnet10', choices=ARCHITECTURES)
  parser.add_argument('--width', type=float, default=0.25)
  parser.add_argument('--cifar_stem', action=argparse.BooleanOptionalAction, default=True)
  parser.add_argument('--gradient_stem', action=argparse.BooleanOptionalAction, default=True,
                      help='the configs\' gradient stem (model.gradient_stem) before the stem')
  parser.add_argument('--image_size', type=int, default=32)
  parser.add_argument('--batch', type=int, default=256, help='samples; each holds 2 views')
  parser.add_argument('--method', default='simsiam', choices=METHODS)
  parser.add_argument('--steps', type=int, default=30)
  parser.add_argument('--warmup', type=int, default=5, help='untimed steps; the first compiles')
  parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  parser.add_argument('--compile', action=argparse.BooleanOptionalAction, default=True)
  parser.add_argument('--compile_mode', default='default',
                      help='torch.compile mode: default | reduce-overhead | max-autotune')
  parser.add_argument('--channels_last', action=argparse.BooleanOptionalAction, default=True)
  parser.add_argument('--augment', action=argparse.BooleanOptionalAction, default=True,
                      help="on-device photometric augmentation (vidjax's on_device default)")
  parser.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)))
  parser.add_argument('--json', action='store_true', help='print one JSON line to stdout')
  args = parser.parse_args()

  torch.set_num_threads(args.threads)
  device = torch.device(args.device)
  if device.type == 'cuda':
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision('high')  # TF32, as XLA's default precision on GPU.
    device_name = torch.cuda.get_device_name(device)
  else:
    device_name = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
                        if line.startswith('model name')), 'cpu')
  sync = torch.cuda.synchronize if device.type == 'cuda' else lambda: None
  memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
  m = METHODS[args.method]
  torch.manual_seed(0)
  model = SSLModel(args.model, args.width, args.cifar_stem, args.gradient_stem, m).to(
      device, memory_format=memory_format)
  params = list(model.parameters())
  num_params = sum(p.numel() for p in params)

  num_views, size = 2, args.image_size
  if m['optim'] == 'sgd':  # SimSiam: lr = 0.05 * B / 256; weight decay on kernels only.
    fused = device.type == 'cuda'  # One kernel on GPU; on CPU foreach is faster (5x here).
    optimizer_step = torch.optim.SGD(
        [{'params': [p for p in params if p.ndim > 1], 'weight_decay': m['weight_decay']},
         {'params': [p for p in params if p.ndim <= 1], 'weight_decay': 0.0}],
        lr=m['lr'] * args.batch, momentum=MOMENTUM, fused=fused, foreach=not fused).step
  else:  # SimCLR: lr = 0.075 * sqrt(B).
    optimizer_step = make_lars(params, m['lr'] * math.sqrt(args.batch), m['weight_decay'],
                               m['trust_coefficient'], MOMENTUM)
  autocast = torch.autocast(device.type, torch.bfloat16, enabled=args.dtype == 'bfloat16')

  def forward_loss(views, u):
    """uint8 [B, K, S, S, 3], u [B*K, 10] -> (loss, embed_std), as vidjax's loss_fn."""
    images = views.reshape(-1, size, size, 3).float() / 255
    if args.augment:
      images = photometric(images, u, m['solarize_prob'])
    images = images.view(args.batch, num_views, size, size, 3)
    to_nchw = lambda x: x.permute(0, 3, 1, 2).contiguous(memory_format=memory_format)
    with autocast:
      if m['bn_per_view']:  # One pass per view position, as the official SimSiam code.
        outs = [model(to_nchw(images[:, k])) for k in range(num_views)]
        feature, z, p = (torch.stack(o, 1) if o[0] is not None else None for o in zip(*outs))
      else:  # One BatchNorm batch of all B*K views, sample-major.
        feature, z, p = (None if o is None else o.view(args.batch, num_views, -1)
                         for o in model(to_nchw(images.view(-1, size, size, 3))))
    loss = simsiam_loss(p, z) if p is not None else info_nce_loss(z, m['temperature'])
    embed_std = F.normalize(feature.flatten(0, 1).detach(), dim=-1).std(0, correction=0).mean()
    return loss, embed_std

  views = torch.randint(0, 256, (args.batch, num_views, size, size, 3), dtype=torch.uint8,
                        device=device)
  compiled, compile_error = args.compile, None
  eager = fns = (forward_loss, optimizer_step)
  if args.compile:  # Compiled, LARS's _foreach ops fuse into a few kernels.
    fns = (torch.compile(forward_loss, mode=args.compile_mode),
           torch.compile(optimizer_step) if m['optim'] == 'lars' else optimizer_step)

  def train_step():
    loss_fn, optimizer_step = fns
    u = torch.rand(args.batch * num_views, 10, device=device)
    loss, embed_std = loss_fn(views, u)
    loss.backward()
    grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(
        [p.grad for p in params])))
    optimizer_step()
    model.zero_grad(set_to_none=True)
    return loss, embed_std, grad_norm

  start = time.perf_counter()
  try:
    metrics = train_step()
  except Exception as error:  # E.g. no C++ compiler for inductor on CPU: measure eager.
    if not args.compile or isinstance(error, torch.OutOfMemoryError):
      raise
    compiled, compile_error = False, f'{type(error).__name__}: {str(error)[:300]}'
    print(f'torch.compile failed, measuring eager: {compile_error}', file=sys.stderr)
    torch._dynamo.reset()
    fns = eager
    metrics = train_step()
  sync()
  compile_s = time.perf_counter() - start
  for _ in range(args.warmup - 1):
    metrics = train_step()
  sync()
  start = time.perf_counter()
  for _ in range(args.steps):
    metrics = train_step()
  sync()
  step_s = (time.perf_counter() - start) / args.steps
  loss, embed_std, grad_norm = (float(x.detach()) for x in metrics)
  if not all(map(math.isfinite, (loss, embed_std, grad_norm))):
    raise FloatingPointError(f'non-finite metrics: loss {loss} embed_std {embed_std} '
                             f'grad_norm {grad_norm}')

  result = dict(framework='torch', torch=torch.__version__, device=device_name,
                model=args.model, width=args.width, gradient_stem=args.gradient_stem,
                image_size=size, batch=args.batch,
                method=args.method, dtype=args.dtype, compiled=compiled,
                compile_mode=args.compile_mode if compiled else None,
                channels_last=args.channels_last, augment=args.augment, threads=args.threads,
                steps=args.steps, step_s=step_s, pairs_per_s=args.batch / step_s,
                params=num_params, compile_s=compile_s, loss=loss)
  if compile_error:
    result['compile_error'] = compile_error
  print(f'torch {torch.__version__} on {device_name}, {args.model} x{args.width} {size}px '
        f'B={args.batch} {args.method} {args.dtype} compiled={compiled}: {step_s * 1e3:.1f} '
        f'ms/step, {args.batch / step_s:.1f} pairs/s ({num_params} params)', file=sys.stderr)
  if args.json:
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
  main()
