"""HOG descriptors against scikit-image's, and the encoder's gradient stem."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.feature import hog as skimage_hog

from configs import npair
from vidjax import hog
from vidjax.errors import ConfigError
from vidjax.evaluate import encoders
from vidjax.models import build_model, resnet


def _images():
  rng = np.random.default_rng(0)
  noise = rng.uniform(0, 1, (3, 32, 32, 3))
  # Flat colour with a slanted edge, and a vertical stripe pattern on a red/blue object.
  rows, cols = np.mgrid[:32, :32]
  edge = np.where((rows + 2 * cols > 40)[..., None], [0.9, 0.2, 0.1], [0.1, 0.2, 0.9])
  stripes = np.where(((cols // 3) % 2 == 0)[..., None], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0])
  return np.concatenate([noise, edge[None], stripes[None]])


def test_hog_matches_scikit_image():
  images = _images()
  expected = np.stack([skimage_hog(image, orientations=9, pixels_per_cell=(8, 8),
                                   cells_per_block=(2, 2), channel_axis=-1)
                       for image in images])
  assert hog.hog(images).shape == (5, hog.hog_size(32)) == expected.shape
  np.testing.assert_allclose(hog.hog(images), expected, atol=1e-6)


def test_hog_in_jax_agrees_with_numpy():
  images = _images()
  in_jax = np.asarray(hog.hog(jnp.asarray(images, jnp.float32), xp=jnp))
  # float32 angles can land in the neighbouring bin at a bin edge: compare in bulk.
  assert np.mean(np.abs(in_jax - hog.hog(images))) < 1e-3


def test_hog_sees_chroma_edges_and_ignores_colour():
  images = _images()
  swapped = images[..., ::-1]  # the same edges in other colours
  np.testing.assert_allclose(hog.hog(swapped), hog.hog(images), atol=1e-6)
  stripes = hog.cell_histograms(images[4:])[0]
  # Vertical stripes: all gradient along the columns, orientation 0 degrees.
  assert np.all(stripes[..., 0] > 0) and np.allclose(stripes[..., 1:], 0)


def test_hog_size_rejects_too_small_images():
  with pytest.raises(ValueError, match='12 px images hold no 2x2 block'):
    hog.hog_size(12)


def test_gradient_stem_keeps_edges_and_drops_colour_contrast_and_inversion():
  images = jnp.asarray(_images(), jnp.float32)
  stem = resnet.oriented_gradients(images)
  assert stem.shape == images.shape[:3] + (9,)
  for changed in (images[..., ::-1], 1 - images, 0.5 * images + 0.2):
    assert float(jnp.mean(jnp.abs(resnet.oriented_gradients(changed) - stem))) < 1e-3
  # The vertical stripes vote into the 0-degree orientation only.
  assert float(stem[4, 8:24, 8:24, 0].min()) > 0 and float(stem[4, ..., 1:].max()) == 0


def test_encoder_with_the_gradient_stem():
  config = npair.get_config('smoke')
  config.model.gradient_stem = True
  model = build_model(config)
  images = jnp.asarray(_images(), jnp.float32)
  variables = model.init(jax.random.PRNGKey(0), images, train=False)
  stem_kernel = variables['params']['encoder']['stem_conv']['kernel']
  assert stem_kernel.shape[2] == 9  # Orientations in, not RGB.
  assert model.apply(variables, images, train=False)['feature'].shape[0] == len(images)


def test_hog_baseline_on_too_small_images_is_one_error():
  config = npair.get_config('smoke')
  config.image_size = 12
  with pytest.raises(ConfigError, match=r'--init=hog: config.image_size=12: 12 px images hold '
                                        'no 2x2 block'):
    encoders.load_encoder(config, '', 'hog', mesh=None)
