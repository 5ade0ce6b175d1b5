"""JobSpec -> Kubernetes objects (pure: no I/O, no cluster).

A training job is an Indexed batch/v1 Job (one pod per node, pod `i` runs `trainer.launch` for its devices), a
headless Service giving pod 0 a stable DNS name before it is ready, a ConfigMap with the trainer config and the
resolved spec, and a NetworkPolicy admitting only the job's own pods. The Kubernetes backend makes them owned by
the Job once it exists. Pods mount only their job's folder of the shared volume (subPath jobs/<name>, at the
contract's /shared/jobs/<name>), and Secrets only by reference (secretKeyRef, envFrom, secret volumes).

Version gating (fields are used only from the Kubernetes minor where they are GA):
- podFailurePolicy (GA 1.31, on by default since 1.26): always. Exit 2 (bad config) fails the Job, exit 75 (the
  launcher leaves to rejoin a changed group) and DisruptionTarget (eviction, preemption) do not count towards
  backoffLimit. So backoffLimit = max_restarts counts group failures: a failing rank fails its pod once; its peers
  exit 75 and are recreated for free.
- successPolicy (GA 1.33): the Job succeeds when index 0 does. Rank 0 exits 0 only after training completed and
  its checkpoint is saved; without the policy, a peer crashing during teardown would send a finished job through
  restarts and rendezvous timeouts. Elastic jobs keep exactly this rule. A count rule (succeededCount: min_pods)
  would also end a job whose lost pod 0 never comes back, but it is not safe for our pods: the other ranks exit 0
  as soon as their last step is done, while the first member (rank 0) may still be writing the final checkpoint,
  and a met success policy terminates the pods still running. Without a count rule, an elastic job that trained
  without pod 0 completes when pod 0's replacement starts (it finds the job complete and exits 0 at once); while
  no node takes it, the Job stays active with that pod Pending (delete it then: the checkpoints are kept).
- podReplacementPolicy: Failed (GA 1.34): a replacement pod starts only after the old one has terminated, so two
  pods of one index (same hostname, same rank) never run at once. (Older servers already behave this way for Jobs
  with a podFailurePolicy; the field makes it explicit.)
- Not used: backoffLimitPerIndex (per-index retries contradict whole-group restarts), managedBy (no external
  controller manages these Jobs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contract import env as contract
from contract import layout, names, snapshot_file
from contract.accelerators import RING_CONTROLLER_LABEL
from jobctl import platforms
from jobctl.platforms import PlatformInfo, platform_info
from jobctl.render_gang import (  # noqa: F401 (re-exported: jobctl.render is where callers find them)
    KUEUE_QUEUE_LABEL,
    KUEUE_TOPOLOGY_ANNOTATION,
    VOLCANO_GROUP_ANNOTATION,
    VOLCANO_SCHEDULER,
    gang_warning,
    kueue_job_annotations,
    pod_group,
)
from jobctl.spec import JobSpec, SpecError, parse_quantity, train_config
from jobctl.spec.checks import parse_secret_ref

SUPPORTED_KUBE_VERSIONS: tuple[str, ...] = tuple(f"1.{minor}" for minor in range(29, 38))
DEFAULT_KUBE_VERSION = SUPPORTED_KUBE_VERSIONS[0]

SUCCESS_POLICY_SINCE = (1, 33)
POD_REPLACEMENT_POLICY_SINCE = (1, 34)

APP_NAME = "resnext-jobs"
LABEL_PREFIX = "jobctl.io"
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"
# The Job controller sets it on every pod of a Job (and overwrites it in a Job's template): another job cannot claim
# to be this one's pods by copying its labels.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
NETWORK_POLICY_API_VERSION = "networking.k8s.io/v1"
DNS_PORT = 53

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(\.\d+)?([-+].*)?$")


def parse_kube_version(version: str, *, older_as_oldest: bool = False) -> tuple[int, int]:
    """(major, minor) of a supported target, clamped into the supported range: a newer version renders as the
    newest supported minor; an older one is an error, or (a server's version) renders as the oldest."""
    match = _VERSION.fullmatch(version.strip())
    oldest, newest = SUPPORTED_KUBE_VERSIONS[0], SUPPORTED_KUBE_VERSIONS[-1]
    if not match:
        raise SpecError(f"kube_version: {version!r} is not a Kubernetes version such as 1.29 or v1.31.2")
    parsed = (int(match.group(1)), int(match.group(2)))
    if parsed < _as_tuple(oldest) and older_as_oldest:
        return _as_tuple(oldest)
    if parsed < _as_tuple(oldest):
        raise SpecError(
            f"kube_version: {version} is older than the oldest supported Kubernetes {oldest}; "
            f"use a cluster or --kube-version in {oldest}–{newest}"
        )
    return min(parsed, _as_tuple(newest))


def resolve_kube_version(version: str, *, older_as_oldest: bool = False) -> str:
    """The supported "1.N" a target version renders as (and validates against)."""
    major, minor = parse_kube_version(version, older_as_oldest=older_as_oldest)
    return f"{major}.{minor}"


def _as_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


# Names and labels ------------------------------------------------------------------------------------------


def master_addr(spec: JobSpec) -> str:
    """Pod 0's stable DNS name (Indexed Job hostname + subdomain = the headless Service)."""
    return f"{names.pod_hostname(names.job(spec.name), 0)}.{names.job(spec.name)}.{spec.namespace}.svc"


def selector_labels(spec: JobSpec, component: str = "trainer") -> dict[str, str]:
    """The labels that pick one job's pods of one component (Service selector, anti-affinity)."""
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": spec.name,
        "app.kubernetes.io/component": component,
    }


