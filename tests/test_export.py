"""The encoder out (vidjax/export): the ONNX graph, run in onnxruntime, gives the embedding
JAX gives, and encoder.safetensors reads back through --init=weights:."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import onnxruntime
import pytest
from safetensors.numpy import load_file

from configs import npair
from vidjax import export, models, parallel, train
from vidjax.errors import ConfigError
from vidjax.evaluate import embed, encoders
from vidjax.export import onnx_graph

TOLERANCE = 1e-4  # Float32 sums in another order: measured ~1e-6 on embeddings up to ~10.


def _perturbed_variables(config, seed=0):
  """Encoder params and BatchNorm statistics away from their init (scale 1, mean 0, var 1),
  so that folding the statistics into the convolutions is exercised."""
  model = models.build_model(config)
  size = config.image_size
  variables = model.init(jax.random.PRNGKey(seed), np.zeros((1, size, size, 3), np.float32),
                         train=False)
  rng = np.random.default_rng(seed)
  jitter = lambda x: (np.asarray(x) * rng.uniform(0.5, 1.5, np.shape(x))  # noqa: E731
                      + rng.normal(0, 0.1, np.shape(x))).astype(np.float32)
  params = jax.tree.map(jitter, variables['params']['encoder'])
  stats = jax.tree.map(lambda x: np.abs(jitter(x)) + 0.1, variables['batch_stats']['encoder'])
  return model, {'params': {'encoder': params}, 'batch_stats': {'encoder': stats}}


@pytest.mark.parametrize('image_size,model_options', [
    (32, {}),  # The default: oriented-gradient input, 3x3 stem, the 4x4 map read whole.
    (32, dict(pool_grid=1, embed_grid=0, width=0.25)),
    (40, dict(name='resnet18', torchvision=True, cifar_stem=False, gradient_stem=False,
              pool_grid=1, embed_grid=0)),
    # 'SAME' max-pool, bottleneck.
    (32, dict(name='resnet50', cifar_stem=False, pool_grid=1, embed_grid=0)),
])
def test_onnx_graph_computes_the_jax_embedding(image_size, model_options):
  config = npair.get_config('smoke')
  config.image_size = image_size
  config.model.update(model_options)
  model, variables = _perturbed_variables(config)
  mesh = parallel.make_mesh()
  expected = embed.embed_images(embed.make_embed_fn(model, mesh), variables,
                                export.check_images(image_size, 16), mesh)
  graph = onnx_graph.encoder_graph(config.model, image_size, variables['params']['encoder'],
                                   variables['batch_stats']['encoder'])
  got = onnxruntime.InferenceSession(graph).run(
      ['embedding'], {'images': export.check_images(image_size, 16)})[0]
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, atol=TOLERANCE * max(1, np.abs(expected).max()))


def test_export_round_trip_through_weights(tmp_path):
  config = npair.get_config('smoke')
  config.update(total_steps=2, eval_every=100, checkpoint_every=2)
  config.model.update(name='resnet18', width=0.125, torchvision=True, cifar_stem=False,
                      gradient_stem=False, pool_grid=1, embed_grid=0)
  run = str(tmp_path / 'run')
  train.train_and_evaluate(config, run)
  output = str(tmp_path / 'out')
  summary = export.from_workdir(run, output)
  check = summary['onnx']['check']
  assert check['images'] == 32 and check['max_abs_difference'] < TOLERANCE * max(
      1, check['max_abs_embedding'])
  assert summary['output']['shape'] == ['N', 64]
  assert summary['safetensors']['tensors'] == 120  # torchvision's resnet18 has 122, with fc.
  with open(tmp_path / 'out' / export.SUMMARY) as f:
    assert json.load(f) == summary
  tensors = load_file(str(tmp_path / 'out' / export.SAFETENSORS))
  assert tensors['layer2.0.downsample.0.weight'].shape == (16, 8, 1, 1)  # OIHW.
  assert tensors['bn1.num_batches_tracked'].dtype == np.int64 and 'fc.weight' not in tensors

  mesh = parallel.make_mesh()
  images = export.check_images(config.image_size, 8, seed=1)
  trained, _ = encoders.load_encoder(config, run, 'trained', mesh)
  weights = f'weights:{tmp_path / "out" / export.SAFETENSORS}'
  reloaded, description = encoders.load_encoder(config, run, weights, mesh)
  assert description.startswith('pretrained resnet18')
  np.testing.assert_allclose(reloaded(images), trained(images), atol=1e-5)

  before = os.path.getmtime(tmp_path / 'out' / export.ONNX)
  with pytest.raises(ConfigError, match='exists; pass --overwrite'):
    export.from_workdir(run, output)
  assert os.path.getmtime(tmp_path / 'out' / export.ONNX) == before
  export.from_workdir(run, output, overwrite=True)
  assert not [name for name in os.listdir(tmp_path) if name.endswith(('.partial', '.old'))]


def test_export_command_line(smoke_run, tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'vidjax.export', f'--workdir={smoke_run}',
       f'--output={tmp_path / "exported"}'], capture_output=True, text=True, check=True)
  lines = result.stdout.strip().splitlines()
  assert "encoder.onnx: uint8 ['N', 32, 32, 3] NHWC -> float32 ['N', 1024]" in lines[0]
  assert 'onnxruntime\'s output within' in lines[0]
  assert 'not torchvision\'s own' in lines[1]
  missing = subprocess.run([sys.executable, '-m', 'vidjax.export', f'--workdir={tmp_path}',
                            f'--output={tmp_path / "x"}'], capture_output=True, text=True)
  assert missing.returncode == 1
  assert missing.stderr.strip() == (f'error: --workdir={tmp_path}: no config.json; expected '
                                    'the workdir of a python main.py run')
