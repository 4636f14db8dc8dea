"""Labelled image sets for evaluation: support (few-shot labelled) and query (validation).

Specs:
  synthetic[:FAMILY] the embedded world's object crops (support or query split, from videos
                     disjoint from training and from each other); plain `synthetic` is the
                     family config.data.train trains on (textures when it is no world)
  imagefolder:DIR    one sub-folder per category of image crops (the field's usual layout);
                     an optional DIR/crops.csv (columns path, context) says what surrounds
                     each crop's object, e.g. its background photograph
  tfds:NAME[:SPLIT]  a prepared TFDS classification dataset, read with tfds.data_source
                     (no TensorFlow): its first Image and first ClassLabel features

Every set gives class names, labels, an id per item (its path) and images(start, stop)
as uint8 [n, size, size, 3], resized to the model's square input (crops are squashed, not
cut, so the whole object stays in view). Unreadable files are left out when the set is
opened, counted in `skipped`.
"""
import csv
import io
import os

import numpy as np
from PIL import Image

from vidjax.data import sources
from vidjax.data.sources import base, world_crops
from vidjax.errors import ConfigError

CROPS_CSV = 'crops.csv'  # An imagefolder's optional listing: path, context, ...


class LabelledImages:
  """Images held by path (imagefolder), by record (tfds) or in memory (synthetic)."""

  def __init__(self, class_names, labels, ids, load, skipped=(), contexts=None):
    self.class_names = list(class_names)
    self.labels = np.asarray(labels, np.int32)
    self.ids = list(ids)
    self._load = load  # (item index) -> HxWx3 uint8
    self.skipped = list(skipped)
    # Per item, what surrounds its object (e.g. the background photograph), or None when
    # the set does not know: the evaluation's context_match needs it.
    self.contexts = None if contexts is None else np.asarray(contexts, object)

  def __len__(self):
    return len(self.labels)

  def images(self, start: int, stop: int, size: int) -> np.ndarray:
    return np.stack([_square(self._load(i), size) for i in range(start, min(stop, len(self)))])


def _square(image: np.ndarray, size: int) -> np.ndarray:
  if image.shape[:2] == (size, size):
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def _read_rgb(path: str) -> np.ndarray:
  with Image.open(path) as image:
    return np.asarray(image.convert('RGB'))


def _check_image(path: str):
  try:
    _read_rgb(path)
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise base.Unreadable(f'not a readable image: {e}') from None
  return True


def image_folder(root: str, flag: str) -> LabelledImages:
  if not os.path.isdir(root):
    raise ConfigError(f'{flag}: {root} is not a folder; expected one sub-folder of images '
                      'per category')
  class_names = sorted((d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))),
                       key=base.natural_key)
  if not class_names:
    raise ConfigError(f'{flag}: {root} has no sub-folders; expected one sub-folder of images '
                      f'per category ({os.path.join(root, "<category>", "*.jpg")})')
  paths, labels = [], []
  for label, name in enumerate(class_names):
    files = base.find_files(os.path.join(root, name), base.IMAGE_EXTENSIONS)
    paths += files
    labels += [label] * len(files)
  usable, skipped = base.probe_all(paths, _check_image)
  keep = {path for path, _ in usable}
  labels = [label for path, label in zip(paths, labels) if path in keep]
  paths = [path for path in paths if path in keep]
  return LabelledImages(class_names, labels, paths, lambda i: _read_rgb(paths[i]), skipped,
                        _folder_contexts(root, paths, flag))


def _folder_contexts(root: str, paths, flag: str):
  """Each image's `context` from root/crops.csv (columns path, relative to root, and
  context), or None without that file. Images it does not list get context ''."""
  listing = os.path.join(root, CROPS_CSV)
  if not os.path.isfile(listing):
    return None
  with open(listing, newline='') as f:
    reader = csv.DictReader(f)
    if not {'path', 'context'} <= set(reader.fieldnames or ()):
      raise ConfigError(f'{flag}: {listing} needs the columns path and context; it has '
                        f'{reader.fieldnames}')
    by_path = {os.path.normpath(row['path']): row['context'] for row in reader}
  return [by_path.get(os.path.normpath(os.path.relpath(path, root)), '') for path in paths]


def tfds_images(rest: str, data_dir: str, flag: str) -> LabelledImages:
  import tensorflow_datasets as tfds
  from vidjax.data.sources import tfds as tfds_source  # TFDS is slow to import.
  name, split = tfds_source.parse_spec(rest)
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
    features = builder.info.features
    image_key = next(k for k, f in features.items() if isinstance(f, tfds.features.Image))
    label_key = next(k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel))
    data = tfds.data_source(name, split=split or 'train', data_dir=data_dir or None,
                            download=False,
                            decoders={image_key: tfds_source.keep_encoded_decoder()})
  except StopIteration:
    raise ConfigError(f'{flag}: TFDS dataset {name!r} needs an Image and a ClassLabel feature; '
                      f'it has {sorted(features)}') from None
  except Exception as e:  # TFDS raises many kinds; all mean "cannot use this dataset".
    raise ConfigError(f'{flag}: cannot read TFDS dataset {rest!r} (prepared, ArrayRecord '
                      f'format): {str(e).splitlines()[0]}') from None
  labels = np.array([data[i][label_key] for i in range(len(data))])
  load = lambda i: np.asarray(Image.open(io.BytesIO(data[i][image_key])).convert('RGB'))
  return LabelledImages(features[label_key].names, labels,
                        [f'{name}/{split or "train"}/{i}' for i in range(len(data))], load)


def synthetic_crops(split: str, config, family: str = 'textures') -> LabelledImages:
  per_class = (config.monitor.support_per_class if split == 'support'
               else config.monitor.query_per_class)
  crops = world_crops.labelled_crops(
      seed=config.synthetic.seed, split=split, per_class=per_class,
      crop_size=config.image_size, frame_size=config.synthetic.frame_size, family=family)
  name = 'synthetic' if family == 'textures' else f'synthetic/{family}'
  return LabelledImages(crops.class_names, crops.labels,
                        [f'{name}/{split}/{i}' for i in range(len(crops))],
                        lambda i: crops.images[i], contexts=crops.contexts)


def align_query_labels(support_set, query_set) -> tuple:
  """(query labels in the support's class numbering, mask of queries whose class the
  support has); classes are matched by name."""
  position = {name: i for i, name in enumerate(support_set.class_names)}
  mapped = np.array([position.get(query_set.class_names[label], -1)
                     for label in query_set.labels])
  return mapped, mapped >= 0


def open_labelled(spec: str, split: str, config, flag: str) -> LabelledImages:
  """The labelled set named by spec; `split` (support|query) picks the synthetic split."""
  kind, _, rest = spec.partition(':')
  if kind == 'synthetic':
    trained_on = config.data.train
    if not rest and trained_on.partition(':')[0] == 'synthetic':
      spec = trained_on  # Plain `synthetic`: the family the run trains on.
    images = synthetic_crops(split, config, sources.world_family(spec, f'{flag}={spec!r}'))
  elif kind == 'imagefolder' and rest:
    images = image_folder(os.path.expanduser(rest), flag)
  elif kind == 'tfds' and rest:
    images = tfds_images(rest, config.data.tfds_data_dir, flag)
  else:
    raise ConfigError(f'{flag}={spec!r}: expected synthetic[:FAMILY], imagefolder:DIR or '
                      'tfds:NAME[:SPLIT]')
  if not len(images):
    raise ConfigError(f'{flag}={spec!r}: no readable labelled images'
                      + (f' ({len(images.skipped)} unreadable)' if images.skipped else ''))
  return images
