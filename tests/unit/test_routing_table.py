"""D3: an endpoint the store holds but has not routed yet is not "not found" (the router's miss path)."""

from __future__ import annotations

import pytest

from modelgate.errors import ModelgateError, ServiceUnavailable, ValidationError
from modelgate.routing.router import Invocation, NullRecorder, Router
from modelgate.routing.table import EndpointRoute, RoutingTable
from modelgate.runtime.client import InstanceClient


def _refusal(table: RoutingTable, name: str) -> ModelgateError:
    router = Router(table, InstanceClient(1.0), NullRecorder(), "123456789012", "arn:log/")
    with pytest.raises(ModelgateError) as caught:
        router.begin(Invocation(endpoint=name, body=b""), 0.0, lambda _result: None)
    return caught.value


def test_d3_an_expected_endpoint_is_retryable_until_routed_then_unknown_once_withdrawn() -> None:
    table = RoutingTable()
    assert isinstance(_refusal(table, "ep"), ValidationError)
    table.expect("ep")
    refused = _refusal(table, "ep")
    assert isinstance(refused, ServiceUnavailable) and refused.status == 503
    assert refused.message == (
        "Endpoint ep of account 123456789012 is starting after a server restart and cannot serve yet; retry shortly."
    )
    assert isinstance(_refusal(table, "Ep"), ValidationError)  # the runtime matches names exactly
    table.publish(EndpointRoute("ep", ()))
    assert not table.expected("ep")
    table.withdraw("ep")
    assert isinstance(_refusal(table, "ep"), ValidationError)


@pytest.mark.parametrize("end", ["settle", "withdraw"])
def test_d3_a_restore_that_ends_without_a_route_ends_the_expectation(end: str) -> None:
    table = RoutingTable()
    table.expect("ep")
    getattr(table, end)("ep")
    refused = _refusal(table, "ep")
    assert isinstance(refused, ValidationError)
    assert refused.message == "Endpoint ep of account 123456789012 not found."


def test_d3_expecting_a_routed_endpoint_changes_nothing() -> None:
    table = RoutingTable()
    table.publish(EndpointRoute("ep", ()))
    table.expect("ep")
    assert not table.expected("ep")
