"""`trackflow export` throughput over the 10,000,000 generated events of bench.overview's month.

For each format, every project's 30 days are exported with the command's own
code (``trackflow export ... --out /dev/null``: the bytes are produced and
written, no disk is timed), and the same day-by-day statements are run bare
on the same client, the bytes dropped: ``export_<format>_vs_engine`` is what
the command adds to ClickHouse's own work (1.0 = nothing).

chDB holds one data directory per process, so this runs in a child process:
``python -m bench.export --events N`` prints its results as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from typing import Any

from bench.overview import END, PROJECTS, ROOT, _prepare

FORMATS = ("csv", "jsonl", "parquet")


def run(events: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.export", "--events", str(events)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _bare(client: Any, fmt: str, first: str, last: str) -> int:
    """The command's statements, day by day, on the same client; the bytes are dropped. Returns bytes."""
    from chalicelib.ownership.export import Selection, days_range, slices

    size = 0
    for project in PROJECTS:
        start, end = days_range(datetime.fromisoformat(first).date(), datetime.fromisoformat(last).date())
        for _, data in slices(client, Selection(project, start, end), fmt):
            size += len(data)
    return size


def measure(events: int) -> dict[str, Any]:
    from click.testing import CliRunner

    from trackflow.cli import main

    client = _prepare(events, name="overview", days=30)
    first, last = (END - timedelta(days=30)).date().isoformat(), (END - timedelta(days=1)).date().isoformat()
    rows = client.query("SELECT count() FROM events FINAL").result_rows[0][0]
    env = {"TRACKFLOW_DATA_DIR": str(ROOT / ".trackflow" / f"bench-overview-{events}")}
    results: dict[str, Any] = {"export_events": rows}
    for fmt in FORMATS:
        started = time.perf_counter()
        for project in PROJECTS:
            args = ["export", "--project", project, "--from", first, "--to", last, "--format", fmt, "--out", os.devnull]
            outcome = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
            assert outcome.exit_code == 0, outcome.output
        command_s = time.perf_counter() - started
        started = time.perf_counter()
        size = _bare(client, fmt, first, last)
        bare_s = time.perf_counter() - started
        results |= {
            f"export_{fmt}_rows_per_s": rows / command_s,
            f"export_{fmt}_engine_rows_per_s": rows / bare_s,
            f"export_{fmt}_vs_engine": bare_s / command_s,
            f"export_{fmt}_mb": size / 1e6,
        }
        print(f"  export {fmt}: {rows / command_s:,.0f} rows/s ({size / 1e6:,.0f} MB)", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.export")
    parser.add_argument("--events", type=int, default=10_000_000)
    args = parser.parse_args()
    print(json.dumps(measure(args.events)))


if __name__ == "__main__":
    main()
