"""Dashboard reads: overview + timeseries + top pages over 10,000,000 generated events.

The events come from ``trackflow load`` (three projects over 30 days, written
straight to the table, then compacted into the rollups, which is timed);
they are generated once into ``.trackflow/bench-overview-<N>/`` and reused by
later runs. The three calls the dashboard makes first are timed together, wall
clock, median of 5, for the largest project over the whole 30 days; the same
calls forced onto raw events are the baseline of the same run. A third figure
has the last day not yet compacted (what a dashboard sees under steady
traffic: that day is read from raw events).

chDB holds one data directory per process, so this runs in a child process:
``python -m bench.overview --events N`` prints its results as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
END = datetime(2026, 11, 1, tzinfo=UTC)
RUNS = 5
FORMAT_VERSION = "4"  # bump when the generator or schema changes, so the cache is rebuilt


def run(events: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.overview", "--events", str(events)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _prepare(events: int) -> tuple[Any, str]:
    from chalicelib.clickhouse import connect
    from chalicelib.settings import load_settings
    from trackflow.load import Traffic, sites, table_writer, to_table

    data_dir = ROOT / ".trackflow" / f"bench-overview-{events}"
    marker = data_dir / "loaded.json"
    settings = load_settings({"TRACKFLOW_DATA_DIR": str(data_dir)})
    database = settings.clickhouse.database
    if not (marker.exists() and json.loads(marker.read_text()).get("version") == FORMAT_VERSION):
        if data_dir.exists():
            import shutil

            shutil.rmtree(data_dir)
        data_dir.mkdir(parents=True)
        writer = table_writer(settings)
        traffic = Traffic(sites(["development", "shop-demo", "blog-demo"]), end_ms=int(END.timestamp() * 1000), days=30)
        done = 0
        started = time.monotonic()

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if done % 1_000_000 < n:
                print(
                    f"  generated {done:,} of {events:,} events ({time.monotonic() - started:.0f} s)", file=sys.stderr
                )

        to_table(traffic.events(events), writer, batch_size=50_000, progress=progress)
        marker.write_text(json.dumps({"version": FORMAT_VERSION, "events": events}))
    return connect(settings.clickhouse, database=database), database


def _measure(events: int) -> dict[str, Any]:
    from chalicelib import stats
    from chalicelib.rollups import ROLLUP_TABLES, compact_all, mark_changed
    from chalicelib.stats_params import parse_query

    client, _ = _prepare(events)
    for table in ("rollup_generations", *ROLLUP_TABLES):  # compact every day again, timed
        client.command(f"TRUNCATE TABLE {table}")
    started = time.perf_counter()
    compact_all(client, settle_s=0)
    compaction_s = time.perf_counter() - started
    # A long-running server merges parts in the background; a fresh load leaves many.
    for table in ("events", *ROLLUP_TABLES):
        client.command(f"OPTIMIZE TABLE {table} FINAL")
    query = parse_query({"period": "30d"}, now=END.replace(hour=0), default_project="development")
    project_events = client.query("SELECT count() FROM events WHERE project_id = 'development'").result_rows[0][0]

    def three(rollups: bool) -> float:
        started = time.perf_counter()
        stats.overview(client, query, rollups=rollups)
        stats.timeseries(client, query, rollups=rollups)
        stats.breakdown(client, query, "pages", rollups=rollups)
        return (time.perf_counter() - started) * 1000

    three(True)  # warm caches once, as a dashboard in use would have them
    rollup = statistics.median(three(True) for _ in range(RUNS))
    raw = statistics.median(three(False) for _ in range(RUNS))
    mark_changed(client, [("development", (END - timedelta(days=1)).date())])
    one_day_raw = statistics.median(three(True) for _ in range(RUNS))
    compact_all(client, settle_s=0)
    return {
        "rollup_compaction_10m_s": compaction_s,
        "overview_10m_last_day_raw_ms": one_day_raw,
        "overview_10m_events_total": events,
        "overview_10m_events_in_project": project_events,
        "overview_10m_ms": rollup,
        "overview_10m_raw_events_ms": raw,
        "overview_raw_vs_rollups": raw / rollup,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.overview")
    parser.add_argument("--events", type=int, default=10_000_000)
    args = parser.parse_args()
    print(json.dumps(_measure(args.events)))


if __name__ == "__main__":
    main()
