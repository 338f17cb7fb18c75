"""Routing tables: immutable snapshots swapped in atomically by the controllers.

For each endpoint: its variants with their weights, for each variant its fleets (blue/green during a
rollout) with their share of the variant's traffic, and each fleet's healthy instances. The only
mutable state the router touches is each instance's ``outstanding`` counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelgate.policies.routing import cumulative


class Instance:
    """A running instance as the router sees it."""

    __slots__ = ("alive", "base_url", "endpoint", "fleet", "id", "outstanding", "pid", "port", "variant")

    def __init__(self, id: str, endpoint: str, variant: str, fleet: str, port: int, pid: int) -> None:
        self.id = id
        self.endpoint = endpoint
        self.variant = variant
        self.fleet = fleet
        self.port = port
        self.pid = pid
        self.base_url = f"http://127.0.0.1:{port}"
        self.outstanding = 0
        self.alive = True


@dataclass(frozen=True, slots=True)
class FleetRoute:
    fleet_id: str
    instances: tuple[Instance, ...]


@dataclass(frozen=True, slots=True)
class VariantRoute:
    name: str
    weight: float
    fleets: tuple[FleetRoute, ...]
    fleet_shares: tuple[float, ...]
    random_routing: bool
    cum_shares: tuple[float, ...] = field(init=False)
    instance_count: int = field(init=False)  # the snapshot is immutable: counted once, read per request
    name_bytes: bytes = field(init=False)  # for the x-Amzn-Invoked-Production-Variant header

    def __post_init__(self) -> None:
        object.__setattr__(self, "cum_shares", cumulative(self.fleet_shares))
        object.__setattr__(self, "instance_count", sum(len(f.instances) for f in self.fleets))
        object.__setattr__(self, "name_bytes", self.name.encode())


@dataclass(frozen=True, slots=True)
class EndpointRoute:
    name: str
    variants: tuple[VariantRoute, ...]
    by_name: dict[str, VariantRoute] = field(init=False)
    cum_weights: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {v.name: v for v in self.variants})
        object.__setattr__(self, "cum_weights", cumulative([v.weight for v in self.variants]))


class RoutingTable:
    """Endpoint name → route. Controllers ``publish``; the router only reads.

    Beside the routes, the endpoints that are *expected*: the store holds them in a serving status, but
    their route is not published yet (after a restart, while their instances start). The router answers
    those with a retryable error, not "not found": they exist, and DescribeEndpoint says so. Publishing or
    withdrawing a route, or :meth:`settle`, ends the expectation.
    """

    def __init__(self) -> None:
        self._routes: dict[str, EndpointRoute] = {}
        self._expected: set[str] = set()

    def get(self, endpoint: str) -> EndpointRoute | None:
        return self._routes.get(endpoint)

    def expected(self, endpoint: str) -> bool:
        """Whether the endpoint exists but has no route yet (asked on the router's miss path only)."""
        return endpoint in self._expected

    def expect(self, endpoint: str) -> None:
        if endpoint not in self._routes:
            self._expected.add(endpoint)

    def settle(self, endpoint: str) -> None:
        """Its restore is over: from now on, no route means not found."""
        self._expected.discard(endpoint)

    def publish(self, route: EndpointRoute) -> None:
        self._routes[route.name] = route
        self._expected.discard(route.name)

    def withdraw(self, endpoint: str) -> None:
        self._routes.pop(endpoint, None)
        self._expected.discard(endpoint)
