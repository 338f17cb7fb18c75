"""The fuzz loop: draw a target and a request, send it raw, judge the answer and the state, keep going.

One :class:`Fuzzer` per server. Each hypothesis example is one request: a :class:`Target` (an operation
in one protocol), valid parameters from its strategy, and then, with the shares in :data:`MODES`, either
nothing more, a mutation of the parameters (:mod:`tests.fuzz.mutate`) or a malformed envelope (the
protocol's ``envelopes``). Every answer is judged (:meth:`Fuzzer.judge`):

* it came (the connection was not closed on us) and its status is below 500, except a 503
  ``ServiceUnavailable`` where the target allows it (an endpoint with no healthy instance);
* a 4xx carries an AWS error code where that protocol puts it, and a 2xx answer parses in its protocol;
* where the answer is known in advance, it is that one: a request a real client would not send (a browser's
  Host or Origin, a query request without an SDK header: the envelope says, ``RawRequest.expect``) is refused
  with its documented code, and a valid request whose outcome the world predicts (``Target.expect``: an A/B
  conversion of an inference the fuzzer was issued, or a forged one) gets that outcome;
* a rejected mutating request left the state its target observes (List* and Describe* answers) as it was.

Failures do not stop the run: they are collected, grouped by what went wrong (target, status, code,
mutation kind) and reported together at the end with the first raw request and answer of each group, so
one run lists every distinct failure. The run is not shrunk: the server's state is not reset between
examples, so a shrunk sequence would not replay; the raw bytes in the report are the reproducer.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from botocore.model import StructureShape
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tests.fuzz.mutate import mutations
from tests.fuzz.protocols import any_error_code
from tests.fuzz.values import UNIFORM
from tests.fuzz.wire import ACCEPTED, CLOSED_EARLY, Client, Outcome, ProbeFailed, RawAnswer, RawRequest, show
from tests.fuzz.world import pick

# Shares of requests: sent valid, with a mutated value or tree, in a malformed envelope (out of 20).
MODES = ["valid"] * 13 + ["mutate"] * 5 + ["envelope"] * 2
REPORTED_GROUPS = 40  # failure groups shown in full; the rest are counted


class WireProtocol(Protocol):
    @property
    def name(self) -> str: ...

    def build(self, op: str, params: Any, kind: str = "") -> RawRequest: ...

    def envelopes(self) -> list[tuple[str, Callable[[str, Any], RawRequest]]]: ...

    def error_code(self, answer: RawAnswer) -> str | None: ...

    def well_formed(self, answer: RawAnswer) -> str | None: ...


@dataclass
class Target:
    op: str
    protocol: WireProtocol
    params: SearchStrategy[Any]
    shape: StructureShape | None = None  # the input shape that mutations walk; None: no value mutations
    mutating: bool = False
    weight: int = 1
    # The state a rejected request must leave alone (given the valid params), and which snapshots are the
    # same observation (tagging operations observe the named resource's tags too). The state may change only
    # through accepted requests, so the state seen after a rejection is the state before the next request
    # with the same key, until a mutating request is accepted.
    snapshot: Callable[[Any], Hashable] | None = None
    state_key: Callable[[Any], Hashable] | None = None
    cache_state: bool = True  # False: the state also changes on its own, some time after an accepted request
    on_answer: Callable[[Any, RawAnswer], None] | None = None  # bookkeeping after a 2xx answer
    on_refusal: Callable[[Any, RawAnswer], None] | None = None  # bookkeeping after a 4xx answer to a valid request
    # The answers a valid request may get, as the world predicts them from its params (before it is sent);
    # None: any the judgement takes.
    expect: Callable[[Any], frozenset[Outcome] | None] | None = None
    allowed: frozenset[tuple[int, str]] = frozenset()  # (status, code) >= 500 that are legitimate answers
    unchecked_2xx: bool = False  # answers whose body is the model's, not the protocol's

    @property
    def label(self) -> str:
        return f"{self.protocol.name} {self.op}"


class RunBroken(Exception):
    """The server's state can no longer be observed (a List* call failed): the run stops."""


@dataclass
class Failure:
    group: str
    detail: str
    shown: str
    count: int = 1


