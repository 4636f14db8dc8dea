"""Pictures of an evaluation: retrieval grid (PNG + HTML), similarity histogram, training curves."""
import base64
import html
import io
import json
import os

import matplotlib
import numpy as np
from PIL import Image, ImageDraw

from vidjax import atomic
from vidjax.evaluate import knn

matplotlib.use('Agg')  # Files only; no display needed.
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top

CELL = 96  # Pixels per crop in the grid.
BORDER = 4
SAME, DIFFERENT, QUERY = (40, 170, 60), (210, 50, 50), (90, 90, 90)
CONTEXT = (30, 90, 230)  # The corner mark of a neighbour over the query's background.


def pick_queries(labels, count: int, seed: int = 0) -> np.ndarray:
  """`count` query rows spread over the classes (one per class in turn, random within)."""
  rng = np.random.default_rng(seed)
  by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
  picks = [rows[i] for i in range(max(map(len, by_class))) for rows in by_class if i < len(rows)]
  return np.array(picks[:count])


def nearest(index, query_embeddings, k: int):
  """(similarities, support rows) of the k nearest support items of each query."""
  return index.search(knn.l2_normalize(query_embeddings), k)


def cell(image, colour, caption: str, same_context: bool = False) -> Image.Image:
  """A crop enlarged to CELL pixels, in a border of `colour`, with a caption under it."""
  tile = Image.new('RGB', (CELL + 2 * BORDER, CELL + 2 * BORDER + 14), (255, 255, 255))
  tile.paste(Image.new('RGB', (CELL + 2 * BORDER, CELL + 2 * BORDER), colour), (0, 0))
  tile.paste(Image.fromarray(image).resize((CELL, CELL), Image.NEAREST), (BORDER, BORDER))
  draw = ImageDraw.Draw(tile)
  if same_context:
    corner = CELL + 2 * BORDER
    draw.polygon([(corner - 22, 0), (corner, 0), (corner, 22)], fill=CONTEXT)
  draw.text((BORDER, CELL + 2 * BORDER + 1), caption, fill=(0, 0, 0))
  return tile


def retrieval_grid(query_images, query_labels, support_images, support_labels, similarities,
                   neighbours, class_names, png_path: str, html_path: str, same_context=None):
  """One row per query: the query (grey border) and its nearest support crops, bordered
  green when of the query's category and red when not, captioned with the cosine. With
  `same_context` ([queries, neighbours] bool), a blue corner marks each neighbour cut over
  the query's background: rows full of blue corners show an encoder matching backgrounds."""
  rows = []
  for q, (sims, found) in enumerate(zip(similarities, neighbours)):
    row = [(query_images[q], QUERY, f'query: {class_names[query_labels[q]]}'[:16], False)]
    for n, (sim, s) in enumerate(zip(sims, found)):
      colour = SAME if support_labels[s] == query_labels[q] else DIFFERENT
      row.append((support_images[s], colour, f'{sim:.3f} {class_names[support_labels[s]]}'[:16],
                  bool(same_context is not None and same_context[q, n])))
    rows.append(row)
  buffer = io.BytesIO()
  tile_rows([[cell(*item) for item in row] for row in rows]).save(buffer, 'PNG')
  atomic.write_bytes(png_path, buffer.getvalue())
  _retrieval_html(rows, html_path)


def tile_rows(tiles) -> Image.Image:
  """Rows of equal-sized tiles pasted into one white image."""
  width, height = tiles[0][0].size
  grid = Image.new('RGB', (width * max(map(len, tiles)), height * len(tiles)), (255, 255, 255))
  for r, row in enumerate(tiles):
    for c, tile in enumerate(row):
      grid.paste(tile, (c * width, r * height))
  return grid


def _retrieval_html(rows, path: str):
  def data_uri(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, 'PNG')
    return 'data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode()

  lines = ['<!doctype html><meta charset="utf-8"><title>vidjax retrieval</title>',
           '<style>td{text-align:center;font:11px sans-serif}img{width:96px;height:96px;'
           'image-rendering:pixelated;border:4px solid}</style><table>']
  for row in rows:
    cells = ''.join(
        f'<td><img src="{data_uri(image)}" style="border-color:rgb{colour}"><br>'
        f'{html.escape(caption)}{" (same background)" if same_context else ""}</td>'
        for image, colour, caption, same_context in row)
    lines.append(f'<tr>{cells}</tr>')
  lines.append('</table>')
  atomic.write_text(path, '\n'.join(lines))


def similarity_histogram(same, different, png_path: str, title: str):
  figure, axes = plt.subplots(figsize=(6, 3.5))
  bins = np.linspace(-1, 1, 81)
  axes.hist(different, bins, alpha=0.6, density=True, label='different category')
  axes.hist(same, bins, alpha=0.6, density=True, label='same category')
  axes.set_xlabel('cosine similarity')
  axes.set_ylabel('density')
  axes.set_title(title, fontsize=9)
  axes.legend()
  figure.tight_layout()
  atomic.save_figure(figure, png_path, dpi=120)
  plt.close(figure)


def training_curves(metrics_path: str, png_path: str) -> bool:
  """loss and knn_top1 against step from a run's metrics.jsonl; False when it has none."""
  if not os.path.exists(metrics_path):
    return False
  with open(metrics_path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  losses = [(r['step'], r['loss']) for r in records if 'loss' in r]
  knns = [(r['step'], r['knn_top1']) for r in records if 'knn_top1' in r]
  if not losses and not knns:
    return False
  figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
  for axes, points, name in ((left, losses, 'loss'), (right, knns, 'knn_top1 (online monitor)')):
    if points:
      axes.plot(*zip(*points), marker='.' if len(points) < 50 else None)
    axes.set_xlabel('step')
    axes.set_title(name, fontsize=9)
  figure.tight_layout()
  atomic.save_figure(figure, png_path, dpi=120)
  plt.close(figure)
  return True
