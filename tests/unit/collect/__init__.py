"""Unit tests of chalicelib.collect."""
