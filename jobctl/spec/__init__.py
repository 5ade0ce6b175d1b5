"""The job spec, split by concern: ``names`` (the Kubernetes name grammar), ``checks`` (field checks: host paths,
secrets, networks), ``errors`` (one-paragraph messages), ``models`` (the pydantic models), ``load`` (files, merging,
``--set`` and flags). What most callers need is re-exported here; whole-spec policy is jobctl.security."""

from jobctl.spec.errors import MAX_MESSAGE, SpecError
from jobctl.spec.load import load_spec
from jobctl.spec.models import JobSpec, train_config, validate_spec
from jobctl.spec.names import DNS_1035, DNS_1123_SUBDOMAIN, IMAGE_REF, QUANTITY, parse_quantity

__all__ = ["DNS_1035", "DNS_1123_SUBDOMAIN", "IMAGE_REF", "MAX_MESSAGE", "QUANTITY", "JobSpec", "SpecError"]
__all__ += ["load_spec", "parse_quantity", "train_config", "validate_spec"]
