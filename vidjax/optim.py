"""Optimiser and learning-rate schedule from `config.optim` (all optax)."""
import math

import jax
import optax

from vidjax.errors import require

# The reference batch size of the linear scaling rule lr = base_lr * batch / 256.
_REFERENCE_BATCH = 256

# config.optim.lr_scaling -> peak lr from (base_lr, batch size), the way each paper does it.
LR_SCALINGS = {
    'linear': lambda base_lr, batch: base_lr * batch / _REFERENCE_BATCH,  # SimSiam, Barlow.
    'sqrt': lambda base_lr, batch: base_lr * math.sqrt(batch),  # SimCLR, small batches.
    'none': lambda base_lr, batch: base_lr,
}


def peak_learning_rate(optim_config, batch_size: int) -> float:
  """base_lr scaled by batch size the way each method's paper does it."""
  return LR_SCALINGS[optim_config.lr_scaling](optim_config.base_lr, batch_size)


def learning_rate_schedule(optim_config, batch_size: int, total_steps: int, *,
                           scale: float = 1.0, decay: bool = True):
  """Linear warmup from 0 to `scale` x the peak, then cosine decay to 0 at `total_steps`
  (or held at the peak when not `decay`)."""
  peak = scale * peak_learning_rate(optim_config, batch_size)
  warmup = min(optim_config.warmup_steps, max(total_steps - 1, 0))
  if not decay:  # optax's constant schedule stays at 0 throughout when warmup is 0 steps.
    return optax.warmup_constant_schedule(0.0, peak, max(warmup, 1))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=0.0)


def decay_mask(params):
  """Weight decay (and LARS trust ratios) only on kernels; never on biases or BN scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def _sgd(optim_config, schedule):
  return optax.chain(
      optax.add_decayed_weights(optim_config.weight_decay, mask=decay_mask),
      optax.sgd(schedule, momentum=optim_config.momentum))


def _lars(optim_config, schedule):
  return optax.lars(schedule, weight_decay=optim_config.weight_decay,
                    weight_decay_mask=decay_mask, trust_ratio_mask=decay_mask,
                    trust_coefficient=optim_config.trust_coefficient,
                    momentum=optim_config.momentum)


def _adamw(optim_config, schedule):
  return optax.adamw(schedule, weight_decay=optim_config.weight_decay, mask=decay_mask)


# config.optim.name -> the optax transformation; the valid names are these keys.
OPTIMIZERS = {'sgd': _sgd, 'lars': _lars, 'adamw': _adamw}


def _base_optimizer(optim_config, schedule):
  tx = OPTIMIZERS[optim_config.name](optim_config, schedule)
  # Only when scaled: the plain chain keeps the checkpoints of runs without it restorable.
  if optim_config.bias_lr_scale != 1.0:
    not_decayed = lambda params: jax.tree.map(lambda decayed: not decayed, decay_mask(params))
    tx = optax.chain(tx, optax.masked(optax.scale(optim_config.bias_lr_scale), not_decayed))
  return tx


def predictor_schedule(optim_config, batch_size: int, total_steps: int):
  """SimSiam's predictor lr: `predictor_lr_scale` x the peak, held after warmup when
  `predictor_constant_lr` (the paper's 'fixed lr for the predictor'), else decayed."""
  return learning_rate_schedule(optim_config, batch_size, total_steps,
                                scale=optim_config.predictor_lr_scale,
                                decay=not optim_config.predictor_constant_lr)


def make_optimizer(optim_config, batch_size: int, total_steps: int):
  """(optax transformation, encoder/projector lr schedule) for `optim_config.name`; a
  'predictor' subtree gets its own schedule (predictor_schedule) when that differs."""
  schedule = learning_rate_schedule(optim_config, batch_size, total_steps)
  tx = _base_optimizer(optim_config, schedule)
  if optim_config.predictor_lr_scale == 1.0 and not optim_config.predictor_constant_lr:
    return tx, schedule
  predictor_tx = _base_optimizer(
      optim_config, predictor_schedule(optim_config, batch_size, total_steps))

  def labels(params):  # A prefix tree: one label per top-level module.
    return {name: 'predictor' if name == 'predictor' else 'rest' for name in params}

  return optax.multi_transform({'rest': tx, 'predictor': predictor_tx}, labels), schedule


def check_config(optim_config):
  """config.optim: one ConfigError naming the field."""
  require(optim_config.name in OPTIMIZERS, f'config.optim.name: unknown {optim_config.name!r}; '
          f'expected one of {", ".join(OPTIMIZERS)}')
  require(optim_config.lr_scaling in LR_SCALINGS, f'config.optim.lr_scaling: unknown '
          f'{optim_config.lr_scaling!r}; expected one of {", ".join(LR_SCALINGS)}')
  for name in ('base_lr', 'trust_coefficient', 'predictor_lr_scale', 'bias_lr_scale'):
    require(optim_config[name] > 0,
            f'config.optim.{name} must be > 0, got {optim_config[name]}')
  require(optim_config.weight_decay >= 0,
          f'config.optim.weight_decay must be >= 0, got {optim_config.weight_decay}')
  require(optim_config.warmup_steps >= 0,
          f'config.optim.warmup_steps must be >= 0, got {optim_config.warmup_steps}')
