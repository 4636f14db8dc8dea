"""Self-supervised objectives as pure functions of the model outputs.

Every loss takes embeddings shaped [B, K, D]: B samples, each K views (K >= 2 frames of one
video), D dimensions. Under `jax.jit` over a device mesh the arrays are global, so
similarity matrices and batch statistics span all devices: negatives and Barlow Twins'
cross-correlation use the whole global batch.
"""
import jax
import jax.numpy as jnp

from vidjax.errors import require


def l2_normalize(x, axis=-1, eps=1e-12):
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps * eps))


def simsiam_loss(p, z):
  """Symmetric negative cosine similarity with stop-gradient on the targets (Chen & He 2021).

  Averages D(p_i, sg(z_j)) over all ordered pairs of distinct views i != j of a sample;
  for K = 2 this is SimSiam's 0.5 * D(p1, z2) + 0.5 * D(p2, z1).
  """
  num_views = p.shape[1]
  p = l2_normalize(p)
  z = l2_normalize(jax.lax.stop_gradient(z))
  cosine = jnp.einsum('bid,bjd->bij', p, z)
  off_diagonal = 1.0 - jnp.eye(num_views)
  return -jnp.mean(jnp.sum(cosine * off_diagonal, axis=(1, 2))) / (num_views * (num_views - 1))


def info_nce_loss(z, video_id, temperature):
  """Multi-positive N-pair / InfoNCE loss with a video-id positive mask.

  Every view is an anchor. Its positives are all other views with the same video id, in any
  sample of the batch; everything else is a negative. Averages -log softmax over the
  positives (SupCon's L_out form); with K = 2 and distinct videos it is SimCLR's NT-Xent.
  """
  batch, num_views, dim = z.shape
  z = l2_normalize(z).reshape(batch * num_views, dim)
  ids = jnp.repeat(video_id, num_views)
  is_self = jnp.eye(batch * num_views, dtype=bool)
  positive = (ids[:, None] == ids[None, :]) & ~is_self
  # A large finite negative rather than -inf keeps gradients free of NaNs.
  logits = jnp.where(is_self, -1e9, z @ z.T / temperature)
  log_prob = logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)
  per_anchor = -jnp.sum(jnp.where(positive, log_prob, 0.0), axis=1) / jnp.sum(positive, axis=1)
  return jnp.mean(per_anchor)


def barlow_twins_loss(z, redundancy_weight, eps=1e-5):
  """Barlow Twins (Zbontar et al. 2021): cross-correlation of two views -> identity.

  Each view's embedding is standardised over the global batch; the loss is summed over
  the diagonal (invariance) and weighted by `redundancy_weight` (lambda) off it. With
  K > 2 views it is averaged over all pairs of views.
  """
  batch, num_views, dim = z.shape
  z = (z - jnp.mean(z, axis=0)) * jax.lax.rsqrt(jnp.var(z, axis=0) + eps)
  total = 0.0
  num_pairs = 0
  for i in range(num_views):
    for j in range(i + 1, num_views):
      correlation = z[:, i].T @ z[:, j] / batch
      diagonal = jnp.diagonal(correlation)
      on_diagonal = jnp.sum((1.0 - diagonal)**2)
      off_diagonal = jnp.sum(correlation**2) - jnp.sum(diagonal**2)
      total += on_diagonal + redundancy_weight * off_diagonal
      num_pairs += 1
  return total / num_pairs


def _simsiam(outputs, video_id, loss_config):
  return simsiam_loss(outputs['p'], outputs['z'])


def _npair(outputs, video_id, loss_config):
  return info_nce_loss(outputs['z'], video_id, loss_config.temperature)


def _barlow(outputs, video_id, loss_config):
  return barlow_twins_loss(outputs['z'], loss_config.redundancy_weight)


# config.method -> its objective on the model outputs; the valid methods are these keys.
LOSSES = {'simsiam': _simsiam, 'npair': _npair, 'barlow': _barlow}
METHODS = tuple(LOSSES)


def method_loss(method: str, outputs, video_id, loss_config):
  """The configured objective on `SSLModel` outputs reshaped to [B, K, D]."""
  return LOSSES[method](outputs, video_id, loss_config)


def check_config(config):
  """config.method and config.loss: one ConfigError naming the field."""
  require(config.method in LOSSES,
          f'config.method: unknown {config.method!r}; expected one of {", ".join(METHODS)}')
  require(config.loss.temperature > 0,
          f'config.loss.temperature must be > 0, got {config.loss.temperature}')
  require(config.loss.redundancy_weight >= 0,
          f'config.loss.redundancy_weight must be >= 0, got {config.loss.redundancy_weight}')
  require(config.method != 'simsiam' or config.head.pred_hidden_dim > 0,
          'config.head.pred_hidden_dim must be > 0 for simsiam (it needs a predictor)')
