"""Which crops to show a person next for one label: the weak-labelling loop's ranking.

Until there are enough answers both ways, the proposals are the unanswered crops nearest
to any confirmed positive (or to the seed query a session started from). From then on a
linear probe (logistic regression on the frozen embeddings: accepted crops against rejected
ones and a random sample of the corpus, which for a rare thing is almost all negative) ranks
the candidates: the neighbours of the positives plus the corpus's top hits for the probe's
own direction, so it can find positives unlike any seen so far. Nothing answered for the
label, rejected included, is ever proposed again.
"""
import numpy as np
from scipy import optimize

from vidjax.errors import ConfigError

PROBE_MIN_ACCEPTED = 5
PROBE_MIN_REJECTED = 5
BACKGROUND_SAMPLE = 512  # Random corpus vectors taken as negatives by the probe.
NEIGHBOURS_PER_POSITIVE = 64  # Unanswered neighbours taken as candidates per positive.
MAX_POSITIVES_SEARCHED = 64  # The most recent positives whose neighbourhoods are searched.
REFIT_GROWTH = 0.05  # With a probe_cache: refit once the answers grew by 5%.


def fit_probe(positives: np.ndarray, negatives: np.ndarray, l2: float = 1e-2) -> tuple:
  """(w [D], b): L2-regularised logistic regression, the two classes weighted equally,
  fitted by L-BFGS (cheap whatever D: raw-pixel vectors have thousands of dimensions)."""
  x = np.concatenate([positives, negatives]).astype(np.float64)
  y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
  weight = np.where(y == 1, 0.5 / len(positives), 0.5 / len(negatives))

  def loss_and_gradient(theta):
    logits = x @ theta[:-1] + theta[-1]
    loss = np.sum(weight * (np.logaddexp(0, logits) - y * logits))
    residual = weight * (1 / (1 + np.exp(-np.clip(logits, -30, 30))) - y)
    gradient = np.append(x.T @ residual + l2 * theta[:-1], residual.sum())
    return loss + 0.5 * l2 * theta[:-1] @ theta[:-1], gradient

  theta = optimize.minimize(loss_and_gradient, np.zeros(x.shape[1] + 1), jac=True,
                            method='L-BFGS-B', options={'maxiter': 200}).x
  return theta[:-1].astype(np.float32), float(theta[-1])


def propose(index, states: dict, k: int, seeds=None, rng=None, kinds=None,
            probe_cache=None) -> tuple:
  """(hits, method): up to k unanswered hits (metadata dicts with 'score'), best first.

  index: a search.corpus.CorpusIndex; states: {vector id: latest answer} for the label;
  seeds: [n, D] unit vectors that stand for positives before any is accepted (a query
  image); method: 'nearest' (score: the best cosine to a positive) or 'probe' (score: the
  probe's probability). probe_cache: a dict the caller keeps per label; the probe is refitted
  only when the answers have grown by REFIT_GROWTH since it was fitted (with thousands of
  answers, ten more barely move it, and fitting is the loop's costliest part).
  """
  rng = rng or np.random.default_rng(0)
  accepted = [i for i, a in states.items() if a == 'accept']
  rejected = [i for i, a in states.items() if a == 'reject']
  positives = index.vectors_of(accepted)
  if seeds is not None and len(seeds):
    positives = np.concatenate([positives, np.asarray(seeds, np.float32)])
  if not len(positives):
    raise ConfigError('no accepted crop for this label yet: accept one (or search by an '
                      'image) to seed the proposals')
  answered = np.fromiter(states, np.int64)
  searched = positives[-MAX_POSITIVES_SEARCHED:]
  use_probe = len(accepted) >= PROBE_MIN_ACCEPTED and len(rejected) >= PROBE_MIN_REJECTED
  queries = searched
  if use_probe:
    cached = (probe_cache or {}).get('probe')
    if cached and len(states) <= cached[0] * (1 + REFIT_GROWTH):
      _, w, b = cached
    else:
      background = rng.choice(len(index), min(BACKGROUND_SAMPLE, len(index)), replace=False)
      background = np.setdiff1d(background, accepted)
      negatives = np.concatenate([index.vectors_of(rejected), index.vectors_of(background)])
      w, b = fit_probe(index.vectors_of(accepted), negatives)
      if probe_cache is not None:
        probe_cache['probe'] = (len(states), w, b)
    queries = np.concatenate([searched, (w / max(np.linalg.norm(w), 1e-12))[None]])
  # Each query's nearest `wanted` unanswered neighbours (searching past the answered ones).
  wanted = max(NEIGHBOURS_PER_POSITIVE, 2 * k)
  _, found = index.index.search(np.asarray(queries, np.float32),
                                min(len(index), wanted + len(answered)))
  keep = (found >= 0) & ~np.isin(found, answered)
  keep &= np.cumsum(keep, axis=1) <= wanted
  ids = np.unique(found[keep])
  method = 'probe' if use_probe else 'nearest'
  if not len(ids):
    return [], method
  vectors = index.vectors_of(ids)
  if use_probe:
    scores = 1 / (1 + np.exp(-np.clip(vectors @ w + b, -30, 30)))
  else:
    scores = (vectors @ searched.T).max(axis=1)
  order = np.argsort(-scores, kind='stable')
  hits = []
  for start in range(0, len(order), 4 * k):  # Rows only for what is shown (and kinds).
    chunk = order[start:start + 4 * k]
    for i, row in zip(chunk, index.rows(ids[chunk])):
      if row is not None and (not kinds or row['kind'] in kinds):
        hits.append(dict(row, score=float(scores[i])))
        if len(hits) == k:
          return hits, method
  return hits, method
