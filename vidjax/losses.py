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


def simsiam_loss(p, z, target: str = 'pairs', rdm_sigma: float = 0.0):
  """Symmetric negative cosine similarity with stop-gradient on the targets (Chen & He 2021).

  target 'pairs': averages D(p_i, sg(z_j)) over all ordered pairs of distinct views i != j
  of a sample; for K = 2 this is SimSiam's 0.5 * D(p1, z2) + 0.5 * D(p2, z1).
  target 'mean': FastSiam (Pototzky et al. 2022), D(p_i, sg(mean of z_j over j != i))
  averaged over i; a steadier target from K > 2 views, which lets SimSiam learn with small
  batches. Both are the same for K = 2.
  rdm_sigma != 0: the targets pass through a fixed target predictor first (Zhuo et al.
  2023, "rank differential mechanism"): each view's [B, D] batch of projections U S V^T
  becomes U S^(1 + rdm_sigma) V^T; -1 whitens it, so that every direction the batch spans
  is an equally strong target and the features cannot collapse onto a few.
  """
  num_views = p.shape[1]
  p = l2_normalize(p)
  z = simsiam_targets(z, rdm_sigma)
  if target == 'mean':
    others = (jnp.sum(z, axis=1, keepdims=True) - z) / (num_views - 1)
    return -jnp.mean(jnp.sum(p * l2_normalize(others), axis=-1))
  z = l2_normalize(z)
  cosine = jnp.einsum('bid,bjd->bij', p, z)
  off_diagonal = 1.0 - jnp.eye(num_views)
  return -jnp.mean(jnp.sum(cosine * off_diagonal, axis=(1, 2))) / (num_views * (num_views - 1))


SIMSIAM_TARGETS = ('pairs', 'mean')


def simsiam_targets(z, rdm_sigma: float):
  """SimSiam's targets: the projections [B, K, D] under stop-gradient, rank-filtered when
  rdm_sigma != 0 (see simsiam_loss)."""
  z = jax.lax.stop_gradient(z)
  return rank_filter(z, 1.0 + rdm_sigma) if rdm_sigma else z


def rank_filter(z, power: float):
  """[B, K, D] -> the same with each view's [B, D] batch U S V^T replaced by U S^power V^T
  (singular values over the whole global batch).

  Directions the batch does not span (singular values below 1e-4 of the largest; a
  BatchNorm-centred batch always has one) are dropped: their singular vectors are float
  noise, which power <= 0 would otherwise turn into a target.
  """
  u, s, vh = jnp.linalg.svd(jnp.swapaxes(z, 0, 1).astype(jnp.float32), full_matrices=False)
  spanned = s > 1e-4 * s[:, :1]
  scale = jnp.where(spanned, s ** power, 0.0)  # z is stop-gradient'ed: no inf gradient.
  filtered = jnp.einsum('kbr,kr,krd->kbd', u, scale, vh)
  return jnp.swapaxes(filtered, 0, 1).astype(z.dtype)


def info_nce_loss(z, video_id, temperature, negatives=None, ifm_epsilon=0.0, ifm_weight=0.0):
  """Multi-positive N-pair / InfoNCE loss with a video-id positive mask.

  Every view is an anchor. Its positives are all other views with the same video id, in any
  sample of the batch; everything else is a negative. Averages -log softmax over the
  positives (SupCon's L_out form); with K = 2 and distinct videos it is SimCLR's NT-Xent.
  negatives [B, N, D], when given, are further negatives of every anchor and never anchors
  themselves (crops of the samples' own backgrounds: matching a background is then wrong).

  ifm_weight > 0 adds, with that weight, the same loss after implicit feature modification
  (Robinson et al. 2021): every positive's cosine lowered and every negative's raised by
  ifm_epsilon, the worst case of moving each by epsilon in embedding space, so that the
  features that already tell instances apart no longer suffice and others are learned too.
  """
  batch, num_views, dim = z.shape
  z = l2_normalize(z).reshape(batch * num_views, dim)
  ids = jnp.repeat(video_id, num_views)
  is_self = jnp.eye(batch * num_views, dtype=bool)
  positive = (ids[:, None] == ids[None, :]) & ~is_self
  similarity = z @ z.T
  if negatives is not None:
    extra = l2_normalize(negatives).reshape(-1, dim)
    similarity = jnp.concatenate([similarity, z @ extra.T], axis=1)
    positive = jnp.concatenate([positive, jnp.zeros((len(z), len(extra)), bool)], axis=1)
    is_self = jnp.concatenate([is_self, jnp.zeros((len(z), len(extra)), bool)], axis=1)

  def loss(similarity):
    # A large finite negative rather than -inf keeps gradients free of NaNs.
    logits = jnp.where(is_self, -1e9, similarity / temperature)
    log_prob = logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)
    per_anchor = -jnp.sum(jnp.where(positive, log_prob, 0.0), axis=1) / jnp.sum(positive, 1)
    return jnp.mean(per_anchor)

  if not ifm_weight:
    return loss(similarity)
  return loss(similarity) + ifm_weight * loss(
      similarity + jnp.where(positive, -ifm_epsilon, ifm_epsilon))


