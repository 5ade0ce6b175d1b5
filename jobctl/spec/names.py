"""The Kubernetes name grammar a spec's fields must follow (DNS labels, label keys and values, quantities, image
references, env names), each check raising ValueError inside a model validator."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal

from contract import env as contract
from jobctl.strict_yaml import short_repr

MAX_DNS_LABEL = 63
MAX_DEVICES = 65536

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SUBPATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")
# Kubernetes quantity grammar (apimachinery resource.Quantity): a decimal number with an SI, binary or exponent suffix.
QUANTITY = re.compile(r"^\+?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_QUANTITY_SCALE = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(10) ** e for s, e in (("n", -9), ("u", -6), ("m", -3), ("k", 3), ("M", 6), ("G", 9), ("T", 12))},
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
}
# Docker image reference: [registry[:port]/]path[:tag][@digest].
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF = re.compile(
    rf"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?::\d+)?/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity ("16", "500m", "64Gi", "1e3") as a number; ValueError when malformed."""
    match = QUANTITY.fullmatch(text)
    if not match:
        raise ValueError(f"{short_repr(text)} is not a Kubernetes quantity (e.g. 16, 500m, 64Gi)")
    suffix = match.group(3) or ""
    number = Decimal(text[: len(text) - len(suffix)] if suffix else text)
    if suffix and suffix not in _QUANTITY_SCALE:  # an exponent: e3, E-2
        return number * Decimal(10) ** int(suffix[1:])
    return number * _QUANTITY_SCALE.get(suffix, Decimal(1))


def check_quantity(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        amount = parse_quantity(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; set {field} like 16 (cores), 500m or 64Gi") from None
    if amount <= 0:
        raise ValueError(f"{short_repr(value)} must be more than zero")
    return value


def check_qualified_name(key: str) -> None:
    """A label key or taint key: [DNS-subdomain prefix/]name (name ≤ 63)."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS_1123_SUBDOMAIN.fullmatch(prefix)):
        raise ValueError(
            f"key {short_repr(key)} has an invalid prefix {short_repr(prefix)} (a DNS subdomain such as example.com)"
        )
    if not name or len(name) > MAX_DNS_LABEL or not LABEL_NAME.fullmatch(name):
        raise ValueError(f"key {short_repr(key)} is not a valid label key (alphanumerics, '-', '_', '.', at most 63)")


def check_label_value(value: str, what: str) -> None:
    if len(value) > MAX_DNS_LABEL or not LABEL_VALUE.fullmatch(value):
        raise ValueError(
            f"{what} {short_repr(value)} is not a valid label value (alphanumerics, '-', '_', '.', at most 63)"
        )


def check_dns_subdomain(value: str, what: str) -> str:
    if len(value) > 253 or not DNS_1123_SUBDOMAIN.fullmatch(value):
        raise ValueError(f"{what} {short_repr(value)} must be a DNS subdomain: lowercase letters, digits, '-' and '.'")
    return value


def check_env_names(names: Mapping[str, str], field: str) -> None:
    for key in names:
        if not ENV_NAME.fullmatch(key):
            raise ValueError(f"{short_repr(key)} is not an environment variable name (letters, digits, '_')")
        if key.startswith(contract.RESERVED_ENV_PREFIXES) or key in contract.RESERVED_ENV_NAMES:
            raise ValueError(f"{key} is set by jobctl or the device plugin; remove it from {field}")
