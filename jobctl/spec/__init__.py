"""The job spec, split by concern: ``names`` (Kubernetes name grammar), ``checks`` (field checks: host paths,
secrets, networks), ``errors`` (one-paragraph messages), ``models`` (the pydantic models), ``load`` (files, merging,
``--set`` and flags). The names most callers need are re-exported here."""

from jobctl.spec.models import (
    DNS_1035,
    DNS_1123_SUBDOMAIN,
    IMAGE_REF,
    MAX_MESSAGE,
    QUANTITY,
    JobSpec,
    SpecError,
    load_spec,
    parse_quantity,
    train_config,
    validate_spec,
)

__all__ = [
    "DNS_1035",
    "DNS_1123_SUBDOMAIN",
    "IMAGE_REF",
    "MAX_MESSAGE",
    "QUANTITY",
    "JobSpec",
    "SpecError",
    "load_spec",
    "parse_quantity",
    "train_config",
    "validate_spec",
]