def triplet_loss(z, video_id, margin, negatives=None):
  """Triplet margin loss with semi-hard negatives over the global batch (TCN, Sermanet et
  al. 2018; FaceNet's mining).

  Anchor: view 0 of each sample; positives: its other views. Negatives: every view of every
  other video in the batch, and the sample's own `negatives` [B, N, D] (crops of its frame's
  background, frames of its video far in time). For each (anchor, positive) the negative is
  the nearest one farther than the positive (semi-hard); when there is none, the farthest.
  Squared distances of L2-normalised embeddings.
  """
  batch, num_views, dim = z.shape
  z = l2_normalize(z)
  anchors = z[:, 0]
  candidates = z.reshape(batch * num_views, dim)
  is_negative = jnp.repeat(video_id, num_views)[None, :] != video_id[:, None]  # [B, B*K]
  if negatives is not None:
    own = l2_normalize(negatives).reshape(-1, dim)
    candidates = jnp.concatenate([candidates, own])
    mine = jnp.repeat(jnp.arange(batch), negatives.shape[1])[None, :] == jnp.arange(batch)[:, None]
    is_negative = jnp.concatenate([is_negative, mine], axis=1)
  negative_distance = 2 - 2 * anchors @ candidates.T  # [B, C]
  total = 0.0
  for k in range(1, num_views):
    positive_distance = (2 - 2 * jnp.sum(anchors * z[:, k], axis=-1))[:, None]  # [B, 1]
    farther = is_negative & (negative_distance > positive_distance)
    semi_hard = jnp.min(jnp.where(farther, negative_distance, jnp.inf), axis=1)
    farthest = jnp.max(jnp.where(is_negative, negative_distance, -jnp.inf), axis=1)
    chosen = jnp.where(jnp.any(farther, axis=1), semi_hard, farthest)
    total += jnp.mean(jnp.maximum(positive_distance[:, 0] - chosen + margin, 0.0))
  return total / (num_views - 1)


def _standardise(z, eps):
  """Each dimension to zero mean and unit variance over the (global) batch, axis 0."""
  return (z - jnp.mean(z, axis=0)) * jax.lax.rsqrt(jnp.var(z, axis=0) + eps)


def barlow_twins_loss(z, redundancy_weight, eps=1e-5):
  """Barlow Twins (Zbontar et al. 2021): cross-correlation of two views -> identity.

  Each view's embedding is standardised over the global batch; the loss is summed over
  the diagonal (invariance) and weighted by `redundancy_weight` (lambda) off it. With
  K > 2 views it is averaged over all pairs of views.
  """
  batch, num_views, dim = z.shape
  z = _standardise(z, eps)
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


def mixed_barlow_loss(z, z_mixed, alpha, permutation, redundancy_weight, eps=1e-5):
  """Mixed Barlow Twins' regulariser (Bandara, De Melo, Patel 2023; their code wgcban/mix-bt).

  z: [B, 2, D] the two views' embeddings; z_mixed: [B, D] the embeddings of the images
  alpha * view 1 + (1 - alpha) * view 2[permutation]. The mixed batch's cross-correlation
  with each view should be the same mix of the views' own cross-correlations, which makes
  samples interact as negatives do in contrastive losses: Barlow Twins alone stops
  improving after an early phase of training (their finding, and this project's monitor).
  Weighted by `redundancy_weight` (lambda) as in their code; not averaged over the two views.
  """
  batch = z.shape[0]
  z1, z2, z_mixed = (_standardise(x, eps) for x in (z[:, 0], z[:, 1], z_mixed))
  mixed_target = alpha * z1 + (1.0 - alpha) * z2[permutation]
  total = 0.0
  for view in (z1, z2):
    total += jnp.sum(((z_mixed - mixed_target).T @ view / batch)**2)
  return redundancy_weight * total


