"""What a search gives back: a table, JSON, a contact sheet and a video of the hits."""
import json
import os

import numpy as np
from PIL import Image, ImageDraw

from vidjax import atomic
from vidjax.data.sources.videos import write_video
from vidjax.evaluate import pictures
from vidjax.search.corpus import format_time

HIT = (40, 120, 200)
SECONDS_PER_HIT = 1.5
VIDEO_FPS = 4


def short_name(video: str) -> str:
  return os.path.basename(video.rstrip('/')) or video


def table(hits) -> str:
  lines = [f'{"rank":>4}  {"score":>6}  {"kind":<6}  {"time":<10}  {"frame":>6}  '
           f'{"box":<19}  video']
  for rank, hit in enumerate(hits, 1):
    box = ','.join(f'{hit[c]:.0f}' for c in ('x0', 'y0', 'x1', 'y1'))
    lines.append(f'{rank:>4}  {hit["score"]:6.3f}  {hit["kind"]:<6}  '
                 f'{format_time(hit["timestamp"]):<10}  {hit["frame"]:>6}  {box:<19}  '
                 f'{hit["video"]}')
  return '\n'.join(lines)


def as_json(hits) -> str:
  keys = ('id', 'score', 'video', 'frame', 'timestamp', 'kind', 'x0', 'y0', 'x1', 'y1',
          'source')
  return json.dumps([{key: hit[key] for key in keys} for hit in hits], indent=1)


def contact_sheet(query_image, hit_crops, hits, path: str, per_row: int = 10):
  """The query (grey border) then the hits, `per_row` to a row, captioned score and time."""
  tiles = [pictures.cell(query_image, pictures.QUERY, 'query')]
  for crop, hit in zip(hit_crops, hits):
    caption = f'{hit["score"]:.2f} {format_time(hit["timestamp"])[3:]}'
    tiles.append(pictures.cell(crop, HIT, caption))
  rows = [tiles[i:i + per_row] for i in range(0, len(tiles), per_row)]
  buffer_path = f'{path}.tmp.png'
  pictures.tile_rows(rows).save(buffer_path)
  os.replace(buffer_path, path)


def _captioned(frame: np.ndarray, hit: dict, rank: int, size) -> np.ndarray:
  """The hit's frame with its box drawn, letterboxed into `size` (w, h), caption bar below."""
  width, height = size
  image = Image.fromarray(frame)
  scale = min(width / image.width, (height - 20) / image.height)
  image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))),
                       Image.BILINEAR)
  canvas = Image.new('RGB', (width, height), (0, 0, 0))
  left, top = (width - image.width) // 2, (height - 20 - image.height) // 2
  canvas.paste(image, (left, top))
  draw = ImageDraw.Draw(canvas)
  if hit['kind'] != 'frame':
    draw.rectangle([left + hit['x0'] * scale, top + hit['y0'] * scale,
                    left + hit['x1'] * scale, top + hit['y1'] * scale], outline=(255, 220, 0))
  caption = (f'#{rank} {hit["score"]:.3f} {short_name(hit["video"])} '
             f'{format_time(hit["timestamp"])}')
  draw.text((4, height - 16), caption, fill=(255, 255, 255))
  return np.asarray(canvas)


def hits_video(frames, hits, path: str, width: int = 640):
  """Each hit's frame held SECONDS_PER_HIT, box and caption drawn, as H.264 mp4 (yuv420p)."""
  aspect = max(f.shape[0] / f.shape[1] for f in frames)
  size = (width, int(width * aspect) + 20 + (int(width * aspect) % 2))
  repeat = max(1, int(round(SECONDS_PER_HIT * VIDEO_FPS)))
  def stills():
    for rank, (frame, hit) in enumerate(zip(frames, hits), 1):
      still = _captioned(frame, hit, rank, size)
      for _ in range(repeat):
        yield still
  write_video(path, stills(), VIDEO_FPS, keyframe_every=repeat)


def write_text(path: str, text: str):
  atomic.write_text(path, text)