def labels(spec: JobSpec, component: str = "trainer") -> dict[str, str]:
    return {
        **selector_labels(spec, component),
        "app.kubernetes.io/part-of": APP_NAME,
        "app.kubernetes.io/managed-by": "jobctl",
        "app.kubernetes.io/version": platforms.IMAGE_TAG,
        f"{LABEL_PREFIX}/platform": spec.platform,
        f"{LABEL_PREFIX}/devices": str(spec.devices),
        f"{LABEL_PREFIX}/devices-per-node": str(spec.per_pod),
        f"{LABEL_PREFIX}/launcher": str(spec.launcher),
    }


def _controller_labels(spec: JobSpec) -> dict[str, str]:
    """ring-controller.atlas, per generation: the hccl-controller (controller launcher) and Volcano's Ascend
    plugin (scheduler volcano) look for it on the Job, the pod template, rings-config and the PodGroup."""
    value = spec.accel.ring_controller
    if value and (spec.launcher == "controller" or spec.scheduler == "volcano"):
        return {RING_CONTROLLER_LABEL: value}
    return {}


def _metadata(spec: JobSpec, name: str, object_labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": spec.namespace, "labels": object_labels}


# Pod pieces ---------------------------------------------------------------------------------------------------


def _user_env(spec: JobSpec, info: PlatformInfo) -> list[dict[str, Any]]:
    """Platform presets (HCCL/NCCL), overridden by the spec's env; then the Secret references (never values)."""
    merged = {**contract.SCRATCH_ENV, **dict(info.env), **spec.env}
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in merged.items()]
    for name, ref in spec.secret_env.items():
        secret, key = parse_secret_ref(name, ref)
        env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return env


def _env_from(spec: JobSpec) -> dict[str, Any]:
    return {"envFrom": [{"secretRef": {"name": s}} for s in spec.env_from_secrets]} if spec.env_from_secrets else {}


def pod_env(spec: JobSpec) -> contract.PodEnv:
    """The pod contract's rendered half; Kubernetes sets JOB_COMPLETION_INDEX and the downward-API fields."""
    return contract.PodEnv(
        job_name=spec.name,
        family=spec.platform,
        launcher=spec.launcher or platform_info(spec.platform).default_launcher,
        num_pods=spec.pods,
        devices_per_pod=spec.per_pod,
        master_addr=master_addr(spec),
        job_dir=Path(spec.job_dir),
        data_dir=spec.data_dir,
        val_dir=spec.val_dir,
        rendezvous_timeout=spec.rendezvous_timeout,
        stall_timeout=spec.stall_timeout,
        max_restarts=spec.max_restarts,
        snapshot_dir=Path(contract.SNAPSHOT_DIR) if snapshot_memory(spec) else None,
        min_pods=spec.min_pods if spec.elastic else 0,  # 0: not elastic (no JOBCTL_MIN_PODS in the pod env)
        shrink_after=spec.shrink_seconds,
    )


