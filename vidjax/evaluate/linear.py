"""Linear probe: multinomial logistic regression (optax) on frozen, standardised features.

The L2 weight is chosen on a stratified split of the support set (train on 80%, score on
20%), never on the query set; the probe is then refitted on the whole support set and
scored once on the query set. With samples_per_class, each run draws that many support items
per class, and runs repeat the draw.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

WEIGHT_DECAYS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
STEPS = 300


@functools.partial(jax.jit, static_argnames=('num_classes',))
def fit_logistic(features, labels, weight_decay, *, num_classes: int):
  """(weights [D, C], bias [C]) minimising mean cross-entropy + weight_decay * |W|^2."""
  params = {'w': jnp.zeros((features.shape[1], num_classes)), 'b': jnp.zeros(num_classes)}
  tx = optax.adam(optax.cosine_decay_schedule(0.05, STEPS))

  def loss_fn(params):
    logits = features @ params['w'] + params['b']
    return (optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            + weight_decay * jnp.sum(params['w']**2))

  def step(_, carry):
    params, opt_state = carry
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  params, _ = jax.lax.fori_loop(0, STEPS, step, (params, tx.init(params)))
  return params['w'], params['b']


def _accuracy(params, features, labels) -> float:
  w, b = params
  return float(np.mean(np.argmax(np.asarray(features @ w + b), axis=1) == labels))


def _standardise(train, *others):
  mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
  return [(x - mean) / std for x in (train,) + others]


def _stratified_split(labels, rng, held_out: float = 0.2):
  """(train indices, validation indices): held_out of each class with >= 2 items."""
  train, validation = [], []
  for c in np.unique(labels):
    items = rng.permutation(np.flatnonzero(labels == c))
    count = max(1, int(round(held_out * len(items)))) if len(items) >= 2 else 0
    validation.extend(items[:count])
    train.extend(items[count:])
  return np.array(train), np.array(validation)


def choose_weight_decay(support, support_labels, num_classes: int, rng) -> float:
  """The WEIGHT_DECAYS value with the best accuracy on a held-out split of the support."""
  train, validation = _stratified_split(support_labels, rng)
  if not len(validation):
    return WEIGHT_DECAYS[len(WEIGHT_DECAYS) // 2]
  x_train, x_val = _standardise(support[train], support[validation])
  scores = [_accuracy(fit_logistic(x_train, support_labels[train], wd, num_classes=num_classes),
                      x_val, support_labels[validation]) for wd in WEIGHT_DECAYS]
  return WEIGHT_DECAYS[int(np.argmax(scores))]  # Ties: the weaker regularisation.


def linear_probe(support, support_labels, query, query_labels, num_classes: int,
                 samples_per_class: int = 0, runs: int = 1, seed: int = 0) -> dict:
  """{'linear_top1': mean query top-1, 'linear': {mean, std, runs, weight_decays}}."""
  support, query = np.asarray(support, np.float32), np.asarray(query, np.float32)
  support_labels, query_labels = np.asarray(support_labels), np.asarray(query_labels)
  rng = np.random.default_rng(seed)
  accuracies, chosen = [], []
  for _ in range(runs if samples_per_class else 1):
    items = np.arange(len(support))
    if samples_per_class:
      items = np.concatenate([
          rng.choice(np.flatnonzero(support_labels == c),
                     min(samples_per_class, np.sum(support_labels == c)), replace=False)
          for c in np.unique(support_labels)])
    x, y = support[items], support_labels[items]
    weight_decay = choose_weight_decay(x, y, num_classes, rng)
    x_train, x_query = _standardise(x, query)
    params = fit_logistic(x_train, y, weight_decay, num_classes=num_classes)
    accuracies.append(_accuracy(params, x_query, query_labels))
    chosen.append(weight_decay)
  return {'linear_top1': float(np.mean(accuracies)),
          'linear': {'mean': float(np.mean(accuracies)), 'std': float(np.std(accuracies)),
                     'runs': accuracies, 'weight_decays': chosen,
                     'samples_per_class': samples_per_class or None}}
