"""Dashboard reads and compaction over 10,000,000 generated events, three ways.

The events come from ``trackflow load`` (three projects, written straight to
the table in time order, as ingest receives them), generated once into
``.trackflow/bench-<name>-<N>/`` and reused by later runs. Nothing is merged
with ``OPTIMIZE``: the parts are as the writes and background merges left them.

- *month*: 30 days. Every hour is marked changed and compacted (timed). The
  three calls the dashboard makes first, wall clock, median of 11, for the
  largest project over 30 days; the same calls on raw events are the
  baseline. A full dashboard refresh over the same days in UTC and in
  Asia/Kolkata (half-hour edges). A 4-step funnel over the 30 days, against
  counting the same events with FINAL.
- *busy*: all events in the last 24 hours, compacted, then the current hour
  marked changed on time (steady traffic) and compaction run as it runs every
  minute (the hour too fresh for the hour tier; the day's prefix summed and
  the hour compacted up to a cut, timed), with the dashboard a minute before
  the data ends: the first calls, the CPU of a full refresh (its session
  breakdowns in one call, as the dashboard asks them; also timed against
  one call each), and the same calls and refresh once that hour is
  compacted whole.
- *backlog*: 90 days marked changed, as the upgrade to hourly rollups leaves
  an install: the time compaction takes to clear it.

chDB holds one data directory per process, so each part runs in a child process:
``python -m bench.overview --events N --part month`` prints its results as JSON.
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
# Timed calls per figure (the median is quoted): single calls on this shared machine swing by 10-20%.
RUNS = 11
# The settle time of the busy day's minute round: the bench's marks are seconds old (compaction's default
# is 60 s; only the current hour's fresh mark must not settle while the round runs).
BUSY_SETTLE_S = 5
# Bump when the generator or the events table's layout changes, so the cache is rebuilt (migrations run
# every time, but a migration that copies the events leaves parts as its copy made them, not as ingest
# does). 5: time order. 6: the events sorted by minute (migration 013).
FORMAT_VERSION = "6"
PROJECTS = ["development", "shop-demo", "blog-demo"]
DASHBOARD_BREAKDOWNS = (
    "entry_pages",
    "exit_pages",
    "referrers",
    "utm_sources",
    "devices",
    "browsers",
    "os",
    "countries",
)


def run(events: int) -> dict[str, Any]:
    """Each part in a child process of its own (chDB opens one data directory per process)."""
    results: dict[str, Any] = {}
    for part in PARTS:
        out = subprocess.run(
            [sys.executable, "-m", "bench.overview", "--events", str(events), "--part", part],
            cwd=ROOT,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
        results |= json.loads(out.strip().splitlines()[-1])
    return results


def _prepare(events: int, *, name: str, days: int) -> Any:
    """A client on ``events`` generated events over ``days`` days before ``END``, generated once and reused;
    migrated on every run (an upgrade marks every stored hour for compaction)."""
    from chalicelib.settings import load_settings
    from chalicelib.storage.clickhouse import connect
    from trackflow.load import Traffic, sites, table_writer, to_table

    data_dir = ROOT / ".trackflow" / f"bench-{name}-{events}"
    marker = data_dir / "loaded.json"
    settings = load_settings({"TRACKFLOW_DATA_DIR": str(data_dir)})
    if not (marker.exists() and json.loads(marker.read_text()).get("version") == FORMAT_VERSION):
        if data_dir.exists():
            import shutil

            shutil.rmtree(data_dir)
        data_dir.mkdir(parents=True)
        traffic = Traffic(sites(PROJECTS), end_ms=int(END.timestamp() * 1000), days=days)
        done = 0
        started = time.monotonic()

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if done % 1_000_000 < n:
                print(
                    f"  {name}: generated {done:,} of {events:,} events ({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                )

        to_table(traffic.events(events), table_writer(settings), batch_size=50_000, progress=progress)
        marker.write_text(json.dumps({"version": FORMAT_VERSION, "events": events}))
    table_writer(settings)  # migrations
    return connect(settings.clickhouse, database=settings.clickhouse.database)


def _rebuild(client: Any) -> float:
    """Forget every rollup and mark every stored hour changed, as an upgrade does; seconds to compact it all."""
    from chalicelib.rollups.compaction import BOOK_TABLES, ROLLUP_TABLES, compact_all

    for table in (*BOOK_TABLES, *ROLLUP_TABLES):
        client.command(f"TRUNCATE TABLE {table}")
    client.command(
        "INSERT INTO rollup_hour_changes (project_id, hour, rows) "
        "SELECT project_id, toStartOfHour(timestamp), count() FROM events GROUP BY ALL"
    )
    started = time.perf_counter()
    done = compact_all(client, settle_s=0)
    seconds = time.perf_counter() - started
    print(f"  compacted {done.hours:,} hours and {done.days:,} days in {seconds:.1f} s", file=sys.stderr)
    return seconds


def _dashboard(client: Any, query: Any, *, rollups: bool = True, full: bool = False) -> None:
    """The calls the dashboard makes first (overview, timeseries, top pages), or on every refresh (``full``)."""
    from chalicelib.stats import reports as stats

    stats.overview(client, query, rollups=rollups)
    stats.timeseries(client, query, rollups=rollups)
    stats.breakdown(client, query, "pages", rollups=rollups)
    if full:
        stats.breakdowns(client, query, list(DASHBOARD_BREAKDOWNS), rollups=rollups)
        stats.errors(client, query)
        stats.custom_events(client, query, name=None, prop=None)
        stats.clicks(client, query)
        stats.realtime(client, query, now=query.end)


def _each_breakdown(client: Any, query: Any) -> None:
    """The session breakdowns a refresh shows, one call each, as the dashboard asked for them before
    ``/v1/stats/breakdowns``: the baseline of the one call that answers them all."""
    from chalicelib.stats import reports as stats

    for dimension in DASHBOARD_BREAKDOWNS:
        stats.breakdown(client, query, dimension)


def _first_load(client: Any, query: Any) -> None:
    """The dashboard's first calls with no split kept from calls before (chalicelib.rollups.split): its
    first load, where a refresh within the reuse time finds the splits of the last one."""
    from chalicelib.rollups.split import CACHE

    CACHE.clear()
    _dashboard(client, query)


def _parts(client: Any, table: str) -> int:
    """Active parts of ``table``. ``FINAL`` over a partition of one part merges nothing, so reads of raw
    events get several times faster once merges have caught up: on data written in random order (format
    4), the month's raw calls took 6.6 s on 11 parts as generated and 1.5 s on a copy after ``OPTIMIZE ...
    FINAL`` (2 parts), the calls on rollups the same. Runs compare at the same counts."""
    query = "SELECT count() FROM system.parts WHERE active AND database = currentDatabase() AND table = {t:String}"
    return int(client.query(query, parameters={"t": table}).result_rows[0][0])


def _median_ms(call: Any, runs: int = RUNS, *, cpu: bool = False) -> float:
    clock = time.process_time if cpu else time.perf_counter
    call()  # warm caches once, as a dashboard in use would have them
    timings = []
    for _ in range(runs):
        started = clock()
        call()
        timings.append((clock() - started) * 1000)
    return statistics.median(timings)


def _month(events: int) -> dict[str, Any]:
    """30 days of traffic: the dashboard's first calls, in UTC, in Asia/Kolkata, and forced raw."""
    from chalicelib.stats.params import parse_query

    client = _prepare(events, name="overview", days=30)
    compaction_s = _rebuild(client)
    period = {"period": "30d"}
    query = parse_query(period, now=END.replace(hour=0), default_project="development")
    days = {"from": "2026-10-02", "to": "2026-10-31"}
    utc = parse_query(days, now=END, default_project="development")
    kolkata = parse_query(days | {"tz": "Asia/Kolkata"}, now=END, default_project="development")
    project_events = client.query("SELECT count() FROM events WHERE project_id = 'development'").result_rows[0][0]
    rollup = _median_ms(lambda: _dashboard(client, query))
    cold = _median_ms(lambda: _first_load(client, query))
    raw = _median_ms(lambda: _dashboard(client, query, rollups=False), runs=3)
    utc_ms = _median_ms(lambda: _dashboard(client, utc, full=True))
    kolkata_ms = _median_ms(lambda: _dashboard(client, kolkata, full=True))
    funnel_ms, scan_ms = _funnel(client, query)
    return {
        "rollup_compaction_10m_s": compaction_s,
        "overview_10m_events_total": events,
        "overview_10m_events_in_project": project_events,
        "overview_10m_events_parts": _parts(client, "events"),
        "overview_10m_session_hour_parts": _parts(client, "rollup_session_hours"),
        "overview_10m_ms": rollup,
        "overview_10m_first_load_ms": cold,
        "overview_10m_raw_events_ms": raw,
        "overview_raw_vs_rollups": raw / rollup,
        "dashboard_refresh_30d_utc_ms": utc_ms,
        "dashboard_refresh_30d_kolkata_ms": kolkata_ms,
        "kolkata_vs_utc": kolkata_ms / utc_ms,
        "funnel_4_steps_10m_ms": funnel_ms,
        "funnel_events_final_scan_ms": scan_ms,
        "funnel_vs_final_scan": funnel_ms / scan_ms,
    }