def mixed_simsiam_loss(z, z_mixed, alpha, permutation, rdm_sigma: float = 0.0):
  """Un-Mix's regulariser (Shen et al. 2022, their code szq0214/Un-Mix) for SimSiam.

  z: [B, 2, D] the two views' projections; z_mixed: [B, D] the predictions (or projections)
  of the images alpha * view 1 + (1 - alpha) * view 2[permutation]. The mix should predict,
  in the same proportions, the target of each image's *other* view: alpha * D(mix, sg(z2))
  + (1 - alpha) * D(mix, sg(z1[permutation])), the targets as SimSiam's (rdm_sigma).
  Samples then interact beyond the batch statistics, as negatives do in contrastive losses.
  """
  targets = l2_normalize(simsiam_targets(z, rdm_sigma))
  z_mixed = l2_normalize(z_mixed)
  own = jnp.mean(jnp.sum(z_mixed * targets[:, 1], axis=-1))
  other = jnp.mean(jnp.sum(z_mixed * targets[permutation, 0], axis=-1))
  return -(alpha * own + (1.0 - alpha) * other)


def hog_prediction_loss(prediction, target):
  """1 - mean cosine of predicted [N, D] and actual [N, D] HOG descriptors (MaskFeat's
  target, Wei et al. 2022, here without masking and with a cosine rather than a squared
  error: the descriptor's scale says how much texture a view has, not what it is)."""
  return 1 - jnp.mean(jnp.sum(l2_normalize(prediction) * l2_normalize(target), axis=-1))


def similarity_distillation_loss(student, teacher, student_temperature: float,
                                 teacher_temperature: float):
  """Relational distillation: the student's [N, D] embeddings should rank the other rows as
  the teacher's [N, E] do (SEED, Fang et al. 2021; CompRess, Abbasi Koohpayegani et al.
  2020; here within the global batch instead of over a queue, so the two may differ in
  dimension). Per row, the softmax over its cosines to every other row, teacher's at
  `teacher_temperature` (sharp: its nearest neighbours) and student's at
  `student_temperature`; the loss is their cross-entropy H(teacher, student), averaged.
  """
  def log_softmax_of_cosines(x, temperature):
    x = l2_normalize(x)
    logits = (x @ x.T) / temperature
    # A large finite negative rather than -inf keeps gradients free of NaNs.
    logits = jnp.where(jnp.eye(len(x), dtype=bool), -1e9, logits)
    return jax.nn.log_softmax(logits, axis=1)

  target = jnp.exp(jax.lax.stop_gradient(log_softmax_of_cosines(teacher, teacher_temperature)))
  return -jnp.mean(jnp.sum(target * log_softmax_of_cosines(student, student_temperature),
                           axis=1))


def _simsiam(outputs, video_id, loss_config, negatives=None):
  # Without a learned predictor (rank-filtered targets only) the projection is the prediction.
  return simsiam_loss(outputs.get('p', outputs['z']), outputs['z'], loss_config.simsiam_target,
                      loss_config.rdm_sigma)


def _npair(outputs, video_id, loss_config, negatives=None):
  return info_nce_loss(outputs['z'], video_id, loss_config.temperature,
                       None if negatives is None else negatives['z'],
                       loss_config.ifm_epsilon, loss_config.ifm_weight)


def _barlow(outputs, video_id, loss_config, negatives=None):
  return barlow_twins_loss(outputs['z'], loss_config.redundancy_weight)


def _tcn(outputs, video_id, loss_config, negatives=None):
  return triplet_loss(outputs['z'], video_id, loss_config.margin,
                      None if negatives is None else negatives['z'])


