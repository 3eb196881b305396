"""Artifact tests: the rendered files checked by the real tools that consume them."""