SNAPSHOT_CLASSES = 1000  # num_classes unset (the data's class folders): size the snapshots for ImageNet's


def snapshot_memory(spec: JobSpec) -> int:
    """Bytes a training pod's snapshots take in its /dev/shm (contract.snapshot_file), 0 when they are off; added
    to the shm volume's sizeLimit and to the pod's memory request and limit (tmpfs pages count as the pod's)."""
    cfg = train_config(spec)
    if cfg.snapshot_interval == 0:
        return 0
    return snapshot_file.pod_memory_bytes(cfg.arch, cfg.num_classes or SNAPSHOT_CLASSES)


def snapshot_note(spec: JobSpec) -> str | None:
    """What the snapshots cost, for render/submit to say."""
    extra = snapshot_memory(spec)
    if not extra:
        return None
    interval = train_config(spec).snapshot_interval
    every = f"every {interval} step(s)" if interval else "at the interval costing under 3% of a step"
    size = _training_size(spec)
    return (
        f"note: in-memory snapshots {every}: {extra / 2**30:.2f} GiB of /dev/shm per pod ({snapshot_file.POD_COPIES} "
        f"copies of the training state), added to each pod's memory ({spec.memory} -> {size.memory}) and shm "
        f"({spec.shm_size} -> {size.shm}); set train key snapshot_interval: 0 to turn them off"
    )


