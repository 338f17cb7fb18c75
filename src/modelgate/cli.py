"""The ``modelgate`` command: ``serve``, and plain commands for people who never used AWS.

    modelgate serve [--host H] [--port P] [--data-dir D] [--allow-remote] [--demo]
    modelgate [--url URL] endpoints          list endpoints with status and variants
    modelgate [--url URL] describe NAME      one endpoint, as JSON
    modelgate [--url URL] invoke NAME [--body TEXT | --file F] [--content-type T] [--accept A] [--variant V]
    modelgate [--url URL] ab-stats NAME      the A/B experiment's answer: rates, intervals, verdict
    modelgate [--url URL] ab-promote NAME [--variant V]  send all traffic to the winner (or to V)

The client commands talk to a running server through boto3, with placeholder credentials when none are
configured: ``--url`` (before or after the command), else ``$MODELGATE_URL``, else ``http://127.0.0.1:8080``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"


def _client(service: str, url: str) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "modelgate"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "modelgate"),
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    return session.client(service, endpoint_url=url, config=Config(retries={"max_attempts": 1}))


def _cmd_serve(args: argparse.Namespace) -> int:
    from modelgate.server import DataDirLocked, serve
    from modelgate.settings import Settings

    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.data_dir is not None:
        overrides["data_dir"] = Path(args.data_dir)
    if args.allow_remote:
        overrides["allow_remote"] = True
    if args.demo:
        overrides["demo"] = True
    try:
        serve(Settings(**overrides))  # a bad MODELGATE_* value is a ValueError (pydantic's ValidationError is one)
    except (ValueError, DataDirLocked) as exc:
        print(f"modelgate: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_endpoints(args: argparse.Namespace) -> int:
    sm = _client("sagemaker", args.url)
    rows = []
    for page in sm.get_paginator("list_endpoints").paginate():
        for e in page["Endpoints"]:
            d = sm.describe_endpoint(EndpointName=e["EndpointName"])
            variants = ", ".join(
                f"{v['VariantName']} (weight {v.get('CurrentWeight', 0):g}, {v.get('CurrentInstanceCount', 0)} inst)"
                for v in d.get("ProductionVariants", [])
            )
            rows.append((e["EndpointName"], e["EndpointStatus"], variants))
    if not rows:
        print("no endpoints")
        return 0
    width = max(len(r[0]) for r in rows)
    for name, status, variants in rows:
        print(f"{name:<{width}}  {status:<12}  {variants}")
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    sm = _client("sagemaker", args.url)
    d = sm.describe_endpoint(EndpointName=args.name)
    d.pop("ResponseMetadata", None)
    print(json.dumps(d, indent=2, default=str))
    return 0


def _cmd_invoke(args: argparse.Namespace) -> int:
    rt = _client("sagemaker-runtime", args.url)
    if args.file:
        body = Path(args.file).read_bytes()
    elif args.body is not None:
        body = args.body.encode()
    else:
        body = sys.stdin.buffer.read()
    kwargs: dict[str, Any] = {"EndpointName": args.name, "Body": body, "ContentType": args.content_type}
    if args.accept:
        kwargs["Accept"] = args.accept
    if args.variant:
        kwargs["TargetVariant"] = args.variant
    resp = rt.invoke_endpoint(**kwargs)
    out = resp["Body"].read()
    print(f"# variant: {resp.get('InvokedProductionVariant')}", file=sys.stderr)
    sys.stdout.write(out.decode("utf-8", "replace"))
    if not out.endswith(b"\n"):
        sys.stdout.write("\n")
    return 0


def _post_json(url: str, path: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    # X-Amz-Date: /promote and /register are administrative and take the AWS protocols' headers only.
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    headers = {"Content-Type": "application/json", "X-Amz-Date": stamp}
    req = urllib.request.Request(url.rstrip("/") + path, data=json.dumps(payload).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _cmd_ab_stats(args: argparse.Namespace) -> int:
    status, body = _post_json(args.url, "/stats", {"endpoint_name": args.name})
    if status >= 300:
        print(f"modelgate: {body.get('code')}: {body.get('message')}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    print(f"experiment {body.get('experiment_id')} on {args.name} ({body.get('strategy')})")
    print(
        f"{'variant':<20} {'invocations':>11} {'errors':>7} {'conversions':>11} {'rate':>7}  {'95% interval':<17} "
        f"{'P(best)':>7} {'exp. loss':>9}"
    )
    for v in body.get("variant_metrics", []):
        lo, hi = v["credible_interval"]
        print(
            f"{v['variant_name']:<20} {v['invocation_count']:>11} {v.get('error_count', 0):>7} "
            f"{v['conversion_count']:>11} "
            f"{v['rate']:>7.4f}  [{lo:.4f}, {hi:.4f}]  {v['prob_best']:>7.3f} {v['expected_loss']:>9.5f}"
        )
    print(f"verdict: {body.get('verdict')}")
    return 0


def _cmd_ab_promote(args: argparse.Namespace) -> int:
    payload: dict[str, Any] = {"endpoint_name": args.name}
    if args.variant:
        payload["endpoint_variant"] = args.variant
    status, body = _post_json(args.url, "/promote", payload)
    if status >= 300:
        print(f"modelgate: {body.get('code')}: {body.get('message')}", file=sys.stderr)
        return 1
    print(f"all traffic of {args.name} now goes to {body.get('endpoint_variant')} (weights {body.get('weights')})")
    return 0


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses to reach a server bound to ``host:port``.

    A wildcard bind address (``0.0.0.0``, ``::``) is not one to connect to: the loopback address of its
    family is. An IPv6 literal goes in brackets.
    """
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _url_help(env_url: str | None) -> str:
    if env_url:
        return f"the modelgate server to talk to (default $MODELGATE_URL: {env_url})"
    return f"the modelgate server to talk to (default {DEFAULT_URL}, or $MODELGATE_URL when set)"


