"""UpdateEndpoint: check an update against the endpoint, the new config and SageMaker's rules, and build
the deployment to store. Pure: the caller looks the resources up and stores the result.

Decisions where SageMaker is silent (docs/architecture.md, "Guarded deployments"):

- UpdateEndpoint is accepted on an InService endpoint and, as the remedy SageMaker names, on one in
  UpdateRollbackFailed (a rolling rollback stopped half way: it serves a mix of the old and the new
  config); the rollout controller then first consolidates onto the old config's instances that serve
  (``controllers/rollouts.py``). UpdateEndpointWeightsAndCapacities needs InService. Failed: only
  DeleteEndpoint; any other status: "Cannot update in-progress endpoint";
- a DeploymentConfig given with RetainDeploymentConfig=true wins; RetainDeploymentConfig with nothing
  to retain is refused rather than silently deploying without guardrails;
- every rollback alarm must exist when the update is accepted (a guard that cannot be read is no guard);
- ExcludeRetainedVariantProperties without RetainAllVariantProperties=true is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from modelgate.domain.deployments import Deployment
from modelgate.domain.resources import Endpoint, EndpointConfig, EndpointStatus, Model, VariantState
from modelgate.errors import ValidationException
from modelgate.rollout.config import DeploymentConfig, raise_validation, validate_deployment

RETAINABLE_PROPERTIES = ("DesiredInstanceCount", "DesiredWeight", "DataCaptureConfig")


@dataclass(frozen=True)
class UpdateRequest:
    config_name: str
    deployment_config: DeploymentConfig | None = None
    retain_deployment_config: bool = False
    retain_all_variant_properties: bool = False
    exclude_retained: tuple[str, ...] = ()  # VariantPropertyType values


DEPLOYABLE = (EndpointStatus.IN_SERVICE, EndpointStatus.UPDATE_ROLLBACK_FAILED)  # UpdateEndpoint accepted


def check_updatable(ep: Endpoint) -> None:
    """UpdateEndpointWeightsAndCapacities: only on an InService endpoint."""
    _refuse_failed(ep)
    if ep.status == EndpointStatus.UPDATE_ROLLBACK_FAILED:
        raise ValidationException(
            f'Cannot update the weights and capacities of endpoint "{ep.arn}" in status UpdateRollbackFailed: '
            "it serves a mix of two endpoint configs. Call UpdateEndpoint with the endpoint config to serve."
        )
    if ep.status != EndpointStatus.IN_SERVICE:
        _refuse_in_progress(ep)


def check_deployable(ep: Endpoint) -> None:
    """UpdateEndpoint: on an InService endpoint, or on one in UpdateRollbackFailed (the remedy)."""
    _refuse_failed(ep)
    if ep.status not in DEPLOYABLE:
        _refuse_in_progress(ep)


def _refuse_failed(ep: Endpoint) -> None:
    if ep.status == EndpointStatus.FAILED:
        raise ValidationException(
            f'Cannot update endpoint "{ep.arn}" because it is in status Failed; only DeleteEndpoint is '
            "allowed on a failed endpoint."
        )


def _refuse_in_progress(ep: Endpoint) -> NoReturn:
    raise ValidationException(
        f'Cannot update in-progress endpoint "{ep.arn}" (status {ep.status.value}); wait until it is InService.'
    )


def prepare_update(
    ep: Endpoint,
    config: EndpointConfig,
    models: Sequence[Model],
    req: UpdateRequest,
    now: float,
    deployment_id: str,
    alarm_exists: Callable[[str], bool],
) -> tuple[Endpoint, Deployment]:
    """The endpoint (Updating) and the deployment to store together; raises ValidationException.

    On UpdateRollbackFailed the deployment is prepared as on InService (blue: the old config's variants
    and counts); the controller sizes blue from what serves when it consolidates."""
    check_deployable(ep)
    deployment = _deployment_config(ep, req)
    variants = _green_variants(ep, config, req)
    validate_deployment(
        deployment,
        {v.variant_name: v.current_instance_count for v in ep.variants},
        {v.variant_name: v.desired_instance_count for v in variants},
    )
    missing = [a for a in (deployment.alarms if deployment else ()) if not alarm_exists(a)]
    if missing:
        raise_validation(
            [
                f"The alarm {a} named in AutoRollbackConfiguration does not exist; create it with "
                "PutMetricAlarm before the update."
                for a in missing
            ]
        )
    updated = ep.model_copy(
        update={
            "status": EndpointStatus.UPDATING,
            "deployment_config": deployment,
            "failure_reason": None,
            "last_modified_time": now,
        }
    )
    dep = Deployment(
        endpoint=ep.name,
        id=deployment_id,
        config=config,
        models=tuple({m.name: m for m in models}.values()),
        variants=variants,
        deployment_config=deployment,
        started_at=now,
        blue_targets={v.variant_name: v.current_instance_count for v in ep.variants},
    )
    return updated, dep


def _deployment_config(ep: Endpoint, req: UpdateRequest) -> DeploymentConfig | None:
    if req.deployment_config is not None or not req.retain_deployment_config:
        return req.deployment_config
    if ep.deployment_config is None:
        raise ValidationException(
            f'RetainDeploymentConfig is true but endpoint "{ep.arn}" has no deployment configuration to '
            "retain; give a DeploymentConfig."
        )
    return ep.deployment_config


def _green_variants(ep: Endpoint, config: EndpointConfig, req: UpdateRequest) -> tuple[VariantState, ...]:
    unknown = [p for p in req.exclude_retained if p not in RETAINABLE_PROPERTIES]
    if unknown:
        raise ValidationException(
            f"Unknown VariantPropertyType {', '.join(unknown)}; use {', '.join(RETAINABLE_PROPERTIES)}."
        )
    if req.exclude_retained and not req.retain_all_variant_properties:
        raise ValidationException(
            "ExcludeRetainedVariantProperties applies only when RetainAllVariantProperties is true."
        )
    out = []
    for pv in config.production_variants:
        count, weight = pv.initial_instance_count, pv.initial_variant_weight
        current = ep.variant(pv.variant_name) if req.retain_all_variant_properties else None
        if current is not None:
            if "DesiredInstanceCount" not in req.exclude_retained:
                count = current.desired_instance_count
            if "DesiredWeight" not in req.exclude_retained:
                weight = current.desired_weight
        out.append(VariantState(variant_name=pv.variant_name, desired_weight=weight, desired_instance_count=count))
    if sum(v.desired_weight for v in out) <= 0:
        raise ValidationException(
            f"Every production variant of endpoint config {config.name} has weight 0; at least one needs a "
            "weight above zero."
        )
    return tuple(out)
