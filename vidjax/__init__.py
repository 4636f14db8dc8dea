"""vidjax: visual embeddings learned from unlabelled video, and search over them."""

__version__ = '0.9.0'
