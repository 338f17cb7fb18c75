"""An instance's environment, built from scratch, and what a model's ``Environment`` may not set.

An instance never inherits the server's environment (cloud credentials, ``MODELGATE_*`` settings, tokens
of whoever started the server). It gets, in this order, each later layer over the earlier ones:

1. a fixed base: PATH (the server's Python's directory first, then the usual system directories),
   ``LANG``/``LC_ALL`` ``C.UTF-8``, ``TZ`` ``UTC``;
2. the variables the operator names in ``MODELGATE_INSTANCE_ENV_PASSTHROUGH`` (e.g. proxies), with the
   server's values, read once at start;
3. the model's ``Environment`` (refused at CreateModel when :func:`refusal` names a reason);
4. the contract variables modelgate sets: ``SAGEMAKER_BIND_TO_PORT``, ``SM_MODEL_DIR``, ``HOME`` (a
   directory of the instance's own, removed when it stops), ``SAGEMAKER_MODEL_SERVER_WORKERS`` (unless
   the model set it), ``MODELGATE_MODEL_DIR``,
   ``MODELGATE_INSTANCE_ID``, ``MODELGATE_ALLOW_PIP_INSTALL``, ``PYTHONUNBUFFERED``, and for the
   built-in runtimes ``PYTHONPATH`` (where the server's own ``modelgate`` package is installed).

Why a model may not set some variables: the API caller chooses a model's Environment, the operator
chooses what runs. Variables that make a shell, the dynamic loader or an interpreter run other code
at start (``BASH_ENV`` is expanded by bash before it reads its script; ``LD_PRELOAD`` loads a library
into any program; ``PYTHONSTARTUP``/``PYTHONPATH`` change what Python imports; ``NODE_OPTIONS``,
``PERL5OPT``, ``JAVA_TOOL_OPTIONS``... the same for other runtimes) would let the caller run code of
their choice inside an executable the operator allowed. The variables modelgate sets itself are refused
too, since the contract would silently overwrite them.

An instance is not a sandbox: it runs as the server's user, and a built-in container in script mode
runs the model's own code (as SageMaker's do). What keeps the server's secrets from it is that they are
not in its environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Variables that change how a shell, the dynamic loader or an interpreter starts.
STARTUP_VARIABLES = frozenset(
    {
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "IFS",
        "CDPATH",
        "GLOBIGNORE",
        "PERL5OPT",
        "PERL5LIB",
        "PERLLIB",
        "PERL5DB",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "NODE_PATH",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "CLASSPATH",
        "GCONV_PATH",
        "LOCPATH",
        "NLSPATH",
        "HOSTALIASES",
        "RESOLV_HOST_CONF",
        "MALLOC_TRACE",
        "GETCONF_DIR",
    }
)
STARTUP_PREFIXES = ("LD_", "DYLD_", "PYTHON", "BASH_FUNC_")

# Set by modelgate for every instance: the model may not set them.
CONTRACT_VARIABLES = frozenset(
    {"SAGEMAKER_BIND_TO_PORT", "SM_MODEL_DIR", "MODELGATE_MODEL_DIR", "MODELGATE_INSTANCE_ID", "HOME"}
)
# ``MODELGATE_*`` are modelgate's; the one a model may set is the built-in containers' documented knob.
MODEL_SETTABLE_MODELGATE = frozenset({"MODELGATE_CONTAINER_HTTP"})


def refusal(key: str, value: str = "") -> str | None:
    """Why a model's ``Environment`` may not set ``key`` (to ``value``); None when it may. Pure."""
    upper = key.upper()
    if upper in STARTUP_VARIABLES or upper.startswith(STARTUP_PREFIXES):
        return "it changes how a program, the shell or the dynamic loader starts"
    if upper in CONTRACT_VARIABLES or (upper.startswith("MODELGATE_") and upper not in MODEL_SETTABLE_MODELGATE):
        return "modelgate sets it for every instance"
    if "\0" in value:
        return "its value contains a NUL character"
    return None


def first_refusal(environment: Mapping[str, str]) -> tuple[str, str] | None:
    """The first (key, reason) of ``environment`` that :func:`refusal` refuses, in key order."""
    for key in sorted(environment):
        why = refusal(key, environment[key])
        if why is not None:
            return key, why
    return None


def base_environment(passthrough: Iterable[str], server_environ: Mapping[str, str]) -> dict[str, str]:
    """Layers 1 and 2: the fixed base and the operator's pass-through variables (the server's values)."""
    env = {
        "PATH": f"{os.path.dirname(sys.executable)}:{SYSTEM_PATH}",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
    }
    for name in passthrough:
        value = server_environ.get(name)
        if value is not None:
            env[name] = value
    return env


def instance_environment(
    base: Mapping[str, str], model: Mapping[str, str], contract: Mapping[str, str], defaults: Mapping[str, str]
) -> dict[str, str]:
    """The whole environment: ``base``, then ``defaults`` the model may override, the model's own
    variables, then the ``contract`` over everything. Pure."""
    return {**base, **defaults, **model, **contract}
