"""What the routing table and DescribeEndpoint show of a deployment in progress. Pure functions.

Routes. Per variant of the current config, blue takes ``1 - s`` of the variant's traffic and green
``s``, where ``s`` is the share the rollout last commanded; a fleet with no share is left out of the
route. Once every green variant has all of its traffic, the route is green's variants with green's
weights and routing strategies (an update without a DeploymentConfig may rename variants, and then
moves all traffic at once).

DescribeEndpoint. The top level keeps describing the current config: each variant's CurrentWeight is
its weight times the share blue keeps, its CurrentInstanceCount the healthy blue instances that carry
that share (:func:`~modelgate.rollout.plan.instances_for_share`: all of them while blue keeps everything).
``PendingDeploymentSummary`` describes green the same way (a canary of 1 instance of 3 shows
CurrentInstanceCount 1 and DesiredInstanceCount 3, as SageMaker's EventBridge sample does) with the
VariantStatus entries of :func:`~modelgate.rollout.view.endpoint_view`.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelgate.controllers.fleets import Fleet
from modelgate.domain.deployments import (
    Deployment,
    DeploymentView,
    PendingDeployment,
    VariantServing,
    all_on_green,
)
from modelgate.domain.resources import Endpoint, EndpointStatus, RoutingStrategy
from modelgate.rollout.plan import instances_for_share
from modelgate.rollout.view import endpoint_view
from modelgate.routing.table import FleetRoute, VariantRoute


def variant_routes(
    ep: Endpoint,
    blue: Mapping[str, Fleet],
    dep: Deployment,
    green: Mapping[str, Fleet],
    share: Mapping[str, float],
) -> tuple[VariantRoute, ...]:
    if all_on_green(share, (v.variant_name for v in dep.variants)):
        out = []
        for v in dep.variants:
            fleet, pv = green.get(v.variant_name), dep.config.variant(v.variant_name)
            if fleet is not None and pv is not None:
                random = pv.routing_strategy is RoutingStrategy.RANDOM
                out.append(VariantRoute(v.variant_name, v.desired_weight, (fleet.route(),), (1.0,), random))
        return tuple(out)
    assert ep.config is not None
    routes = []
    for v in ep.variants:
        pv = ep.config.variant(v.variant_name)
        if pv is None:
            continue
        s = share.get(v.variant_name, 0.0)
        parts: list[tuple[FleetRoute, float]] = []
        if (b := blue.get(v.variant_name)) is not None and s < 1.0:
            parts.append((b.route(), 1.0 - s))
        if (g := green.get(v.variant_name)) is not None and s > 0.0:
            parts.append((g.route(), s))
        if parts:
            routes.append(
                VariantRoute(
                    v.variant_name,
                    v.current_weight,
                    tuple(p for p, _ in parts),
                    tuple(x for _, x in parts),
                    pv.routing_strategy is RoutingStrategy.RANDOM,
                )
            )
    return tuple(routes)


def describe_deployment(
    ep: Endpoint,
    dep: Deployment,
    blue: Mapping[str, Fleet],
    green: Mapping[str, Fleet],
    share: Mapping[str, float],
) -> DeploymentView:
    view = endpoint_view(dep.state) if dep.state is not None else None
    on_green = all_on_green(share, (v.variant_name for v in dep.variants))
    serving = []
    for v in ep.variants:
        s = 1.0 if on_green else share.get(v.variant_name, 0.0)
        serving.append(
            VariantServing(
                variant_name=v.variant_name,
                current_weight=v.current_weight * (1.0 - s),
                desired_weight=v.desired_weight,
                current_instance_count=_carrying(blue.get(v.variant_name), 1.0 - s, v.current_instance_count),
                desired_instance_count=v.desired_instance_count,
            )
        )
    pending = None
    if view is None or view.pending:
        statuses = view.variant_status if view is not None else {}
        pending = PendingDeployment(
            config=dep.config,
            models=dep.models,
            start_time=dep.started_at,
            variants=tuple(
                VariantServing(
                    variant_name=v.variant_name,
                    current_weight=v.desired_weight * share.get(v.variant_name, 0.0),
                    desired_weight=v.desired_weight,
                    current_instance_count=_carrying(
                        green.get(v.variant_name), share.get(v.variant_name, 0.0), v.desired_instance_count
                    ),
                    desired_instance_count=v.desired_instance_count,
                    statuses=statuses.get(v.variant_name, ()),
                )
                for v in dep.variants
            ),
        )
    return DeploymentView(
        endpoint_status=view.endpoint_status if view is not None else EndpointStatus.UPDATING,
        failure_reason=view.failure_reason if view is not None else None,
        serving=tuple(serving),
        pending=pending,
    )


def _carrying(fleet: Fleet | None, share: float, size: int) -> int:
    """Healthy instances of ``fleet`` (of ``size``) that carry ``share`` of the variant's traffic."""
    if fleet is None:
        return 0
    return min(fleet.healthy_count, instances_for_share(share, size))