def _funnel(client: Any, query: Any) -> tuple[float, float]:
    """A 4-step funnel (home, pricing, the signup page, the signup event) over the 30 days, one-day
    window; and, as its baseline, the bare read it cannot do without: counting the same project's
    events with FINAL."""
    from chalicelib.goals import Goal, Step
    from chalicelib.stats import reports as stats

    pages = [Step(path, Goal(f"s{n}", path, page=path)) for n, path in enumerate(["/", "/pricing", "/signup"], 1)]
    steps = [*pages, Step("signup", Goal("s4", "signup", event="signup"))]
    funnel_ms = _median_ms(lambda: stats.funnel(client, query, steps, 86_400))
    scan = "SELECT count() FROM events FINAL WHERE project_id = {p:String} AND timestamp >= {s:DateTime64(3)} AND timestamp < {e:DateTime64(3)}"
    params = {"p": query.project_id, "s": query.start, "e": query.end}
    return funnel_ms, _median_ms(lambda: client.query(scan, parameters=params))


def _busy_day(events: int) -> dict[str, Any]:
    """All events in the last 24 hours, as ingest leaves them (no OPTIMIZE), with the current hour still
    changing: compacted up to a cut by the minute's round, as under steady traffic."""
    from chalicelib.rollups.compaction import compact, compact_all, mark_changed
    from chalicelib.stats import reports as stats
    from chalicelib.stats.params import parse_query

    client = _prepare(events, name="busy", days=1)
    _rebuild(client)
    now = END - timedelta(minutes=1)  # the dashboard a minute before the data ends
    query = parse_query({"period": "24h"}, now=now, default_project="development")
    current = END - timedelta(hours=1)
    time.sleep(BUSY_SETTLE_S + 0.1)  # the marks of the rebuild settle

    def traffic_goes_on() -> None:  # an insert of events of this moment marks the current hour (on time)
        mark_changed(
            client,
            {(project, current): 0 for project in PROJECTS},
            earliest={(project, current): datetime.now(UTC) for project in PROJECTS},
        )

    # The hour's round, once the hour before the current one is compacted: the current hour is too fresh
    # for the hour tier; the prefix tier sums the day's hours before it (once an hour, and again when a
    # late event changed one of them).
    traffic_goes_on()
    started = time.perf_counter()
    hourly = compact(client, settle_s=BUSY_SETTLE_S, cut_at=now)
    hour_s = time.perf_counter() - started
    # The minute's round, every minute: the cut tier compacts the current hour up to a cut (its "now" is
    # the bench's). Marked again: the hour's round may have outlasted the bench's short settle time.
    traffic_goes_on()
    started = time.perf_counter()
    minute = compact(client, settle_s=BUSY_SETTLE_S, cut_at=now)
    minute_s = time.perf_counter() - started
    busy = _median_ms(lambda: _dashboard(client, query))
    busy_cold = _median_ms(lambda: _first_load(client, query))
    cpu = _median_ms(lambda: _dashboard(client, query, full=True), runs=3, cpu=True)
    each_ms = _median_ms(lambda: _each_breakdown(client, query), runs=3)
    together_ms = _median_ms(lambda: stats.breakdowns(client, query, list(DASHBOARD_BREAKDOWNS)), runs=3)
    compact_all(client, settle_s=0)
    compacted = _median_ms(lambda: _dashboard(client, query))
    compacted_cpu = _median_ms(lambda: _dashboard(client, query, full=True), runs=3, cpu=True)
    return {
        "overview_today_busy_ms": busy,
        "overview_today_busy_first_load_ms": busy_cold,
        "overview_today_compacted_ms": compacted,
        "busy_vs_compacted": busy / compacted,
        "dashboard_refresh_cpu_ms": cpu,
        "dashboard_refresh_compacted_cpu_ms": compacted_cpu,
        "busy_breakdowns_one_call_each_ms": each_ms,
        "busy_breakdowns_in_one_call_ms": together_ms,
        "busy_breakdowns_calls_vs_one": each_ms / together_ms,
        "hour_round_s": hour_s,
        "minute_round_s": minute_s,
        "day_prefixes": hourly.prefixes,
        "hour_cuts": hourly.cuts + minute.cuts,
        "busy_events_parts": _parts(client, "events"),
    }


def _backlog(events: int) -> dict[str, Any]:
    """90 days of history marked changed, as the upgrade to hourly rollups leaves it: time to clear it."""
    client = _prepare(events, name="backlog", days=90)
    return {"compaction_backlog_90d_s": _rebuild(client), "compaction_backlog_90d_events": events}


PARTS = {"month": _month, "busy": _busy_day, "backlog": _backlog}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.overview")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--part", choices=PARTS, required=True)
    args = parser.parse_args()
    print(json.dumps(PARTS[args.part](args.events)))


if __name__ == "__main__":
    main()
