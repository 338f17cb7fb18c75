"""The SageMaker control plane's targets (AWS JSON 1.1, every operation modelgate serves) and its world.

Requests are drawn from botocore's ``sagemaker`` input shapes with a :class:`Profile` that makes most of
them succeed: resources named by a request exist (a config names a model that exists, an endpoint a
config), images are the echo container (or one that fails at start), model data is a local directory,
instance counts are 1 or 2, and deployments wait seconds, not an hour. At most :data:`MAX_ENDPOINTS`
endpoints live at once (each instance is a process), and :data:`MAX_MODELS` models and configs (the state is
read before and after every rejected mutating request); past that a Create* names an existing one.

The state a rejected request must not change: the names ListModels, ListEndpointConfigs and ListEndpoints
give (endpoints being deleted left out: they go away on their own) and, for the tagging operations, the
tags of the resource they name.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import botocore.session
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tests.fuzz.fuzzer import Target
from tests.fuzz.protocols import AwsJson
from tests.fuzz.values import Fixup, Profile, ShapeStrategies, fixed, presence_strategy, weighted
from tests.fuzz.wire import Client, RawAnswer
from tests.fuzz.world import INDEX, Pool, fresh, next_name, pick, reference

MAX_ENDPOINTS = 3
MAX_MODELS = MAX_CONFIGS = 30
HEAVY_INSTANCES = 4  # a config asking for more instances than this is never deployed by the fuzzer
PROTOCOL = AwsJson("SageMaker", "1.1")
OPERATIONS = {  # operation: (weight, mutating)
    "CreateModel": (4, True),
    "CreateEndpointConfig": (4, True),
    "CreateEndpoint": (3, True),
    "UpdateEndpoint": (3, True),
    "UpdateEndpointWeightsAndCapacities": (3, True),
    "DeleteEndpoint": (2, True),
    "DeleteEndpointConfig": (2, True),
    "DeleteModel": (2, True),
    "AddTags": (2, True),
    "DeleteTags": (1, True),
    "DescribeModel": (1, False),
    "DescribeEndpointConfig": (1, False),
    "DescribeEndpoint": (1, False),
    "ListModels": (1, False),
    "ListEndpointConfigs": (1, False),
    "ListEndpoints": (1, False),
    "ListTags": (1, False),
}
RARE = 0.02  # presence of members naming features modelgate refuses: enough to see the refusal
INSTANCE_TYPES = ["ml.m5.large", "ml.t2.medium", "ml.c5.xlarge"]


@dataclass
class SageMakerWorld:
    client: Client
    models: Pool = field(default_factory=Pool)
    configs: Pool = field(default_factory=Pool)  # name -> (variant names, total instances)
    endpoints: Pool = field(default_factory=Pool)  # name -> variant names
    arns: Pool = field(default_factory=Pool)
    alarms: Pool = field(default_factory=Pool)
    tokens: Pool = field(default_factory=Pool)

    def light_configs(self) -> list[str]:
        return [n for n, info in sorted(self.configs.items.items()) if info is None or info[1] <= HEAVY_INSTANCES]

    def variants_of(self, endpoint: str) -> list[str]:
        info = self.endpoints.items.get(endpoint)
        return list(info) if info else []

    def _list(self, op: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"MaxResults": 100}
        while True:
            page = self.client.json_call(f"SageMaker.{op}", params)
            items += page[key]
            if not page.get("NextToken"):
                return items
            params["NextToken"] = page["NextToken"]

    def snapshot(self) -> Hashable:
        models = self._list("ListModels", "Models")
        configs = self._list("ListEndpointConfigs", "EndpointConfigs")
        endpoints = [e for e in self._list("ListEndpoints", "Endpoints") if e["EndpointStatus"] != "Deleting"]
        self.models.replace(m["ModelName"] for m in models)
        self.configs.replace(c["EndpointConfigName"] for c in configs)
        self.endpoints.replace(e["EndpointName"] for e in endpoints)
        # The resources that exist now: a deleted one's ARN is no longer drawn as an existing one.
        self.arns.replace(
            arn
            for item in [*models, *configs, *endpoints]
            if isinstance(arn := item.get("ModelArn") or item.get("EndpointConfigArn") or item.get("EndpointArn"), str)
        )
        return (
            frozenset(self.models.items),
            frozenset(self.configs.items),
            frozenset(self.endpoints.items),
        )

    def tagged_snapshot(self, arn: Any) -> Hashable:
        state = self.snapshot()
        if not isinstance(arn, str) or arn not in self.arns.items:
            return state
        try:
            tags = self.client.json_call("SageMaker.ListTags", {"ResourceArn": arn, "MaxResults": 100})["Tags"]
        except Exception:
            return (state, None)  # the resource is gone: ListTags refuses it before and after alike
        return (state, frozenset((t["Key"], t.get("Value")) for t in tags))


def _names(world: SageMakerWorld, op: str, params: Any, answer: RawAnswer) -> None:
    """Bookkeeping after a 2xx answer (``params`` is None when the request was mutated)."""
    body = answer.json() if answer.body else {}
    if isinstance(body, dict):
        for key in ("ModelArn", "EndpointConfigArn", "EndpointArn"):
            world.arns.add(body.get(key))
        world.tokens.add(body.get("NextToken"))
    if not isinstance(params, dict):
        return
    if op == "CreateModel":
        world.models.add(params["ModelName"])
    elif op == "CreateEndpointConfig":
        variants = params.get("ProductionVariants", [])
        count = sum(v.get("InitialInstanceCount", 1) for v in variants if isinstance(v, dict))
        world.configs.add(params["EndpointConfigName"], ([v.get("VariantName") for v in variants], count))
    elif op in ("CreateEndpoint", "UpdateEndpoint"):
        info = world.configs.items.get(params["EndpointConfigName"])
        world.endpoints.add(params["EndpointName"], info[0] if info else None)
    elif op == "DeleteModel":
        world.models.discard(params["ModelName"])
    elif op == "DeleteEndpointConfig":
        world.configs.discard(params["EndpointConfigName"])
    elif op == "DeleteEndpoint":
        world.endpoints.discard(params["EndpointName"])


def _bookkeeping(world: SageMakerWorld, op: str) -> Callable[[Any, RawAnswer], None]:
    return lambda params, answer: _names(world, op, params, answer)


def profile(world: SageMakerWorld, echo_image: str, failing_image: str, model_dir: str) -> Profile:
    name = st.from_regex(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", fullmatch=True).filter(lambda s: len(s) <= 63)
    models = reference(world.models.names, st.one_of(fresh("fz-nomodel-"), name))
    configs = reference(world.light_configs, st.one_of(fresh("fz-nocfg-"), name), existing=0.9)
    endpoints = reference(world.endpoints.names, st.one_of(fresh("fz-noep-"), name))
    arns = reference(
        world.arns.names,
        st.from_regex(r"arn:aws:sagemaker:us-east-1:123456789012:(model|endpoint)/x[a-z]{0,5}", fullmatch=True),
    )

    def to_create(pool: Pool, cap: int, prefix: str) -> SearchStrategy[str]:
        """A name for a Create*: fresh mostly, an existing one now and then, and always an existing one once the
        pool holds ``cap`` names (which keeps the processes, for endpoints, and the lists read, for all, small)."""
        candidates = weighted((6, fresh(prefix)), (1, name), (1, st.none()))  # None: an existing name

        @st.composite
        def draw_name(draw: st.DrawFn) -> str:
            candidate, index = draw(candidates), draw(INDEX)
            existing = pool.names()
            if existing and (candidate is None or len(existing) >= cap):
                return str(pick(existing, index))
            return candidate if candidate is not None else next_name(prefix)

        return draw_name()

    environment: SearchStrategy[dict[str, str]] = st.one_of(
        st.just({}),
        st.fixed_dictionaries({"ECHO_TAG": st.sampled_from(["a", "b", "é"])}),
        st.just({"ECHO_STARTUP": "fail"}),
        st.dictionaries(st.from_regex(r"FZ_[A-Z0-9_]{0,8}", fullmatch=True), st.text(max_size=20), max_size=3),
    )
    wait = st.integers(0, 2)
    overrides: dict[str, SearchStrategy[Any]] = {
        "CreateModelInput.ModelName": to_create(world.models, MAX_MODELS, "fz-m-"),
        "ContainerDefinition.Image": weighted(
            (16, st.just(echo_image)),
            (2, st.just(failing_image)),
            (1, st.sampled_from(["command:/no/such/file", "command:relative", "xgboost:latest-but-not"])),
            (1, st.text(max_size=20)),
        ),
        "ContainerDefinition.ModelDataUrl": st.sampled_from(
            [f"file://{model_dir}", model_dir, "file:///no/such/model.tar.gz"]
        ),
        "ContainerDefinition.Environment": environment,
        "CreateEndpointConfigInput.EndpointConfigName": to_create(world.configs, MAX_CONFIGS, "fz-c-"),
        "ProductionVariant.VariantName": st.sampled_from(["v1", "v2", "AllTraffic", "é", "v1"]),
        "ProductionVariant.ModelName": models,
        "ProductionVariant.InitialInstanceCount": st.integers(1, 2),
        "ProductionVariant.InstanceType": weighted((9, st.sampled_from(INSTANCE_TYPES)), (1, st.text(max_size=12))),
        "ProductionVariant.InitialVariantWeight": st.floats(0, 2),
        "CreateEndpointInput.EndpointName": to_create(world.endpoints, MAX_ENDPOINTS, "fz-ep-"),
        "CreateEndpointInput.EndpointConfigName": configs,
        "UpdateEndpointInput.EndpointName": endpoints,
        "UpdateEndpointInput.EndpointConfigName": configs,
        "DesiredWeightAndCapacity.DesiredInstanceCount": st.integers(1, 2),
        "DesiredWeightAndCapacity.DesiredWeight": st.floats(0, 2),
        "TrafficRoutingConfig.WaitIntervalInSeconds": wait,
        "BlueGreenUpdatePolicy.TerminationWaitInSeconds": wait,
        "RollingUpdatePolicy.WaitIntervalInSeconds": wait,
        "CapacitySize.Value": st.integers(1, 3),
        "ProductionVariantRoutingConfig.RoutingStrategy": weighted(
            (4, st.sampled_from(["LEAST_OUTSTANDING_REQUESTS", "RANDOM"])),
            (1, st.sampled_from(["PREFIX_AWARE", "KV_AWARE"])),
        ),
        "Alarm.AlarmName": reference(world.alarms.names, st.text(min_size=1, max_size=10)),
        "EndpointName": endpoints,
        "EndpointConfigName": configs,
        "ModelName": models,
        "ResourceArn": arns,
        "TagKeys": st.lists(st.sampled_from(["k1", "k2", "ab-testing:enabled", "é"]), min_size=1, max_size=3),
        "NextToken": reference(world.tokens.names, st.text(max_size=30), existing=0.5),
        "NameContains": st.sampled_from(["fz", "m", "ep-", "c-1", "-"]),
    }
    presence = {
        "CreateModelInput.PrimaryContainer": 0.9,
        "CreateModelInput.Containers": 0.08,
        "ContainerDefinition.Image": 0.97,
        "ContainerDefinition.ModelDataUrl": 0.3,
        "ContainerDefinition.Environment": 0.5,
        "ProductionVariant.ModelName": 0.97,
        "ProductionVariant.InitialInstanceCount": 0.97,
        "ProductionVariant.InstanceType": 0.97,
        "ProductionVariant.InitialVariantWeight": 0.6,
        "UpdateEndpointInput.DeploymentConfig": 0.5,
        "CreateEndpointInput.DeploymentConfig": 0.1,
        "DeploymentConfig.BlueGreenUpdatePolicy": 0.6,
        "DeploymentConfig.AutoRollbackConfiguration": 0.4,
        "DesiredWeightAndCapacity.DesiredWeight": 0.8,
    }
    for member in (
        "ContainerDefinition.ModelDataSource",
        "ContainerDefinition.AdditionalModelDataSources",
        "ContainerDefinition.Mode",
        "ContainerDefinition.ModelPackageName",
        "ContainerDefinition.InferenceSpecificationName",
        "ContainerDefinition.MultiModelConfig",
        "ContainerDefinition.ImageConfig",
        "CreateEndpointConfigInput.ShadowProductionVariants",
        "CreateEndpointConfigInput.DataCaptureConfig",
        "CreateEndpointConfigInput.AsyncInferenceConfig",
        "CreateEndpointConfigInput.ExplainerConfig",
        "ProductionVariant.ServerlessConfig",
        "ProductionVariant.ManagedInstanceScaling",
        "ProductionVariant.InstancePools",
        "DesiredWeightAndCapacity.ServerlessUpdateConfig",
    ):
        presence[member] = RARE
    return Profile(overrides, presence)


def _weights_fixup(world: SageMakerWorld) -> Fixup:
    """UpdateEndpointWeightsAndCapacities names the endpoint's own variants (nine times in ten)."""

    def fix(draw: st.DrawFn, params: dict[str, Any]) -> dict[str, Any]:
        use, indexes = draw(presence_strategy(0.9)), draw(st.lists(INDEX, min_size=1, max_size=2))
        variants = world.variants_of(params["EndpointName"])
        if use and variants:
            chosen = dict.fromkeys(pick(variants, i) for i in indexes)
            first = (params["DesiredWeightsAndCapacities"] or [{}])[0]
            params["DesiredWeightsAndCapacities"] = [{**first, "VariantName": v} for v in chosen]
        return params

    return fix


