"""The quick-start demo: ``churn-demo``, two XGBoost churn variants (90/10) trained at start-up.

Training uses synthetic churn data made locally (nothing is downloaded). The endpoint is created
through the same ControlPlane service the API uses; an existing ``churn-demo`` is left as it is.
Once it is InService (a fresh one or the existing one), a banner prints commands to try that work as
printed: the ``modelgate`` command as this server was installed (the quick start's venv is not on PATH)
and ``--url`` for the host and port actually served when they are not the default.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import shutil
import sys
from pathlib import Path

from modelgate.cli import DEFAULT_URL, client_url
from modelgate.domain.resources import (
    ContainerDefinition,
    Endpoint,
    EndpointConfig,
    EndpointStatus,
    Model,
    ProductionVariant,
)
from modelgate.errors import ModelgateError
from modelgate.services.control import ControlPlane
from modelgate.settings import Settings

log = logging.getLogger(__name__)

ENDPOINT = "churn-demo"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
POLL_SECONDS = 0.25


async def deploy_demo(control: ControlPlane, settings: Settings) -> None:
    from modelgate.demo_models import build_churn_artifacts, churn_sample_rows

    if control.repo.exists(Endpoint, ENDPOINT):
        log.info("demo endpoint %s already exists", ENDPOINT)
    else:
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
        log.info("deploying %s (variants churn-v1 90%%, churn-v2 10%%)", ENDPOINT)
    status = await _settled_status(control)
    if status is None:
        return
    if status.status is not EndpointStatus.IN_SERVICE:
        log.error("demo endpoint %s is %s: %s", ENDPOINT, status.status.value, status.failure_reason or "")
        return
    command = cli_command(sys.executable, shutil.which("modelgate"), cwd=Path.cwd())
    url = client_url(settings.host, settings.port)
    print(banner(command, sys.executable, url, churn_sample_rows(1)[0]), flush=True)


async def _settled_status(control: ControlPlane) -> Endpoint | None:
    """The demo endpoint once it is no longer Creating (None if it was deleted meanwhile)."""
    while True:
        try:
            ep = control.describe_endpoint(ENDPOINT)
        except ModelgateError:
            return None
        if ep.status is not EndpointStatus.CREATING:
            return ep
        await asyncio.sleep(POLL_SECONDS)


def cli_command(executable: str, on_path: str | None, cwd: Path) -> str:
    """How to run the ``modelgate`` command from a shell, as this server was installed.

    ``modelgate`` when the one on PATH is this installation's; else the path of this installation's script
    (the quick start's ``.venv/bin/modelgate``, whose directory is not on PATH unless the venv is activated),
    absolute so it works from any directory; else ``<python> -m modelgate``.
    """
    script = Path(executable).parent / "modelgate"
    if not script.is_absolute():
        script = cwd / script
    if script.exists():
        if on_path is not None and Path(on_path).exists() and Path(on_path).samefile(script):
            return "modelgate"
        return shlex.quote(str(script))
    return f"{shlex.quote(executable)} -m modelgate"


def banner(command: str, python: str, url: str, row: str) -> str:
    """What the demo prints once churn-demo is InService: commands that work as printed, against ``url``
    (``command`` runs the CLI; ``python`` is an interpreter with boto3, this server's)."""
    url_option = "" if url == DEFAULT_URL else f" --url {url}"
    return (
        f"\nmodelgate: {ENDPOINT} is InService (variants churn-v1 90%, churn-v2 10%). Try:\n"
        f"  {command} endpoints{url_option}\n"
        f"  {command} invoke {ENDPOINT}{url_option} --body '{row}'\n"
        f"or in Python with boto3 ({shlex.quote(python)} has it):\n"
        "  import boto3\n"
        f"  rt = boto3.client('sagemaker-runtime', endpoint_url='{url}', region_name='us-east-1', "
        "aws_access_key_id='x', aws_secret_access_key='x')\n"
        f"  r = rt.invoke_endpoint(EndpointName='{ENDPOINT}', ContentType='text/csv', Body='{row}')\n"
        "  print(r['InvokedProductionVariant'], float(r['Body'].read()))\n"
    )