def _plus(quantity: str, extra: int) -> str:
    if not extra:
        return quantity
    mib = -(-(int(parse_quantity(quantity)) + extra) // 2**20)  # rounded up (a Decimal // truncates)
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


@dataclass(frozen=True)
class PodSize:
    devices: int
    cpu: str
    memory: str
    shm: str


def _training_size(spec: JobSpec) -> PodSize:
    extra = snapshot_memory(spec)
    return PodSize(spec.per_pod, str(spec.cpu), _plus(str(spec.memory), extra), _plus(str(spec.shm_size), extra))


def _eval_size(spec: JobSpec, info: PlatformInfo) -> PodSize:
    """One device: the platform's per-device defaults, capped by the training pod's (possibly smaller) sizes."""

    def smaller(configured: str, per_device: str) -> str:
        return configured if parse_quantity(configured) < parse_quantity(per_device) else per_device

    return PodSize(
        1,
        smaller(str(spec.cpu), str(info.cpu_per_device)),
        smaller(str(spec.memory), f"{info.memory_gi_per_device}Gi"),
        smaller(str(spec.shm_size), f"{info.shm_gi_per_device}Gi"),
    )


def _resources(spec: JobSpec, info: PlatformInfo, size: PodSize) -> dict[str, Any]:
    devices, resource = size.devices, spec.accel.resource
    requests: dict[str, Any] = {"cpu": size.cpu, "memory": size.memory}
    limits: dict[str, Any] = {"memory": size.memory}
    if resource:
        limits[resource] = devices
        if info.device_in_requests:
            requests[resource] = devices
    return {"requests": requests, "limits": limits}


def _volumes(spec: JobSpec, info: PlatformInfo, shm: str, *, training: bool) -> list[dict[str, Any]]:
    data: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": spec.data.claim, "readOnly": True}}
        if spec.data.claim
        else {"hostPath": {"path": spec.data.host_path, "type": "Directory"}}
    )
    # Pods mount only their job's folder of it (subPath); a node folder must exist (the admin creates it).
    shared: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": spec.shared.claim}}
        if spec.shared.claim
        else {"hostPath": {"path": spec.shared.host_path, "type": "Directory"}}
    )
    volumes: list[dict[str, Any]] = (
        [{"name": "config", "configMap": {"name": names.config_map(spec.name)}}] if training else []
    )
    volumes += [
        {"name": "shared", **shared},
        {"name": "data", **data},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
        # The root filesystem is read-only: node-disk scratch for HOME/TMPDIR and the working directory.
        {"name": "scratch", "emptyDir": {}},
        {"name": "workdir", "emptyDir": {}},
    ]
    if training and info.podinfo_volume:
        annotations = {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
        volumes.append({"name": "podinfo", "downwardAPI": {"items": [annotations]}})
    if training and spec.launcher == "controller":
        volumes.append({"name": "ranktable", "configMap": {"name": names.rings_config(spec.name)}})
    volumes += [{"name": h.name, "hostPath": {"path": h.path, "type": h.kind}} for h in info.host_paths]
    # Secret files: readable by the pod's group (fsGroup) only, or by anyone in the one container without a uid.
    mode = 0o440 if spec.run_as_user is not None else 0o444
    volumes += [
        {"name": _secret_volume_name(i), "secret": {"secretName": secret, "defaultMode": mode}}
        for i, secret in enumerate(spec.secret_volumes)
    ]
    return volumes


def _secret_volume_name(index: int) -> str:
    return f"secret-{index}"


def _job_subpath(spec: JobSpec) -> str:
    """The job's folder inside the shared volume (jobs/<name>): the contract's job dir relative to /shared."""
    return str(Path(spec.job_dir).relative_to(layout.SHARED_MOUNT))


def _shared_mounts(spec: JobSpec, *, training: bool) -> list[dict[str, Any]]:
    """Only the job's own folder, at the contract's path; eval pods read it and write only its eval/."""
    job = {"name": "shared", "mountPath": spec.job_dir, "subPath": _job_subpath(spec)}
    if training:
        return [job]
    evals = contract.JobLayout.in_pod(spec.name).eval_dir
    eval_mount = {"name": "shared", "mountPath": str(evals), "subPath": f"{_job_subpath(spec)}/{evals.name}"}
    return [{**job, "readOnly": True}, eval_mount]


def _mounts(spec: JobSpec, info: PlatformInfo, *, training: bool) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = []
    if training:
        mounts.append({"name": "config", "mountPath": contract.CONFIG_MOUNT, "readOnly": True})
    mounts += _shared_mounts(spec, training=training)
    mounts += [
        {"name": "data", "mountPath": contract.DATA_MOUNT, "readOnly": True},
        {"name": "shm", "mountPath": contract.SHM_MOUNT},
        {"name": "scratch", "mountPath": contract.SCRATCH_MOUNT},
        {"name": "workdir", "mountPath": contract.WORK_MOUNT},
    ]
    if training and info.podinfo_volume:
        mounts.append({"name": "podinfo", "mountPath": contract.PODINFO_MOUNT, "readOnly": True})
    if training and spec.launcher == "controller":
        mounts.append({"name": "ranktable", "mountPath": contract.CONTROLLER_RANKTABLE_MOUNT, "readOnly": True})
    mounts += [{"name": h.name, "mountPath": h.path, "readOnly": True} for h in info.host_paths]
    mounts += [
        {"name": _secret_volume_name(i), "mountPath": path, "readOnly": True}
        for i, path in enumerate(spec.secret_volumes.values())
    ]
    return mounts


def _pod_security(spec: JobSpec) -> dict[str, Any]:
    """Non-root with a fixed uid/gid (Ascend: HwHiAiUser, uid 1000); without a uid the kubelet still refuses an
    image that runs as root. Only a CPU spec with allow_root may run as root."""
    context: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    uid = spec.run_as_user
    if uid is not None:
        context.update(runAsUser=uid, runAsGroup=uid, fsGroup=uid, fsGroupChangePolicy="OnRootMismatch")
    if not spec.allow_root:
        context["runAsNonRoot"] = True
    return context


def _container_security() -> dict[str, Any]:
    """Restricted, and a read-only root filesystem: every write goes to a volume (the job's folder, /dev/shm, the
    scratch and workdir emptyDirs)."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _scheduling(spec: JobSpec, info: PlatformInfo) -> dict[str, Any]:
    tolerations = [dict(t) for t in info.tolerations]
    tolerations += [t.to_k8s() for t in spec.tolerations if t.to_k8s() not in tolerations]
    out: dict[str, Any] = {}
    if spec.scheduler == "volcano":
        out["schedulerName"] = VOLCANO_SCHEDULER
    # The generation's node labels (MindCluster's accelerator, accelerator-type, host-arch); the spec's win.
    selector = {**spec.accel.node_selector(spec.per_pod), **spec.node_selector}
    if selector:
        out["nodeSelector"] = selector
    if tolerations:
        out["tolerations"] = tolerations
    if spec.priority_class:
        out["priorityClassName"] = spec.priority_class
    if spec.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": s} for s in spec.image_pull_secrets]
    return out


def _pod_spec(
    spec: JobSpec, info: PlatformInfo, container: dict[str, Any], shm: str, *, training: bool
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": platforms.TERMINATION_GRACE_SECONDS,
        "securityContext": _pod_security(spec),
        **_scheduling(spec, info),
        "containers": [container],
        "volumes": _volumes(spec, info, shm, training=training),
    }
    if training:
        pod["subdomain"] = spec.name
        if spec.pods > 1:
            pod["affinity"] = _affinity(spec)
    return pod


def _affinity(spec: JobSpec) -> dict[str, Any]:
    """One pod per node (rank tables key servers by node; two pods on a node would share its devices), and with a
    topology (not left to Kueue) all pods in one domain of that node label."""

    def selector() -> dict[str, Any]:  # a fresh dict per term: shared ones would become YAML anchors
        return {"matchLabels": selector_labels(spec)}

    term = {"labelSelector": selector(), "topologyKey": HOSTNAME_TOPOLOGY}
    affinity: dict[str, Any] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    if spec.topology is not None and spec.scheduler != "kueue":
        together = {"labelSelector": selector(), "topologyKey": spec.topology.key}
        if spec.topology.mode == "required":
            affinity["podAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [together]}
        else:
            affinity["podAffinity"] = {
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": together}]
            }
    return affinity


def _pod_annotations(spec: JobSpec) -> dict[str, str]:
    annotations = {}
    if spec.scheduler == "volcano":
        annotations[VOLCANO_GROUP_ANNOTATION] = spec.name
    if spec.scheduler == "kueue" and spec.topology is not None:
        annotations[KUEUE_TOPOLOGY_ANNOTATION[spec.topology.mode]] = spec.topology.key
    return annotations


def _failure_policy(*, group: bool) -> dict[str, Any]:
    def on_exit(action: str, codes_in: list[int]) -> dict[str, Any]:
        codes = {"containerName": platforms.CONTAINER_NAME, "operator": "In", "values": codes_in}
        return {"action": action, "onExitCodes": codes}

    rules = [on_exit("FailJob", list(contract.FAIL_JOB_EXIT_CODES) if group else [contract.EXIT_BAD_INPUT])]
    if group:
        rules.append(on_exit("Ignore", [contract.EXIT_GROUP_CHANGED]))
    rules.append({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]})
    return {"rules": rules}


def _job(
    spec: JobSpec,
    name: str,
    job_labels: dict[str, str],
    pod_labels: dict[str, str],
    pod: dict[str, Any],
    pod_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    metadata = _metadata(spec, name, job_labels)
    body: dict[str, Any] = {}
    if spec.scheduler == "kueue" and spec.queue:
        metadata["labels"] = {**job_labels, KUEUE_QUEUE_LABEL: spec.queue}
        if kueue_job_annotations(spec):
            metadata["annotations"] = kueue_job_annotations(spec)
        # Kueue admits (unsuspends) the Job when its queue has quota.
        body["suspend"] = True
    if spec.ttl_seconds_after_finished is not None:
        body["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    # The label the Job controller sets anyway (the API refuses another value): written out, the job's NetworkPolicy
    # visibly selects these pods.
    template_metadata: dict[str, Any] = {"labels": {**pod_labels, JOB_NAME_LABEL: name}}
    if pod_annotations:
        template_metadata["annotations"] = pod_annotations
    body["template"] = {"metadata": template_metadata, "spec": pod}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": body}


# Objects --------------------------------------------------------------------------------------------------------


def network_policy(spec: JobSpec, job_name: str, component: str, *, peers: bool) -> dict[str, Any]:
    """Ingress to the Job's pods only from the same Job's pods (every port: the launcher's, the scheduler's and
    the collectives'), or from nothing (`peers` false: eval pods). Egress stays open unless the spec lists
    egress_cidrs: then the Job's own pods, DNS and those networks."""

    def own() -> dict[str, Any]:  # fresh dicts: shared ones would become YAML anchors
        return {"matchLabels": {**selector_labels(spec, component), JOB_NAME_LABEL: job_name}}

    body: dict[str, Any] = {
        "podSelector": own(),
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": own()}]}] if peers else [],
    }
    if spec.egress_cidrs is not None:
        body["policyTypes"].append("Egress")
        egress: list[dict[str, Any]] = [{"to": [{"podSelector": own()}]}] if peers else []
        egress.append({"ports": [{"protocol": p, "port": DNS_PORT} for p in ("UDP", "TCP")]})
        if spec.egress_cidrs:
            egress.append({"to": [{"ipBlock": {"cidr": cidr}} for cidr in spec.egress_cidrs]})
        body["egress"] = egress
    return {
        "apiVersion": NETWORK_POLICY_API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": _metadata(spec, job_name, labels(spec, component)),
        "spec": body,
    }


def _train_yaml(values: dict[str, Any]) -> str:
    """The trainer keys; the launch keys (platform, paths) reach the trainer once, as the launcher's flags."""
    kept = {k: v for k, v in values.items() if k not in contract.LAUNCH_KEYS}
    return yaml.safe_dump(kept, sort_keys=False)


def _trainer_container(spec: JobSpec, info: PlatformInfo) -> dict[str, Any]:
    return {
        "name": platforms.CONTAINER_NAME,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["python", "-m", contract.LAUNCHER_MODULE],
        "workingDir": contract.WORK_MOUNT,
        "env": pod_env(spec).to_container_env() + _user_env(spec, info),
        **_env_from(spec),
        "ports": [{"name": platforms.MASTER_PORT_NAME, "containerPort": contract.MASTER_PORT, "protocol": "TCP"}],
        "resources": _resources(spec, info, _training_size(spec)),
        # The launcher writes why it failed to the termination-message file; the log's tail if it could not.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": _mounts(spec, info, training=True),
        "securityContext": _container_security(),
    }


def render(spec: JobSpec, kube_version: str = DEFAULT_KUBE_VERSION) -> list[dict[str, Any]]:
    """The objects of a training job, in creation order: ConfigMap(s), Service, NetworkPolicy, PodGroup (volcano),
    Job."""
    version = parse_kube_version(kube_version)
    info = platform_info(spec.platform)
    common = labels(spec)
    ring = _controller_labels(spec)
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata(spec, names.config_map(spec.name), common),
            "data": {
                layout.TRAIN_CONFIG_KEY: _train_yaml(train_config(spec).resolved(spec.devices).flat()),
                layout.SPEC_KEY: spec.to_yaml(),
            },
        }
    ]
    if spec.launcher == "controller":
        # Ascend's hccl-controller fills this in once every pod's device annotation is there.
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _metadata(spec, names.rings_config(spec.name), {**common, **ring}),
                "data": {"hccl.json": '{"status":"initializing"}'},
            }
        )
    port = {"name": platforms.MASTER_PORT_NAME, "port": contract.MASTER_PORT, "targetPort": contract.MASTER_PORT}
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(spec, spec.name, common),
            "spec": {
                "clusterIP": "None",
                # Workers resolve pod 0 before it is ready (the launcher's rendezvous happens before readiness).
                "publishNotReadyAddresses": True,
                "selector": selector_labels(spec),
                "ports": [{**port, "protocol": "TCP"}],
            },
        }
    )
    container = _trainer_container(spec, info)
    pod = _pod_spec(spec, info, container, _training_size(spec).shm, training=True)
    objects.append(network_policy(spec, spec.name, "trainer", peers=True))
    if spec.scheduler == "volcano":
        objects.append(pod_group(spec, {**common, **ring}, container["resources"]["requests"]))
    job = _job(spec, spec.name, {**common, **ring}, {**common, **ring}, pod, _pod_annotations(spec))
    job["spec"] = {
        "completionMode": "Indexed",
        "completions": spec.pods,
        "parallelism": spec.pods,
        "backoffLimit": spec.max_restarts,
        "podFailurePolicy": _failure_policy(group=True),
        **({"successPolicy": {"rules": [{"succeededIndexes": "0"}]}} if version >= SUCCESS_POLICY_SINCE else {}),
        **({"podReplacementPolicy": "Failed"} if version >= POD_REPLACEMENT_POLICY_SINCE else {}),
        **job["spec"],
    }
    objects.append(job)
    return objects