def _unique_variants(draw: st.DrawFn, params: dict[str, Any]) -> dict[str, Any]:
    """Variant names of a config are unique (nine times in ten)."""
    if draw(presence_strategy(0.9)):
        for i, variant in enumerate(params.get("ProductionVariants", []), start=1):
            variant["VariantName"] = f"v{i}"
    return params


def _coherent_deployment(draw: st.DrawFn, params: dict[str, Any]) -> dict[str, Any]:
    """A DeploymentConfig with one policy, and the step sizes its traffic routing type takes (nine times in ten):
    the shapes cannot say so, and without it nearly every deployment is refused before it starts."""
    config = params.get("DeploymentConfig")
    if not draw(presence_strategy(0.9)) or not isinstance(config, dict):
        return params
    if "BlueGreenUpdatePolicy" in config:
        config.pop("RollingUpdatePolicy", None)
        routing = config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
        keep = {"CANARY": "CanarySize", "LINEAR": "LinearStepSize"}.get(routing["Type"])
        for key in ("CanarySize", "LinearStepSize"):
            if key != keep:
                routing.pop(key, None)
        if keep is not None:
            routing.setdefault(keep, {"Type": "INSTANCE_COUNT", "Value": 1})
    return params


def targets(world: SageMakerWorld, echo_image: str, failing_image: str, model_dir: str) -> list[Target]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    shapes = ShapeStrategies(profile(world, echo_image, failing_image, model_dir))

    def snapshot(params: Any) -> Hashable:
        return world.tagged_snapshot(params.get("ResourceArn")) if "ResourceArn" in params else world.snapshot()

    fixups: dict[str, Fixup] = {
        "UpdateEndpointWeightsAndCapacities": _weights_fixup(world),
        "CreateEndpointConfig": _unique_variants,
        "CreateEndpoint": _coherent_deployment,
        "UpdateEndpoint": _coherent_deployment,
    }
    out = []
    for op, (weight, mutating) in OPERATIONS.items():
        shape = model.operation_model(op).input_shape
        params = shapes.shape(shape)
        fix = fixups.get(op)
        if fix is not None:
            params = fixed(params, fix)
        tagging = op in ("AddTags", "DeleteTags")
        out.append(
            Target(
                op,
                PROTOCOL,
                params,
                shape,
                mutating=mutating,
                weight=weight,
                snapshot=snapshot,
                state_key=(lambda p: p.get("ResourceArn")) if tagging else None,
                on_answer=_bookkeeping(world, op),
            )
        )
    return out
