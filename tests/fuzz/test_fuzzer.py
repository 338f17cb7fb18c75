"""The fuzzer's judgement, without a server: what counts as a failure, and the state check."""

from __future__ import annotations

import collections
import json
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.fuzzer import Fuzzer, Target
from tests.fuzz.protocols import AwsJson
from tests.fuzz.runtime_ab import UNKNOWN_PREFIX, AbWorld
from tests.fuzz.wire import ACCEPTED, CLOSED_EARLY, Outcome, RawAnswer, RawRequest, with_headers


def answer(status: int, body: Any = None, headers: tuple[tuple[str, str], ...] = ()) -> RawAnswer:
    return RawAnswer(status, headers, json.dumps(body).encode() if body is not None else b"")


@dataclass
class Scripted:
    """A client that gives the scripted answers in turn."""

    answers: list[RawAnswer | None]
    sent: list[RawRequest] = field(default_factory=list)

    def send(self, req: RawRequest) -> RawAnswer | None:
        self.sent.append(req)
        return self.answers.pop(0)


@dataclass
class State:
    values: list[Hashable]
    reads: int = 0

    def __call__(self, params: Any) -> Hashable:
        self.reads += 1
        return self.values.pop(0)


def run(answers: list[RawAnswer | None], state: State | None = None, **target: Any) -> Fuzzer:
    client = Scripted(list(answers))
    t = Target("Op", AwsJson("X", "1.1"), st.just({}), mutating=state is not None, snapshot=state, **target)
    fuzzer = Fuzzer(client, [t], port=1)  # type: ignore[arg-type]
    for _ in answers:
        fuzzer.exchange(t, AwsJson("X", "1.1").build("Op", {}), "valid", {})
    return fuzzer


@pytest.mark.parametrize(
    ("reply", "failed"),
    [
        (answer(200, {}), None),
        (answer(200, {"x": float("nan")}), "the answer is not strict JSON"),
        (answer(400, {"__type": "ValidationException", "message": "m"}), None),
        (answer(404, {}, (("x-amzn-errortype", "UnknownOperationException"),)), None),
        (answer(400, {"message": "m"}), "status 400 without an AWS error code"),
        (answer(500, {"__type": "InternalFailure"}), "status 500"),
        (answer(503, {"__type": "ServiceUnavailable"}), "status 503"),
        (None, "no answer"),
        (CLOSED_EARLY, None),
    ],
)
def test_judgement(reply: RawAnswer | None, failed: str | None) -> None:
    fuzzer = run([reply])
    details = [f.detail for f in fuzzer.failures.values()]
    assert details == [] if failed is None else details[0].startswith(failed), details


def test_a_legitimate_503_is_allowed_where_the_target_says() -> None:
    fuzzer = run([answer(503, {"__type": "ServiceUnavailable"})], allowed=frozenset({(503, "ServiceUnavailable")}))
    assert fuzzer.failures == {}


def test_a_rejected_mutating_request_must_leave_the_state() -> None:
    fuzzer = run([answer(400, {"__type": "ValidationException"})], State(["a", "b"]))
    [failure] = fuzzer.failures.values()
    assert failure.detail == "a rejected request changed the state: 'a' -> 'b'"
    assert fuzzer.rejected_mutations == 1


def test_the_state_seen_after_a_rejection_is_the_next_request_s_before() -> None:
    rejected = answer(400, {"__type": "ValidationException"})
    state = State(["a", "a", "a", "a", "a"])
    fuzzer = run([rejected, rejected, answer(200, {}), rejected], state)
    # before+after, after (the cached before), none for the accepted one, before+after: the accepted request
    # may have changed the state, so the next one reads it afresh.
    assert state.reads == 5
    assert fuzzer.failures == {}
    assert fuzzer.accepted["json Op"] == 1


REFUSED = frozenset({(403, "AccessDenied")})


@pytest.mark.parametrize(
    ("expect", "reply", "failed"),
    [
        (REFUSED, answer(403, {"__type": "AccessDenied"}), None),
        (REFUSED, answer(403, {"__type": "AccessDeniedException"}), "expected 403 AccessDenied, answered 403"),
        (REFUSED, answer(200, {}), "expected 403 AccessDenied, answered 200"),
        (REFUSED, CLOSED_EARLY, None),  # a refusal before the request was read is a refusal
        (frozenset({ACCEPTED}), answer(202, {}), None),
        (frozenset({ACCEPTED}), answer(409, {"__type": "AlreadyConverted"}), "expected 2xx, answered 409"),
        (frozenset({ACCEPTED}), CLOSED_EARLY, "closed before the request was read"),
        (None, answer(409, {"__type": "AlreadyConverted"}), None),
    ],
)
def test_an_answer_known_in_advance_must_be_that_one(
    expect: frozenset[Outcome] | None, reply: RawAnswer, failed: str | None
) -> None:
    for where in ("request", "target"):
        client = Scripted([reply])
        target = Target(
            "Op", AwsJson("X", "1.1"), st.just({}), expect=(lambda p: expect) if where == "target" else None
        )
        fuzzer = Fuzzer(client, [target], port=1)  # type: ignore[arg-type]
        req = AwsJson("X", "1.1").build("Op", {})
        fuzzer.exchange(target, with_headers(req, expect=expect) if where == "request" else req, "valid", {})
        details = [f.detail for f in fuzzer.failures.values()]
        assert details == [] if failed is None else details[0].startswith(failed), (where, details)
        assert fuzzer.predicted == (expect is not None)


