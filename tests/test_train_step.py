"""The jitted train step: data-parallel over 4 devices equals one device on the same batch."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import barlow, npair, simsiam, tcn
from vidjax import parallel, step
from vidjax.models import build_model


def _two_steps(config, mesh, batch):
  """[(state, metrics) after step 1, the same after step 2]: two steps, so that momentum and
  BatchNorm running statistics matter too."""
  _, state, step_fn = step.make_state_and_step(config, mesh)  # Smoke configs: seed 0.
  after = []
  for number in range(2):
    state, metrics = step_fn(state, parallel.to_global(batch, mesh),
                             jax.random.fold_in(jax.random.PRNGKey(1), number))
    after.append(jax.device_get((state, metrics)))
  return after


def _assert_states_close(state4, state1, rtol, atol):
  for name in ('params', 'batch_stats', 'opt_state'):
    jax.tree_util.tree_map_with_path(
        lambda path, a, b: np.testing.assert_allclose(
            a, b, rtol=rtol, atol=atol, err_msg=name + jax.tree_util.keystr(path)),
        state4[name], state1[name])


@pytest.mark.parametrize('config_module,bn_per_view,hog_weight,mix_weight',
                         [(simsiam, False, 0.0, 0.0), (npair, False, 0.0, 0.0),
                          (tcn, False, 0.0, 0.0), (barlow, True, 0.0, 4.0),
                          (simsiam, True, 1.0, 1.0)])
def test_four_devices_equal_one(config_module, bn_per_view, hog_weight, mix_weight):
  assert jax.device_count() == 4
  config = config_module.get_config('smoke')
  config.model.bn_per_view = bn_per_view
  config.loss.hog_weight = hog_weight
  config.loss.mix_weight = mix_weight  # Its mix pairs samples across the global batch.
  config.optim.warmup_steps = 0  # A non-zero learning rate from the first step.
  # Solarising is a step function of the pixel: a rounding difference in the colour jitter
  # before it (reductions ordered differently over 4 devices) can flip a pixel across the
  # threshold and turn float noise into a visible change. So are the gradient stem's
  # orientation bins: the same rounding moves a pixel's vote to the next bin (with oneDNN's
  # convolutions, whose program XLA fuses differently, SGD's first step then differed by
  # 0.007, and by 0.13 with XLA's and no hue jitter). The jitter is off; its draws stay.
  config.data.photometric.solarize_prob = 0.0
  config.data.photometric.jitter_prob = 0.0
  rng = np.random.default_rng(0)
  batch = {
      'views': rng.integers(0, 256, (16, 2, 32, 32, 3), dtype=np.uint8),
      'video_id': np.arange(16, dtype=np.int32),
      'frame_idx': np.zeros((16, 2), np.int32),
      'dt': np.zeros((16, 2), np.int32),
  }
  if config.data.crop.negatives or config.data.pairs.far_negatives:
    batch['negatives'] = rng.integers(0, 256, (16, 2, 32, 32, 3), dtype=np.uint8)
  steps4 = _two_steps(config, parallel.make_mesh(), batch)
  steps1 = _two_steps(config, parallel.make_mesh(jax.devices()[:1]), batch)
  # atol: a loss near 0 (SimSiam's can be) leaves float noise no room under rtol alone;
  # its whitened targets come from an SVD of the batch, 1.5e-7 apart on 4 devices and on 1.
  # The second step starts from states that agree only to the first step's tolerance below
  # (2e-4), and TCN's triplet loss, a hinge on a difference of distances, magnifies that:
  # its second losses differ by 5e-6 to 1.8e-5 relative, with the XLA:CPU convolution used.
  (_, first4), (_, second4) = steps4
  (_, first1), (_, second1) = steps1
  np.testing.assert_allclose(first4['loss'], first1['loss'], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(second4['loss'], second1['loss'], rtol=1e-4, atol=1e-6)
  # atol: a BatchNorm bias's gradient sums over every pixel of the batch; summed over 4
  # devices in another order, a step leaves up to ~4e-5 (N-pair), ~9e-5 (Barlow Twins,
  # whose HOG teacher's weight is 50).
  _assert_states_close(steps4[0][0], steps1[0][0], rtol=2e-4, atol=1.5e-4)
  # After a second step, looser: with SimSiam's HOG teacher under LARS, the second
  # gradients of 4 devices and 1 differ by up to 0.7% of their size (opt_state traces)
  # while both steps' losses agree to 2e-7 and plain SGD's states to 2e-6; the tight
  # checks are the losses and the first step's state.
  _assert_states_close(steps4[1][0], steps1[1][0], rtol=2e-2, atol=2e-3)
  (state1, metrics1), (_, metrics4) = steps1[1], steps4[1]
  # The step really changed the parameters.
  initial = jax.device_get(build_model(config).init(
      jax.random.split(jax.random.PRNGKey(0))[0],
      np.zeros((2, 32, 32, 3), np.float32), train=False))['params']
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: not np.allclose(a, b), state1['params'],
                                         initial))
  assert sum(changed) > len(changed) // 2
  if hog_weight:  # The HOG head is trained, and its loss is a cosine distance.
    assert 'hog_head' in initial and 0 < metrics1['hog_loss'] < 2
    np.testing.assert_allclose(metrics4['hog_loss'], metrics1['hog_loss'], rtol=1e-5)
    assert not np.allclose(state1['params']['hog_head']['Dense_1']['kernel'],
                           initial['hog_head']['Dense_1']['kernel'])
  if config.loss.distill_weight:  # N-pair's HOG teacher: a cross-entropy over the batch.
    assert np.isfinite(metrics1['distill_loss']) and metrics1['distill_loss'] > 0
    np.testing.assert_allclose(metrics4['distill_loss'], metrics1['distill_loss'], rtol=1e-5)


@pytest.mark.parametrize('bn_per_view', [False, True])
def test_bn_per_view_keeps_views_apart(bn_per_view):
  """With per-view BatchNorm, view 0's outputs do not depend on the other views' images."""
  config = simsiam.get_config('smoke')
  config.head.pred_hidden_dim = 8  # A learned predictor too, so that 'p' is checked.
  model = build_model(config)
  variables = model.init(jax.random.PRNGKey(0), np.zeros((2, 32, 32, 3), np.float32),
                         train=False)
  rng = np.random.default_rng(0)
  views = rng.uniform(size=(8, 2, 32, 32, 3)).astype(np.float32)
  changed = views.copy()
  changed[:, 1] = rng.uniform(size=(8, 32, 32, 3))
  outputs, _ = step.apply_to_views(model, variables, views, bn_per_view)
  outputs_changed, _ = step.apply_to_views(model, variables, changed, bn_per_view)
  for name in ('feature', 'z', 'p'):
    assert outputs[name].shape[:2] == (8, 2)
    same = np.allclose(outputs[name][:, 0], outputs_changed[name][:, 0], atol=1e-5)
    assert same == bn_per_view, name
  if bn_per_view:  # Each view alone equals the model applied to that view's batch.
    alone, _ = model.apply(variables, views[:, 1], train=True, mutable=['batch_stats'])
    np.testing.assert_allclose(outputs['z'][:, 1], alone['z'], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('zero_init_residual', [True, False])
def test_zero_init_residual_sets_last_block_scales(zero_init_residual):
  config = simsiam.get_config('smoke')
  config.model.zero_init_residual = zero_init_residual
  params = build_model(config).init(jax.random.PRNGKey(0), np.zeros((2, 32, 32, 3), np.float32),
                                    train=False)['params']['encoder']
  blocks = [name for name in params if 'Block' in name]
  assert len(blocks) == 4
  for name in blocks:
    last_scale = params[name]['BatchNorm_1']['scale']
    np.testing.assert_array_equal(last_scale, 0.0 if zero_init_residual else 1.0)
  np.testing.assert_array_equal(params['stem_bn']['scale'], 1.0)


def test_encoder_feature_map_pools_to_the_feature():
  config = npair.get_config('smoke')
  config.model.pool_grid = 1  # Global average pooling: the feature is the map's mean.
  encoder = build_model(config).encoder
  images = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
  variables = encoder.init(jax.random.PRNGKey(0), images, train=False)
  feature_map = encoder.apply(variables, images, train=False, pooled=False)
  assert feature_map.shape[:3] == (2, 4, 4)  # CIFAR stem: 32 px / 8.
  np.testing.assert_allclose(feature_map.mean(axis=(1, 2)),
                             encoder.apply(variables, images, train=False), rtol=1e-5)


def test_bfloat16_step_agrees_with_float32():
  """Mixed precision: bf16 convolutions and matmuls, float32 parameters, optimiser state,
  BatchNorm statistics and loss. Two steps agree with float32 to bf16's precision (8 bits
  of mantissa, ~0.4% per rounding): loss within 2% or 0.002 (1.3% measured for the default
  colour augmentation, 0.45% with grayscale on half the views), and
  the parameter updates' direction (cosine over all parameters) above 0.93 (0.96 measured
  for N-pair's LARS at random init, whose 8-channel smoke convolutions round the most;
  0.948 with its HOG teacher, whose sharp softmax at temperature 0.02 amplifies rounding)."""
  config = npair.get_config('smoke')
  config.optim.warmup_steps = 0
  config.data.photometric.solarize_prob = 0.0  # A step function: see the test above.
  rng = np.random.default_rng(0)
  batch = {'views': rng.integers(0, 256, (16, 2, 32, 32, 3), dtype=np.uint8),
           'video_id': np.arange(16, dtype=np.int32), 'frame_idx': np.zeros((16, 2), np.int32),
           'dt': np.zeros((16, 2), np.int32)}
  mesh = parallel.make_mesh()
  initial = jax.device_get(step.make_state_and_step(config, mesh)[1])
  state32, metrics32 = _two_steps(config, mesh, batch)[-1]
  config.model.dtype = 'bfloat16'
  state16, metrics16 = _two_steps(config, mesh, batch)[-1]
  for name in ('params', 'batch_stats', 'opt_state'):
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(state16[name])
               if np.issubdtype(x.dtype, np.floating)), name
  np.testing.assert_allclose(metrics16['loss'], metrics32['loss'], rtol=2e-2, atol=2e-3)
  flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
  update32 = flat(state32['params']) - flat(initial['params'])
  update16 = flat(state16['params']) - flat(initial['params'])
  cosine = update16 @ update32 / np.linalg.norm(update16) / np.linalg.norm(update32)
  assert cosine > 0.93, cosine
  features = build_model(config).apply(
      {'params': state16['params'], 'batch_stats': state16['batch_stats']},
      np.zeros((2, 32, 32, 3), np.float32), train=False)
  assert all(v.dtype == np.float32 for v in features.values())


def test_steps_per_dispatch_equals_single_steps():
  """Three steps scanned in one call give the state three single calls give, from the same
  batches and rngs, up to float rounding (XLA fuses the scanned step differently)."""
  config = simsiam.get_config('smoke')
  config.optim.warmup_steps = 0
  mesh = parallel.make_mesh()
  rng = np.random.default_rng(0)
  batches = [{'views': rng.integers(0, 256, (16, 2, 32, 32, 3), dtype=np.uint8),
              'video_id': np.arange(16, dtype=np.int32),
              'frame_idx': np.zeros((16, 2), np.int32), 'dt': np.zeros((16, 2), np.int32)}
             for _ in range(3)]
  rngs = [jax.random.fold_in(jax.random.PRNGKey(1), number) for number in range(3)]
  _, state, step_fn = step.make_state_and_step(config, mesh)
  for batch, key in zip(batches, rngs):
    state, metrics = step_fn(state, parallel.to_global(batch, mesh), key)
  single, single_metrics = jax.device_get(state), jax.device_get(metrics)
  _, state, steps_fn = step.make_state_and_step(config, mesh, steps_per_dispatch=3)
  stacked = jax.tree.map(lambda *rows: np.stack(rows), *batches)
  state, metrics = steps_fn(state, parallel.to_global(stacked, mesh, stacked=True),
                            jax.numpy.stack(rngs))
  assert int(state['step']) == 3
  np.testing.assert_allclose(metrics['loss'], single_metrics['loss'], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               jax.device_get(state['params']), single['params'])


_CONV_HLO = """
import os
import vidjax, jax, jax.numpy as jnp
# The default model's first stage at batch 256 (YNNPACK leaves small convolutions to XLA).
conv = lambda w: jax.lax.conv_general_dilated(jnp.ones((256, 32, 32, 16)), w, (1, 1), 'SAME',
                                              dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
hlo = jax.jit(jax.grad(lambda w: conv(w).sum())).lower(jnp.ones((3, 3, 16, 16))).compile()
print(os.environ['XLA_FLAGS'], '__ynn_fusion' in hlo.as_text(), sep='|')
"""


@pytest.mark.parametrize('user_flags',
                         ['', '--xla_cpu_experimental_ynn_fusion_type=individual_convolution'])
def test_ynnpack_convolutions_are_off_unless_xla_flags_names_them(user_flags):
  """README, "Training speed": the YNNPACK convolutions jaxlib 0.10 uses on a CPU double the
  default model's step here; importing vidjax turns them off, and a user's choice stands."""
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  if user_flags:
    env['XLA_FLAGS'] = user_flags
  flags, ynn = subprocess.run([sys.executable, '-c', _CONV_HLO], env=env, check=True,
                              capture_output=True, text=True).stdout.strip().split('|')
  if user_flags:
    assert flags == user_flags and ynn == 'True'
  else:
    assert 'ynn_fusion_type=individual_dot' in flags and ynn == 'False'
