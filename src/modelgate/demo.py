"""The quick-start demo: ``churn-demo``, two XGBoost churn variants (90/10) trained at start-up.

Training uses synthetic churn data made locally (nothing is downloaded). The endpoint is created
through the same ControlPlane service the API uses; an existing ``churn-demo`` is left as it is.
"""

from __future__ import annotations

import asyncio
import logging

from modelgate.domain.resources import ContainerDefinition, Endpoint, EndpointConfig, Model, ProductionVariant
from modelgate.errors import ModelgateError
from modelgate.services.control import ControlPlane
from modelgate.settings import Settings

log = logging.getLogger(__name__)

ENDPOINT = "churn-demo"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"


async def deploy_demo(control: ControlPlane, settings: Settings) -> None:
    from modelgate.demo_models import build_churn_artifacts, churn_sample_rows

    if control.repo.exists(Endpoint, ENDPOINT):
        log.info("demo endpoint %s already exists", ENDPOINT)
        return
    out = settings.data_dir / "demo"
    artifacts = await asyncio.to_thread(build_churn_artifacts, out, 7)
    try:
        variants = []
        for (name, path), weight in zip(sorted(artifacts.items()), (0.9, 0.1), strict=True):
            if not control.repo.exists(Model, name):
                control.create_model(
                    name, [ContainerDefinition(image=IMAGE, model_data_url=f"file://{path}")], True, None, []
                )
            variants.append(
                ProductionVariant(
                    variant_name=name,
                    model_name=name,
                    initial_instance_count=1,
                    instance_type="ml.m5.large",
                    initial_variant_weight=weight,
                )
            )
        if not control.repo.exists(EndpointConfig, "churn-demo-config"):
            control.create_endpoint_config("churn-demo-config", variants, None, [])
        control.create_endpoint(ENDPOINT, "churn-demo-config", [])
    except ModelgateError as exc:
        log.error("could not deploy the demo: %s", exc.message)
        return
    row = churn_sample_rows(1)[0]
    url = f"http://{settings.host}:{settings.port}"
    print(
        f"\nmodelgate: deploying {ENDPOINT} (variants churn-v1 90%, churn-v2 10%). Invoke it with:\n"
        f"  modelgate invoke {ENDPOINT} --body '{row}'\n"
        "or with boto3:\n"
        f"  boto3.client('sagemaker-runtime', endpoint_url='{url}', region_name='us-east-1',\n"
        "               aws_access_key_id='x', aws_secret_access_key='x')"
        f".invoke_endpoint(EndpointName='{ENDPOINT}', ContentType='text/csv', Body='{row}')\n",
        flush=True,
    )
