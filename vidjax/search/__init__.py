"""Querying a corpus index (vidjax.index): corpus.py opens one, outputs.py shows the hits;
`python -m vidjax.search` is the command line."""
