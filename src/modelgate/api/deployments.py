"""The wire shape of guarded deployments: UpdateEndpoint's input, and what DescribeEndpoint adds
(``PendingDeploymentSummary``, ``VariantStatus``, ``LastDeploymentConfig``, the live weights and counts).
"""

from __future__ import annotations

from modelgate.api.awsjson import Params, to_wire_time
from modelgate.domain.deployments import DeploymentView, PendingDeployment, VariantServing
from modelgate.rollout.config import DeploymentConfig
from modelgate.rollout.view import VariantStatusEntry
from modelgate.rollout.wire import parse_deployment_config
from modelgate.services.updates import UpdateRequest


def deployment_config(p: Params) -> DeploymentConfig | None:
    wire = p.get("DeploymentConfig")
    return parse_deployment_config(wire) if wire is not None else None


def update_request(p: Params) -> UpdateRequest:
    return UpdateRequest(
        config_name=p["EndpointConfigName"],
        deployment_config=deployment_config(p),
        retain_deployment_config=bool(p.get("RetainDeploymentConfig", False)),
        retain_all_variant_properties=bool(p.get("RetainAllVariantProperties", False)),
        exclude_retained=tuple(x["VariantPropertyType"] for x in p.get("ExcludeRetainedVariantProperties", [])),
    )


def apply_view(out: Params, view: DeploymentView) -> None:
    """Overlay a deployment in progress on a rendered DescribeEndpoint output."""
    out["EndpointStatus"] = view.endpoint_status.value
    if view.failure_reason:
        out["FailureReason"] = view.failure_reason
    serving = {v.variant_name: v for v in view.serving}
    for summary in out["ProductionVariants"]:
        v = serving.get(summary["VariantName"])
        if v is not None:
            summary["CurrentWeight"] = v.current_weight
            summary["CurrentInstanceCount"] = v.current_instance_count
            for pool in summary.get("InstancePools", []):
                pool["CurrentInstanceCount"] = v.current_instance_count
    if view.pending is not None:
        out["PendingDeploymentSummary"] = _pending_out(view.pending)


def _pending_out(pending: PendingDeployment) -> Params:
    return {
        "EndpointConfigName": pending.config.name,
        "ProductionVariants": [_pending_variant_out(pending, v) for v in pending.variants],
        "StartTime": to_wire_time(pending.start_time),
    }


def _pending_variant_out(pending: PendingDeployment, v: VariantServing) -> Params:
    out: Params = {
        "VariantName": v.variant_name,
        "CurrentWeight": v.current_weight,
        "DesiredWeight": v.desired_weight,
        "CurrentInstanceCount": v.current_instance_count,
        "DesiredInstanceCount": v.desired_instance_count,
    }
    pv = pending.config.variant(v.variant_name)
    model = next((m for m in pending.models if pv is not None and m.name == pv.model_name), None)
    if model is not None:
        image = model.containers[0].image
        out["DeployedImages"] = [
            {"SpecifiedImage": image, "ResolvedImage": image, "ResolutionTime": to_wire_time(pending.start_time)}
        ]
    if pv is not None:
        out["InstanceType"] = pv.instance_type
        out["RoutingConfig"] = {"RoutingStrategy": pv.routing_strategy.value}
    if v.statuses:
        out["VariantStatus"] = [_status_out(s) for s in v.statuses]
    return out


def _status_out(s: VariantStatusEntry) -> Params:
    return {"Status": s.status.value, "StatusMessage": s.status_message, "StartTime": to_wire_time(s.start_time)}