# config.method -> its objective on the model outputs; the valid methods are these keys.
LOSSES = {'simsiam': _simsiam, 'npair': _npair, 'barlow': _barlow, 'tcn': _tcn}
METHODS = tuple(LOSSES)
# The objectives that use negatives (data.crop.negatives, data.pairs.far_negatives).
USES_NEGATIVES = ('npair', 'tcn')


def _mixed_barlow(outputs, mixed, alpha, permutation, loss_config):
  return mixed_barlow_loss(outputs['z'], mixed['z'], alpha, permutation,
                           loss_config.redundancy_weight)


def _mixed_simsiam(outputs, mixed, alpha, permutation, loss_config):
  # As SimSiam's own loss: the mix's prediction, or its projection without a predictor.
  return mixed_simsiam_loss(outputs['z'], mixed.get('p', mixed['z']), alpha, permutation,
                            loss_config.rdm_sigma)


# config.method -> its mix regulariser (config.loss.mix_weight): Mixed Barlow Twins', Un-Mix's.
MIXED_LOSSES = {'barlow': _mixed_barlow, 'simsiam': _mixed_simsiam}


def mixed_loss(method: str, outputs, mixed_outputs, alpha, permutation, loss_config):
  """The method's mix regulariser on the views' outputs [B, 2, D] and the mixed images'
  [B, D]."""
  return MIXED_LOSSES[method](outputs, mixed_outputs, alpha, permutation, loss_config)


def method_loss(method: str, outputs, video_id, loss_config, negatives=None):
  """The configured objective on `SSLModel` outputs reshaped to [B, K, D]; `negatives`: the
  outputs [B, N, D] of background crops, for the objectives that use them."""
  return LOSSES[method](outputs, video_id, loss_config, negatives)


def check_config(config):
  """config.method and config.loss: one ConfigError naming the field."""
  require(config.method in LOSSES,
          f'config.method: unknown {config.method!r}; expected one of {", ".join(METHODS)}')
  require(config.loss.temperature > 0,
          f'config.loss.temperature must be > 0, got {config.loss.temperature}')
  for name in ('ifm_epsilon', 'ifm_weight'):
    require(config.loss[name] >= 0, f'config.loss.{name} must be >= 0, got {config.loss[name]}')
  require(config.loss.simsiam_target in SIMSIAM_TARGETS,
          f'config.loss.simsiam_target: unknown {config.loss.simsiam_target!r}; expected one '
          f'of {", ".join(SIMSIAM_TARGETS)}')
  require(config.loss.redundancy_weight >= 0,
          f'config.loss.redundancy_weight must be >= 0, got {config.loss.redundancy_weight}')
  for name, value in (('crop.negatives', config.data.crop.negatives),
                      ('pairs.far_negatives', config.data.pairs.far_negatives)):
    require(not value or config.method in USES_NEGATIVES,
            f'config.data.{name}={value}: {config.method} has no negatives; only '
            f'{", ".join(USES_NEGATIVES)} use them')
  for name in ('hog_weight', 'distill_weight'):
    require(config.loss[name] >= 0, f'config.loss.{name} must be >= 0, got {config.loss[name]}')
  for name in ('distill_temperature', 'distill_teacher_temperature'):
    require(config.loss[name] > 0, f'config.loss.{name} must be > 0, got {config.loss[name]}')
  require(config.loss.mix_weight >= 0,
          f'config.loss.mix_weight must be >= 0, got {config.loss.mix_weight}')
  require(not config.loss.mix_weight or (config.method in MIXED_LOSSES
                                         and config.data.pairs.num_positives == 2),
          f'config.loss.mix_weight={config.loss.mix_weight}: the mix regulariser needs '
          f"config.method in {', '.join(MIXED_LOSSES)} and data.pairs.num_positives=2")
  require(config.loss.margin > 0, f'config.loss.margin must be > 0, got {config.loss.margin}')
  require(config.loss.rdm_sigma >= -1,
          f'config.loss.rdm_sigma must be >= -1 (below, the weakest directions of a batch '
          f'would outweigh the strongest), got {config.loss.rdm_sigma}')
  require(config.method != 'simsiam' or config.head.pred_hidden_dim > 0 or config.loss.rdm_sigma,
          'config.head.pred_hidden_dim must be > 0 for simsiam (it needs a predictor, unless '
          'config.loss.rdm_sigma sets a fixed one)')
