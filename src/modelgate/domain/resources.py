"""Model, EndpointConfig and Endpoint as SageMaker defines them, with the endpoint's lifecycle."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field

from modelgate.rollout.config import DeploymentConfig


class _Domain(BaseModel):
    # No NaN or infinity in any float: JSON has none, so a stored one would come back as null and fail to load.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ContainerDefinition(_Domain):
    image: str
    model_data_url: str | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    container_hostname: str | None = None
    mode: str = "SingleModel"


class Model(_Domain):
    name: str
    arn: str
    containers: tuple[ContainerDefinition, ...]
    execution_role_arn: str | None = None
    creation_time: float
    # Whether the model was given as PrimaryContainer (True) or Containers (False), to echo it back.
    primary: bool = True


class RoutingStrategy(enum.StrEnum):
    LEAST_OUTSTANDING_REQUESTS = "LEAST_OUTSTANDING_REQUESTS"
    RANDOM = "RANDOM"


class ProductionVariant(_Domain):
    variant_name: str
    model_name: str
    initial_instance_count: int
    instance_type: str
    initial_variant_weight: float = 1.0
    routing_strategy: RoutingStrategy = RoutingStrategy.LEAST_OUTSTANDING_REQUESTS
    model_data_download_timeout_s: int | None = None
    startup_health_check_timeout_s: int | None = None
    volume_size_gb: int | None = None


class EndpointConfig(_Domain):
    name: str
    arn: str
    production_variants: tuple[ProductionVariant, ...]
    creation_time: float
    kms_key_id: str | None = None

    def variant(self, name: str) -> ProductionVariant | None:
        for v in self.production_variants:
            if v.variant_name == name:
                return v
        return None


class EndpointStatus(enum.StrEnum):
    CREATING = "Creating"  # CreateEndpoint accepted; instances starting, not yet all healthy
    IN_SERVICE = "InService"  # every variant has its instances healthy and takes traffic
    UPDATING = "Updating"  # UpdateEndpoint(WeightsAndCapacities) is being applied
    ROLLING_BACK = "RollingBack"  # an update failed; going back to the previous state
    UPDATE_ROLLBACK_FAILED = "UpdateRollbackFailed"  # a rolling rollback failed; serving a mix
    SYSTEM_UPDATING = "SystemUpdating"  # maintenance (unused here)
    DELETING = "Deleting"  # DeleteEndpoint accepted; instances stopping
    FAILED = "Failed"  # could not be created; only DeleteEndpoint is allowed
    OUT_OF_SERVICE = "OutOfService"  # not available to take requests (unused here)


ALLOWED_TRANSITIONS: dict[EndpointStatus, frozenset[EndpointStatus]] = {
    EndpointStatus.CREATING: frozenset(
        {EndpointStatus.IN_SERVICE, EndpointStatus.FAILED, EndpointStatus.DELETING}
    ),
    EndpointStatus.IN_SERVICE: frozenset({EndpointStatus.UPDATING, EndpointStatus.DELETING}),
    EndpointStatus.UPDATING: frozenset(
        {EndpointStatus.IN_SERVICE, EndpointStatus.ROLLING_BACK, EndpointStatus.DELETING}
    ),
    EndpointStatus.ROLLING_BACK: frozenset(
        {EndpointStatus.IN_SERVICE, EndpointStatus.UPDATE_ROLLBACK_FAILED, EndpointStatus.DELETING}
    ),
    EndpointStatus.UPDATE_ROLLBACK_FAILED: frozenset({EndpointStatus.UPDATING, EndpointStatus.DELETING}),
    EndpointStatus.FAILED: frozenset({EndpointStatus.DELETING}),
    EndpointStatus.DELETING: frozenset(),
    EndpointStatus.SYSTEM_UPDATING: frozenset({EndpointStatus.IN_SERVICE}),
    EndpointStatus.OUT_OF_SERVICE: frozenset({EndpointStatus.IN_SERVICE, EndpointStatus.DELETING}),
}


def can_transition(src: EndpointStatus, dst: EndpointStatus) -> bool:
    return dst in ALLOWED_TRANSITIONS[src]


class VariantState(_Domain):
    """What an endpoint's variant should be (desired) and what really serves (current)."""

    variant_name: str
    desired_weight: float
    desired_instance_count: int
    current_weight: float = 0.0
    current_instance_count: int = 0


class Endpoint(_Domain):
    name: str
    arn: str
    config_name: str
    status: EndpointStatus
    failure_reason: str | None = None
    creation_time: float
    last_modified_time: float
    variants: tuple[VariantState, ...] = ()
    # What the endpoint was created or last updated from, kept so it can be restored after a restart even
    # if the endpoint config or a model has since been deleted (SageMaker allows both).
    config: EndpointConfig | None = None
    models: tuple[Model, ...] = ()
    # The DeploymentConfig given to CreateEndpoint or to the last UpdateEndpoint (LastDeploymentConfig;
    # reused by an UpdateEndpoint with RetainDeploymentConfig).
    deployment_config: DeploymentConfig | None = None

    def model(self, name: str) -> Model | None:
        for m in self.models:
            if m.name == name:
                return m
        return None

    def variant(self, name: str) -> VariantState | None:
        for v in self.variants:
            if v.variant_name == name:
                return v
        return None


class Tag(_Domain):
    key: str
    value: str
