"""Properties of the validator: any JSON in, a 202 or a 4xx out, never an exception."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.collect.events import parse_body
from chalicelib.collect.ratelimit import RateLimiter
from chalicelib.collect.service import RequestMeta, collect
from chalicelib.errors import RequestError
from chalicelib.projects import SqliteProjectStore

ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what JSON encoders carry
json_values = st.recursive(
    st.none() | st.booleans() | ints | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=40,
)
# Bodies that look like batches get deep into the validator, not only its first check.
events = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.uuids().map(str) | json_values,
        "type": st.text(max_size=70) | json_values,
        "ts": st.integers(min_value=0, max_value=5_000_000_000_000) | st.text(max_size=30) | json_values,
        "props": json_values,
        "context": st.dictionaries(st.sampled_from(["url", "referrer", "anonymous_id", "x"]), json_values, max_size=4)
        | json_values,
    },
)
batches = st.fixed_dictionaries(
    {},
    optional={
        "api_key": st.sampled_from(["YOUR_API_KEY", "", "tf_pk_nope"]) | json_values,
        "sent_at": ints | st.text(max_size=30) | json_values,
        "events": st.lists(events | json_values, max_size=8) | json_values,
        "context": json_values,
    },
)
bodies = batches.map(orjson.dumps) | json_values.map(orjson.dumps) | st.binary(max_size=200)


@given(bodies)
@settings(max_examples=400, deadline=None)
def test_parse_body_returns_a_batch_or_raises_a_request_error(body: bytes) -> None:
    try:
        batch = parse_body(body)
    except RequestError as exc:
        assert 400 <= exc.status < 500
        assert exc.message
        return
    assert len(batch.events) + len(batch.rejected) >= 1
    for event in batch.events:
        uuid.UUID(event.event_id)


class NullSender:
    def send(self, topic: str, messages: Any) -> None:
        pass


@given(bodies)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_collect_answers_202_or_a_4xx_for_any_body(tmp_path: Path, body: bytes) -> None:
    store = SqliteProjectStore(tmp_path / "projects.sqlite3")
    try:
        result = collect(
            body,
            request=RequestMeta(headers={"content-type": "text/plain", "user-agent": "Mozilla/5.0 Firefox/140.0"}),
            projects=store,
            stage="dev",
            salt=b"salt",
            limiter=RateLimiter(),
            sender=NullSender(),  # type: ignore[arg-type]
            topic="t",
            now_ms=lambda: 1_764_000_000_000,
        )
    except RequestError as exc:
        assert 400 <= exc.status < 500
        return
    assert result.status == 202
    assert result.body["accepted"] >= 1
