"""Training's native CPU kernels, oneDNN's convolutions (vidjax/models/onednn.py) and
BatchNorm's C++ sums (batch_norm.py): XLA's values and gradients, on one device and split
over four; the size rule; and XLA's own kernels wherever the handlers cannot be built."""
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import simsiam
from vidjax import parallel, step
from vidjax.errors import ConfigError
from vidjax.models import batch_norm, build_model, check_config, onednn


@pytest.fixture(scope='module')
def handler():
  """The handlers, registered; CI installs g++ and the oneDNN wheels, so there they must
  build."""
  reason = onednn.unavailable_reason()
  if reason:
    if os.environ.get('CI'):
      pytest.fail(f'the oneDNN handlers did not build: {reason}')
    pytest.skip(reason)


@pytest.fixture
def forced(handler, monkeypatch):
  """The handlers, for layers of any size: the size rule (test_small_layers_stay_xla) off."""
  monkeypatch.setattr(onednn, 'MIN_CONVOLUTION_MACS', 0)
  monkeypatch.setattr(batch_norm, 'MIN_ELEMENTS', 0)


def _outputs_and_grads(conv_fn, x, features, size, stride, padding, mesh):
  conv = nn.Conv(features, (size, size), stride, padding=padding, use_bias=False,
                 dtype=x.dtype, conv_general_dilated=conv_fn)
  params = conv.init(jax.random.PRNGKey(0), x)

  def outputs_and_grads(params, x):
    loss = lambda params, x: jnp.sum(jnp.sin(conv.apply(params, x).astype(jnp.float32)))
    return conv.apply(params, x), jax.grad(loss, argnums=(0, 1))(params, x)

  fn = jax.jit(parallel.traced_in(mesh, outputs_and_grads),
               in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)))
  return fn, (params, jax.device_put(x, parallel.batch_sharding(mesh)))


@pytest.mark.parametrize('devices', [1, 4])
@pytest.mark.parametrize('size,stride,padding,features,dtype',
                         [(3, 1, 'SAME', 16, 'float32'), (3, 2, 'SAME', 32, 'float32'),
                          (1, 2, 'VALID', 32, 'float32'), (7, 2, [(3, 3), (3, 3)], 8, 'float32'),
                          (3, 1, [(1, 1), (1, 1)], 16, 'bfloat16')])
def test_convolution_and_gradients_equal_xla(forced, devices, size, stride, padding,
                                              features, dtype):
  """Strides, paddings (Flax's one-sided SAME at stride 2, torchvision's symmetric), 1x1 and
  7x7 kernels, bfloat16; the batch whole or split over 4 devices (oneDNN calls on each
  device's rows, kernel gradients summed: no device gathers the batch)."""
  mesh = parallel.make_mesh(jax.devices()[:devices])
  x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 16, 12, 16)), dtype)
  xla_fn, args = _outputs_and_grads(jax.lax.conv_general_dilated, x, features, size, stride,
                                    padding, mesh)
  onednn_fn, _ = _outputs_and_grads(onednn.conv_general_dilated, x, features, size, stride,
                                    padding, mesh)
  hlo = onednn_fn.lower(*args).compile().as_text()
  for target in ('forward', 'input_gradient', 'kernel_gradient'):
    assert f'custom_call_target="vidjax_conv_{target}"' in hlo, target
  assert 'all-gather' not in hlo
  tolerance = 1e-5 if dtype == 'float32' else 1e-2
  for xla, ours in zip(jax.tree.leaves(xla_fn(*args)), jax.tree.leaves(onednn_fn(*args))):
    assert ours.dtype == xla.dtype and ours.shape == xla.shape
    scale = float(jnp.max(jnp.abs(xla.astype(jnp.float32))))
    assert float(jnp.max(jnp.abs((ours - xla).astype(jnp.float32)))) <= tolerance * scale


@pytest.mark.parametrize('size,stride', [(1, 1), (2, 2), (4, 2)])
def test_tiny_maps_on_four_devices(forced, size, stride):
  """A ResNet-18's last stages at 32 px (1-4 px maps, 64 channels): oneDNN's im2col
  kernel gradients, whose scratchpad once overflowed when one device's thread ran a
  primitive another's had created."""
  mesh = parallel.make_mesh()
  x = jnp.asarray(np.random.default_rng(0).normal(size=(32, size, size, 64)), jnp.float32)
  xla_fn, args = _outputs_and_grads(jax.lax.conv_general_dilated, x, 64, 3, stride,
                                    [(1, 1), (1, 1)], mesh)
  onednn_fn, _ = _outputs_and_grads(onednn.conv_general_dilated, x, 64, 3, stride,
                                    [(1, 1), (1, 1)], mesh)
  expected = jax.tree.leaves(xla_fn(*args))
  for _ in range(3):
    for xla, ours in zip(expected, jax.tree.leaves(onednn_fn(*args))):
      np.testing.assert_allclose(ours, xla, rtol=1e-4, atol=1e-4 * float(np.abs(xla).max()))


