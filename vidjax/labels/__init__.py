"""Weak labelling of a corpus index: labels and people's answers in the index's SQLite, the
proposals a person reviews next, and the export to a labelled imagefolder.

  store.py     labels and answers (append-only; the latest answer is the state)
  propose.py   nearest-to-positives, then a linear probe on the frozen embeddings
  export.py    imagefolder + labels.csv, swapped in whole

  python -m vidjax.labels list   --index=/data/drives_index
  python -m vidjax.labels export --index=/data/drives_index --output=/data/labelled
"""
