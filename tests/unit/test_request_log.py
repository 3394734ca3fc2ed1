"""trackflow.request_log: the dashboard's polling is one line a minute, everything else a line each."""

from __future__ import annotations

from trackflow.request_log import PollLog, is_polling


def test_the_dashboard_and_its_stats_requests_are_polling_and_collect_is_not() -> None:
    assert is_polling("/v1/stats/overview?period=7d")
    assert is_polling("/") and is_polling("/favicon.ico")
    assert not is_polling("/v1/collect")
    assert not is_polling("/health")


def test_polling_is_summed_up_once_a_minute_with_the_failures() -> None:
    now = [0.0]
    log = PollLog(every_s=60, clock=lambda: now[0])
    lines = []
    for second in range(0, 150, 5):  # a request every 5 s for two and a half minutes
        now[0] = float(second)
        lines.append(log.count(404 if second == 10 else 200))
    said = [line for line in lines if line]
    assert said == [
        "dashboard polling: 13 requests to the stats API in the last 60 s, 1 failed",
        "dashboard polling: 12 requests to the stats API in the last 60 s, 0 failed",
    ]
