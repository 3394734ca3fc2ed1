"""Unit tests of chalicelib.rollups."""
