"""What a SageMaker instance type means here: worker threads and a memory limit.

An instance is one local process. Its type sets ``SAGEMAKER_MODEL_SERVER_WORKERS`` (unless the model's
environment sets it) to the type's vCPUs capped at this machine's cores, and a resident-memory limit
equal to the type's memory: the endpoint controller samples each instance's RSS and stops one that
outgrows its limit, with a reason, instead of letting it take the machine down.

| family | vCPUs | memory (GiB) |
|---|---|---|
| ml.t2.medium / large / xlarge / 2xlarge | 2 / 2 / 4 / 8 | 4 / 8 / 16 / 32 |
| ml.m5.large … 24xlarge (also m4, m5d, m6i, m7i) | 2·size | 8 per 2 vCPU |
| ml.c5.large … (also c4, c6i, c7i) | 2·size | 4 per 2 vCPU |
| ml.r5.large … (also r6i, r7i) | 2·size | 16 per 2 vCPU |
| ml.g4dn / g5 / p3 … (GPU types) | as their CPU side | accepted, run on the CPU |

Sizes: large = 2 vCPU, xlarge = 4, 2xlarge = 8, 4xlarge = 16, 8xlarge = 32, 9xlarge = 36, 12xlarge = 48,
16xlarge = 64, 18xlarge = 72, 24xlarge = 96, 32xlarge = 128, 48xlarge = 192, metal = 96.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_SIZES = {
    "medium": 2,
    "large": 2,
    "xlarge": 4,
    "2xlarge": 8,
    "4xlarge": 16,
    "8xlarge": 32,
    "9xlarge": 36,
    "12xlarge": 48,
    "16xlarge": 64,
    "18xlarge": 72,
    "24xlarge": 96,
    "32xlarge": 128,
    "48xlarge": 192,
    "metal": 96,
}
# GiB of memory per vCPU by family letter.
_GIB_PER_VCPU = {"t": 2.0, "m": 4.0, "c": 2.0, "r": 8.0, "x": 16.0, "z": 8.0, "g": 4.0, "p": 7.6, "i": 8.0}
_RX = re.compile(r"^ml\.([a-z]+)(\d+)[a-z\-]*\.(\w+)$")


@dataclass(frozen=True)
class InstanceShape:
    vcpus: int
    memory_bytes: int

    @property
    def workers(self) -> int:
        return max(1, min(self.vcpus, os.cpu_count() or 1))


def shape_of(instance_type: str) -> InstanceShape:
    if instance_type == "ml.t2.medium":
        return InstanceShape(2, 4 * 2**30)
    m = _RX.match(instance_type)
    if not m:
        return InstanceShape(2, 8 * 2**30)
    family, size = m.group(1), m.group(3)
    vcpus = _SIZES.get(size, 2)
    gib = _GIB_PER_VCPU.get(family[0], 4.0) * vcpus
    return InstanceShape(vcpus, int(gib * 2**30))
