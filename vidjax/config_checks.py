"""Checks a config and workdir before any compute starts: one clear line per problem."""
import os
import tempfile

from vidjax.data import pairs
from vidjax.models import ARCHITECTURES, downsampling
from vidjax.optim import LR_SCALINGS, OPTIMIZERS

METHODS = ('simsiam', 'npair', 'barlow')
CROP_MODES = ('anchored', 'rrc')
ANCHORS = ('motion', 'uniform')


class ConfigError(ValueError):
  """A user-facing problem with the config, flags or workdir."""


def _require(condition: bool, message: str):
  if not condition:
    raise ConfigError(message)


def _positive_int(config, name: str):
  value = config[name]
  _require(isinstance(value, int) and value > 0,
           f'config.{name} must be a positive integer, got {value!r}')


def check_config(config, num_devices: int, num_processes: int = 1):
  """Raises ConfigError naming the offending field and what was expected."""
  _require(config.method in METHODS,
           f'config.method: unknown {config.method!r}; expected one of {", ".join(METHODS)}')
  for name in ('total_steps', 'batch_size', 'image_size', 'log_every', 'eval_every',
               'checkpoint_every', 'keep_checkpoints'):
    _positive_int(config, name)
  _require(config.batch_size % num_devices == 0,
           f'config.batch_size={config.batch_size} is not divisible by the {num_devices} '
           'devices; use a multiple of the device count')
  _require(config.batch_size % num_processes == 0,
           f'config.batch_size={config.batch_size} is not divisible by the {num_processes} '
           'processes')
  optim = config.optim
  _require(optim.name in OPTIMIZERS, f'config.optim.name: unknown {optim.name!r}; expected '
           f'one of {", ".join(OPTIMIZERS)}')
  _require(optim.lr_scaling in LR_SCALINGS, f'config.optim.lr_scaling: unknown '
           f'{optim.lr_scaling!r}; expected one of {", ".join(LR_SCALINGS)}')
  _require(optim.base_lr > 0, f'config.optim.base_lr must be > 0, got {optim.base_lr}')
  _require(optim.trust_coefficient > 0,
           f'config.optim.trust_coefficient must be > 0, got {optim.trust_coefficient}')
  _require(optim.predictor_lr_scale > 0,
           f'config.optim.predictor_lr_scale must be > 0, got {optim.predictor_lr_scale}')
  _require(optim.bias_lr_scale > 0,
           f'config.optim.bias_lr_scale must be > 0, got {optim.bias_lr_scale}')

  model = config.model
  _require(model.name in ARCHITECTURES, f'config.model.name: unknown {model.name!r}; expected '
           f'one of {", ".join(ARCHITECTURES)}')
  _require(model.width > 0, f'config.model.width must be > 0, got {model.width}')
  factor = downsampling(model.name, model.cifar_stem)
  _require(config.image_size >= factor,
           f'config.image_size={config.image_size} is too small for {model.name} '
           f'(cifar_stem={model.cifar_stem}), which downsamples {factor}x; use >= {factor}')
  _require(config.method != 'simsiam' or config.head.pred_hidden_dim > 0,
           'config.head.pred_hidden_dim must be > 0 for simsiam (it needs a predictor)')

  pair = config.data.pairs
  _require(pair.pdf in pairs.PDFS, f'config.data.pairs.pdf: unknown {pair.pdf!r}; expected '
           f'one of {", ".join(pairs.PDFS)}')
  _require(pair.num_positives >= 2,
           f'config.data.pairs.num_positives must be >= 2, got {pair.num_positives}')
  _require(pair.tau >= 1, f'config.data.pairs.tau must be >= 1 frame, got {pair.tau}')
  _require(pair.sigma > 0, f'config.data.pairs.sigma must be > 0, got {pair.sigma}')
  _require(pair.min_gap >= 0, f'config.data.pairs.min_gap must be >= 0, got {pair.min_gap}')
  _require(len(pairs.offset_weights(pair, num_frames=2 * pair.min_gap + 2)[0]) > 0,
           f'config.data.pairs: pdf {pair.pdf!r} allows no offset with min_gap={pair.min_gap}')

  crop = config.data.crop
  _require(crop.mode in CROP_MODES, f'config.data.crop.mode: unknown {crop.mode!r}; '
           f'expected one of {", ".join(CROP_MODES)}')
  _require(crop.anchor in ANCHORS, f'config.data.crop.anchor: unknown {crop.anchor!r}; '
           f'expected one of {", ".join(ANCHORS)}')
  _require(0 <= crop.uniform_share <= 1,
           f'config.data.crop.uniform_share must be in [0, 1], got {crop.uniform_share}')
  _require(0 <= crop.jitter <= 0.5,
           f'config.data.crop.jitter must be in [0, 0.5] (beyond half a crop the anchor point '
           f'leaves it), got {crop.jitter}')
  _require(0 < crop.scale[0] <= crop.scale[1] <= 1,
           f'config.data.crop.scale must satisfy 0 < low <= high <= 1, got {tuple(crop.scale)}')
  _require(0 < crop.ratio[0] <= crop.ratio[1],
           f'config.data.crop.ratio must satisfy 0 < low <= high, got {tuple(crop.ratio)}')
  photometric = config.data.photometric
  for name in ('jitter_prob', 'grayscale_prob', 'blur_prob', 'solarize_prob', 'invert_prob'):
    _require(0 <= photometric[name] <= 1,
             f'config.data.photometric.{name} must be in [0, 1], got {photometric[name]}')
  fps, frame_size = config.data.fps or 0, config.data.frame_size or 0
  _require(fps >= 0, f'config.data.fps must be >= 0 (0 = native rate), got {fps}')
  _require(isinstance(frame_size, int) and frame_size >= 0,
           f'config.data.frame_size must be an integer >= 0 (0 = as stored), got {frame_size!r}')
  _require(config.data.num_workers >= 0,
           f'config.data.num_workers must be >= 0, got {config.data.num_workers}')


def check_workdir(workdir):
  """The workdir exists or can be created, and files can be written in it."""
  _require(bool(workdir), '--workdir is required (where checkpoints and metrics go)')
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=workdir, prefix='.write_test'):
      pass
  except OSError as e:
    raise ConfigError(f'--workdir={workdir} is not writable: {e.strerror or e}') from None
