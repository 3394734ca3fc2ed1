"""TrackFlow benchmarks: `make bench` / `python -m bench`."""
