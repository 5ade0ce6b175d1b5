"""JobSpec: everything a training job needs, validated before anything is sent to a cluster.

Defaults make `jobctl submit --devices 8 --platform ascend` complete: a generated name, the image `make image`
builds, and the PVCs `k8s/` creates. Every invalid input raises SpecError: one paragraph naming the field, the bad
value and the fix. Loading (files, `--set`, flags) is jobctl.spec.load; the name grammar jobctl.spec.names; field
checks jobctl.spec.checks; messages jobctl.spec.errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from contract import config as trainer_config
from contract import env as contract
from contract import names
from contract.accelerators import Accelerator
from jobctl import platforms
from jobctl.platforms import Launcher, PlatformName, accelerator_of, platform_info
from jobctl.spec.checks import check_cidrs, check_host_path, check_secret_names, check_secret_volumes, parse_secret_ref
from jobctl.spec.elastic import ElasticFields, check_elastic, is_elastic, shrunk_batch_note
from jobctl.spec.errors import TRAIN_REFERENCE, SpecError, format_validation_error
from jobctl.spec.names import (
    DNS_1123_LABEL,
    IMAGE_REF,
    MAX_DEVICES,
    MAX_DNS_LABEL,
    SUBPATH,
    check_dns_subdomain,
    check_env_names,
    check_job_name,
    check_label_value,
    check_qualified_name,
    check_quantity,
    parse_quantity,
)
from jobctl.strict_yaml import short_repr

# Trainer keys jobctl sets itself, and where the user sets them instead.
LAUNCH_KEY_HINTS = {
    "platform": "use --platform (the spec field platform)",
    "data_dir": "jobctl mounts the data volume at /data; choose the volume with --data / data.claim or "
    "data.host_path and the folder with data.train_subpath",
    "val_dir": "use data.val_subpath (a folder of the data volume), or null for no validation",
    "ckpt_path": "jobctl writes checkpoints to /shared/jobs/<name>/ckpt; choose the job with --name",
    "is_distributed": "jobctl sets it from --devices",
}


ELASTIC_KEYS = ("min_devices", "shrink_after")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Volume(_Strict):
    """A PVC or a node's directory; with neither set, the PVC that `k8s/` creates."""

    default_claim: ClassVar[str]
    claim: str | None = None
    host_path: str | None = None

    @field_validator("claim")
    @classmethod
    def _claim_name(cls, value: str | None) -> str | None:
        return None if value is None else check_dns_subdomain(value, "claim")

    @field_validator("host_path")
    @classmethod
    def _host_path(cls, value: str | None) -> str | None:
        return None if value is None else check_host_path(value)

    @model_validator(mode="after")
    def _one_source(self) -> _Volume:
        if self.claim and self.host_path:
            raise ValueError("set either claim or host_path, not both")
        if self.claim is None and self.host_path is None:
            self.claim = self.default_claim
        return self


class DataVolume(_Volume):
    """The dataset: a PVC (default `imagenet`) or a node's directory holding train/ and val/; mounted read-only."""

    default_claim: ClassVar[str] = platforms.DEFAULT_DATA_CLAIM
    train_subpath: str = "train"
    val_subpath: str | None = "val"

    @field_validator("train_subpath", "val_subpath")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (not SUBPATH.fullmatch(value) or ".." in value.split("/")):
            raise ValueError(
                f"{short_repr(value)} must be a relative folder of the data volume, e.g. train or imagenet/val"
            )
        return value


class SharedVolume(_Volume):
    """Job directories and checkpoints: a ReadWriteMany PVC (default `jobctl-shared`) or a node's directory."""

    default_claim: ClassVar[str] = platforms.DEFAULT_SHARED_CLAIM


