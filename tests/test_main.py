"""End to end: main.py's trainer with the :smoke configs, interrupt + resume, bad input."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import barlow, npair, simsiam, tcn
from vidjax import checkpointing, parallel, step, train
from vidjax.errors import ConfigError, TrainingDiverged

REPO = Path(__file__).resolve().parents[1]


def _metrics(workdir):
  return [json.loads(line) for line in open(workdir / 'metrics.jsonl')]


@pytest.mark.parametrize('config_module', [simsiam, npair, barlow, tcn])
def test_smoke_run_writes_config_metrics_and_checkpoints(config_module, tmp_path):
  config = config_module.get_config('smoke')
  train.train_and_evaluate(config, str(tmp_path))
  assert json.loads((tmp_path / 'config.json').read_text())['method'] == config.method
  records = _metrics(tmp_path)
  knn = [r for r in records if 'knn_top1' in r]
  assert [r['step'] for r in knn] == [0, 3, 6]
  # Offsets of the 3 x 16 pairs trained on since the last kNN (default pdf: 0 < |dt| <= 4).
  for r in knn[1:]:
    assert sum(r['dt_hist'].values()) == 3 * config.batch_size
    assert set(r['dt_hist']) <= {'1', '2', '3', '4'} and 1 <= r['dt_mean'] <= 4
  steps = [r for r in records if 'loss' in r]
  assert [r['step'] for r in steps] == list(range(1, 7))
  for r in steps:
    assert {'loss', 'lr', 'pairs_per_sec', 'embed_std'} <= set(r) and np.isfinite(r['loss'])
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['3', '6']


def test_bfloat16_smoke_run_learns_like_float32(tmp_path):
  """The same 30 steps in mixed precision: the loss falls as far as in float32.

  On the RGB stem: with the gradient stem the bfloat16 run's loss fell further (2.91
  against 3.29 over the last 10 steps), no more than a float32 run on a GPU differs from one
  here (docs/experiments.md); one step's agreement with the gradient stem is tested in
  tests/test_train_step.py."""
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    config = npair.get_config('smoke')
    config.update(total_steps=30, eval_every=100, checkpoint_every=100)
    config.model.update(dtype=dtype, gradient_stem=False)
    train.train_and_evaluate(config, str(tmp_path / dtype))
    losses[dtype] = np.array([r['loss'] for r in _metrics(tmp_path / dtype) if 'loss' in r])
  for curve in losses.values():
    assert curve[-10:].mean() < curve[:5].mean() - 0.3, curve
  np.testing.assert_allclose(losses['bfloat16'][-10:].mean(), losses['float32'][-10:].mean(),
                             rtol=0.05)


def _interrupt_at(monkeypatch, step):
  """Sends this process a real SIGINT while the trainer fetches batch number `step`."""
  real = parallel.to_global
  calls = {'n': 0}

  def to_global(batch, mesh, **options):
    if isinstance(batch, dict) and 'views' in batch:
      calls['n'] += 1
      if calls['n'] == step:
        os.kill(os.getpid(), signal.SIGINT)
    return real(batch, mesh, **options)

  monkeypatch.setattr(parallel, 'to_global', to_global)


def _params(state):
  return jax.device_get(state['params'])


def test_interrupt_saves_and_rerun_resumes_exactly(monkeypatch, tmp_path):
  config = simsiam.get_config('smoke')
  config.checkpoint_every = 100  # Only the interrupt and the end save.
  uninterrupted = train.train_and_evaluate(config, str(tmp_path / 'straight'))

  workdir = tmp_path / 'interrupted'
  with monkeypatch.context() as patch:
    _interrupt_at(patch, step=4)
    stopped = train.train_and_evaluate(config, str(workdir))
  assert int(stopped['step']) == 4
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['4']
  # The checkpoint holds exactly the parameters the interrupted run had.
  saved = checkpointing.Checkpoints(workdir, 3).restore(4, stopped)
  jax.tree.map(np.testing.assert_array_equal, _params(saved), _params(stopped))

  resumed = train.train_and_evaluate(config, str(workdir))  # The same command again.
  assert int(resumed['step']) == 6
  steps = [r['step'] for r in _metrics(workdir) if 'loss' in r]
  assert steps == [1, 2, 3, 4, 5, 6]
  # Same data order, augmentation and optimiser state: the resumed run ends where the
  # uninterrupted one did.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               _params(resumed), _params(uninterrupted))


def test_steps_per_dispatch_trains_as_single_steps_and_resumes_exactly(monkeypatch, tmp_path):
  config = simsiam.get_config('smoke')
  config.update(log_every=2, eval_every=2, checkpoint_every=100)
  single = train.train_and_evaluate(config, str(tmp_path / 'single'))
  config.steps_per_dispatch = 2
  workdir = tmp_path / 'dispatched'
  with monkeypatch.context() as patch:
    _interrupt_at(patch, step=2)  # While fetching steps 3-4: the save comes after step 4.
    stopped = train.train_and_evaluate(config, str(workdir))
  assert int(stopped['step']) == 4
  resumed = train.train_and_evaluate(config, str(workdir))
  assert int(resumed['step']) == 6
  logged = [(r['step'], r['loss']) for r in _metrics(workdir) if 'loss' in r]
  expected = [(r['step'], r['loss']) for r in _metrics(tmp_path / 'single') if 'loss' in r]
  assert [s for s, _ in logged] == [s for s, _ in expected] == [2, 4, 6]
  np.testing.assert_allclose([l for _, l in logged], [l for _, l in expected], rtol=1e-4)
  # The scanned step rounds differently (tests/test_train_step.py: 1e-5 after 3 steps);
  # six LARS steps, whose trust ratio divides by small norms, grow that to ~1e-4.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=3e-4),
               _params(resumed), _params(single))
  config.steps_per_dispatch = 4  # Checkpoint 4 is a boundary of 4 steps too, 6 is not.
  with pytest.raises(ConfigError, match=r'config.total_steps=6 is not a multiple of '
                     r'config.steps_per_dispatch=4'):
    train.train_and_evaluate(config, str(workdir))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(monkeypatch, tmp_path):
  real_step = step.train_step

  def diverging_step(state, batch, rng, **kwargs):
    new_state, metrics = real_step(state, batch, rng, **kwargs)
    metrics['loss'] = jnp.where(state['step'] >= 4, jnp.nan, metrics['loss'])
    return new_state, metrics

  monkeypatch.setattr(step, 'train_step', diverging_step)
  config = simsiam.get_config('smoke')
  with pytest.raises(TrainingDiverged, match=r'nan at step 5.*checkpoint \(step 3\)'):
    train.train_and_evaluate(config, str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['3']


@pytest.mark.parametrize('section, field, value', [
    ('crop', 'jitter', 0.7), ('photometric', 'invert_prob', 1.5), ('crop', 'swap_prob', 1.5),
    ('pairs', 'far_radius', 0), ('photometric', 'rotate_prob', -0.1)])
def test_view_options_out_of_range_fail_before_compute(section, field, value, tmp_path):
  config = simsiam.get_config('smoke')
  config.data[section][field] = value
  with pytest.raises(ConfigError, match=f'config.data.{section}.{field} must be'):
    train.train_and_evaluate(config, str(tmp_path))


@pytest.mark.parametrize('override, message', [
    (dict(batch_size=6), 'not divisible by the 4 devices'),
    (dict(image_size=4), 'too small for resnet10'),
    (dict(model=dict(pool_grid=3)), 'config.model.pool_grid=3: expected a positive integer '
     "dividing the last feature map's side, 4 at config.image_size=32"),
    (dict(method='byol'), 'config.method: unknown'),
    (dict(data=dict(crop=dict(fit=True, anchor='uniform'))),
     "config.data.crop.fit needs crop.mode='anchored' and crop.anchor='motion'"),
    (dict(data=dict(crop=dict(negatives=1))), 'simsiam has no negatives'),
    (dict(loss=dict(simsiam_target='median')), "config.loss.simsiam_target: unknown 'median'"),
    (dict(loss=dict(margin=0.0)), 'config.loss.margin must be > 0'),
    (dict(loss=dict(ifm_weight=-0.5)), r'config.loss.ifm_weight must be >= 0, got -0.5'),
    (dict(loss=dict(ifm_epsilon=-0.1)), r'config.loss.ifm_epsilon must be >= 0, got -0.1'),
    (dict(loss=dict(hog_weight=-1.0)), r'config.loss.hog_weight must be >= 0, got -1.0'),
    (dict(loss=dict(distill_weight=-1.0)), r'config.loss.distill_weight must be >= 0'),
    (dict(loss=dict(distill_temperature=0.0)), r'config.loss.distill_temperature must be > 0'),
    (dict(loss=dict(rdm_sigma=-2.0)), r'config.loss.rdm_sigma must be >= -1'),
    (dict(loss=dict(mix_weight=-1.0)), r'config.loss.mix_weight must be >= 0'),
    (dict(method='npair', loss=dict(mix_weight=4.0)),
     'the mix regulariser needs config.method in barlow, simsiam'),
    (dict(loss=dict(mix_weight=1.0), data=dict(pairs=dict(num_positives=3))),
     'and data.pairs.num_positives=2'),
    (dict(head=dict(pred_hidden_dim=0), loss=dict(rdm_sigma=0.0)),
     'needs a predictor, unless config.loss.rdm_sigma'),
    (dict(image_size=8, model=dict(pool_grid=1, embed_grid=0), loss=dict(hog_weight=1.0)),
     r'config.loss.hog_weight=1.0: config.image_size=8: 8 px images hold no 2x2 block'),
    (dict(loss=dict(distill_weight=1.0, distill_hog_cell=4, distill_hog_block=3)) | dict(
        image_size=8, model=dict(pool_grid=1, embed_grid=0)), r'config.loss.distill_weight=1.0: config.image_size=8: 8 px images '
     r'hold no 3x3 block of 4 px cells'),
    (dict(data=dict(crop=dict(margin=(0.0, 1.0)))), 'config.data.crop.margin must satisfy'),
    (dict(method='npair', data=dict(crop=dict(negatives=-1))),
     'config.data.crop.negatives must be an integer >= 0'),
    (dict(method='npair', data=dict(pairs=dict(far_negatives=-1))),
     'config.data.pairs.far_negatives must be an integer >= 0'),
])
def test_impossible_values_fail_before_compute(override, message, tmp_path):
  config = simsiam.get_config('smoke')
  config.update(override)
  with pytest.raises(ConfigError, match=message):
    train.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / 'checkpoints').exists()


@pytest.mark.parametrize('field', ['trust_coefficient', 'predictor_lr_scale',
                                   'bias_lr_scale'])
def test_nonpositive_optimizer_factor_fails_before_compute(field, tmp_path):
  config = simsiam.get_config('smoke')
  config.optim[field] = 0.0
  with pytest.raises(ConfigError, match=f'config.optim.{field} must be'):
    train.train_and_evaluate(config, str(tmp_path))


def test_unwritable_workdir(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  with pytest.raises(ConfigError, match='not writable'):
    train.train_and_evaluate(simsiam.get_config('smoke'), str(blocker / 'run'))


@pytest.mark.parametrize('args, message', [
    (['--config.bogus=1'], "--config.bogus=1: the config has no field 'bogus'"),
    (['--config.model.nme=resnet18'],
     '--config.model.nme=resnet18: the config has no field \'nme\' (Did you mean "name"?)'),
    (['--config.batch_size=many'], 'flag --config.batch_size=many'),
])
def test_main_reports_bad_flags_in_one_line(args, message, tmp_path):
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/simsiam.py:smoke',
       f'--workdir={tmp_path}'] + args, cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith('error:') and message in last_line
  assert 'Traceback' not in result.stderr


def test_main_reports_a_missing_config_file(tmp_path):
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/nope.py', f'--workdir={tmp_path}'],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  assert 'configs/nope.py: cannot load' in result.stderr.strip().splitlines()[-1]


def test_resume_with_another_model_stops_before_writing(tmp_path):
  config = simsiam.get_config('smoke')
  config.total_steps = 3
  train.train_and_evaluate(config, str(tmp_path))
  saved = (tmp_path / 'config.json').read_text()
  changed = simsiam.get_config('smoke')
  changed.model.width = 0.25  # The run used 0.125.
  with pytest.raises(ConfigError, match=r'cannot resume this run with config.model.width=0.25 '
                     r'\(the run has 0.125\)'):
    train.train_and_evaluate(changed, str(tmp_path))
  assert (tmp_path / 'config.json').read_text() == saved
  # The workdir still evaluates: its config.json describes its checkpoints.
  from vidjax import workdir
  from vidjax.evaluate import encoders
  encoders.load_encoder(workdir.load_config(str(tmp_path)), str(tmp_path), 'trained',
                        parallel.make_mesh())
  # What leaves the state's shapes alone may change: a longer run continues.
  longer = simsiam.get_config('smoke')
  longer.update(total_steps=4, log_every=2)
  assert int(train.train_and_evaluate(longer, str(tmp_path))['step']) == 4


def test_a_diverging_update_is_never_saved(tmp_path):
  config = simsiam.get_config('smoke')
  config.optim.base_lr = 1e40  # The first update overflows; its loss was still finite.
  config.checkpoint_every = 1
  with pytest.raises(TrainingDiverged, match='parameters are no longer finite at step 1'):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.listdir(tmp_path / 'checkpoints')


def test_resume_after_a_kill_logs_each_step_once(monkeypatch, tmp_path):
  config = simsiam.get_config('smoke')  # Checkpoints at steps 3 and 6.
  real = parallel.to_global
  calls = {'n': 0}

  def killed_at_step_6(batch, mesh):
    if isinstance(batch, dict) and 'views' in batch:
      calls['n'] += 1
      if calls['n'] == 6:
        raise RuntimeError('killed')
    return real(batch, mesh)

  with monkeypatch.context() as patch:
    patch.setattr(parallel, 'to_global', killed_at_step_6)
    with pytest.raises(RuntimeError, match='killed'):
      train.train_and_evaluate(config, str(tmp_path))
  assert [r['step'] for r in _metrics(tmp_path) if 'loss' in r] == [1, 2, 3, 4, 5]
  train.train_and_evaluate(config, str(tmp_path))  # Resumes at step 3.
  assert [r['step'] for r in _metrics(tmp_path) if 'loss' in r] == [1, 2, 3, 4, 5, 6]
  assert [r['step'] for r in _metrics(tmp_path) if 'knn_top1' in r] == [0, 3, 6]


@pytest.mark.parametrize('override, message', [
    (dict(train='npy:/nonexistent/folder'), 'does not exist'),
    (dict(train='npy:{one_frame}'), 'no video has the 2 frames the temporal pdf needs'),
])
def test_a_start_that_fails_leaves_no_workdir(override, message, tmp_path):
  one_frame = tmp_path / 'one_frame'
  one_frame.mkdir()
  np.save(one_frame / 'still.npy', np.zeros((1, 24, 32, 3), np.uint8))
  config = simsiam.get_config('smoke')
  config.data.train = override['train'].format(one_frame=one_frame)
  with pytest.raises(ConfigError, match=message):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_first_throughput_leaves_out_compilation(tmp_path):
  config = npair.get_config('smoke')
  train.train_and_evaluate(config, str(tmp_path))
  rates = [r['pairs_per_sec'] for r in _metrics(tmp_path) if 'loss' in r]
  # Compiling takes seconds, a smoke step a fraction of one: counted in, the first rate
  # would be a small fraction of the others.
  assert rates[0] > 0.1 * np.median(rates[1:]), rates
