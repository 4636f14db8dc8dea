r"""Training speed: step time, pairs/s, FLOPs, achieved TFLOP/s and MFU, pipeline-fed vs
device-resident, peak device memory; with --compare, PyTorch's step on the same device.

  python bench/train_speed.py                         # this device, every setup
  python bench/train_speed.py --compare               # + bench/torch_reference.py, the ratio
  python bench/train_speed.py --setups=default --dtype=bfloat16 --workers=15

Setups (--setups): `default` (the configs' ResNet-10 x0.25 at 32 px), `resnet18` (width 1 at
96 px) and `resnet50` (224 px), each at a batch that fits (--batch overrides; CPU batches
are smaller). For each:
- device-resident: one random uint8 batch kept on the device, the jitted step timed over
  --steps steps after --warmup (compilation excluded, timed separately);
- pipeline-fed: the same step fed by the Grain pipeline from the embedded world
  (data.num_workers=--workers; frames rendered at twice the view size), as training runs;
- FLOPs per step from XLA's cost analysis of the compiled step; achieved TFLOP/s; MFU
  against the device's peak dense bf16 (or float32) FLOP/s from PEAK_TFLOPS (none on CPU);
- peak device memory (the allocator's, where the backend reports it).
Writes bench/results/train_speed.json (--out).
"""
import json
import os
import resource
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import npair, simsiam  # noqa: E402
from vidjax import parallel, step  # noqa: E402
from vidjax.data import pipeline, sources  # noqa: E402

# setup -> (config overrides, batch on an accelerator, batch on a CPU).
SETUPS = {
    'default': (dict(), 256, 256),
    'resnet18': (dict(name='resnet18', width=1.0, image_size=96), 256, 32),
    # Its last map is 7x7: one global average, as the paper's.
    'resnet50': (dict(name='resnet50', width=1.0, image_size=224, cifar_stem=False,
                      pool_grid=1, embed_grid=0), 128, 8),
}
# Dense peak TFLOP/s by device kind (substring of jax's device_kind), bf16 and float32
# (float32 on tensor cores as TF32 where the chip has them). Vendors' data sheets.
PEAK_TFLOPS = {
    'H200': (989, 495), 'H100': (989, 495), 'A100': (312, 156), 'L40S': (362, 183),
    'L4': (121, 60), 'A10': (125, 62), 'V100': (125, 15.7), 'T4': (65, 8.1),
    'TPU v4': (275, 275), 'TPU v5 lite': (197, 197), 'TPU v5e': (197, 197),
    'TPU v5p': (459, 459), 'TPU v6 lite': (918, 918), 'TPU v6e': (918, 918),
}


def peak_tflops(device, dtype: str):
  for kind, (bf16, fp32) in PEAK_TFLOPS.items():
    if kind.lower() in device.device_kind.lower():
      return bf16 if dtype == 'bfloat16' else fp32
  return None


def make_config(method: str, setup: str, batch: int, dtype: str, workers: int):
  config = (simsiam if method == 'simsiam' else npair).get_config()
  overrides, _, _ = SETUPS[setup]
  overrides = dict(overrides)
  config.image_size = overrides.pop('image_size', config.image_size)
  config.model.update(overrides, dtype=dtype)
  config.batch_size = batch
  config.data.num_workers = workers
  config.synthetic.frame_size = max(96, 2 * config.image_size)
  return config


def random_batch(config, rng):
  shape = (config.batch_size, config.data.pairs.num_positives, config.image_size,
           config.image_size, 3)
  return {'views': rng.integers(0, 256, shape, dtype=np.uint8),
          'video_id': np.arange(config.batch_size, dtype=np.int32),
          'frame_idx': np.zeros(shape[:2], np.int32), 'dt': np.zeros(shape[:2], np.int32)}


def timed_steps(step_fn, state, batches, steps: int, per_dispatch: int = 1):
  """(state, seconds per step) over `steps` calls of per_dispatch steps each, each call's
  batch(es) from `batches()`."""
  started = time.perf_counter()
  for number in range(steps):
    key = jax.random.PRNGKey(number)
    state, metrics = step_fn(state, batches(), key if per_dispatch == 1 else
                             jax.random.split(key, per_dispatch))
  jax.block_until_ready(metrics['loss'])
  return state, (time.perf_counter() - started) / steps / per_dispatch


