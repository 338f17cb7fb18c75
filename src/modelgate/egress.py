"""Where the server may send requests on a user's behalf: ``http(s)://`` model data and alarm actions.

The server runs on the user's machine with no authentication (and reachable from a browser through CSRF), so a
URL a caller gives must not make it a proxy into the machine or its network (SSRF): loopback, link-local
(169.254.169.254 is the cloud metadata service), private, shared (100.64/10), unspecified, multicast, reserved
and documentation addresses are refused, and so are IPv6 forms that embed such an IPv4 address (mapped, 6to4,
NAT64). The operator opens destinations with ``MODELGATE_EGRESS_ALLOWLIST``: CIDRs or addresses (any port),
``address:port``, ``[v6-address]:port`` or ``host:port`` (that host name, whatever it resolves to).

A host name is resolved once, every address it resolves to must be allowed, and the caller connects to one of
those addresses (never resolving again: a DNS answer that changes between the check and the connection, DNS
rebinding, cannot slip a private address in). :func:`resolve_allowed` does that; the rest is pure.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "MODELGATE_EGRESS_ALLOWLIST"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


class DestinationRefused(Exception):
    """The destination is not allowed (or could not be resolved); the message is for the server's log only."""


@dataclass(frozen=True)
class Rule:
    """One allowlist entry: a network (any port, or one port), or a host name with a port."""

    network: IPNetwork | None = None
    host: str | None = None
    port: int | None = None

    def matches(self, host: str, port: int, address: IPAddress) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return _unmapped(address) in self.network
        return self.host == _normal_host(host)


def parse_rule(entry: str) -> Rule:
    """``10.0.0.0/8``, ``127.0.0.1``, ``127.0.0.1:9000``, ``[::1]:9000``, ``minio.internal:9000``."""
    text = entry.strip()
    try:
        return Rule(network=ipaddress.ip_network(text, strict=False))
    except ValueError:
        pass
    if text.startswith("["):
        address, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{entry!r}: write an IPv6 address with a port as [address]:port")
        return Rule(network=ipaddress.ip_network(address), port=_port(entry, port))
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{entry!r} is not a CIDR, an IP address, address:port or host:port")
    try:
        return Rule(network=ipaddress.ip_network(host), port=_port(entry, port))
    except ValueError:
        pass
    if not _HOST_NAME.match(_normal_host(host)):
        raise ValueError(f"{entry!r}: {host!r} is not a host name")
    return Rule(host=_normal_host(host), port=_port(entry, port))


def _port(entry: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    return int(text)


def _normal_host(host: str) -> str:
    return host.lower().rstrip(".")


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public(address: IPAddress) -> bool:
    """A global unicast address, and no private IPv4 address inside an IPv6 one."""
    address = _unmapped(address)
    if not address.is_global or address.is_multicast or address.is_reserved:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
    return True


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally (``127.0.0.1``, ``::1``), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class EgressPolicy:
    rules: tuple[Rule, ...] = ()

    @classmethod
    def from_entries(cls, entries: Sequence[str]) -> EgressPolicy:
        return cls(tuple(parse_rule(e) for e in entries))

    def allows(self, host: str, port: int, address: IPAddress) -> bool:
        return is_public(address) or any(rule.matches(host, port, address) for rule in self.rules)

    def refused_literally(self, host: str, port: int) -> bool:
        """What can be told from the URL alone, without a DNS lookup: a literal address or ``localhost``
        that is not allowed."""
        address = literal_address(host)
        if address is None:
            name = _normal_host(host)
            if name != "localhost" and not name.endswith(".localhost"):
                return False
            address = ipaddress.IPv4Address("127.0.0.1")
        return not self.allows(host, port, address)


Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (getaddrinfo, TCP)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def resolve_allowed(
    policy: EgressPolicy, host: str, port: int, resolver: Resolver = system_resolver
) -> list[IPAddress]:
    """Resolve once; every address must be allowed. The caller connects to one of these, never by name."""
    literal = literal_address(host)
    if literal is not None:
        found = [literal]
    else:
        try:
            found = list(dict.fromkeys(ipaddress.ip_address(a.partition("%")[0]) for a in resolver(host, port)))
        except (OSError, UnicodeError, ValueError) as exc:
            raise DestinationRefused(f"{host} could not be resolved: {exc}") from exc
    if not found:
        raise DestinationRefused(f"{host} resolves to no address")
    refused = [str(a) for a in found if not policy.allows(host, port, a)]
    if refused:
        raise DestinationRefused(
            f"{host}:{port} resolves to {', '.join(refused)}, which is not a public address and not in {SETTING}"
        )
    return found
