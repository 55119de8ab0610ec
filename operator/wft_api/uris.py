"""Rules for the URLs and S3 keys a spec names: the S3 endpoint and the s3:// URIs.

Each rule exists twice, as a Python check (the pydantic model, so `wft validate`, `wft train`
and the operator refuse it) and as a CEL rule in the CRD (so the API server refuses it too),
with the same message. CEL, not `pattern`: the API server repeats a value that misses its
pattern in the error ("Invalid value: \"http://KEY:SECRET@host\""), but names only the type
for a CEL rule, so a secret typed into an endpoint is never echoed. Messages here never
quote the value either.

Which hosts the trainer may reach is the platform's decision, not the schema's: link-local
and cloud metadata addresses (`is_metadata_host`) are refused by the operator's guard-rails
unless its settings allow them (wft_operator.render.guard_rail_problems).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

# --- storage.endpoint ---------------------------------------------------------------------
_SCHEME = r"^https?://"
_USERINFO = r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*@"
# http(s)://host[:port][/path]: a DNS name or IPv4 address, or an IPv6 address in brackets.
_ENDPOINT = (
    r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?[.]?)"
    r"(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
    r"(/[^\s?#]*)?$"
)

ENDPOINT_SCHEME_MESSAGE = "must be an http:// or https:// URL, e.g. http://minio.storage:9000"
ENDPOINT_USERINFO_MESSAGE = (
    "must not hold credentials (user:password@ before the host); put them in a Secret and "
    "name it in spec.storage.credentialsSecret"
)
ENDPOINT_FORM_MESSAGE = (
    "must be http(s)://HOST[:PORT][/PATH] with a host name or IP address, and no spaces, "
    "query or fragment"
)

ENDPOINT_CEL_RULES: list[Any] = [
    {"rule": f"self.matches(r'{_SCHEME}')", "message": ENDPOINT_SCHEME_MESSAGE},
    {"rule": f"!self.matches(r'{_USERINFO}')", "message": ENDPOINT_USERINFO_MESSAGE},
    {
        "rule": f"!self.matches(r'{_SCHEME}') || self.matches(r'{_USERINFO}') || "
        f"self.matches(r'{_ENDPOINT}')",
        "message": ENDPOINT_FORM_MESSAGE,
    },
]


def endpoint_problem(url: str) -> str | None:
    """What is wrong with an S3 endpoint URL (never quoting it), or None."""
    if not re.search(_SCHEME, url):
        return ENDPOINT_SCHEME_MESSAGE
    if re.search(_USERINFO, url):
        return ENDPOINT_USERINFO_MESSAGE
    if not re.search(_ENDPOINT, url):
        return ENDPOINT_FORM_MESSAGE
    try:
        port = urlsplit(url).port  # None when there is none
    except ValueError:  # out of 0-65535
        return ENDPOINT_FORM_MESSAGE
    return ENDPOINT_FORM_MESSAGE if port == 0 else None


_USERINFO_ANYWHERE = re.compile(r"(?<=://)[^/?#\s@]*@")


def redact(text: str) -> str:
    """`scheme://user:secret@host` -> `scheme://***@host`, anywhere in a text."""
    return _USERINFO_ANYWHERE.sub("***@", text)


# --- s3:// keys ---------------------------------------------------------------------------
# A '.' or '..' path segment: S3 stores it literally (MinIO refuses it, at upload time).
_DOT_SEGMENT = r"(^|/)[.][.]?(/|$)"
DOT_SEGMENT_MESSAGE = (
    "must not have '.' or '..' path segments: S3 keys are literal, nothing resolves them "
    "(write the folder it means)"
)
KEY_CEL_RULES: list[Any] = [
    {"rule": f"!self.matches(r'{_DOT_SEGMENT}')", "message": DOT_SEGMENT_MESSAGE}
]
# baseModel may also be a local folder, where '..' means what it says.
S3_ONLY_KEY_CEL_RULES: list[Any] = [
    {
        "rule": f"!self.startsWith('s3://') || !self.matches(r'{_DOT_SEGMENT}')",
        "message": DOT_SEGMENT_MESSAGE,
    }
]


def dot_segment_problem(key: str) -> str | None:
    return DOT_SEGMENT_MESSAGE if re.search(_DOT_SEGMENT, key) else None


# --- hosts the trainer should not reach unless the platform says so -------------------------
METADATA_HOSTNAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
    }
)
_METADATA_NETWORKS = (
    ipaddress.ip_network("169.254.0.0/16"),  # IPv4 link-local: AWS, GCP, Azure, OCI metadata
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # fe80::1%eth0
    except ValueError:
        pass
    # The forms inet_aton still reads and resolvers honour: 2852039166, 0xa9fea9fe, 0251.0376...
    if re.fullmatch(r"[0-9A-Fa-fXx.]+", host) and re.match(r"[0-9]", host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def is_metadata_host(host: str) -> bool:
    """A link-local address or a cloud metadata service, in any spelling of it."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if host in METADATA_HOSTNAMES:
        return True
    address = _address(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            address = embedded
    return any(address in net for net in _METADATA_NETWORKS if net.version == address.version)


def endpoint_host(url: str) -> str:
    """The host of an endpoint URL (lowercase, no brackets), '' when there is none."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""