@pytest.mark.parametrize('devices', [1, 4])
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_batch_norm_equals_flax(forced, devices, dtype):
  """Output, running statistics and both gradients as nn.BatchNorm's, the statistics over
  the whole batch however the mesh splits it (each device sums its rows; the sums are
  added), with no all-gather."""
  mesh = parallel.make_mesh(jax.devices()[:devices])
  x = jnp.asarray(np.random.default_rng(0).normal(1.0, 2.0, size=(16, 8, 8, 12)), dtype)
  results = {}
  for name, module in (('flax', nn.BatchNorm(use_running_average=False, momentum=0.9)),
                       ('native', batch_norm.BatchNorm(use_running_average=False,
                                                       momentum=0.9))):
    variables = module.init(jax.random.PRNGKey(0), x)
    variables = jax.tree.map(lambda a: a + jnp.linspace(0.1, 0.4, a.size).reshape(a.shape),
                             variables)

    def outputs_and_grads(params, x):
      apply = lambda params, x: module.apply({**variables, 'params': params}, x,
                                             mutable=['batch_stats'])
      loss = lambda params, x: jnp.sum(jnp.sin(apply(params, x)[0].astype(jnp.float32)))
      return apply(params, x), jax.grad(loss, argnums=(0, 1))(params, x)

    fn = jax.jit(parallel.traced_in(mesh, outputs_and_grads),
                 in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)))
    args = (variables['params'], jax.device_put(x, parallel.batch_sharding(mesh)))
    if name == 'native':
      hlo = fn.lower(*args).compile().as_text()
      assert 'custom_call_target="vidjax_channel_sums"' in hlo and 'all-gather' not in hlo
    results[name] = jax.tree.leaves(fn(*args))
  tolerance = 1e-5 if dtype == 'float32' else 1e-2
  for flax_value, ours in zip(results['flax'], results['native']):
    assert ours.dtype == flax_value.dtype and ours.shape == flax_value.shape
    scale = float(jnp.max(jnp.abs(flax_value.astype(jnp.float32))))
    error = float(jnp.max(jnp.abs((ours - flax_value).astype(jnp.float32))))
    assert error <= tolerance * scale