def skipped_kinds() -> frozenset[str]:
    """Mutation and envelope kinds left out (``MODELGATE_FUZZ_SKIP``, comma-separated): to see past a known failure."""
    return frozenset(k.strip() for k in os.environ.get("MODELGATE_FUZZ_SKIP", "").split(",") if k.strip())


@dataclass
class Fuzzer:
    client: Client
    targets: list[Target]
    port: int
    skip: frozenset[str] = field(default_factory=skipped_kinds)
    sent: int = 0
    answers: collections.Counter[tuple[str, int, str]] = field(default_factory=collections.Counter)
    accepted: collections.Counter[str] = field(default_factory=collections.Counter)
    rejected_mutations: int = 0
    predicted: int = 0  # answers judged against an outcome known in advance (RawRequest.expect, Target.expect)
    failures: dict[str, Failure] = field(default_factory=dict)
    broken: str | None = None  # the server can no longer be observed: the rest of the run is pointless
    recent: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=8))
    _state: tuple[Hashable, Hashable] | None = None  # (state key, the state last observed)
    timing: dict[str, float] = field(default_factory=lambda: collections.defaultdict(float))  # seconds per phase
    trace: TextIO | None = None  # every request and answer, abridged (``MODELGATE_FUZZ_TRACE=<file>``)

    def __post_init__(self) -> None:
        weighted = [t for t in self.targets for _ in range(t.weight)]
        self._targets = UNIFORM.map(lambda u: pick(weighted, u))
        self._modes = UNIFORM.map(lambda u: pick(MODES, u))
        path = os.environ.get("MODELGATE_FUZZ_TRACE")
        if path and self.trace is None:
            self.trace = open(path, "a")  # noqa: SIM115 - open for the fuzzer's life

    def step(self, data: st.DataObject) -> None:
        if self.broken is not None:
            raise RunBroken(self.broken)
        started = time.perf_counter()
        target: Target = data.draw(self._targets, label="target")
        params = data.draw(target.params, label="params")
        mode = data.draw(self._modes, label="mode")
        kind = "valid"
        if mode == "mutate" and target.shape is not None and isinstance(params, dict):
            m = data.draw(mutations(target.shape, params, self.skip), label="mutation")
            kind = m.kind
            req = target.protocol.build(target.op, m.params, f"{m.kind} at {m.where or '(root)'}")
        elif mode == "envelope":
            envelopes = [e for e in target.protocol.envelopes() if e[0] not in self.skip]
            kind, make = pick(envelopes, data.draw(UNIFORM, label="envelope"))
            req = make(target.op, params)
        else:
            req = target.protocol.build(target.op, params)
        self.timing["generate"] += time.perf_counter() - started
        self.exchange(target, req, kind, params)

    def exchange(self, target: Target, req: RawRequest, kind: str, params: Any) -> RawAnswer | None:
        checked = target.mutating and target.snapshot is not None
        key = (id(target.snapshot), target.state_key(params) if target.state_key is not None else None)
        cached = target.cache_state and self._state is not None and self._state[0] == key
        before = self._state[1] if cached and self._state is not None else None
        if checked and before is None:
            before = self.observe(target, params, "before")
            if before is None:
                return None
        expected = req.expect
        if expected is None and kind == "valid" and target.expect is not None:
            expected = target.expect(params)
        self.predicted += expected is not None
        sending = time.perf_counter()
        answer = self.client.send(req)
        self.sent += 1
        self.timing["send"] += time.perf_counter() - sending
        if self.trace is not None:
            shown = "none" if answer is None else f"{answer.status} {answer.body[:300]!r}"
            self.trace.write(f"{req.label} [{kind}]\n  {req.body[:600]!r}\n  -> {shown}\n")
        problem = self.judge(target, answer, expected)
        code = "" if answer is None else (target.protocol.error_code(answer) or any_error_code(answer) or "")
        status = 0 if answer is None else answer.status
        self.answers[(target.label, status, code)] += 1
        if answer is not None and 200 <= status < 300:
            self.accepted[target.label] += 1
            if target.mutating:
                self._state = None
                self.recent.append(f"{req.label} [{kind}] {req.body[:400]!r} -> {status}")
            if target.on_answer is not None:
                target.on_answer(params if kind == "valid" else None, answer)
        elif checked:
            self.rejected_mutations += 1
            after = self.observe(target, params, "after")
            self._state = (key, after) if after is not None and answer is not None else None
            if after is not None and after != before:
                problem = problem or f"a rejected request changed the state: {_diff(before, after)}"
        if answer is not None and 400 <= status < 500 and kind == "valid" and target.on_refusal is not None:
            target.on_refusal(params, answer)
        if problem is not None:
            self.fail(f"{target.label} | {problem.split(':')[0]} | {status} {code} | {kind}", problem, req, answer)
        return answer

    def observe(self, target: Target, params: Any, when: str) -> Hashable | None:
        """The state the target's snapshot gives now; None (and the run broken) when a probe fails."""
        assert target.snapshot is not None
        started = time.perf_counter()
        try:
            return target.snapshot(params)
        except ProbeFailed as exc:
            recent = "\n  ".join(self.recent)
            self.broken = (
                f"a state probe failed {when} {target.label}: {exc}\n"
                f"the last accepted mutating requests, newest last:\n  {recent}"
            )
            return None
        finally:
            self.timing["observe"] += time.perf_counter() - started

    def judge(self, target: Target, answer: RawAnswer | None, expected: frozenset[Outcome] | None = None) -> str | None:
        if answer is None:
            return "no answer: the connection was closed or timed out"
        if answer is CLOSED_EARLY:
            # A refusal before the whole request was read (a server may close then); it is not accepted.
            return (
                "closed before the request was read, expected it accepted"
                if expected and ACCEPTED in expected
                else None
            )
        code = target.protocol.error_code(answer) or any_error_code(answer)
        if expected is not None:
            outcome = ACCEPTED if 200 <= answer.status < 300 else (answer.status, code or "")
            if outcome not in expected:
                wanted = " or ".join(f"{s} {c}" if c else "2xx" for s, c in sorted(expected))
                return f"expected {wanted}, answered {answer.status} {code or ''}".rstrip()
        if answer.status >= 500 and (answer.status, code or "") not in target.allowed:
            return f"status {answer.status} (code {code})"
        if 400 <= answer.status < 500 and not code:
            return f"status {answer.status} without an AWS error code"
        if 200 <= answer.status < 300 and not target.unchecked_2xx and answer.body:
            return target.protocol.well_formed(answer)
        return None

    def fail(self, group: str, detail: str, req: RawRequest, answer: RawAnswer | None) -> None:
        seen = self.failures.get(group)
        if seen is not None:
            seen.count += 1
            return
        self.failures[group] = Failure(group, detail, show(req, answer, self.port))

    def summary(self) -> str:
        spent = ", ".join(f"{k} {v:.1f} s" for k, v in self.timing.items())
        lines = [
            f"{self.sent} requests, {self.rejected_mutations} rejected mutating requests checked for state, "
            f"{self.predicted} answers checked against a predicted outcome ({spent})"
        ]
        by_target: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for (label, status, code), n in self.answers.items():
            by_target[label][f"{status}{' ' + code if code else ''}"] += n
        for label in sorted(by_target):
            parts = ", ".join(f"{k} x {n}" for k, n in by_target[label].most_common())
            lines.append(f"  {label}: {parts}")
        return "\n".join(lines)

    def report(self) -> str:
        groups = sorted(self.failures.values(), key=lambda f: -f.count)
        lines = [f"{len(groups)} kinds of failure, {sum(f.count for f in groups)} failing requests:"]
        for f in groups[:REPORTED_GROUPS]:
            lines += ["", f"[{f.count} x] {f.group}", f"  {f.detail[:2000]}", f.shown]
        if len(groups) > REPORTED_GROUPS:
            lines.append(f"... and {len(groups) - REPORTED_GROUPS} more groups")
        return "\n".join(lines)


def _diff(before: Any, after: Any) -> str:
    if isinstance(before, tuple) and isinstance(after, tuple) and len(before) == len(after):
        parts = [_diff(b, a) for b, a in zip(before, after, strict=True) if b != a]
        return "; ".join(parts)
    if isinstance(before, frozenset) and isinstance(after, frozenset):
        return f"added {sorted(map(repr, after - before))[:5]}, removed {sorted(map(repr, before - after))[:5]}"
    return f"{before!r} -> {after!r}"[:1000]
