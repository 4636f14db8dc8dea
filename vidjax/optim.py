"""Optimiser and learning-rate schedule from `config.optim` (all optax)."""
import math

import jax
import optax

OPTIMIZERS = ('sgd', 'lars', 'adamw')
LR_SCALINGS = ('linear', 'sqrt', 'none')
# The reference batch size of the linear scaling rule lr = base_lr * batch / 256.
_REFERENCE_BATCH = 256


def peak_learning_rate(optim_config, batch_size: int) -> float:
  """base_lr scaled by batch size the way each method's paper does it."""
  scaling = optim_config.lr_scaling
  if scaling == 'linear':  # SimSiam, Barlow Twins, SimCLR with large batches.
    return optim_config.base_lr * batch_size / _REFERENCE_BATCH
  if scaling == 'sqrt':  # SimCLR's choice for small batches: 0.075 * sqrt(B).
    return optim_config.base_lr * math.sqrt(batch_size)
  if scaling == 'none':
    return optim_config.base_lr
  raise ValueError(f"config.optim.lr_scaling: expected linear, sqrt or none, got {scaling!r}")


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


def _base_optimizer(optim_config, schedule):
  name = optim_config.name
  if name == 'sgd':
    tx = optax.chain(
        optax.add_decayed_weights(optim_config.weight_decay, mask=decay_mask),
        optax.sgd(schedule, momentum=optim_config.momentum))
  elif name == 'lars':
    tx = optax.lars(schedule, weight_decay=optim_config.weight_decay,
                    weight_decay_mask=decay_mask, trust_ratio_mask=decay_mask,
                    trust_coefficient=optim_config.trust_coefficient,
                    momentum=optim_config.momentum)
  elif name == 'adamw':
    tx = optax.adamw(schedule, weight_decay=optim_config.weight_decay, mask=decay_mask)
  else:
    raise ValueError(f"config.optim.name: expected sgd, lars or adamw, got {name!r}")
  # .get: evaluate rebuilds the train state from config.json of runs older than this option.
  bias_lr_scale = optim_config.get('bias_lr_scale', 1.0)
  if bias_lr_scale != 1.0:  # Only then: the plain chain keeps older checkpoints restorable.
    not_decayed = lambda params: jax.tree.map(lambda decayed: not decayed, decay_mask(params))
    tx = optax.chain(tx, optax.masked(optax.scale(bias_lr_scale), not_decayed))
  return tx


def predictor_schedule(optim_config, batch_size: int, total_steps: int):
  """SimSiam's predictor lr: `predictor_lr_scale` x the peak, held after warmup when
  `predictor_constant_lr` (the paper's 'fixed lr for the predictor'), else decayed."""
  # .get: evaluate rebuilds the train state from config.json of runs older than these options.
  return learning_rate_schedule(optim_config, batch_size, total_steps,
                                scale=optim_config.get('predictor_lr_scale', 1.0),
                                decay=not optim_config.get('predictor_constant_lr', False))


def make_optimizer(optim_config, batch_size: int, total_steps: int):
  """(optax transformation, encoder/projector lr schedule) for `optim_config.name` in
  {sgd, lars, adamw}; a 'predictor' subtree gets its own schedule (predictor_schedule)."""
  schedule = learning_rate_schedule(optim_config, batch_size, total_steps)
  tx = _base_optimizer(optim_config, schedule)
  if (optim_config.get('predictor_lr_scale', 1.0) == 1.0
      and not optim_config.get('predictor_constant_lr', False)):
    return tx, schedule
  predictor_tx = _base_optimizer(
      optim_config, predictor_schedule(optim_config, batch_size, total_steps))

  def labels(params):  # A prefix tree: one label per top-level module.
    return {name: 'predictor' if name == 'predictor' else 'rest' for name in params}

  return optax.multi_transform({'rest': tx, 'predictor': predictor_tx}, labels), schedule
