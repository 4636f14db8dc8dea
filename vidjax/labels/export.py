"""Answers -> a labelled dataset: an imagefolder tree of the accepted crops plus a CSV of every
answer, written beside OUTPUT and swapped in whole.

OUTPUT/
  <label>/<vector id>-<seq>.png
                            each accepted crop (seq: the answer's number), at the corpus's
                            resolution (what the index embedded: the square around the
                            region, or the whole frame)
  labels.csv                the latest answer per (label, region): path (empty unless
                            accepted), label, answer, who, answered_at (UTC), video, frame,
                            timestamp, kind, x0, y0, x1, y1, vector_id
  crops.csv                 path, context (the crop's video): what `vidjax.evaluate`'s
                            imagefolder sets read to report context_match
"""
import csv
import io
import os
import shutil
import time

import numpy as np
from PIL import Image

from vidjax import atomic
from vidjax.errors import ConfigError
from vidjax.index import regions

MIN_CROP_SIDE = 32
LABELS_CSV = 'labels.csv'
CSV_COLUMNS = ('path', 'label', 'answer', 'who', 'answered_at', 'video', 'frame', 'timestamp',
               'kind', 'x0', 'y0', 'x1', 'y1', 'vector_id')


def crop_image(frame: np.ndarray, answer: dict) -> np.ndarray:
  if answer['kind'] == 'frame':
    return frame
  box = tuple(answer[c] for c in ('x0', 'y0', 'x1', 'y1'))
  side = max(MIN_CROP_SIDE, int(round(max(box[2] - box[0], box[3] - box[1]))))
  return regions.square_crop(frame, box, side)


def _csv(rows, columns) -> str:
  out = io.StringIO()
  writer = csv.DictWriter(out, columns, lineterminator='\n')
  writer.writeheader()
  writer.writerows(rows)
  return out.getvalue()


def export(index, label_store, output: str, labels=None, overwrite: bool = False) -> dict:
  """Writes OUTPUT (layout above) from the latest answers of `labels` (all if None);
  returns {label: accepted crops written}. index: a search.corpus.CorpusIndex."""
  output = os.path.abspath(os.path.expanduser(output))
  atomic.recover_folder(output)
  if os.path.exists(output) and not overwrite:
    raise ConfigError(f'--output={output} exists; pass --overwrite to replace it (the new '
                      'export is written beside it and swapped in when complete)')
  known = {row['name'] for row in label_store.labels()}
  unknown = set(labels or ()) - known
  if unknown:
    raise ConfigError(f'--labels: no label {", ".join(sorted(unknown))}; the index has '
                      f'{", ".join(sorted(known)) or "none"}')
  answers = label_store.latest_answers()
  if labels:
    answers = [a for a in answers if a['label'] in labels]
  partial = f'{output}.partial'
  shutil.rmtree(partial, ignore_errors=True)
  os.makedirs(partial)
  with atomic.removed_on_error(partial):
    written = _write(index, answers, labels or sorted(known), partial)
  atomic.replace_folder(partial, output)
  return written


def _write(index, answers, labels, partial: str) -> dict:
  """The crops and CSV files of the export into the folder `partial`."""
  written, rows, crops = {name: 0 for name in labels}, [], []
  frame, frame_key = None, None
  for answer in sorted(answers, key=lambda a: (a['video'], a['frame'], a['seq'])):
    path = ''
    if answer['answer'] == 'accept':
      if frame_key != (answer['video'], answer['frame']):
        video = index.video_index(answer['video'])
        frame, frame_key = index.source.frame(video, answer['frame']), (answer['video'],
                                                                       answer['frame'])
      path = os.path.join(answer['label'], f'{answer["vector_id"]}-{answer["seq"]}.png')
      os.makedirs(os.path.join(partial, answer['label']), exist_ok=True)
      Image.fromarray(crop_image(frame, answer)).save(os.path.join(partial, path))
      written[answer['label']] += 1
      crops.append(dict(path=path, context=answer['video']))
    rows.append(dict(
        {c: answer[c] for c in CSV_COLUMNS if c in answer}, path=path,
        timestamp=round(regions.timestamp(index.source, index.video_index(answer['video']),
                                          answer['frame']), 3),
        answered_at=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(answer['at']))))
  rows.sort(key=lambda r: (r['label'], r['video'], r['frame']))
  atomic.write_text(os.path.join(partial, LABELS_CSV), _csv(rows, CSV_COLUMNS))
  atomic.write_text(os.path.join(partial, 'crops.csv'), _csv(crops, ('path', 'context')))
  return written