class _Formatter(argparse.HelpFormatter):
    """argparse aligns help text without counting the indent of the subcommand list, so a long command name
    pushed its summary onto the next line; count it."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            for name in action.choices:
                self._action_max_length = max(self._action_max_length, len(name) + self._current_indent + 4)


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The command line. ``--url`` is accepted before the subcommand or after it (the later one wins); its
    default is ``$MODELGATE_URL`` from ``environ`` (the process environment when None), else DEFAULT_URL."""
    env = os.environ if environ is None else environ
    env_url = env.get("MODELGATE_URL") or None
    parser = argparse.ArgumentParser(
        prog="modelgate",
        description="SageMaker-compatible model hosting on your machine. `serve` starts the server; "
        "the other commands talk to a running one (see --url).",
        epilog="`modelgate COMMAND --help` describes one command.",
        formatter_class=_Formatter,
    )
    # None when not given, so that ``serve`` can refuse it and a client command can fall back to the default.
    parser.add_argument("--url", default=None, help=_url_help(env_url))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # After the subcommand, --url must not reset what was given before it: SUPPRESS leaves it unset.
    client_options = argparse.ArgumentParser(add_help=False)
    client_options.add_argument("--url", default=argparse.SUPPRESS, help=_url_help(env_url))

    def command(name: str, summary: str, func: Any, client: bool = True) -> argparse.ArgumentParser:
        parents = [client_options] if client else []
        c = sub.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            parents=parents,
            formatter_class=_Formatter,
        )
        c.set_defaults(func=func, client=client)
        return c

    s = command("serve", "start the server, in the foreground (Ctrl-C stops it)", _cmd_serve, client=False)
    s.add_argument("--host", help="address to bind (default 127.0.0.1; non-loopback needs --allow-remote)")
    s.add_argument("--port", type=int, help="port (default 8080)")
    s.add_argument("--data-dir", help="state directory (default ~/.modelgate, or $MODELGATE_DATA_DIR)")
    s.add_argument("--allow-remote", action="store_true", help="allow binding to a non-loopback address")
    s.add_argument("--demo", action="store_true", help="deploy the churn-demo endpoint at start")

    command("endpoints", "list endpoints: status, variant weights, instances", _cmd_endpoints)

    d = command("describe", "print one endpoint (DescribeEndpoint) as JSON", _cmd_describe)
    d.add_argument("name", help="endpoint name")

    i = command("invoke", "send a request to an endpoint, print the answer", _cmd_invoke)
    i.add_argument("name", help="endpoint name")
    i.add_argument("--body", help="request body (default: read standard input)")
    i.add_argument("--file", help="read the request body from a file")
    i.add_argument("--content-type", default="text/csv", help="ContentType of the body (default text/csv)")
    i.add_argument("--accept", help="Accept: the answer's content type (default: the model's)")
    i.add_argument("--variant", help="send to this production variant (TargetVariant)")

    a = command("ab-stats", "print an endpoint's A/B experiment: rates, verdict", _cmd_ab_stats)
    a.add_argument("name", help="endpoint name")
    a.add_argument("--json", action="store_true", help="print the raw /stats answer")

    p = command("ab-promote", "send all of an endpoint's traffic to the A/B winner", _cmd_ab_promote)
    p.add_argument("name", help="endpoint name")
    p.add_argument("--variant", help="promote this variant even without a verdict")

    parser.set_defaults(default_url=env_url or DEFAULT_URL)
    return parser


def parse_args(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    """Parse the command line; a client command's ``url`` is resolved (given, else the default)."""
    parser = build_parser(environ)
    args = parser.parse_args(argv)
    if args.client:
        if args.url is None:
            args.url = args.default_url
    elif args.url is not None:
        parser.error(f"--url is for the client commands; {args.command} takes --host and --port")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:  # a client error: print it plainly, no traceback
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError | BotoCoreError):
            print(f"modelgate: {exc}", file=sys.stderr)
            return 1
        raise
