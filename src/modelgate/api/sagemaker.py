"""The SageMaker control plane over AWS JSON 1.1 (``X-Amz-Target: SageMaker.<Operation>``).

Each operation parses its (already shape-validated) input into domain objects, calls the
ControlPlane service, and renders the output in SageMaker's wire shape; the wire shape of each
operation is written here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from modelgate.api.awsjson import Handler, JsonRpcService, Params, parse_wire_time, to_wire_time
from modelgate.api.deployments import apply_view, deployment_config, update_request
from modelgate.domain.deployments import DeploymentView
from modelgate.domain.resources import (
    ContainerDefinition,
    Endpoint,
    EndpointConfig,
    Model,
    ProductionVariant,
    RoutingStrategy,
    Tag,
)
from modelgate.errors import ValidationException
from modelgate.rollout.wire import to_wire
from modelgate.services.control import ControlPlane, VariantUpdate
from modelgate.services.listing import ListQuery, decode_token, encode_token

# modelgate also accepts local model data, which SageMaker's pattern ``(https|s3)://…`` does not.
PATTERN_OVERRIDES = {
    ("ContainerDefinition", "ModelDataUrl"): r"(https|s3|http|file)://([^/]*)/?(.*)|/.*",
}

_UNSUPPORTED_CONFIG = {
    "ShadowProductionVariants": "shadow variants",
    "DataCaptureConfig": "data capture",
    "AsyncInferenceConfig": "asynchronous inference",
    "ExplainerConfig": "explainers",
}
# The model's enum has more (PREFIX_AWARE, KV_AWARE: routing for LLM caches) than modelgate routes by.
_ROUTING_STRATEGIES = tuple(RoutingStrategy)
_UNSUPPORTED_VARIANT = {
    "ServerlessConfig": "serverless inference",
    "ManagedInstanceScaling": "managed instance scaling",
    "InstancePools": "instance pools",
}


def _tags(params: Params) -> list[Tag]:
    return [Tag(key=t["Key"], value=t.get("Value", "")) for t in params.get("Tags", [])]


def _tags_out(tags: list[Tag]) -> list[dict[str, str]]:
    return [{"Key": t.key, "Value": t.value} for t in tags]


def _list_query(params: Params) -> ListQuery:
    def t(key: str) -> float | None:
        return parse_wire_time(params[key]) if key in params else None

    return ListQuery(
        name_contains=params.get("NameContains"),
        sort_by=params.get("SortBy", "CreationTime"),
        sort_order=params.get("SortOrder", "Descending"),
        max_results=params.get("MaxResults"),
        next_token=params.get("NextToken"),
        creation_time_before=t("CreationTimeBefore"),
        creation_time_after=t("CreationTimeAfter"),
        status_equals=params.get("StatusEquals"),
        last_modified_before=t("LastModifiedTimeBefore"),
        last_modified_after=t("LastModifiedTimeAfter"),
    )


def _paged(key: str, items: list[dict[str, Any]], token: str | None) -> Params:
    out: Params = {key: items}
    if token:
        out["NextToken"] = token
    return out


# --- wire <-> domain -----------------------------------------------------------------------------


def _container(wire: Params) -> ContainerDefinition:
    if "Image" not in wire:
        raise ValidationException("The container definition must name an Image.")
    url = wire.get("ModelDataUrl")
    source = wire.get("ModelDataSource", {}).get("S3DataSource")
    if url is None and source is not None:
        url = source["S3Uri"]
    return ContainerDefinition(
        image=wire["Image"],
        model_data_url=url,
        environment=dict(wire.get("Environment", {})),
        container_hostname=wire.get("ContainerHostname"),
        mode=wire.get("Mode", "SingleModel"),
    )


def _container_out(c: ContainerDefinition) -> Params:
    out: Params = {"Image": c.image, "Mode": c.mode, "Environment": dict(c.environment)}
    if c.model_data_url is not None:
        out["ModelDataUrl"] = c.model_data_url
    if c.container_hostname is not None:
        out["ContainerHostname"] = c.container_hostname
    return out


def _model_out(m: Model) -> Params:
    out: Params = {"ModelName": m.name, "ModelArn": m.arn, "CreationTime": to_wire_time(m.creation_time)}
    if m.primary:
        out["PrimaryContainer"] = _container_out(m.containers[0])
    else:
        out["Containers"] = [_container_out(c) for c in m.containers]
    if m.execution_role_arn:
        out["ExecutionRoleArn"] = m.execution_role_arn
    return out


def _variant(wire: Params) -> ProductionVariant:
    for key, what in _UNSUPPORTED_VARIANT.items():
        if key in wire:
            raise ValidationException(f"{key} ({what}) is not supported by modelgate yet.")
    if "ModelName" not in wire:
        raise ValidationException(f"Production variant {wire['VariantName']} must name a ModelName.")
    if "InitialInstanceCount" not in wire:
        raise ValidationException(f"Production variant {wire['VariantName']} must set InitialInstanceCount.")
    if wire["InitialInstanceCount"] < 1:
        raise ValidationException(
            f"InitialInstanceCount of production variant {wire['VariantName']} must be at least 1."
        )
    if "InstanceType" not in wire:
        raise ValidationException(f"Production variant {wire['VariantName']} must set InstanceType.")
    routing = wire.get("RoutingConfig", {}).get("RoutingStrategy", "LEAST_OUTSTANDING_REQUESTS")
    if routing not in _ROUTING_STRATEGIES:
        raise ValidationException(
            f"RoutingStrategy {routing} of production variant {wire['VariantName']} is not supported by modelgate "
            f"yet; use {' or '.join(_ROUTING_STRATEGIES)}."
        )
    return ProductionVariant(
        variant_name=wire["VariantName"],
        model_name=wire["ModelName"],
        initial_instance_count=wire["InitialInstanceCount"],
        instance_type=wire["InstanceType"],
        initial_variant_weight=float(wire.get("InitialVariantWeight", 1.0)),
        routing_strategy=RoutingStrategy(routing),
        model_data_download_timeout_s=wire.get("ModelDataDownloadTimeoutInSeconds"),
        startup_health_check_timeout_s=wire.get("ContainerStartupHealthCheckTimeoutInSeconds"),
        volume_size_gb=wire.get("VolumeSizeInGB"),
    )


def _variant_out(v: ProductionVariant) -> Params:
    out: Params = {
        "VariantName": v.variant_name,
        "ModelName": v.model_name,
        "InitialInstanceCount": v.initial_instance_count,
        "InstanceType": v.instance_type,
        "InitialVariantWeight": v.initial_variant_weight,
        "RoutingConfig": {"RoutingStrategy": v.routing_strategy.value},
    }
    if v.model_data_download_timeout_s is not None:
        out["ModelDataDownloadTimeoutInSeconds"] = v.model_data_download_timeout_s
    if v.startup_health_check_timeout_s is not None:
        out["ContainerStartupHealthCheckTimeoutInSeconds"] = v.startup_health_check_timeout_s
    if v.volume_size_gb is not None:
        out["VolumeSizeInGB"] = v.volume_size_gb
    return out


def _config_out(c: EndpointConfig) -> Params:
    out: Params = {
        "EndpointConfigName": c.name,
        "EndpointConfigArn": c.arn,
        "ProductionVariants": [_variant_out(v) for v in c.production_variants],
        "CreationTime": to_wire_time(c.creation_time),
    }
    if c.kms_key_id:
        out["KmsKeyId"] = c.kms_key_id
    return out


def _endpoint_out(e: Endpoint, deployment: DeploymentView | None = None) -> Params:
    variants = []
    for v in e.variants:
        pv = e.config.variant(v.variant_name) if e.config else None
        model = e.model(pv.model_name) if pv else None
        summary: Params = {
            "VariantName": v.variant_name,
            "CurrentWeight": v.current_weight,
            "DesiredWeight": v.desired_weight,
            "CurrentInstanceCount": v.current_instance_count,
            "DesiredInstanceCount": v.desired_instance_count,
        }
        if model is not None:
            image = model.containers[0].image
            summary["DeployedImages"] = [
                {
                    "SpecifiedImage": image,
                    "ResolvedImage": image,
                    "ResolutionTime": to_wire_time(e.creation_time),
                }
            ]
        if pv is not None:
            summary["RoutingConfig"] = {"RoutingStrategy": pv.routing_strategy.value}
            summary["InstancePools"] = [
                {"InstanceType": pv.instance_type, "CurrentInstanceCount": v.current_instance_count}
            ]
        variants.append(summary)
    out: Params = {
        "EndpointName": e.name,
        "EndpointArn": e.arn,
        "EndpointConfigName": e.config_name,
        "ProductionVariants": variants,
        "EndpointStatus": e.status.value,
        "CreationTime": to_wire_time(e.creation_time),
        "LastModifiedTime": to_wire_time(e.last_modified_time),
    }
    if e.failure_reason:
        out["FailureReason"] = e.failure_reason
    if e.deployment_config is not None:
        out["LastDeploymentConfig"] = to_wire(e.deployment_config)
    if deployment is not None:
        apply_view(out, deployment)
    return out


def _endpoint_summary(e: Endpoint) -> Params:
    return {
        "EndpointName": e.name,
        "EndpointArn": e.arn,
        "CreationTime": to_wire_time(e.creation_time),
        "LastModifiedTime": to_wire_time(e.last_modified_time),
        "EndpointStatus": e.status.value,
    }


# --- operations ----------------------------------------------------------------------------------


def build(service: ControlPlane) -> JsonRpcService:
    async def create_model(p: Params) -> Params:
        if "PrimaryContainer" in p and "Containers" in p:
            raise ValidationException("Give either PrimaryContainer or Containers, not both.")
        primary = "PrimaryContainer" in p
        wires = [p["PrimaryContainer"]] if primary else list(p.get("Containers", []))
        model = service.create_model(
            p["ModelName"], [_container(w) for w in wires], primary, p.get("ExecutionRoleArn"), _tags(p)
        )
        return {"ModelArn": model.arn}

    async def describe_model(p: Params) -> Params:
        return _model_out(service.describe_model(p["ModelName"]))

    async def list_models(p: Params) -> Params:
        items, token = service.list_models(_list_query(p))
        return _paged(
            "Models",
            [
                {"ModelName": m.name, "ModelArn": m.arn, "CreationTime": to_wire_time(m.creation_time)}
                for m in items
            ],
            token,
        )

    async def delete_model(p: Params) -> Params:
        service.delete_model(p["ModelName"])
        return {}

    async def create_endpoint_config(p: Params) -> Params:
        for key, what in _UNSUPPORTED_CONFIG.items():
            if key in p:
                raise ValidationException(f"{key} ({what}) is not supported by modelgate yet.")
        config = service.create_endpoint_config(
            p["EndpointConfigName"],
            [_variant(v) for v in p["ProductionVariants"]],
            p.get("KmsKeyId"),
            _tags(p),
        )
        return {"EndpointConfigArn": config.arn}

    async def describe_endpoint_config(p: Params) -> Params:
        return _config_out(service.describe_endpoint_config(p["EndpointConfigName"]))

    async def list_endpoint_configs(p: Params) -> Params:
        items, token = service.list_endpoint_configs(_list_query(p))
        return _paged(
            "EndpointConfigs",
            [
                {
                    "EndpointConfigName": c.name,
                    "EndpointConfigArn": c.arn,
                    "CreationTime": to_wire_time(c.creation_time),
                }
                for c in items
            ],
            token,
        )

    async def delete_endpoint_config(p: Params) -> Params:
        service.delete_endpoint_config(p["EndpointConfigName"])
        return {}

    async def create_endpoint(p: Params) -> Params:
        ep = service.create_endpoint(p["EndpointName"], p["EndpointConfigName"], _tags(p), deployment_config(p))
        return {"EndpointArn": ep.arn}

    async def update_endpoint(p: Params) -> Params:
        ep = service.update_endpoint(p["EndpointName"], update_request(p))
        return {"EndpointArn": ep.arn}

    async def describe_endpoint(p: Params) -> Params:
        ep = service.describe_endpoint(p["EndpointName"])
        return _endpoint_out(ep, service.describe_deployment(ep.name))

    async def list_endpoints(p: Params) -> Params:
        items, token = service.list_endpoints(_list_query(p))
        return _paged("Endpoints", [_endpoint_summary(e) for e in items], token)

    async def delete_endpoint(p: Params) -> Params:
        service.delete_endpoint(p["EndpointName"])
        return {}

    async def update_weights(p: Params) -> Params:
        updates = [
            VariantUpdate(
                variant_name=d["VariantName"],
                desired_weight=float(d["DesiredWeight"]) if "DesiredWeight" in d else None,
                desired_instance_count=d.get("DesiredInstanceCount"),
            )
            for d in p["DesiredWeightsAndCapacities"]
        ]
        ep = service.update_weights_and_capacities(p["EndpointName"], updates)
        return {"EndpointArn": ep.arn}

    async def add_tags(p: Params) -> Params:
        return {"Tags": _tags_out(service.add_tags(p["ResourceArn"], _tags(p)))}

    async def list_tags(p: Params) -> Params:
        tags = service.list_tags(p["ResourceArn"])
        start = decode_token(p["NextToken"]) if p.get("NextToken") else 0
        limit = p.get("MaxResults", 50)
        chunk = tags[start : start + limit]
        token = encode_token(start + limit) if start + limit < len(tags) else None
        return _paged("Tags", _tags_out(chunk), token)

    async def delete_tags(p: Params) -> Params:
        service.delete_tags(p["ResourceArn"], list(p["TagKeys"]))
        return {}

    handlers: dict[str, Handler] = {
        "CreateModel": create_model,
        "DescribeModel": describe_model,
        "ListModels": list_models,
        "DeleteModel": delete_model,
        "CreateEndpointConfig": create_endpoint_config,
        "DescribeEndpointConfig": describe_endpoint_config,
        "ListEndpointConfigs": list_endpoint_configs,
        "DeleteEndpointConfig": delete_endpoint_config,
        "CreateEndpoint": create_endpoint,
        "DescribeEndpoint": describe_endpoint,
        "ListEndpoints": list_endpoints,
        "DeleteEndpoint": delete_endpoint,
        "UpdateEndpoint": update_endpoint,
        "UpdateEndpointWeightsAndCapacities": update_weights,
        "AddTags": add_tags,
        "ListTags": list_tags,
        "DeleteTags": delete_tags,
    }
    return JsonRpcService("sagemaker", "1.1", handlers, pattern_overrides=PATTERN_OVERRIDES)
