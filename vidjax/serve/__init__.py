"""The search and labelling server over one corpus index, and its web page.

  app.py       the FastAPI app: search, thumbnails and frames, labels, answers, export
  models.py    the JSON it speaks (pydantic; the OpenAPI page at /docs)
  limits.py    what it refuses first: oversized bodies, non-images, decompression bombs
  static/      the page (plain HTML, CSS and JS, no build step)

  python -m vidjax.serve --index=/data/drives_index          # http://127.0.0.1:8000
"""
