"""Frame sources: random access to frames by (video, frame index).

Every source is an object with
  __len__()               number of videos
  num_frames(video)       frames in that video
  frame(video, t)         HxWx3 uint8
  video_name(video)       a human-readable id (path, or synthetic/train/00012)
and is picklable, so Grain worker processes can read from it.
"""
from vidjax.config_checks import ConfigError
from vidjax.data.synthetic import SyntheticWorld

SOURCE_KINDS = ('synthetic',)


def open_source(spec: str, config):
  """The frame source named by a spec string such as 'synthetic'."""
  kind, _, _ = spec.partition(':')
  if kind == 'synthetic':
    return SyntheticWorld(split='train', **config.synthetic)
  raise ConfigError(f"config.data.train: unknown source {spec!r}; expected one of: "
                   f"{', '.join(SOURCE_KINDS)}")
