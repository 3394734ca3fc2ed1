"""`make bench` / `python -m bench`: measure TrackFlow and print a table; write bench/latest.json.

Every ratio compares figures measured in this same run on this machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "latest.json"

# metric -> (target, "min" or "max")
TARGETS: dict[str, tuple[float, str]] = {
    "collect_events_per_s_per_core": (20_000, "min"),
    "collect_vs_bare_producer": (0.7, "min"),
    "ingest_events_per_s_per_core": (30_000, "min"),
    "ingest_vs_engine_floor": (0.5, "min"),
    "ingest_handler_cpu_us_per_event": (10, "max"),
    "freshness_p50_ms": (1_000, "max"),
    "freshness_p95_ms": (1_000, "max"),
    "cold_import_ms": (150, "max"),
    "overview_10m_ms": (300, "max"),
    "overview_today_busy_ms": (300, "max"),
    "busy_vs_compacted": (1.5, "max"),
    "kolkata_vs_utc": (1.5, "max"),
    "funnel_4_steps_10m_ms": (500, "max"),
}


# Measured on both brokers and printed side by side.
BROKER_KEYS = (
    "collect_events_per_s_per_core",
    "collect_request_p50_ms",
    "collect_request_p99_ms",
    "ingest_events_per_s_per_core",
    "ingest_wall_events_per_s",
)


def cold_import_ms(runs: int = 7) -> float:
    """Median time to `import app` in a fresh interpreter."""
    code = "import time; t = time.perf_counter(); import app; print((time.perf_counter() - t) * 1000)"
    times = [
        float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
        for _ in range(runs)
    ]
    return statistics.median(times)


def _step(name: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run, not for quoting)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the freshness load (default 30)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)

    from bench import collect, enrichment, export, freshness, ingest, overview
    from bench.common import machine
    from chalicelib.settings import load_settings
    from chalicelib.storage.clickhouse import connect
    from chalicelib.storage.migrations import migrate
    from trackflow import runner
    from trackflow.broker import EmbeddedBroker, free_port
    from trackflow.dev import MIGRATIONS_DIR
    from trackflow.kafka import ApacheKafka, missing_tools
    from trackflow.topics import ensure_topics

    scale = 0.2 if args.quick else 1.0
    results: dict[str, Any] = {}
    _step("cold import")
    results["cold_import_ms"] = cold_import_ms()
    with tempfile.TemporaryDirectory(prefix="trackflow-bench-") as tmp:
        _step("collect steps, one by one")
        results |= enrichment.run(Path(tmp), requests=int(2000 * scale))
        brokers: list[tuple[str, Any]] = [("", EmbeddedBroker(port=free_port(), log_path=Path(tmp) / "broker.log"))]
        if not missing_tools():  # Apache Kafka, measured the same way in the same run
            brokers.append(("apache_", ApacheKafka(Path(tmp) / "kafka", port=free_port(), controller_port=free_port())))
        for prefix, broker in brokers:
            name = "Apache Kafka" if prefix else "the embedded broker"
            with broker:
                base = {
                    "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                    "TRACKFLOW_DATA_DIR": tmp,
                    "CLICKHOUSE_DATABASE": f"{prefix}trackflow",
                }
                _step(f"collect on {name} (Lambda handler path vs bare producers)")
                conf = load_settings(
                    base | {"TRACKFLOW_EVENTS_TOPIC": "bench.collect", "TRACKFLOW_DLQ_TOPIC": "bench.collect.dlq"}
                )
                ensure_topics(conf.bootstrap_servers, {conf.events_topic: 4})
                measured = collect.run(conf, requests=int(4000 * scale), events_per_request=5)
                _step(f"ingest from {name} (trigger runner + ingest into chDB vs the engine's INSERT ... SELECT floor)")
                conf = load_settings(
                    base | {"TRACKFLOW_EVENTS_TOPIC": "bench.ingest", "TRACKFLOW_DLQ_TOPIC": "bench.ingest.dlq"}
                )
                ensure_topics(conf.bootstrap_servers, {conf.events_topic: 4, conf.dlq_topic: 1})
                migrate(connect(conf.clickhouse), MIGRATIONS_DIR, database=conf.clickhouse.database)
                measured |= ingest.run(
                    conf, requests=int(20000 * scale), events_per_request=5, batch_size=runner.DEFAULT_BATCH_SIZE
                )
                if prefix:
                    measured = {f"{prefix}{k}": v for k, v in measured.items() if k in BROKER_KEYS}
                results |= measured
    events = 1_000_000 if args.quick else 10_000_000
    _step(f"dashboard reads over {events:,} events (generated once into .trackflow/, then reused)")
    results |= overview.run(events)
    _step(f"export of the same {events:,} events, each format (to /dev/null)")
    results |= export.run(events)
    _step(f"freshness (trackflow dev, 1,000 events/s for {args.seconds:g} s)")
    results |= freshness.run(events_per_s=1000, seconds=args.seconds if not args.quick else 5)

    report = {
        "command": "make bench" + (" (--quick)" if args.quick else ""),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "results": results,
        "targets": {
            k: {"target": t, "kind": kind, "met": _met(results.get(k), t, kind)} for k, (t, kind) in TARGETS.items()
        },
    }
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    return 0


def _met(value: float | None, target: float, kind: str) -> bool | None:
    if value is None:
        return None
    return value >= target if kind == "min" else value <= target


def _print(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"\n{report['command']} on {m['cpu']} ({m['cores']} cores), Python {m['python']}, {report['when']}")
    print(f"{'metric':64} {'value':>14} {'target':>10}  met")
    print("-" * 96)
    for key, value in report["results"].items():
        target = report["targets"].get(key)
        shown = f"{value:,.2f}" if isinstance(value, float) and value < 100 else f"{value:,.0f}"
        goal = "" if target is None else (">= " if target["kind"] == "min" else "<= ") + f"{target['target']:,g}"
        met = "" if target is None else ("yes" if target["met"] else "NO")
        print(f"{key:64} {shown:>14} {goal:>10}  {met}")
    if any(f"apache_{key}" in report["results"] for key in BROKER_KEYS):
        print(f"\n{'both brokers, same run':40} {'embedded (Tansu)':>18} {'Apache Kafka':>14}")
        for key in BROKER_KEYS:
            ours, theirs = report["results"].get(key), report["results"].get(f"apache_{key}")
            print(f"{key:40} {ours:>18,.1f} {theirs:>14,.1f}")
    print(f"\nwritten to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    raise SystemExit(main())
