"""Every name jobctl generates for a job, each from one function, and the length rule derived from the longest.

Kubernetes caps a Job's and a Service's name, a pod's hostname and a label value at 63 characters (a DNS label);
jobctl holds every name it creates to that, so one rule covers them all: a job name may be as long as the longest
name derived from it allows.
"""

from __future__ import annotations

MAX_NAME = 63


def job(name: str) -> str:
    """The training Job; also its Service, NetworkPolicy and PodGroup."""
    return name


def config_map(job_name: str) -> str:
    """The rendered ConfigMap of a Job (train.yaml, spec.yaml)."""
    return f"{job_name}-config"


def spec_record(name: str) -> str:
    """The ConfigMap holding the resolved spec, outliving the Job (k8s backend)."""
    return f"{name}-spec"


def eval_job(name: str) -> str:
    """`jobctl eval`'s one-device Job; also its NetworkPolicy."""
    return f"{name}-eval"


def metrics_job(name: str) -> str:
    """The one-shot Job reading metrics.jsonl from the shared volume once the job's pods are gone."""
    return f"{name}-metrics"


def rings_config(name: str) -> str:
    """The ConfigMap Ascend's hccl-controller fills with the rank table (its name is the controller's rule)."""
    return f"rings-config-{name}"


def pod_hostname(job_name: str, index: int) -> str:
    """An Indexed Job's pod hostname (and its DNS name under the Service)."""
    return f"{job_name}-{index}"


def generated(name: str, pods: int, *, rings: bool) -> dict[str, str]:
    """Every name jobctl may create for job ``name`` with ``pods`` pods (``rings``: with an hccl-controller)."""
    names = {
        "Job, Service, NetworkPolicy, PodGroup": job(name),
        "ConfigMap": config_map(name),
        "spec record": spec_record(name),
        "eval Job": eval_job(name),
        "metrics reader Job": metrics_job(name),
        "pod hostname": pod_hostname(job(name), pods - 1),
    }
    if rings:
        names["rank-table ConfigMap"] = rings_config(name)
    return names


def longest(name: str, pods: int, *, rings: bool) -> tuple[str, str]:
    """(what, name) of the longest generated name."""
    return max(generated(name, pods, rings=rings).items(), key=lambda item: len(item[1]))


def max_name_length(pods: int, *, rings: bool) -> int:
    """The longest job name whose generated names all fit MAX_NAME."""
    _, derived = longest("", pods, rings=rings)
    return MAX_NAME - len(derived)
