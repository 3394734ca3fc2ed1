"""Unit tests of chalicelib.storage."""
