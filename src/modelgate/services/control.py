"""The SageMaker control plane: models, endpoint configs, endpoints and tags.

Every method validates first and writes second, so a refused request changes nothing. Endpoint
operations write the intent (status and desired state) to the store, then hand the endpoint to the
controller, which acts and records the outcome.

Names are SageMaker's: unique per kind case-insensitively, kept as given, and found in any case (and by
their lower-cased ARN). Each method resolves the name it is given to the stored one first, and works with
that from then on: the controller, the routes, the tags and the references between resources all use the
stored name (the runtime matches it exactly, as SageMaker's does).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from modelgate.clock import Clock
from modelgate.controllers.endpoints import EndpointController
from modelgate.domain.arns import ArnBuilder
from modelgate.domain.deployments import DeploymentView
from modelgate.domain.resources import (
    ContainerDefinition,
    Endpoint,
    EndpointConfig,
    EndpointStatus,
    Model,
    ProductionVariant,
    Tag,
    VariantState,
)
from modelgate.errors import ResourceLimitExceeded, ValidationException
from modelgate.policies.capacity import InstanceLimits, over_limit, usage
from modelgate.rollout.config import DeploymentConfig
from modelgate.runtime.environment import first_refusal
from modelgate.services.listing import ListQuery, page
from modelgate.services.updates import UpdateRequest, check_deployable, check_updatable, prepare_update
from modelgate.store.repo import DuplicateName, Repository

MAX_TAGS = 50
_DATA_URL = re.compile(r"^(s3://|https://|http://|file://|/)")


@dataclass(frozen=True)
class VariantUpdate:
    variant_name: str
    desired_weight: float | None
    desired_instance_count: int | None


class ControlPlane:
    def __init__(
        self,
        repo: Repository,
        controller: EndpointController,
        arns: ArnBuilder,
        clock: Clock,
        limits: InstanceLimits,
    ) -> None:
        self.repo = repo
        self.controller = controller
        self.arns = arns
        self.clock = clock
        self.limits = limits

    # --- models --------------------------------------------------------------------------------

    def create_model(
        self,
        name: str,
        containers: Sequence[ContainerDefinition],
        primary: bool,
        execution_role_arn: str | None,
        tags: Sequence[Tag],
    ) -> Model:
        if not containers:
            raise ValidationException("Either PrimaryContainer or Containers must be specified.")
        if len(containers) > 1:
            raise ValidationException(
                "Models with more than one container (inference pipelines) are not supported yet; "
                "give one PrimaryContainer."
            )
        for i, c in enumerate(containers, 1):
            # Any well-formed Image is accepted, as SageMaker does: what runs it is the operator's image map,
            # resolved when instances are provisioned (runtime/images.py).
            _check_environment(c.environment, "primaryContainer" if primary else f"containers.{i}")
            if c.mode != "SingleModel":
                raise ValidationException("Multi-model containers (Mode=MultiModel) are not supported yet.")
            if c.model_data_url is not None and not _DATA_URL.match(c.model_data_url):
                raise ValidationException(
                    f"ModelDataUrl {c.model_data_url!r} is not supported: use s3://, https://, file:// or an "
                    "absolute path."
                )
            refused = self.controller.artifacts.refusal(c.model_data_url) if c.model_data_url else None
            if refused is not None:
                raise ValidationException(refused)
        _check_tags(tags)
        if self.repo.exists(Model, name):
            raise ValidationException(f'Cannot create already existing model "{self.arns.model(name)}".')
        model = Model(
            name=name,
            arn=self.arns.model(name),
            containers=tuple(containers),
            execution_role_arn=execution_role_arn,
            creation_time=self.clock.now(),
            primary=primary,
        )
        self._insert(model, tags, f'Cannot create already existing model "{model.arn}".')
        return model

    def describe_model(self, name: str) -> Model:
        model = self.repo.get(Model, name)
        if model is None:
            raise ValidationException(f'Could not find model "{self.arns.model(name)}".')
        return model

    def list_models(self, query: ListQuery) -> tuple[list[Model], str | None]:
        return page(self.repo.all(Model), query, lambda m: m.name, lambda m: m.creation_time)

    def delete_model(self, name: str) -> None:
        model = self.describe_model(name)
        self.repo.delete(Model, model.name, model.arn)
        self.controller.collect_artifacts()  # its model data, unless something else still needs it

    # --- endpoint configs ----------------------------------------------------------------------

    def create_endpoint_config(
        self, name: str, variants: Sequence[ProductionVariant], kms_key_id: str | None, tags: Sequence[Tag]
    ) -> EndpointConfig:
        seen: set[str] = set()
        resolved = []
        for v in variants:
            if v.variant_name in seen:
                raise ValidationException(
                    f"The production variant name {v.variant_name} is used more than once in endpoint "
                    f"configuration {name}; variant names must be unique."
                )
            seen.add(v.variant_name)
            model = self.repo.get(Model, v.model_name)
            if model is None:
                raise ValidationException(f'Could not find model "{self.arns.model(v.model_name)}".')
            # The reference names the model as it is stored, whatever case it was given in.
            resolved.append(v if model.name == v.model_name else v.model_copy(update={"model_name": model.name}))
        variants = resolved
        _check_tags(tags)
        arn = self.arns.endpoint_config(name)
        if self.repo.exists(EndpointConfig, name):
            raise ValidationException(f'Cannot create already existing endpoint configuration "{arn}".')
        config = EndpointConfig(
            name=name,
            arn=arn,
            production_variants=tuple(variants),
            creation_time=self.clock.now(),
            kms_key_id=kms_key_id,
        )
        self._insert(config, tags, f'Cannot create already existing endpoint configuration "{arn}".')
        return config

    def describe_endpoint_config(self, name: str) -> EndpointConfig:
        config = self.repo.get(EndpointConfig, name)
        if config is None:
            raise ValidationException(
                f'Could not find endpoint configuration "{self.arns.endpoint_config(name)}".'
            )
        return config

    def list_endpoint_configs(self, query: ListQuery) -> tuple[list[EndpointConfig], str | None]:
        return page(self.repo.all(EndpointConfig), query, lambda c: c.name, lambda c: c.creation_time)

    def delete_endpoint_config(self, name: str) -> None:
        config = self.describe_endpoint_config(name)
        self.repo.delete(EndpointConfig, config.name, config.arn)

    # --- endpoints -----------------------------------------------------------------------------

    def create_endpoint(
        self,
        name: str,
        config_name: str,
        tags: Sequence[Tag],
        deployment_config: DeploymentConfig | None = None,
    ) -> Endpoint:
        arn = self.arns.endpoint(name)
        if self.repo.exists(Endpoint, name):
            raise ValidationException(f'Cannot create already existing endpoint "{arn}".')
        config = self.describe_endpoint_config(config_name)
        models = []
        for v in config.production_variants:
            model = self.repo.get(Model, v.model_name)
            if model is None:
                raise ValidationException(f'Could not find model "{self.arns.model(v.model_name)}".')
            models.append(model)
        _check_tags(tags)
        wanted = sum(v.initial_instance_count for v in config.production_variants)
        self._check_limits(0, wanted, wanted)
        now = self.clock.now()
        ep = Endpoint(
            name=name,
            arn=arn,
            config_name=config.name,
            status=EndpointStatus.CREATING,
            creation_time=now,
            last_modified_time=now,
            variants=tuple(
                VariantState(
                    variant_name=v.variant_name,
                    desired_weight=v.initial_variant_weight,
                    desired_instance_count=v.initial_instance_count,
                )
                for v in config.production_variants
            ),
            config=config,
            models=tuple({m.name: m for m in models}.values()),
            deployment_config=deployment_config,  # not applied: kept for RetainDeploymentConfig
        )
        self._insert(ep, tags, f'Cannot create already existing endpoint "{arn}".')
        self.controller.notify(ep)
        self.controller.create(name)
        return ep

    def describe_endpoint(self, name: str) -> Endpoint:
        ep = self.controller.endpoints.get(name)
        if ep is not None:
            return ep
        stored = self.repo.get(Endpoint, name)  # the name in another case finds it too
        if stored is None:
            raise ValidationException(f'Could not find endpoint "{self.arns.endpoint(name)}".')
        return self.controller.endpoints.get(stored.name, stored)

    def describe_deployment(self, name: str) -> DeploymentView | None:
        """The UpdateEndpoint in progress on the endpoint, as DescribeEndpoint shows it."""
        return self.controller.rollouts.describe(name)

    def update_endpoint(self, name: str, request: UpdateRequest) -> Endpoint:
        """Deploy another endpoint config (blue/green or rolling, guarded by alarms; controllers/rollouts.py)."""
        ep = self.describe_endpoint(name)
        name = ep.name
        check_deployable(ep)
        config = self.describe_endpoint_config(request.config_name)
        models = []
        for v in config.production_variants:
            model = self.repo.get(Model, v.model_name)
            if model is None:
                raise ValidationException(f'Could not find model "{self.arns.model(v.model_name)}".')
            models.append(model)
        ep, deployment = prepare_update(
            ep,
            config,
            models,
            request,
            self.clock.now(),
            uuid.uuid4().hex[:8],
            self.controller.rollouts.alarm_exists,
        )
        green = usage((), deployment.variants)
        self._check_limits(self._usage(ep), green, green)  # blue and green run side by side
        self.repo.save_deployment(deployment, ep)
        self.controller.notify(ep)
        self.controller.deploy(name)
        return ep

    def list_endpoints(self, query: ListQuery) -> tuple[list[Endpoint], str | None]:
        items = [self.controller.endpoints.get(e.name, e) for e in self.repo.all(Endpoint)]
        if query.status_equals is not None:
            items = [e for e in items if e.status.value == query.status_equals]
        if query.last_modified_before is not None:
            items = [e for e in items if e.last_modified_time < query.last_modified_before]
        if query.last_modified_after is not None:
            items = [e for e in items if e.last_modified_time > query.last_modified_after]
        return page(
            items, query, lambda e: e.name, lambda e: e.creation_time, {"Status": lambda e: e.status.value}
        )

    def delete_endpoint(self, name: str) -> None:
        ep = self.describe_endpoint(name)
        name = ep.name
        if ep.status == EndpointStatus.DELETING:
            return
        ep = ep.model_copy(update={"status": EndpointStatus.DELETING, "last_modified_time": self.clock.now()})
        self.repo.save_endpoint(ep)
        self.controller.notify(ep)
        self.controller.delete(name)

    def update_weights_and_capacities(self, name: str, updates: Sequence[VariantUpdate]) -> Endpoint:
        ep = self.describe_endpoint(name)
        name = ep.name
        check_updatable(ep)
        names = [u.variant_name for u in updates]
        if len(set(names)) != len(names):
            raise ValidationException("The request names the same variant more than once.")
        by_name = {u.variant_name: u for u in updates}
        unknown = [n for n in names if ep.variant(n) is None]
        if unknown:
            raise ValidationException(
                f"The variant(s) {', '.join(unknown)} are not present in endpoint {name}; its variants are "
                f"{', '.join(v.variant_name for v in ep.variants)}."
            )
        for u in updates:
            if u.desired_instance_count is not None and u.desired_instance_count < 1:
                raise ValidationException(
                    f"DesiredInstanceCount of variant {u.variant_name} must be at least 1."
                )
            if u.desired_weight is None and u.desired_instance_count is None:
                raise ValidationException(
                    f"Give DesiredWeight, DesiredInstanceCount or both for variant {u.variant_name}."
                )
        variants = []
        for v in ep.variants:
            found = by_name.get(v.variant_name)
            if found is None:
                variants.append(v)
                continue
            u = found
            variants.append(
                v.model_copy(
                    update={
                        "desired_weight": v.current_weight if u.desired_weight is None else u.desired_weight,
                        "desired_instance_count": v.current_instance_count
                        if u.desired_instance_count is None
                        else u.desired_instance_count,
                    }
                )
            )
        if sum(v.desired_weight for v in variants) <= 0:
            raise ValidationException("At least one variant must keep a DesiredWeight above zero.")
        before = self._usage(ep)
        self._check_limits(before, sum(v.desired_instance_count for v in variants), usage(variants) - before)
        ep = ep.model_copy(
            update={
                "status": EndpointStatus.UPDATING,
                "variants": tuple(variants),
                "last_modified_time": self.clock.now(),
                "failure_reason": None,
            }
        )
        self.repo.save_endpoint(ep)
        self.controller.notify(ep)
        self.controller.update_weights(name)
        return ep

    # --- tags ----------------------------------------------------------------------------------

    def _resource_for_arn(self, arn: str) -> str:
        """The stored ARN of the resource ``arn`` names (its name part in any case); tags are kept under it."""
        m = re.match(r"^arn:aws[a-z\-]*:sagemaker:[^:]*:[^:]*:(model|endpoint-config|endpoint)/(.+)$", arn)
        if m is None:
            raise ValidationException(
                f"The resource ARN {arn} is not a modelgate model, endpoint config or endpoint."
            )
        kind, name = m.group(1), m.group(2)
        found: Model | EndpointConfig | Endpoint | None
        if kind == "model":
            found = self.repo.get(Model, name)
        elif kind == "endpoint-config":
            found = self.repo.get(EndpointConfig, name)
        else:
            found = self.repo.get(Endpoint, name)
        if found is None:
            raise ValidationException(f"Resource {arn} was not found.")
        return found.arn

    def add_tags(self, arn: str, tags: Sequence[Tag]) -> list[Tag]:
        arn = self._resource_for_arn(arn)
        existing = {t.key for t in self.repo.tags(arn)}
        if len(existing | {t.key for t in tags}) > MAX_TAGS:
            raise ResourceLimitExceeded(f"A resource can have at most {MAX_TAGS} tags.")
        self.repo.put_tags(arn, tags)
        return list(tags)

    def list_tags(self, arn: str) -> list[Tag]:
        return self.repo.tags(self._resource_for_arn(arn))

    def delete_tags(self, arn: str, keys: Sequence[str]) -> None:
        self.repo.delete_tags(self._resource_for_arn(arn), keys)

    # --- helpers -------------------------------------------------------------------------------

    def _usage(self, ep: Endpoint) -> int:
        """Instances the endpoint may be running (policies/capacity.py): nothing once Failed."""
        if ep.status == EndpointStatus.FAILED:
            return 0
        deployment = self.repo.get_deployment(ep.name)
        return usage(ep.variants, deployment.variants if deployment is not None else ())

    def _check_limits(self, endpoint_before: int, endpoint_after: int, account_delta: int) -> None:
        """ResourceLimitExceeded when the request goes over an instance quota; checked last, before any write."""
        if endpoint_after <= endpoint_before and account_delta <= 0:
            return
        account = sum(self._usage(self.controller.endpoints.get(e.name, e)) for e in self.repo.all(Endpoint))
        message = over_limit(self.limits, endpoint_before, endpoint_after, account, account_delta)
        if message is not None:
            raise ResourceLimitExceeded(message)

    def _insert(self, obj: Model | EndpointConfig | Endpoint, tags: Sequence[Tag], duplicate: str) -> None:
        try:
            self.repo.insert(obj, tags)
        except (DuplicateName, IntegrityError) as exc:
            raise ValidationException(duplicate) from exc


def _check_environment(environment: Mapping[str, str], where: str) -> None:
    refused = first_refusal(environment)
    if refused is not None:
        key, why = refused
        raise ValidationException(
            f"1 validation error detected: Value at '{where}.environment' failed to satisfy constraint: "
            f"Environment variable {key} is not allowed: {why}."
        )


def _check_tags(tags: Sequence[Tag]) -> None:
    if len(tags) > MAX_TAGS:
        raise ValidationException(f"At most {MAX_TAGS} tags can be given, not {len(tags)}.")
    keys = [t.key for t in tags]
    if len(set(keys)) != len(keys):
        raise ValidationException("Tag keys must be unique.")
