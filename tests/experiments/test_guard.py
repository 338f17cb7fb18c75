"""Which A/B requests are accepted (fault-and-attack review D9, D5b): the guards as tables."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from modelgate.experiments.errors import AccessDenied, UnsupportedMediaType
from modelgate.experiments.guard import AwsProtocolGuard, require_json


@dataclass
class Req:
    content_type: str = "application/json"
    headers: set[bytes] = field(default_factory=set)
    method: str = "POST"
    path: str = "/promote"

    def has_header(self, name: bytes) -> bool:
        return name in self.headers


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("text/plain", False),  # the CORS-simple types a browser sends without a preflight
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("", False),
        ("application/jsonp", False),
        ("application/x-amz-json-1.1", False),
    ],
)
def test_d9_ab_state_changing_requests_must_be_json(content_type: str, accepted: bool) -> None:
    if accepted:
        require_json(Req(content_type))
    else:
        with pytest.raises(UnsupportedMediaType) as info:
            require_json(Req(content_type))
        assert (info.value.status, info.value.code) == (415, "UnsupportedMediaType")
        assert (
            info.value.message
            == f"POST /promote requires Content-Type: application/json (got {content_type or 'none'})"
        )


@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        ({b"authorization"}, True),
        ({b"x-amz-date"}, True),
        ({b"x-amz-target"}, True),
        (set(), False),
        ({b"origin", b"user-agent"}, False),
        ({b"x-amz-security-token"}, False),
    ],
)
def test_d5b_administrative_requests_need_an_aws_protocol_header(headers: set[bytes], accepted: bool) -> None:
    if accepted:
        AwsProtocolGuard().check(Req(headers=headers))
    else:
        with pytest.raises(AccessDenied) as info:
            AwsProtocolGuard().check(Req(headers=headers))
        assert (info.value.status, info.value.code) == (403, "AccessDenied")
        assert info.value.message.startswith("/promote is administrative")