def test_a_target_s_prediction_is_only_for_valid_requests() -> None:
    client = Scripted([answer(400, {"__type": "ValidationException"})])
    target = Target("Op", AwsJson("X", "1.1"), st.just({}), expect=lambda p: frozenset({ACCEPTED}))
    fuzzer = Fuzzer(client, [target], port=1)  # type: ignore[arg-type]
    fuzzer.exchange(target, AwsJson("X", "1.1").build("Op", {"Name": 1}), "wrong-type at Name", {})
    assert (fuzzer.failures, fuzzer.predicted) == ({}, 0)


def _ab_world() -> AbWorld:
    world = AbWorld(client=None)  # type: ignore[arg-type]
    world.issued(answer(200, {"endpoint_name": "ep", "inference_id": "i1", "user_id": "u1", "endpoint_variant": "a"}))
    world.issued(answer(201, {"endpoint_name": "ep", "inference_id": "i2", "user_id": "u2", "endpoint_variant": "b"}))
    world.credited(answer(200, {"endpoint_name": "ep", "inference_id": "i2", "user_id": "u2"}))
    params = {"endpoint_name": "ep", "data": "x", "inference_id": "i3", "user_id": "u3"}
    world.invocation_failed(params, answer(424, {"code": "ModelError"}))
    world.invocation_failed({**params, "inference_id": "i4"}, answer(400, {"code": "ValidationError"}))
    return world


@pytest.mark.parametrize(
    ("conversion", "outcome"),
    [
        ({"inference_id": "i1", "user_id": "u1"}, ACCEPTED),
        ({"inference_id": "i1", "user_id": "u1", "endpoint_variant": "a", "reward": 0.5}, ACCEPTED),
        ({"inference_id": "i1", "user_id": "u2"}, (403, "InferenceUserMismatch")),
        ({"inference_id": "i1", "user_id": "u1", "endpoint_variant": "b"}, (400, "VariantMismatch")),
        ({"inference_id": "i2", "user_id": "u2"}, (409, "AlreadyConverted")),
        ({"inference_id": "i2", "user_id": "u1"}, (403, "InferenceUserMismatch")),  # the user is checked first
        ({"inference_id": "i3", "user_id": "u3"}, (409, "InferenceFailed")),
        ({"inference_id": "i3", "user_id": "u1"}, (403, "InferenceUserMismatch")),
        ({"inference_id": f"{UNKNOWN_PREFIX}1", "user_id": "u1"}, (404, "InferenceNotFound")),
        ({"inference_id": "i1"}, (400, "InvalidRequest")),
        ({"user_id": "u1"}, (400, "InvalidRequest")),
        ({"inference_id": "i4", "user_id": "u3"}, None),  # its invocation was refused: nothing recorded, or not
        ({"inference_id": "other", "user_id": "u1"}, None),  # an id of the shape's: issued by no answer seen
    ],
)
def test_the_ab_world_predicts_a_conversion_s_outcome(conversion: dict[str, Any], outcome: Outcome | None) -> None:
    expected = _ab_world().conversion_outcome({"endpoint_name": "ep", **conversion})
    assert expected == (None if outcome is None else frozenset({outcome}))


def test_the_ab_world_draws_conversions_of_its_inferences() -> None:
    world = _ab_world()
    seen: collections.Counter[Any] = collections.Counter()

    @given(world.conversions(st.fixed_dictionaries({"endpoint_name": st.just("ep")})))
    @settings(max_examples=300, database=None, suppress_health_check=list(HealthCheck))
    def draw(params: dict[str, Any]) -> None:
        expected = world.conversion_outcome(params)
        seen[None if expected is None else next(iter(expected))] += 1

    draw()
    assert seen[ACCEPTED] > 50  # most are the issued inference not yet converted
    for code in ("InferenceUserMismatch", "InferenceNotFound", "AlreadyConverted", "InferenceFailed"):
        assert any(c == code for _, c in filter(None, seen)), (code, seen)


def test_top_up_sends_valid_requests_again_until_a_target_is_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    """A target refused at first (an endpoint not InService yet) gets valid requests again, a second apart,
    until its accepted count is reached; a reached target gets none."""
    from tests.fuzz import run as runner

    monkeypatch.setattr(runner.time, "sleep", lambda _s: None)
    refused = answer(400, {"__type": "ValidationException", "message": "not InService yet"})
    client = Scripted([refused, refused, answer(200, {}), answer(200, {})])
    target = Target("Op", AwsJson("X", "1.1"), st.just({}))
    fuzzer = Fuzzer(client, [target], port=1)  # type: ignore[arg-type]
    runner.top_up(fuzzer, {target.label: 2}, seconds=30)
    assert runner.accepted(fuzzer, target.label) == 2
    assert len(client.sent) == 4 and client.answers == []
    runner.top_up(fuzzer, {target.label: 2}, seconds=30)  # reached: nothing more is sent
    assert len(client.sent) == 4
