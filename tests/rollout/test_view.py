"""What DescribeEndpoint shows in each phase: EndpointStatus, which config serves, green's VariantStatus."""

from __future__ import annotations

import botocore.session
import pytest

from modelgate.domain.resources import EndpointStatus
from modelgate.rollout.contract import FleetRole
from modelgate.rollout.machine import Phase, RolloutState, start
from modelgate.rollout.plan import RollbackBatch
from modelgate.rollout.view import EndpointView, VariantStatus, endpoint_view

from .states import BG, RO, T0, V, at, begin, canary

UPDATING, ROLLING_BACK = EndpointStatus.UPDATING, EndpointStatus.ROLLING_BACK
BACK = (
    RollbackBatch(blue_instances=3, green_share=0.25, green_instances=1),
    RollbackBatch(blue_instances=4, green_share=0.0, green_instances=0),
)
ONCE = begin(None, 4)

# (case, state, endpoint status, green VariantStatus, message)
ACTIVE: list[tuple[str, RolloutState, EndpointStatus, VariantStatus, str]] = [
    ("provisioning", BG, UPDATING, VariantStatus.CREATING, "Launching 4 instance(s)."),
    (
        "canary shift",
        at(BG, Phase.SHIFTING, share=0.25),
        UPDATING,
        VariantStatus.ACTIVATING_TRAFFIC,
        "Activating traffic on canary capacity of 1 instance(s).",
    ),
    (
        "canary bake",
        at(BG, Phase.BAKING, share=0.25),
        UPDATING,
        VariantStatus.BAKING,
        "Baking for 300 seconds (WaitIntervalInSeconds) with traffic enabled on canary capacity of 1 instance(s).",
    ),
    (
        "full shift",
        at(BG, Phase.SHIFTING, 1, share=1.0),
        UPDATING,
        VariantStatus.ACTIVATING_TRAFFIC,
        "Activating traffic on full capacity of 4 instance(s).",
    ),
    (
        "final bake",
        at(BG, Phase.FINAL_BAKE, 1, share=1.0),
        UPDATING,
        VariantStatus.BAKING,
        "Baking for 120 seconds (TerminationWaitInSeconds) with traffic enabled on full capacity of 4 instance(s).",
    ),
    (
        "all at once shift",
        at(ONCE, Phase.SHIFTING, share=1.0),
        UPDATING,
        VariantStatus.ACTIVATING_TRAFFIC,
        "Activating traffic on full capacity of 4 instance(s).",
    ),
    (
        "terminating blue",
        at(BG, Phase.TERMINATING_BLUE, 1, share=1.0),
        UPDATING,
        VariantStatus.DELETING,
        "Terminating 4 instance(s).",
    ),
    (
        "blue/green rollback",
        at(BG, Phase.ROLLING_BACK, reason="r", share=0.0),
        UPDATING,
        VariantStatus.DELETING,
        "Terminating 4 instance(s).",
    ),
    (
        "rolling batch provisioning",
        at(RO, Phase.PROVISIONING_GREEN, 1, share=0.5),
        UPDATING,
        VariantStatus.CREATING,
        "Launching 2 instance(s).",
    ),
    (
        "rolling batch shift",
        at(RO, Phase.SHIFTING, share=0.5),
        UPDATING,
        VariantStatus.ACTIVATING_TRAFFIC,
        "Activating traffic on 2 of 4 instance(s).",
    ),
    (
        "rolling batch bake",
        at(RO, Phase.BAKING, share=0.5),
        UPDATING,
        VariantStatus.BAKING,
        "Baking for 60 seconds (WaitIntervalInSeconds) with traffic enabled on 2 of 4 instance(s).",
    ),
    (
        "rolling old batch terminating",
        at(RO, Phase.TERMINATING_BLUE, share=0.5),
        UPDATING,
        VariantStatus.DELETING,
        "Terminating 2 instance(s).",
    ),
    (
        "rolling rollback restoring",
        at(RO, Phase.RESTORING_BLUE, rollback=BACK, reason="r"),
        ROLLING_BACK,
        VariantStatus.UPDATING,
        "Rolling back: 3 of 4 instance(s) of the previous endpoint config.",
    ),
    (
        "rolling rollback shrinking green",
        at(RO, Phase.ROLLING_BACK, rollback=BACK, reason="r"),
        ROLLING_BACK,
        VariantStatus.DELETING,
        "Terminating instance(s) to leave 1 of 4.",
    ),
]


@pytest.mark.parametrize(("case", "state", "status", "variant_status", "message"), ACTIVE, ids=[c[0] for c in ACTIVE])
def test_view_while_deploying(
    case: str, state: RolloutState, status: EndpointStatus, variant_status: VariantStatus, message: str
) -> None:
    view = endpoint_view(state.model_copy(update={"phase_started_at": T0 + 7}))
    assert (view.endpoint_status, view.serving, view.pending, view.failure_reason) == (
        status,
        FleetRole.BLUE,
        True,
        state.reason,
    )
    assert [(e.status, e.status_message, e.start_time) for e in view.variant_status[V]] == [
        (variant_status, message, T0 + 7)
    ]


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (
            Phase.DONE,
            EndpointView(
                endpoint_status=EndpointStatus.IN_SERVICE, serving=FleetRole.GREEN, pending=False, variant_status={}
            ),
        ),
        (
            Phase.ROLLED_BACK,
            EndpointView(
                endpoint_status=EndpointStatus.IN_SERVICE,
                serving=FleetRole.BLUE,
                pending=False,
                variant_status={},
                failure_reason="why",
            ),
        ),
        (
            Phase.ROLLBACK_FAILED,
            EndpointView(
                endpoint_status=EndpointStatus.UPDATE_ROLLBACK_FAILED,
                serving=FleetRole.BLUE,
                pending=False,
                variant_status={},
                failure_reason="why",
            ),
        ),
    ],
)
def test_view_when_finished(phase: Phase, expected: EndpointView) -> None:
    assert endpoint_view(at(BG, phase, reason=None if phase is Phase.DONE else "why")) == expected


def test_every_variant_of_a_multi_variant_endpoint_has_a_status() -> None:
    multi, _ = start(canary(), {"a": 2, "b": 4}, {"a": 2, "b": 4}, T0)
    view = endpoint_view(multi)
    assert {v: [e.status_message for e in es] for v, es in view.variant_status.items()} == {
        "a": ["Launching 2 instance(s)."],
        "b": ["Launching 4 instance(s)."],
    }


def test_statuses_are_botocore_enum_values() -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    assert {s.value for s in VariantStatus} == set(model.shape_for("VariantStatus").metadata["enum"])
    endpoint_enum = set(model.shape_for("EndpointStatus").metadata["enum"])
    states = [at(BG, p, reason="r") for p in Phase] + [at(RO, p, rollback=BACK, reason="r") for p in Phase]
    assert {endpoint_view(s).endpoint_status.value for s in states} <= endpoint_enum
