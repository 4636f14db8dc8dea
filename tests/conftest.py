"""Every test sees 4 fake CPU devices, so data-parallel code runs as on a 4-chip host."""
import atexit
import os
import shutil
import tempfile

# One on-disk cache of compiled programs for the session, read by the test processes and the
# commands they start (it is found through these variables): the smoke configs compile the
# same steps in dozens of tests, each of which would otherwise compile them anew. JAX writes
# an entry in place, so a command a test SIGKILLs at random must not inherit it
# (tests/test_faults.py's chaos bench drops it).
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='vidjax_xla_')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '-1')

import jax  # noqa: E402  (after the variables above, which JAX reads when imported)
import pytest
from absl import flags

# Open-time indexes are cached (vidjax/data/cache.py); tests keep theirs out of ~/.cache.
os.environ.setdefault('VIDJAX_CACHE', tempfile.mkdtemp(prefix='vidjax_cache_'))

# Must happen before JAX initialises its backends, i.e. before any test touches a device.
jax.config.update('jax_num_cpu_devices', 4)
# Grain worker processes read absl flags; under pytest nobody parses them.
flags.FLAGS.mark_as_parsed()


@pytest.fixture(scope='session')
def smoke_run(tmp_path_factory):
  """A workdir with the N-pair smoke config trained 2 steps: the encoder the index, server,
  labelling and browser tests index with (trained once per session)."""
  from served_index import train_smoke  # pylint: disable=import-outside-toplevel
  return train_smoke(str(tmp_path_factory.mktemp('smoke_run')))