def test_small_layers_stay_xla(handler):
  """The size rule: a convolution under MIN_CONVOLUTION_MACS per device, or a BatchNorm
  under MIN_ELEMENTS, stays XLA's; the same layers over a batch 64 times larger do not, and
  split over 4 devices they count a device's rows."""
  def targets(batch_size, devices):
    mesh = parallel.make_mesh(jax.devices()[:devices])
    conv = nn.Conv(32, (3, 3), use_bias=False,
                   conv_general_dilated=onednn.conv_general_dilated)
    norm = batch_norm.BatchNorm()
    x = jnp.zeros((batch_size, 16, 16, 32))
    params = conv.init(jax.random.PRNGKey(0), x)
    stats = norm.init(jax.random.PRNGKey(0), x)
    fn = lambda x: norm.apply(stats, conv.apply(params, x), mutable=['batch_stats'])
    hlo = jax.jit(parallel.traced_in(mesh, fn)).lower(x).as_text()
    return {target for target in ('vidjax_conv_forward', 'vidjax_channel_sums')
            if target in hlo}

  per_image = 16 * 16 * 32 * 9 * 32  # Multiply-adds; the BatchNorm has 16 * 16 * 32 inputs.
  small = max(1, min(onednn.MIN_CONVOLUTION_MACS // per_image,
                     batch_norm.MIN_ELEMENTS // (16 * 16 * 32)) // 4)
  assert small * per_image < onednn.MIN_CONVOLUTION_MACS
  assert targets(small, 1) == set()
  assert targets(64 * small, 1) == {'vidjax_conv_forward', 'vidjax_channel_sums'}
  assert targets(4 * small, 4) == set()


def test_dilated_and_grouped_convolutions_stay_xla(forced):
  x = jnp.ones((2, 16, 16, 4))
  hlo = lambda kernel, **options: jax.jit(lambda x: onednn.conv_general_dilated(
      x, kernel, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      **options)).lower(x).as_text()
  assert 'vidjax_conv_forward' in hlo(jnp.ones((3, 3, 4, 4)))
  assert 'vidjax_conv' not in hlo(jnp.ones((3, 3, 4, 4)), rhs_dilation=(2, 2))
  assert 'vidjax_conv' not in hlo(jnp.ones((3, 3, 2, 4)), feature_group_count=2)


def test_a_shape_onednn_rejects_fails_the_call(forced):
  """oneDNN's error comes back as the call's error (an output shape that does not follow
  from the input's), not as the end of the process."""
  x, kernel = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
  with pytest.raises(Exception, match='oneDNN'):
    jax.block_until_ready(onednn._call('vidjax_conv_forward', (2, 5, 8, 4), x, kernel, 1,
                                       ((1, 1), (1, 1))))


def test_train_step_equals_xla_on_four_devices(forced):
  """The default model's step (smoke width) with native kernels (forced: at this size the
  size rule would keep XLA's) gives the state the same step gives with XLA's, over a batch
  split on 4 devices."""
  config = simsiam.get_config('smoke')
  config.optim.warmup_steps = 0
  # Step functions of the pixel after the colour jitter: see test_train_step.py.
  config.data.photometric.update(solarize_prob=0.0, jitter_prob=0.0)
  mesh = parallel.make_mesh()
  rng = np.random.default_rng(0)
  batch = parallel.to_global(
      {'views': rng.integers(0, 256, (16, 2, 32, 32, 3), dtype=np.uint8),
       'video_id': np.arange(16, dtype=np.int32), 'frame_idx': np.zeros((16, 2), np.int32),
       'dt': np.zeros((16, 2), np.int32)}, mesh)
  states = {}
  for cpu_kernels in ('xla', 'native'):
    config.model.cpu_kernels = cpu_kernels
    _, state, step_fn = step.make_state_and_step(config, mesh)
    hlo = step_fn.lower(state, batch, jax.random.PRNGKey(1)).as_text()
    for target in ('vidjax_conv_kernel_gradient', 'vidjax_channel_sums'):
      assert (target in hlo) == (cpu_kernels == 'native'), target
    states[cpu_kernels], metrics = jax.device_get(
        step_fn(state, batch, jax.random.PRNGKey(1)))
    assert np.isfinite(metrics['loss'])
  for collection in ('params', 'batch_stats'):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 states['native'][collection], states['xla'][collection])
  # Evaluation's forward pass (train=False) stays plain XLA.
  model = build_model(config)
  text = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(
      {'params': states['native']['params'], 'batch_stats': states['native']['batch_stats']},
      np.zeros((2, 32, 32, 3), np.float32)).as_text()
  assert 'vidjax_' not in text


_WITHOUT_COMPILER = """
import jax, jax.numpy as jnp
from vidjax.models import onednn
print(onednn.unavailable_reason())
x, k = jnp.ones((2, 16, 16, 4)), jnp.ones((3, 3, 4, 4))
grad = jax.grad(lambda k: onednn.conv_general_dilated(
    x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')).sum())
print(float(grad(k).sum()))
"""


def test_without_a_compiler_the_gradient_stays_xla(tmp_path):
  """No g++ (PATH without it, an empty cache): one warning naming what is missing, and the
  convolution and its gradient are still computed, by XLA."""
  env = dict(os.environ, PATH=str(tmp_path), VIDJAX_CACHE=str(tmp_path / 'cache'),
             PYTHONPATH=os.getcwd())
  env.pop('CXX', None)
  result = subprocess.run([sys.executable, '-c', _WITHOUT_COMPILER], env=env,
                          capture_output=True, text=True, check=True)
  reason, total = result.stdout.strip().splitlines()
  if 'oneDNN headers' not in reason:  # Without the wheels, that is what is missing first.
    assert reason == 'g++ not found (apt-get install g++)'
  assert result.stderr.count("Convolutions and BatchNorms stay XLA's") == 1
  # Each tap of the 3x3 kernel sees 16x16 ones less the rows/columns it shifts into padding,
  # over 2 images and 4x4 channel pairs.
  assert float(total) == 2 * 16 * (16 * 16 + 4 * 16 * 15 + 4 * 15 * 15)


def test_unknown_convolutions_is_a_config_error():
  config = simsiam.get_config('smoke')
  config.model.cpu_kernels = 'mkl'
  with pytest.raises(ConfigError, match='config.model.cpu_kernels'):
    check_config(config)