def stacked(batches: list) -> dict:
  return jax.tree.map(lambda *rows: np.stack(rows), *batches)


def step_flops(config, mesh, k: int, state, batch) -> float:
  """XLA's count of one step's floating-point operations, on the step with XLA's own
  convolutions: it does not look inside oneDNN's (models/onednn.py), the same arithmetic."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.cpu_kernels = 'xla'
  _, _, step_fn = step.make_state_and_step(config, mesh, k)
  cost = step_fn.lower(state, batch, jax.random.PRNGKey(0) if k == 1 else
                       jax.random.split(jax.random.PRNGKey(0), k)).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return (float(cost.get('flops', 0.0)) if cost else 0.0) / k  # Of the whole scanned call.


def measure(method: str, setup: str, batch: int, dtype: str, f) -> dict:
  config = make_config(method, setup, batch, dtype, f.workers)
  config.model.cpu_kernels = f.cpu_kernels
  mesh = parallel.make_mesh()
  k = f.steps_per_dispatch
  _, state, step_fn = step.make_state_and_step(config, mesh, k)
  resident = random_batch(config, np.random.default_rng(0))
  resident = (parallel.to_global(resident, mesh) if k == 1 else
              parallel.to_global(stacked([resident] * k), mesh, stacked=True))
  started = time.perf_counter()
  compiled = step_fn.lower(state, resident, jax.random.PRNGKey(0) if k == 1 else
                           jax.random.split(jax.random.PRNGKey(0), k)).compile()
  compile_s = time.perf_counter() - started
  flops = step_flops(config, mesh, k, state, resident)
  state, _ = timed_steps(compiled, state, lambda: resident, f.warmup, k)
  state, resident_s = timed_steps(compiled, state, lambda: resident, f.steps, k)
  row = dict(method=method, setup=setup, model=config.model.name, width=config.model.width,
             gradient_stem=config.model.gradient_stem, image_size=config.image_size,
             batch=batch, dtype=dtype, steps_per_dispatch=k,
             device=jax.devices()[0].device_kind, devices=jax.device_count(),
             compile_s=round(compile_s, 1), step_ms=round(1000 * resident_s, 2),
             pairs_per_s=round(batch / resident_s, 1), gflops_per_step=round(flops / 1e9, 2),
             achieved_tflops=round(flops / resident_s / 1e12, 3))
  peak = peak_tflops(jax.devices()[0], dtype)
  row['mfu'] = round(row['achieved_tflops'] / (peak * jax.device_count()), 3) if peak else None
  if f.pipeline:
    source = sources.open_source(config.data.train, config)
    iterator = pipeline.make_train_iterator(source, config)
    feed = lambda: (parallel.to_global(next(iterator), mesh) if k == 1 else  # noqa: E731
                    parallel.to_global(stacked([next(iterator) for _ in range(k)]), mesh,
                                       stacked=True))
    state, _ = timed_steps(compiled, state, feed, f.warmup, k)
    state, fed_s = timed_steps(compiled, state, feed, f.steps, k)
    row.update(fed_step_ms=round(1000 * fed_s, 2), fed_pairs_per_s=round(batch / fed_s, 1),
               fed_vs_resident=round(resident_s / fed_s, 3), workers=f.workers)
  stats = jax.devices()[0].memory_stats() or {}
  row['peak_device_mb'] = (round(stats['peak_bytes_in_use'] / 2**20) if 'peak_bytes_in_use'
                           in stats else None)
  row['peak_host_rss_mb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
  return row


def torch_reference(row, f) -> dict:
  """bench/torch_reference.py on the same setup, in its own process."""
  command = [sys.executable, os.path.join(ROOT, 'bench', 'torch_reference.py'),
             f'--model={row["model"]}', f'--width={row["width"]}',
             f'--image_size={row["image_size"]}', f'--batch={row["batch"]}',
             f'--method={row["method"]}', f'--steps={f.steps}', f'--warmup={f.warmup}',
             f'--dtype={row["dtype"]}', '--json',
             '--gradient_stem' if row['gradient_stem'] else '--no-gradient_stem']
  if row['setup'] == 'resnet50':
    command.append('--no-cifar_stem')
  result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
  if result.returncode:
    return dict(error=result.stderr.strip().splitlines()[-1] if result.stderr else 'failed')
  return json.loads(result.stdout.strip().splitlines()[-1])


def child(f):
  """One setup in this process (each in its own, so peak memory is its own)."""
  setup, method = f.child.split(',')
  _, accelerator_batch, cpu_batch = SETUPS[setup]
  batch = f.batch or (cpu_batch if jax.devices()[0].platform == 'cpu' else accelerator_batch)
  print(json.dumps(measure(method, setup, batch, f.dtype, f)))


def main(argv):
  del argv
  f = flags.FLAGS
  if f.child:
    return child(f)
  rows = []
  for setup in f.setups:
    for method in f.methods:
      args = [a for a in sys.argv[1:] if not a.startswith('--compare')]
      result = subprocess.run([sys.executable, os.path.abspath(__file__),
                               f'--child={setup},{method}', *args], capture_output=True,
                              text=True, timeout=3600)
      if result.returncode:
        print(f'{setup} {method}: failed: {result.stderr.strip()[-2000:]}', file=sys.stderr)
        continue
      row = json.loads(result.stdout.strip().splitlines()[-1])
      if f.compare:
        row['torch'] = torch_reference(row, f)
        if 'pairs_per_s' in row['torch']:
          row['jax_vs_torch'] = round(row['pairs_per_s'] / row['torch']['pairs_per_s'], 3)
      rows.append(row)
      print(_line(row), flush=True)
  os.makedirs(os.path.dirname(f.out), exist_ok=True)
  with open(f.out, 'w') as file:
    json.dump(rows, file, indent=1)
  print(f'written: {f.out}')


def _line(r) -> str:
  fed = (f' | fed {r["fed_pairs_per_s"]} pairs/s ({r["fed_vs_resident"]:.2f}x resident, '
         f'{r["workers"]} workers)' if 'fed_pairs_per_s' in r else '')
  mfu = f' | MFU {r["mfu"]:.1%}' if r['mfu'] is not None else ''
  memory = f' | peak {r["peak_device_mb"]} MB' if r['peak_device_mb'] is not None else ''
  torch = ''
  if 'torch' in r:
    torch = (f' | torch {r["torch"]["pairs_per_s"]} pairs/s, jax/torch {r["jax_vs_torch"]:.2f}'
             if 'pairs_per_s' in r['torch'] else f' | torch: {r["torch"]["error"]}')
  return (f'{r["setup"]:8s} {r["method"]:7s} {r["model"]} x{r["width"]} {r["image_size"]}px '
          f'B{r["batch"]} {r["dtype"]} on {r["devices"]}x {r["device"]}: {r["step_ms"]} ms/step, '
          f'{r["pairs_per_s"]} pairs/s, {r["gflops_per_step"]} GFLOP/step, '
          f'{r["achieved_tflops"]} TFLOP/s{mfu}{memory}{fed}{torch}')


if __name__ == '__main__':
  flags.DEFINE_list('setups', list(SETUPS), f'Any of {", ".join(SETUPS)}.')
  flags.DEFINE_list('methods', ['simsiam', 'npair'], 'simsiam and/or npair.')
  flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'config.model.dtype.')
  flags.DEFINE_enum('cpu_kernels', 'native', ['native', 'xla'],
                    'config.model.cpu_kernels (native ones are used on a CPU only).')
  flags.DEFINE_integer('batch', 0, 'Batch for every setup (0: the setup\'s own).')
  flags.DEFINE_integer('steps', 20, 'Timed steps.')
  flags.DEFINE_integer('warmup', 3, 'Steps run before timing.')
  flags.DEFINE_integer('steps_per_dispatch', 1, 'Train steps per jitted call '
                       '(config.steps_per_dispatch); --steps and --warmup count calls.')
  flags.DEFINE_integer('workers', 0, 'data.num_workers of the pipeline-fed measurement.')
  flags.DEFINE_bool('pipeline', True, 'Also measure the pipeline-fed step.')
  flags.DEFINE_bool('compare', False, 'Also run bench/torch_reference.py on each setup.')
  flags.DEFINE_string('child', '', 'Internal: run one setup,method here.')
  flags.DEFINE_string('out', os.path.join(ROOT, 'bench', 'results', 'train_speed.json'),
                      'JSON output.')
  app.run(main)
