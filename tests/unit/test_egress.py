"""The egress policy (egress.py): which destinations http(s) model data and alarm actions may reach (D6)."""

from __future__ import annotations

import ipaddress

import pytest

from modelgate.egress import DestinationRefused, EgressPolicy, Rule, is_public, parse_rule, resolve_allowed
from modelgate.settings import Settings


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1", True),
        ("127.0.0.1", False),  # loopback
        ("127.255.0.1", False),
        ("::1", False),
        ("10.1.2.3", False),  # RFC 1918
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # shared address space (carrier-grade NAT)
        ("169.254.169.254", False),  # link-local: the cloud metadata service
        ("fe80::1", False),
        ("fc00::1", False),  # unique local
        ("0.0.0.0", False),  # unspecified
        ("::", False),
        ("224.0.0.1", False),  # multicast
        ("ff0e::1", False),
        ("240.0.0.1", False),  # reserved
        ("255.255.255.255", False),
        ("192.0.2.1", False),  # documentation
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:8.8.8.8", True),
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
        ("2002:a00:1::", False),  # 6to4 around 10.0.0.1
        ("64:ff9b::7f00:1", False),  # NAT64 around 127.0.0.1
    ],
)
def test_d6_only_public_addresses_are_open_by_default(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public
    assert EgressPolicy().allows("h", 80, ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        ("10.0.0.0/8", Rule(network=ipaddress.ip_network("10.0.0.0/8"))),
        ("127.0.0.1", Rule(network=ipaddress.ip_network("127.0.0.1/32"))),
        ("::1", Rule(network=ipaddress.ip_network("::1/128"))),
        ("127.0.0.1:9000", Rule(network=ipaddress.ip_network("127.0.0.1/32"), port=9000)),
        ("[::1]:9000", Rule(network=ipaddress.ip_network("::1/128"), port=9000)),
        ("MinIO.internal.:9000", Rule(host="minio.internal", port=9000)),
    ],
)
def test_d6_allowlist_entries(entry: str, rule: Rule) -> None:
    assert parse_rule(entry) == rule


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("minio", "is not a CIDR, an IP address, address:port or host:port"),
        ("minio:http", "the port must be a number"),
        ("127.0.0.1:0", "the port must be a number from 1 to 65535"),
        ("[::1]", "write an IPv6 address with a port as"),
        ("bad host:80", "is not a host name"),
    ],
)
def test_d6_bad_allowlist_entries_are_named(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rule(entry)
    with pytest.raises(ValueError, match=message):
        Settings({"MODELGATE_EGRESS_ALLOWLIST": f'["{entry}"]'})


@pytest.mark.parametrize(
    ("entries", "host", "port", "address", "allowed"),
    [
        ([], "h", 80, "127.0.0.1", False),
        (["127.0.0.0/8"], "h", 80, "127.0.0.2", True),
        (["127.0.0.1:9000"], "h", 9000, "127.0.0.1", True),
        (["127.0.0.1:9000"], "h", 9001, "127.0.0.1", False),  # another port of the same host
        (["127.0.0.1"], "h", 9001, "::ffff:127.0.0.1", True),  # the mapped form of an allowed address
        (["minio:9000"], "MINIO", 9000, "10.0.0.5", True),  # a name, whatever it resolves to
        (["minio:9000"], "other", 9000, "10.0.0.5", False),
        (["minio:9000"], "minio", 9001, "10.0.0.5", False),
    ],
)
def test_d6_the_allowlist_opens_what_it_names(
    entries: list[str], host: str, port: int, address: str, allowed: bool
) -> None:
    assert EgressPolicy.from_entries(entries).allows(host, port, ipaddress.ip_address(address)) is allowed


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("169.254.169.254", True),
        ("10.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("api.localhost", True),
        ("8.8.8.8", False),
        ("example.com", False),  # a name: checked when it is resolved, at delivery or download
        ("127.1", False),  # not a literal address either: the resolver says 127.0.0.1, refused then
    ],
)
def test_d6_what_the_url_alone_tells(host: str, refused: bool) -> None:
    assert EgressPolicy().refused_literally(host, 80) is refused
    assert not EgressPolicy.from_entries(["0.0.0.0/0", "::/0"]).refused_literally(host, 80)


def test_d6_a_name_is_resolved_once_and_every_address_must_be_allowed() -> None:
    calls: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return {"good": ["93.184.216.34"], "mixed": ["93.184.216.34", "10.0.0.1"], "lo": ["127.0.0.1"]}[host]

    policy = EgressPolicy()
    assert resolve_allowed(policy, "good", 443, resolver) == [ipaddress.ip_address("93.184.216.34")]
    with pytest.raises(DestinationRefused, match=r"10\.0\.0\.1"):
        resolve_allowed(policy, "mixed", 443, resolver)
    with pytest.raises(DestinationRefused, match=r"127\.0\.0\.1, which is not a public address"):
        resolve_allowed(policy, "lo", 80, resolver)
    assert resolve_allowed(EgressPolicy.from_entries(["127.0.0.1:80"]), "lo", 80, resolver)
    assert calls == [("good", 443), ("mixed", 443), ("lo", 80), ("lo", 80)]
    with pytest.raises(DestinationRefused, match=r"169\.254\.169\.254"):
        resolve_allowed(policy, "169.254.169.254", 80, resolver)  # a literal: no lookup
    assert len(calls) == 4


def test_d6_an_unresolvable_name_is_refused() -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise OSError(-2, "Name or service not known")

    with pytest.raises(DestinationRefused, match="could not be resolved"):
        resolve_allowed(EgressPolicy(), "nowhere.invalid", 80, resolver)