# Evaluation -----------------------------------------------------------------------------------------------------


def _in_pod_path(value: str | None, field: str, job_dir: str) -> str:
    if not value:
        raise SpecError(
            f"{field}: no in-pod path given (a spec with data.val_subpath null has no default evaluation folder); "
            f"pass one such as {contract.DATA_MOUNT}/val"
        )
    if not value.startswith("/") or ".." in value.split("/") or any(c.isspace() for c in value):
        raise SpecError(
            f"{field}: {value!r} must be an absolute path inside the pod without '..' or spaces, "
            f"e.g. {job_dir}/ckpt or {contract.DATA_MOUNT}/val"
        )
    # The eval pod sees only its job's folder of the shared volume and the dataset.
    if not any(value == root or value.startswith(root + "/") for root in (job_dir, contract.DATA_MOUNT)):
        raise SpecError(
            f"{field}: {value!r} is outside what the eval pod mounts ({job_dir} and {contract.DATA_MOUNT}); pods "
            "see only their own job's folder of the shared volume: pass a path under one of them"
        )
    return value


def render_eval(
    spec: JobSpec, checkpoint: str, data_dir: str | None, kube_version: str = DEFAULT_KUBE_VERSION
) -> list[dict[str, Any]]:
    """A one-device Job `<name>-eval` running trainer.evaluate on an in-pod checkpoint (file or directory).

    trainer.evaluate reads the architecture from the checkpoint, prints its JSON result as the last stdout line
    and writes it next to the checkpoint and as `<job dir>/eval/<checkpoint stem>.json`.
    """
    parse_kube_version(kube_version)
    checkpoint = _in_pod_path(checkpoint, "checkpoint", spec.job_dir)
    data_dir = _in_pod_path(data_dir, "data_dir", spec.job_dir)
    info = platform_info(spec.platform)
    size = _eval_size(spec, info)
    eval_labels = labels(spec, "eval")
    evaluate = ["--data_dir", data_dir, "--platform", info.trainer_platform, "--pretrained", checkpoint]
    evaluate += ["--output_dir", f"{spec.job_dir}/eval"]
    container = {
        "name": platforms.CONTAINER_NAME,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["python", "-m", contract.EVALUATE_MODULE, *evaluate],
        "workingDir": contract.WORK_MOUNT,
        "env": _user_env(spec, info),
        **_env_from(spec),
        "resources": _resources(spec, info, size),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": _mounts(spec, info, training=False),
        "securityContext": _container_security(),
    }
    pod = _pod_spec(spec, info, container, size.shm, training=False)
    job = _job(spec, names.eval_job(spec.name), eval_labels, eval_labels, pod)
    job["spec"] = {
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": 1,
        "podFailurePolicy": _failure_policy(group=False),
        **job["spec"],
    }
    # No TTL: its result is read from the pod's log, which TTL cleanup could remove first; jobctl deletes it.
    job["spec"].pop("ttlSecondsAfterFinished", None)
    return [network_policy(spec, job["metadata"]["name"], "eval", peers=False), job]


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the ConfigMaps' files) as readable `|` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def to_yaml(objects: Iterable[dict[str, Any]]) -> str:
    """Multi-document YAML, keys in rendering order."""
    return yaml.dump_all(list(objects), Dumper=_BlockDumper, sort_keys=False, explicit_start=True)
