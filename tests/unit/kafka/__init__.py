"""Unit tests of chalicelib.kafka."""
