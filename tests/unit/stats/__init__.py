"""Unit tests of chalicelib.stats."""
