"""SageMaker ARNs for a configured account and region."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArnBuilder:
    account_id: str
    region: str

    def _arn(self, kind: str, name: str) -> str:
        # SageMaker lower-cases resource names in ARNs.
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:{kind}/{name.lower()}"

    def model(self, name: str) -> str:
        return self._arn("model", name)

    def endpoint_config(self, name: str) -> str:
        return self._arn("endpoint-config", name)

    def endpoint(self, name: str) -> str:
        return self._arn("endpoint", name)

    def log_stream(self, endpoint: str) -> str:
        return f"arn:aws:logs:{self.region}:{self.account_id}:log-group:/aws/sagemaker/Endpoints/{endpoint}"