class Toleration(_Strict):
    """A Kubernetes toleration (same field names as the pod spec)."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.key is not None:
            check_qualified_name(self.key)
        if self.operator == "Exists" and self.value:
            raise ValueError("operator Exists takes no value; drop value or use operator Equal")
        if self.operator == "Equal" and not self.key:
            raise ValueError("operator Equal needs a key; set key or use operator Exists")
        if self.value:
            check_label_value(self.value, "value")
        if self.tolerationSeconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds only applies to effect NoExecute")
        return self

    def to_k8s(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


Scheduler = Literal["default", "volcano", "kueue"]
SCHEDULERS: tuple[Scheduler, ...] = ("default", "volcano", "kueue")


class Topology(_Strict):
    """Keep all pods of a job in one domain of a node label (a rack, a super pod): required or preferred."""

    key: str
    mode: Literal["required", "preferred"] = "required"

    @field_validator("key")
    @classmethod
    def _label_key(cls, value: str) -> str:
        check_qualified_name(value)
        return value


class JobSpec(_Strict):
    """A training job. Optional fields left unset are resolved (platform defaults) when the spec is validated."""

    name: str
    # Default: the platform's (Ascend jobs run in a namespace of their own; see k8s/namespace.yaml).
    namespace: str | None = None
    platform: PlatformName
    devices: int = Field(1, ge=1, le=MAX_DEVICES)
    devices_per_node: int | None = Field(None, ge=1)
    # The device generation (Ascend: 910, 910b, a3); default: the platform's (contract.accelerators).
    accelerator: str | None = None
    # default: the cluster's scheduler; volcano: a PodGroup gang; kueue: a suspended Job in a LocalQueue.
    # Unset: kueue when queue is given (what queue alone did before), else default.
    scheduler: Scheduler | None = None
    topology: Topology | None = None
    image: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    data: DataVolume = Field(default_factory=DataVolume)
    shared: SharedVolume = Field(default_factory=SharedVolume)
    cpu: str | None = None
    memory: str | None = None
    shm_size: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    priority_class: str | None = None
    queue: str | None = None
    max_restarts: int = Field(3, ge=0, le=1000)
    ttl_seconds_after_finished: int | None = Field(7 * 24 * 3600, ge=0)
    env: dict[str, str] = Field(default_factory=dict)
    # Credentials by reference only: the values stay in Secrets, never in a rendered object or spec.yaml.
    secret_env: dict[str, str] = Field(default_factory=dict)  # NAME: SECRET/KEY (secretKeyRef)
    env_from_secrets: list[str] = Field(default_factory=list)  # every key of each Secret as env (envFrom)
    secret_volumes: dict[str, str] = Field(default_factory=dict)  # SECRET: /mount/path (read-only files)
    image_pull_secrets: list[str] = Field(default_factory=list)
    # Egress stays open unless narrowed to these networks (plus the job's own pods and DNS).
    egress_cidrs: list[str] | None = None
    launcher: Launcher | None = None
    rendezvous_timeout: int = Field(600, ge=10, le=86400)
    # Elastic data parallel (jobctl.spec.elastic): train on as few as min_devices (whole pods) while a node is lost,
    # after waiting shrink_after seconds for it. Unset: not elastic (both stay out of the stored spec).
    min_devices: int | None = Field(None, ge=1, le=MAX_DEVICES)
    shrink_after: int | None = Field(None, ge=0, le=86400)
    stall_timeout: int = Field(1800, ge=60, le=7 * 86400)
    # The container's uid (Ascend images run as HwHiAiUser, uid 1000); null keeps the image's user.
    run_as_user: int | None = Field(1000, ge=0)
    # run_as_user 0 (or an image running as root) is refused unless this is true, and only CPU pods may.
    allow_root: bool = False
    train: dict[str, Any] = Field(default_factory=dict)

    @field_validator("accelerator", mode="before")
    @classmethod
    def _accelerator_text(cls, value: object) -> object:
        # YAML reads `accelerator: 910` as an integer.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("topology", mode="before")
    @classmethod
    def _topology_key(cls, value: object) -> object:
        return {"key": value} if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _dns_1035(cls, value: str) -> str:
        return check_job_name(value)

    @field_validator("namespace")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not DNS_1123_LABEL.fullmatch(value) or len(value) > MAX_DNS_LABEL:
            raise ValueError(
                f"{short_repr(value)} is not a namespace name (lowercase letters, digits and '-', at most 63)"
            )
        return value

    @field_validator("image")
    @classmethod
    def _image_ref(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 4096 or not IMAGE_REF.fullmatch(value)):
            raise ValueError(
                f"{short_repr(value)} is not an image reference such as registry:5000/resnext-jobs-gpu:0.1.0"
            )
        return value

    @field_validator("cpu", "memory", "shm_size")
    @classmethod
    def _quantity(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_quantity(value, info.field_name or "the quantity")

    @field_validator("node_selector")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            check_qualified_name(key)
            check_label_value(item, f"the value of {key}")
        return value

    @field_validator("priority_class")
    @classmethod
    def _priority_class(cls, value: str | None) -> str | None:
        return None if value is None else check_dns_subdomain(value, "priority class")

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        if value is None:
            return None
        check_label_value(value, "queue")
        return check_dns_subdomain(value, "queue")

    @field_validator("image_pull_secrets")
    @classmethod
    def _secrets(cls, value: list[str]) -> list[str]:
        for item in value:
            check_dns_subdomain(item, "secret name")
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: dict[str, str]) -> dict[str, str]:
        check_env_names(value, "secret_env")
        for name, ref in value.items():
            parse_secret_ref(name, ref)
        return value

    @field_validator("env_from_secrets")
    @classmethod
    def _env_from(cls, value: list[str]) -> list[str]:
        check_secret_names(value, "env_from_secrets")
        return value

    @field_validator("secret_volumes")
    @classmethod
    def _secret_volumes(cls, value: dict[str, str]) -> dict[str, str]:
        return check_secret_volumes(value)

    @field_validator("egress_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str] | None) -> list[str] | None:
        return check_cidrs(value)

    @field_validator("env", mode="before")
    @classmethod
    def _env_scalars(cls, value: object) -> object:
        # YAML turns `FOO: 1` into an int; env values are strings.
        if isinstance(value, Mapping):
            return {k: _scalar_text(v) for k, v in value.items()}
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        check_env_names(value, "env")
        return value

    @field_validator("train", mode="before")
    @classmethod
    def _train_keys(cls, value: object) -> object:
        if isinstance(value, Mapping):
            for key in value:
                if not isinstance(key, str):
                    raise ValueError(f"key {short_repr(key)} is not a trainer key name")
                if key in LAUNCH_KEY_HINTS:
                    raise ValueError(f"{key} is set by jobctl, not a train key: {LAUNCH_KEY_HINTS[key]}")
        return value

    @model_validator(mode="after")
    def _resolve(self) -> JobSpec:
        info = platform_info(self.platform)
        if self.accelerator is None:
            self.accelerator = info.default_accelerator
        elif self.accelerator not in info.accelerators:
            raise ValueError(
                f"accelerator: {self.accelerator!r} is not a {self.platform} accelerator; accepted: "
                f"{', '.join(info.accelerators)}"
            )
        self._resolve_devices()
        self._resolve_scheduling()
        self._check_user()
        if self.namespace is None:
            self.namespace = info.namespace
        both = sorted(set(self.env) & set(self.secret_env))
        if both:
            raise ValueError(f"env and secret_env both set {', '.join(both)}; keep the Secret reference only")
        if self.launcher is None:
            self.launcher = info.default_launcher
        elif self.launcher not in info.launchers:
            raise ValueError(
                f"launcher: {self.launcher!r} is not available on {self.platform} "
                f"(choose {' or '.join(info.launchers)}); ranktable and controller are Ascend's rank-table launchers"
            )
        self._check_name_length()
        if self.image is None:
            self.image = default_image(self.platform)
        dpn = self.per_pod
        self.cpu = self.cpu or str(info.cpu_per_device * dpn)
        self.memory = self.memory or f"{info.memory_gi_per_device * dpn}Gi"
        self.shm_size = self.shm_size or f"{info.shm_gi_per_device * dpn}Gi"
        if parse_quantity(self.shm_size) >= parse_quantity(self.memory):
            raise ValueError(
                f"shm_size: {self.shm_size} must be less than memory {self.memory} (the in-memory /dev/shm counts "
                "toward the pod's memory limit); lower shm_size or raise memory"
            )
        self.train = _validated_train(self.train, info.trainer_platform)
        check_elastic(self._elastic_fields())
        return self

    def elastic_note(self) -> str | None:
        """What shrinking costs each device (render/submit say it)."""
        return shrunk_batch_note(self._elastic_fields())

    def _elastic_fields(self) -> ElasticFields:
        per_batch = train_config(self).per_batch_size if self.min_devices is not None else 0  # only read then
        return ElasticFields(
            self.devices, self.per_pod, self.min_devices, self.shrink_after, str(self.launcher), self.max_restarts,
            self.rendezvous_timeout, per_batch,
        )  # fmt: skip

    def _resolve_devices(self) -> None:
        accel = self.accel
        if self.devices_per_node is None:
            self.devices_per_node = min(self.devices, accel.default_devices_per_node)
        dpn = self.devices_per_node
        if dpn > accel.max_devices_per_node:
            raise ValueError(
                f"devices_per_node: {dpn} is more than one {accel.description} node holds "
                f"(at most {accel.max_devices_per_node}); use --devices-per-node {accel.max_devices_per_node} or fewer"
            )
        if self.devices % dpn:
            raise ValueError(
                f"devices: {self.devices} is not divisible by devices_per_node {dpn}; use a multiple of {dpn} "
                "(every pod runs the same number of trainer processes)"
            )
        if accel.node_type_for(dpn) is None:
            counts = ", ".join(map(str, accel.accepted_counts))
            raise ValueError(
                f"devices_per_node: {dpn} (devices {self.devices}) is not a device count one {accel.description} "
                f"node takes; accepted per node: {counts}; use --devices a multiple of "
                f"{accel.default_devices_per_node} or set --devices-per-node to one of them"
            )

    def _resolve_scheduling(self) -> None:
        if self.scheduler is None:
            self.scheduler = "kueue" if self.queue else "default"
        if self.scheduler == "kueue" and not self.queue:
            raise ValueError("scheduler: kueue needs queue, the Kueue LocalQueue of the namespace; pass --queue NAME")
        if self.scheduler == "default" and self.queue:
            raise ValueError(
                f"queue: {self.queue!r} does nothing with scheduler default; use --scheduler kueue (a LocalQueue) "
                "or --scheduler volcano (a Volcano queue), or drop --queue"
            )
        if self.topology is None and self.accel.default_topology and self.devices > self.per_pod:
            # A3: keep a multi-node job inside one super pod where the nodes say which one they are in.
            self.topology = Topology(key=self.accel.default_topology, mode="preferred")

    def _check_user(self) -> None:
        if self.allow_root and not platform_info(self.platform).root_allowed:
            raise ValueError(
                f"allow_root: {self.platform} pods never run as root (the device runtime's user owns the devices); "
                "drop allow_root and keep run_as_user 1000"
            )
        if self.run_as_user == 0 and not self.allow_root:
            raise ValueError(
                "run_as_user: 0 runs the trainer as root, which a shared cluster refuses; keep the default 1000, or "
                "on CPU set allow_root: true (only namespaces that admit root pods will run it)"
            )

    def _check_name_length(self) -> None:
        what, derived = names.longest(self.name, self.pods, rings=self.launcher == "controller")
        if len(derived) > names.MAX_NAME:
            most = names.max_name_length(self.pods, rings=self.launcher == "controller")
            raise ValueError(
                f"name: {self.name!r} is {len(self.name)} characters; the longest name jobctl derives from it (its "
                f"{what}, {derived!r}) exceeds the {names.MAX_NAME}-character limit of a Job name, a pod hostname "
                f"and a label value; use a name of at most {most} characters"
            )

    # Resolved values (valid after validation) -------------------------------------------------------------

    @property
    def accel(self) -> Accelerator:
        return accelerator_of(self.platform, self.accelerator)

    @property
    def per_pod(self) -> int:
        assert self.devices_per_node is not None
        return self.devices_per_node

    @property
    def pods(self) -> int:
        return self.devices // self.per_pod

    @property
    def elastic(self) -> bool:
        return is_elastic(self.devices, self.min_devices)

    @property
    def min_pods(self) -> int:
        """The fewest pods the job trains with: all of them unless it is elastic."""
        return (self.min_devices if self.elastic and self.min_devices else self.devices) // self.per_pod

    @property
    def shrink_seconds(self) -> int:
        return contract.DEFAULT_SHRINK_AFTER if self.shrink_after is None else self.shrink_after

    @property
    def job_dir(self) -> str:
        """The job directory inside a pod."""
        return str(contract.JobLayout.in_pod(self.name).root)

    @property
    def data_dir(self) -> str:
        return f"{contract.DATA_MOUNT}/{self.data.train_subpath}"

    @property
    def val_dir(self) -> str | None:
        return None if self.data.val_subpath is None else f"{contract.DATA_MOUNT}/{self.data.val_subpath}"

    @property
    def ckpt_dir(self) -> str:
        return str(contract.JobLayout.in_pod(self.name).ckpt_dir)

    def to_yaml(self) -> str:
        values = self.model_dump(mode="json")
        for key in ELASTIC_KEYS:  # unset: left out, so a job that is not elastic stores the spec it always did
            if values[key] is None:
                del values[key]
        return yaml.safe_dump(values, sort_keys=False)


def _scalar_text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _validated_train(values: Mapping[str, Any], trainer_platform: str) -> dict[str, Any]:
    """Check the trainer keys with the platform the pods use; keep the given keys, normalised (lists, aliases)."""
    try:
        cfg = trainer_config.build({**values, "platform": trainer_platform}, source="train")
    except trainer_config.ConfigError as exc:
        # A ValidationError behind it is re-told like the spec's own (values cut, few problems); else its text.
        cause = exc.__cause__
        text = format_validation_error(cause, JobSpec, "train keys") if isinstance(cause, ValidationError) else None
        raise ValueError(
            text or f"train keys: {str(exc).removeprefix('invalid train: ')} (see {TRAIN_REFERENCE})"
        ) from None
    flat = cfg.flat()
    canonical = ["arch" if key == "backbone" else key for key in values]
    return {key: flat[key] for key in canonical}


def default_image(platform: str) -> str:
    """The image `make image` builds; `$JOBCTL_REGISTRY/` in front when that variable is set."""
    image = f"{platforms.IMAGE_REPOSITORY.format(platform=platform)}:{platforms.IMAGE_TAG}"
    registry = os.environ.get(platforms.REGISTRY_ENV, "").strip().rstrip("/")
    return f"{registry}/{image}" if registry else image


def train_config(spec: JobSpec) -> trainer_config.TrainConfig:
    """The trainer config the pods run with: the spec's keys plus the platform and the in-pod paths."""
    values: dict[str, Any] = {
        **spec.train,
        "platform": platform_info(spec.platform).trainer_platform,
        "data_dir": spec.data_dir,
        "val_dir": spec.val_dir,
        "ckpt_path": spec.ckpt_dir,
        "is_distributed": spec.devices > 1,
    }
    return trainer_config.build(values, source="train")


def validate_spec(values: Mapping[str, Any]) -> JobSpec:
    try:
        return JobSpec.model_validate(dict(values))
    except ValidationError as err:
        raise SpecError(format_validation_error(err, JobSpec)) from None
