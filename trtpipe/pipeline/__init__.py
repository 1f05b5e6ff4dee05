"""Preprocess -> engine -> task head: ``Pipeline`` and the pieces it is made of."""
