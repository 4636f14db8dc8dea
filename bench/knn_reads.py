r"""What kNN reads: which of a trained run's representations separates categories best.

  python bench/knn_reads.py --workdir=runs/final/npair_glyphs \
      --support=imagefolder:/tmp/glyphs1000/support --query=imagefolder:/tmp/glyphs1000/query

Prints a Markdown table, one row per representation: weighted 20-NN top-1 (knn_top1) and
--shots-shot 1-NN top-1 with its 95% CI over --draws draws, for
  feature           the embedding, what `python -m vidjax.evaluate` reads (SSLModel.embed)
  feature - mean    the same, minus the support set's mean feature (labels not needed)
  z                 the projector's output, what the method's loss reads (the HOG
                    distillation of config.loss.distill_weight reads the feature)
  z - mean          z minus the support set's mean z
  last map, GxG     the encoder's last feature map averaged over each cell of a GxG grid
                    (for every G dividing its side; G = config.model.embed_grid, or
                    pool_grid where that is 0, is `feature`)
The `feature` row reproduces the `trained` row of `python -m vidjax.evaluate --init=trained`
with the same --support and --query (its knn_top1 and 5-shot columns): the same sets, latest
checkpoint, preprocessing, kNN (config.monitor.temperature) and few-shot draws (config.seed).
One forward pass gives both 'feature' and 'z' (the encoder runs as SSLModel.embed runs it;
z projects the feature the loss reads, pooled at config.model.pool_grid). About 10 s for
1500 crops of 32 px on a 2-core CPU.
"""
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vidjax import parallel, workdir as runs  # noqa: E402
from vidjax.errors import ConfigError  # noqa: E402
from vidjax.evaluate import datasets, embed, encoders, export, metrics, protocol  # noqa: E402
from vidjax.models import heads, resnet  # noqa: E402

flags.DEFINE_string('workdir', None, 'The trained run to read (holds config.json; read only).')
flags.DEFINE_string('support', 'synthetic', 'Labelled support set (as python -m vidjax.evaluate).')
flags.DEFINE_string('query', 'synthetic', 'Labelled query set (as python -m vidjax.evaluate).')
flags.DEFINE_integer('shots', 5, 'Labelled support items per class for few-shot 1-NN.')
flags.DEFINE_integer('draws', 10, 'Random few-shot draws.')


def _feature_z_and_map(model, images):
  """The encoder with train=False, as SSLModel.embed runs it, keeping the last map:
  [embedding | z | last map flattened]."""
  last_map = model.encoder((images - heads.IMAGENET_MEAN) / heads.IMAGENET_STD, train=False,
                           pooled=False)
  z = model.projector(resnet.grid_pool(last_map, model.encoder.pool_grid), train=False)
  feature = resnet.grid_pool(last_map, _embed_grid(model))
  return jnp.concatenate([feature, z, last_map.reshape(len(images), -1)], axis=1)


def _embed_grid(model) -> int:
  return model.embed_grid or model.encoder.pool_grid


def make_outputs_fn(model, mesh):
  """jitted (variables, uint8 images) -> _feature_z_and_map, as embed.make_embed_fn."""

  def outputs(variables, images):
    return model.apply(variables, images.astype(jnp.float32) / 255.0,
                       method=_feature_z_and_map)

  return jax.jit(outputs, in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                 out_shardings=parallel.batch_sharding(mesh))


def representations(model, variables, image_sets, image_size: int, mesh) -> list:
  """[{'feature': [n, D], 'z': [n, P], 'map': [n, h, w, C]}] per LabelledImages set, batched
  as evaluate embeds."""
  map_shape = jax.eval_shape(lambda v, x: model.apply(v, x, method=lambda m, x: m.encoder(
      x, train=False, pooled=False)), variables, jnp.zeros((1, image_size, image_size, 3))).shape
  feature_dim = _embed_grid(model)**2 * map_shape[-1]
  z_end = feature_dim + model.projector.output_dim
  rows = [np.asarray(embed.embed_images(make_outputs_fn(model, mesh), variables,
                                        export.ImageRows(images, image_size), mesh))
          for images in image_sets]
  return [{'feature': r[:, :feature_dim], 'z': r[:, feature_dim:z_end],
           'map': r[:, z_end:].reshape((len(r),) + map_shape[1:])} for r in rows]


def centred(support, query) -> tuple:
  """(support, query) minus the support's mean vector."""
  mean = support.mean(axis=0, keepdims=True)
  return support - mean, query - mean


def scores(support, support_labels, query, query_labels, num_classes: int, config,
           shots: int, draws: int) -> tuple:
  """(weighted 20-NN top-1, {mean, ci95} of shots-shot 1-NN), as evaluate computes them."""
  knn = metrics.knn_metrics(support, support_labels, query, query_labels, num_classes,
                            ks=(20,), temperature=config.monitor.temperature)
  fewshot, _ = metrics.fewshot_metrics(support, support_labels, query, query_labels, [shots],
                                       draws, config.seed)
  return knn['knn_top1'], fewshot.get(str(shots))


def measure(options) -> list:
  """[(representation, knn_top1, few-shot result or None)] for the run in options.workdir."""
  config = runs.load_config(options.workdir)
  support_set = datasets.open_labelled(options.support, 'support', config, '--support')
  query_set = datasets.open_labelled(options.query, 'query', config, '--query')
  protocol.check_shared_classes(support_set, query_set, options)
  mesh = parallel.make_mesh()
  model, variables, _ = encoders.trained_variables(config, options.workdir, '', mesh)
  support, query = representations(model, variables, (support_set, query_set),
                                   config.image_size, mesh)
  query_labels, known = datasets.align_query_labels(support_set, query_set)
  rows = []
  score = lambda s, q: scores(s, support_set.labels, q, query_labels[known],
                              len(support_set.class_names), config, options.shots, options.draws)
  for name in ('feature', 'z'):
    plain = support[name], query[name][known]
    for label, (s, q) in ((name, plain), (f'{name} - mean', centred(*plain))):
      rows.append((label, *score(s, q)))
  side = support['map'].shape[1]
  for grid in (g for g in range(1, side + 1) if side % g == 0):
    pooled = [np.asarray(resnet.grid_pool(jnp.asarray(m), grid))
              for m in (support['map'], query['map'][known])]
    rows.append((f'last map, {grid}x{grid}', *score(*pooled)))
  return rows


def table(rows, shots: int) -> str:
  lines = [f'| representation | knn_top1 | {shots}-shot ± CI |', '| --- | --- | --- |']
  for name, knn_top1, few in rows:
    cell = f'{few["mean"]:.3f} ± {few["ci95"]:.3f}' if few else 'n/a (too few per class)'
    lines.append(f'| {name} | {knn_top1:.3f} | {cell} |')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  options = flags.FLAGS
  if not options['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO.
  if not options.workdir:
    sys.exit('error: --workdir is required (the workdir of a python main.py run)')
  started = time.time()
  try:
    rows = measure(options)
  except ConfigError as e:
    sys.exit(f'error: {e}')
  print(f'{options.workdir}: support {options.support}, query {options.query}\n')
  print(table(rows, options.shots))
  print(f'\n({time.time() - started:.0f} s)')


if __name__ == '__main__':
  app.run(main)
