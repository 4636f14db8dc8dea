"""Semi-supervised evaluation: the whole encoder and a linear head fine-tuned on a few
labelled support crops per class, several runs with fresh draws, scored on the query set.

Where kNN and the linear probe read frozen features, this asks how good a starting point
the encoder is when its weights may move. One fixed recipe, chosen before looking at any
query (a few labels leave nothing to tune it on): AdamW, the head at HEAD_LR and the
encoder at ENCODER_LR, cosine decay over `steps`, batches of BATCH crops drawn with
replacement from the labelled ones, each flipped and shifted by up to SHIFT px at random;
BatchNorm runs in training mode and its statistics follow the labelled crops. The head
starts at zero, so every run starts from the encoder's own features.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vidjax.models.heads import embedding

STEPS = 200
BATCH = 64
HEAD_LR = 1e-2
ENCODER_LR = 1e-3
WEIGHT_DECAY = 1e-4
SHIFT = 4
_PREDICT_BATCH = 256


class Classifier(nn.Module):
  """Images in [0, 1] -> class logits: the encoder's last map pooled as the embedding is
  (embed_grid; 0 = as the encoder pools), one dense layer."""
  encoder: nn.Module
  num_classes: int
  embed_grid: int = 0

  @nn.compact
  def __call__(self, images, train: bool):
    features = embedding(self.encoder, images, self.embed_grid, train)
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name='head')(features)


def augment(images, key):
  """uint8 [N, S, S, 3] -> float [0, 1]: each image flipped left-right at random and
  shifted by up to SHIFT px (edge pixels repeated), as for CIFAR-sized crops."""
  n, size = images.shape[0], images.shape[1]
  flip_key, shift_key = jax.random.split(key)
  x = images.astype(jnp.float32) / 255.0
  flip = jax.random.bernoulli(flip_key, 0.5, (n,))
  x = jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)
  padded = jnp.pad(x, ((0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT), (0, 0)), mode='edge')
  offsets = jax.random.randint(shift_key, (n, 2), 0, 2 * SHIFT + 1)
  crop = lambda image, offset: jax.lax.dynamic_slice(  # noqa: E731
      image, (offset[0], offset[1], 0), (size, size, image.shape[-1]))
  return jax.vmap(crop)(padded, offsets)


def _optimizer(steps: int):
  schedule = lambda lr: optax.cosine_decay_schedule(lr, steps)  # noqa: E731
  return optax.multi_transform(
      {'head': optax.adamw(schedule(HEAD_LR), weight_decay=WEIGHT_DECAY),
       'encoder': optax.adamw(schedule(ENCODER_LR), weight_decay=WEIGHT_DECAY)},
      lambda params: {name: jax.tree.map(lambda _: name, tree) for name, tree in params.items()})


def _train_fn(classifier, tx):
  @jax.jit
  def train_step(state, images, labels, key):
    def loss_fn(params):
      logits, updates = classifier.apply(
          {'params': params, 'batch_stats': state['batch_stats']}, augment(images, key),
          train=True, mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, updates['batch_stats']

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    return dict(params=optax.apply_updates(state['params'], updates), batch_stats=batch_stats,
                opt_state=opt_state), loss

  return train_step


def _predict_fn(classifier):
  @jax.jit
  def predict(params, batch_stats, images):
    logits = classifier.apply({'params': params, 'batch_stats': batch_stats},
                              images.astype(jnp.float32) / 255.0, train=False)
    return jnp.argmax(logits, axis=1)

  return predict


def _predictions(predict, state, images) -> np.ndarray:
  """Predicted classes of a sliceable uint8 image set, in fixed-size (padded) batches."""
  out = []
  for start in range(0, len(images), _PREDICT_BATCH):
    chunk = np.asarray(images[start:start + _PREDICT_BATCH])
    padded = np.concatenate([chunk, np.zeros((_PREDICT_BATCH - len(chunk),) + chunk.shape[1:],
                                             chunk.dtype)])
    out.append(np.asarray(predict(state['params'], state['batch_stats'], padded))[:len(chunk)])
  return np.concatenate(out)


def finetune(encoder: nn.Module, encoder_params, encoder_stats, support_images,
             support_labels, query_images, query_labels, num_classes: int,
             samples_per_class: int, runs: int, steps: int = STEPS, seed: int = 0,
             embed_grid: int = 0) -> dict:
  """{'finetune_top1': mean query top-1, 'finetune': {mean, std, ci95, runs, ...}}.
  support_images / query_images: sliceable uint8 image sets at the model's size (each run
  reads only its drawn support rows); a query label < 0 is not scored; encoder_*: the
  encoder's Flax variables; embed_grid: the model's (SSLModel.embed_grid)."""
  classifier = Classifier(encoder=encoder.clone(parent=None), num_classes=num_classes,
                          embed_grid=embed_grid)
  tx = _optimizer(steps)
  train_step, predict = _train_fn(classifier, tx), _predict_fn(classifier)
  support_labels, query_labels = np.asarray(support_labels), np.asarray(query_labels)
  size = np.asarray(support_images[0:1]).shape[1]
  head_shape = jax.eval_shape(lambda: classifier.init(
      jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)), train=False))['params']['head']
  rng = np.random.default_rng(seed)
  key = jax.random.PRNGKey(seed)
  scored = query_labels >= 0
  accuracies = []
  for _ in range(runs):
    items = np.concatenate([
        rng.choice(np.flatnonzero(support_labels == c),
                   min(samples_per_class, int(np.sum(support_labels == c))), replace=False)
        for c in np.unique(support_labels)])
    images = np.concatenate([np.asarray(support_images[i:i + 1]) for i in items])
    labels = support_labels[items]
    params = {'encoder': jax.device_get(encoder_params),
              'head': jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), head_shape)}
    state = dict(params=params, batch_stats={'encoder': jax.device_get(encoder_stats)},
                 opt_state=tx.init(params))
    for _ in range(steps):
      key, batch_key, augment_key = jax.random.split(key, 3)
      batch = np.asarray(jax.random.randint(batch_key, (BATCH,), 0, len(items)))
      state, _ = train_step(state, images[batch], labels[batch], augment_key)
    predicted = _predictions(predict, state, query_images)
    accuracies.append(float(np.mean(predicted[scored] == query_labels[scored])))
  std = float(np.std(accuracies, ddof=1)) if runs > 1 else 0.0
  return {'finetune_top1': float(np.mean(accuracies)),
          'finetune': {'mean': float(np.mean(accuracies)), 'std': std,
                       'ci95': 1.96 * std / np.sqrt(runs), 'runs': accuracies,
                       'samples_per_class': samples_per_class, 'steps': steps,
                       'batch': BATCH}}

