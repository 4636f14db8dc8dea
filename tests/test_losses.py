"""Each loss against a direct numpy computation on tiny inputs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vidjax import losses


def _normalize(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _cos(a, b):
  return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_simsiam_two_views_matches_paper_formula():
  rng = np.random.default_rng(0)
  p, z = rng.normal(size=(2, 5, 2, 8))
  expected = np.mean([-0.5 * _cos(p[b, 0], z[b, 1]) - 0.5 * _cos(p[b, 1], z[b, 0])
                      for b in range(5)])
  np.testing.assert_allclose(losses.simsiam_loss(p, z), expected, rtol=1e-5)


def test_simsiam_k_views_averages_ordered_pairs():
  rng = np.random.default_rng(1)
  p, z = rng.normal(size=(2, 3, 4, 6))
  expected = np.mean([np.mean([-_cos(p[b, i], z[b, j]) for i in range(4) for j in range(4)
                               if i != j]) for b in range(3)])
  np.testing.assert_allclose(losses.simsiam_loss(p, z), expected, rtol=1e-5)


def test_simsiam_stops_gradient_through_targets():
  rng = np.random.default_rng(2)
  p, z = (jnp.asarray(a) for a in rng.normal(size=(2, 3, 2, 4)))
  grad_z = jax.grad(lambda z: losses.simsiam_loss(p, z))(z)
  np.testing.assert_array_equal(grad_z, 0.0)


def test_rdm_target_is_each_views_batch_with_powered_singular_values():
  rng = np.random.default_rng(3)
  p, z = rng.normal(size=(2, 6, 2, 4))  # B=6 > D=4 and, below, B=3 < D=4.
  for sigma, batch in ((-1.0, 6), (-0.5, 3), (1.0, 6)):
    targets = []
    for k in range(2):
      u, s, vh = np.linalg.svd(z[:batch, k], full_matrices=False)
      targets.append(u @ np.diag(s ** (1 + sigma)) @ vh)
    expected = np.mean([-0.5 * _cos(p[b, 0], targets[1][b]) - 0.5 * _cos(p[b, 1], targets[0][b])
                        for b in range(batch)])
    np.testing.assert_allclose(losses.simsiam_loss(p[:batch], z[:batch], 'pairs', sigma),
                               expected, rtol=1e-4)
  whitened = losses.rank_filter(jnp.asarray(z), 0.0)
  for k in range(2):
    np.testing.assert_allclose(np.linalg.svd(whitened[:, k], compute_uv=False), 1.0, rtol=1e-5)
  # A centred batch (as BatchNorm leaves it) spans one direction fewer: that one is dropped.
  centred = z[:3] - z[:3].mean(axis=0)  # 3 rows in 4 dimensions, centred: rank 2.
  np.testing.assert_allclose(np.linalg.svd(losses.rank_filter(jnp.asarray(centred), 0.0)[:, 0],
                                           compute_uv=False), [1, 1, 0], atol=1e-5)
  grad_z = jax.grad(lambda z: losses.simsiam_loss(p, z, 'pairs', -1.0))(jnp.asarray(z))
  np.testing.assert_array_equal(grad_z, 0.0)


def _info_nce_numpy(z, video_id, temperature, negatives=None, shift=0.0):
  """shift: added to every negative's cosine and taken from every positive's (IFM)."""
  batch, views, dim = z.shape
  flat = _normalize(z.reshape(batch * views, dim))
  extra = [] if negatives is None else list(_normalize(negatives.reshape(-1, dim)))
  ids = np.repeat(video_id, views)
  total = []
  for i in range(len(flat)):
    others = [j for j in range(len(flat)) if j != i]
    logits = np.array([(flat[i] @ flat[j] + (-shift if ids[j] == ids[i] else shift))
                       / temperature for j in others]
                      + [(flat[i] @ n + shift) / temperature for n in extra])
    log_denominator = np.log(np.sum(np.exp(logits)))
    positives = [n for n, j in enumerate(others) if ids[j] == ids[i]]
    total.append(-np.mean([logits[n] - log_denominator for n in positives]))
  return np.mean(total)


@pytest.mark.parametrize('video_id, views', [
    ([0, 1, 2, 3], 2),  # Distinct videos: SimCLR's NT-Xent.
    ([5, 5, 7, 8], 2),  # Two samples of one video: all four of its views are positives.
    ([1, 1, 1, 2], 3),  # K = 3 views and a repeated video.
])
def test_info_nce_matches_numpy_with_video_mask(video_id, views):
  rng = np.random.default_rng(3)
  z = rng.normal(size=(len(video_id), views, 6))
  video_id = np.array(video_id)
  np.testing.assert_allclose(losses.info_nce_loss(z, video_id, 0.2),
                             _info_nce_numpy(z, video_id, 0.2), rtol=1e-5)


def test_info_nce_same_video_is_never_a_negative():
  # Two samples of one video: moving one closer to the other must not raise the loss
  # (it would if they were treated as negatives).
  rng = np.random.default_rng(4)
  z = rng.normal(size=(4, 2, 6))
  video_id = np.array([0, 0, 1, 2])
  closer = z.copy()
  closer[1] = 0.5 * z[1] + 0.5 * z[0]
  assert losses.info_nce_loss(closer, video_id, 0.1) < losses.info_nce_loss(z, video_id, 0.1)


def test_info_nce_feature_modification_matches_numpy():
  rng = np.random.default_rng(4)
  z = rng.normal(size=(4, 2, 6))
  video_id = np.array([0, 0, 2, 3])
  negatives = rng.normal(size=(4, 2, 6))
  expected = (_info_nce_numpy(z, video_id, 0.2, negatives)
              + 0.5 * _info_nce_numpy(z, video_id, 0.2, negatives, shift=0.1))
  np.testing.assert_allclose(losses.info_nce_loss(z, video_id, 0.2, negatives, 0.1, 0.5),
                             expected, rtol=1e-5)


def _standardise(x, eps=1e-5):
  return (x - x.mean(0)) / np.sqrt(x.var(0) + eps)


def _barlow_numpy(z1, z2, lam, eps=1e-5):
  n = len(z1)
  a, b = _standardise(z1, eps), _standardise(z2, eps)
  c = a.T @ b / n
  on = np.sum((1 - np.diag(c))**2)
  off = np.sum(c**2) - np.sum(np.diag(c)**2)
  return on + lam * off


def test_barlow_twins_matches_numpy():
  rng = np.random.default_rng(5)
  z = rng.normal(size=(16, 2, 5))
  np.testing.assert_allclose(losses.barlow_twins_loss(z, 0.01),
                             _barlow_numpy(z[:, 0], z[:, 1], 0.01), rtol=1e-4)


def test_barlow_twins_k_views_averages_pairs():
  rng = np.random.default_rng(6)
  z = rng.normal(size=(12, 3, 4))
  expected = np.mean([_barlow_numpy(z[:, i], z[:, j], 0.05) for i, j in [(0, 1), (0, 2), (1, 2)]])
  np.testing.assert_allclose(losses.barlow_twins_loss(z, 0.05), expected, rtol=1e-4)


def test_barlow_twins_is_zero_for_identical_decorrelated_views():
  rng = np.random.default_rng(7)
  q, _ = np.linalg.qr(rng.normal(size=(64, 4)))  # Orthonormal, zero-mean-ish columns.
  q = q - q.mean(0)
  z = np.stack([q, q], axis=1)
  assert float(losses.barlow_twins_loss(z, 0.005)) < 0.05


def test_mixed_barlow_matches_the_published_formula():
  # wgcban/mix-bt main.py: cc_m_v = out_m^T out_v / B against alpha out_1^T out_v / B +
  # (1 - alpha) out_2[perm]^T out_v / B, for v = 1, 2; squared error summed, times lambda.
  rng = np.random.default_rng(8)
  z, z_mixed = rng.normal(size=(16, 2, 5)), rng.normal(size=(16, 5))
  alpha, permutation = 0.3, rng.permutation(16)
  a, b, m = _standardise(z[:, 0]), _standardise(z[:, 1]), _standardise(z_mixed)
  expected = sum(np.sum((m.T @ v / 16 - alpha * a.T @ v / 16
                         - (1 - alpha) * b[permutation].T @ v / 16)**2) for v in (a, b))
  np.testing.assert_allclose(
      losses.mixed_barlow_loss(z, z_mixed, alpha, jnp.asarray(permutation), 0.01),
      0.01 * expected, rtol=1e-4)


def test_mixed_barlow_is_zero_when_the_mix_embeds_as_the_mix():
  # Identical views, each sample mixed with itself: the mix is the view, and so is its
  # embedding under any encoder; a mismatched mixed embedding is penalised.
  rng = np.random.default_rng(9)
  view = rng.normal(size=(64, 6))
  z = np.stack([view, view], axis=1)
  identity = jnp.arange(64)
  assert float(losses.mixed_barlow_loss(z, view, 0.6, identity, 1.0)) < 1e-6
  assert float(losses.mixed_barlow_loss(z, rng.normal(size=(64, 6)), 0.6, identity, 1.0)) > 0.1


def test_mixed_simsiam_matches_un_mix_formula():
  # szq0214/Un-Mix (BYOL): lam * D(p_mix, z2) + (1 - lam) * D(p_mix, z2[flipped]); here the
  # mix holds view 1 of i and view 2 of permutation[i], whose other views are z2[i] and
  # z1[permutation[i]]. With rdm_sigma the targets are whitened per view first.
  rng = np.random.default_rng(10)
  z, z_mixed = rng.normal(size=(12, 2, 16)), rng.normal(size=(12, 16))
  alpha, permutation = 0.35, rng.permutation(12)
  for rdm_sigma in (0.0, -1.0):
    targets = z.copy()
    if rdm_sigma:
      for k in range(2):
        u, _, vh = np.linalg.svd(z[:, k], full_matrices=False)
        targets[:, k] = u @ vh
    expected = -np.mean([alpha * _cos(z_mixed[i], targets[i, 1]) + (1 - alpha)
                         * _cos(z_mixed[i], targets[permutation[i], 0]) for i in range(12)])
    np.testing.assert_allclose(
        losses.mixed_simsiam_loss(z, z_mixed, alpha, jnp.asarray(permutation), rdm_sigma),
        expected, rtol=1e-4)


def test_mixed_simsiam_sends_no_gradient_to_the_targets():
  rng = np.random.default_rng(11)
  z, z_mixed = jnp.asarray(rng.normal(size=(8, 2, 6))), jnp.asarray(rng.normal(size=(8, 6)))
  grad = jax.grad(lambda z: losses.mixed_simsiam_loss(z, z_mixed, 0.5, jnp.arange(8), -1.0))(z)
  assert float(jnp.max(jnp.abs(grad))) == 0.0


def test_info_nce_background_negatives_match_numpy_and_repel():
  rng = np.random.default_rng(5)
  z = rng.normal(size=(4, 2, 6))
  video_id = np.array([0, 1, 2, 3])
  negatives = rng.normal(size=(4, 3, 6))
  np.testing.assert_allclose(losses.info_nce_loss(z, video_id, 0.2, negatives),
                             _info_nce_numpy(z, video_id, 0.2, negatives), rtol=1e-5)
  # A background crop like its sample's views raises the loss: matching it is penalised.
  alike = negatives.copy()
  alike[:, 0] = z[:, 0]
  assert (losses.info_nce_loss(z, video_id, 0.2, alike)
          > losses.info_nce_loss(z, video_id, 0.2, negatives))


def test_fastsiam_target_is_the_mean_of_the_other_views():
  rng = np.random.default_rng(6)
  p, z = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))
  expected = -np.mean([[_cos(p[b, i], np.mean(np.delete(z[b], i, axis=0), axis=0))
                        for i in range(4)] for b in range(3)])
  np.testing.assert_allclose(losses.simsiam_loss(p, z, 'mean'), expected, rtol=1e-5)
  # Two views: FastSiam and SimSiam are one loss.
  np.testing.assert_allclose(losses.simsiam_loss(p[:, :2], z[:, :2], 'mean'),
                             losses.simsiam_loss(p[:, :2], z[:, :2], 'pairs'), rtol=1e-6)


def test_hog_prediction_loss_is_the_mean_cosine_distance():
  rng = np.random.default_rng(8)
  prediction, target = rng.normal(size=(6, 36)), rng.normal(size=(6, 36))
  expected = 1 - np.mean([_cos(a, b) for a, b in zip(prediction, target)])
  np.testing.assert_allclose(losses.hog_prediction_loss(prediction, target), expected,
                             rtol=1e-5)
  # Blind to the scale of either side: only the direction of the descriptor matters.
  np.testing.assert_allclose(losses.hog_prediction_loss(3 * prediction, target / 7),
                             expected, rtol=1e-5)


def test_similarity_distillation_matches_numpy_and_teaches_only_the_student():
  rng = np.random.default_rng(9)
  student, teacher = rng.normal(size=(7, 5)), rng.normal(size=(7, 12))  # Dimensions differ.

  def softmax_rows(x, temperature):
    cosine = _normalize(x) @ _normalize(x).T / temperature
    rows = []
    for i in range(len(x)):
      others = np.delete(cosine[i], i)
      p = np.exp(others - others.max())
      rows.append(np.insert(p / p.sum(), i, 0.0))
    return np.array(rows)

  target, predicted = softmax_rows(teacher, 0.05), softmax_rows(student, 0.2)
  off_diagonal = ~np.eye(7, dtype=bool)
  expected = -np.mean(np.sum(target * np.log(np.where(off_diagonal, predicted, 1)), axis=1))
  np.testing.assert_allclose(
      losses.similarity_distillation_loss(student, teacher, 0.2, 0.05), expected, rtol=1e-5)
  # Lowest when the student ranks as the teacher does; the teacher gets no gradient.
  same = losses.similarity_distillation_loss(teacher, teacher, 0.05, 0.05)
  assert same < losses.similarity_distillation_loss(student, teacher, 0.05, 0.05)
  grad_teacher = jax.grad(lambda t: losses.similarity_distillation_loss(
      jnp.asarray(student), t, 0.2, 0.05))(jnp.asarray(teacher))
  np.testing.assert_array_equal(grad_teacher, 0.0)


def _triplet_numpy(z, video_id, margin, negatives):
  batch, views, dim = z.shape
  z, negatives = _normalize(z), _normalize(negatives)
  distance = lambda a, b: float(np.sum((a - b)**2))
  losses_ = []
  for k in range(1, views):
    for b in range(batch):
      anchor, positive = z[b, 0], z[b, k]
      candidates = [z[o, v] for o in range(batch) for v in range(views)
                    if video_id[o] != video_id[b]] + list(negatives[b])
      d_ap = distance(anchor, positive)
      d_an = np.array([distance(anchor, c) for c in candidates])
      farther = d_an[d_an > d_ap]
      chosen = farther.min() if len(farther) else d_an.max()
      losses_.append(max(d_ap - chosen + margin, 0.0))
  return np.mean(losses_)


def test_triplet_semi_hard_matches_numpy():
  rng = np.random.default_rng(7)
  z = rng.normal(size=(5, 3, 6))
  video_id = np.array([0, 1, 1, 2, 3])  # Samples 1 and 2 share a video: never negatives.
  negatives = rng.normal(size=(5, 2, 6))
  for margin in (0.2, 1.0):
    np.testing.assert_allclose(losses.triplet_loss(z, video_id, margin, negatives),
                               _triplet_numpy(z, video_id, margin, negatives), rtol=1e-5)
