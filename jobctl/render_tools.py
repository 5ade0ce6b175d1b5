"""(pure) The cluster forms of `jobctl export` and `jobctl tensorboard`: spec(s) in, objects out.

export: a one-shot Job ``<name>-export`` built from the eval Job (same platform, device, security, NetworkPolicy
with no ingress): it mounts its job's folder read-only and only ``export/`` of it writable, and runs
trainer.export, which prints the written file's in-pod path as its last stdout line.

tensorboard: a one-replica Deployment (jobctl creates no bare Pod: k8s/rbac.yaml) and a ClusterIP Service
``<first job>-tb`` in the jobs' namespace, its pod meeting Pod Security
``restricted`` (non-root, no privilege escalation, every capability dropped, RuntimeDefault seccomp, read-only
root file system, only PVC/emptyDir volumes when the jobs' shared volume is a claim). The image carries
TensorBoard, so nothing is fetched; its NetworkPolicy admits no ingress and no egress: it is reached through
``kubectl port-forward`` (which enters the pod's network namespace, beneath NetworkPolicy).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from contract import env as contract
from contract import layout, names
from jobctl import render
from jobctl.platforms import platform_info
from jobctl.spec import JobSpec, SpecError

EXPORT_FORMATS = ("MINDIR", "ONNX", "AIR")
TENSORBOARD_PORT = 6006  # TensorBoard's own default
TENSORBOARD_CONTAINER = "tensorboard"
TENSORBOARD_RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}
_TMP = "/tmp"  # TensorBoard's only writable path (an emptyDir): the root file system is read-only


def export_dir(spec: JobSpec) -> str:
    """The in-pod folder the export Job writes (the job's ``export/``; the only writable mount it has)."""
    return str(contract_layout(spec).export_dir)


def contract_layout(spec: JobSpec) -> layout.JobLayout:
    return layout.JobLayout.in_pod(spec.name)


def render_export(
    spec: JobSpec, checkpoint: str, file_format: str, kube_version: str = render.DEFAULT_KUBE_VERSION
) -> list[dict[str, Any]]:
    """[NetworkPolicy, Job] exporting ``checkpoint`` (an in-pod file, or the ckpt folder: its newest valid one)."""
    if file_format not in EXPORT_FORMATS:
        raise SpecError(f"format: {file_format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    if file_format == "AIR" and spec.platform != "ascend":
        raise SpecError(f"format AIR: job {spec.name} runs on {spec.platform}; AIR needs Ascend: use MINDIR or ONNX")
    # The eval Job checks the checkpoint path and gives the one-device pod; the data volume is not needed here.
    eval_objects = render.render_eval(spec, checkpoint, contract.DATA_MOUNT, kube_version)
    job = copy.deepcopy(next(o for o in eval_objects if o["kind"] == "Job"))
    name = names.export_job(spec.name)
    export_labels = render.labels(spec, "export")
    job["metadata"].update(name=name, labels=export_labels)
    job["spec"]["template"]["metadata"]["labels"] = {**export_labels, render.JOB_NAME_LABEL: name}
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    out = export_dir(spec)
    argv = ["--device_target", platform_info(spec.platform).trainer_platform, "--ckpt_file", checkpoint]
    argv += ["--file_format", file_format, "--output_dir", out]
    container["command"] = ["python", "-m", contract.EXPORT_MODULE, *argv]
    job_dir, subpath = spec.job_dir, _subpath(spec)
    mounts = [m for m in container["volumeMounts"] if m["name"] not in ("shared", "data")]
    container["volumeMounts"] = [
        {"name": "shared", "mountPath": job_dir, "subPath": subpath, "readOnly": True},
        {"name": "shared", "mountPath": out, "subPath": f"{subpath}/{Path(out).name}"},
        *mounts,
    ]
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "data"]
    return [render.network_policy(spec, name, "export", peers=False), job]


def _shared_volume(spec: JobSpec, volume: str) -> dict[str, Any]:
    if spec.shared.claim:
        return {"name": volume, "persistentVolumeClaim": {"claimName": spec.shared.claim}}
    return {"name": volume, "hostPath": {"path": spec.shared.host_path, "type": "Directory"}}


def _tensorboard_pod(specs: list[JobSpec]) -> dict[str, Any]:
    first = specs[0]
    volumes = [_shared_volume(spec, f"shared-{i}") for i, spec in enumerate(specs)]
    volumes.append({"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}})
    mounts = [
        {"name": f"shared-{i}", "mountPath": spec.job_dir, "subPath": _subpath(spec), "readOnly": True}
        for i, spec in enumerate(specs)
    ]
    mounts.append({"name": "tmp", "mountPath": _TMP})
    logdirs = ",".join(f"{s.name}:{contract_layout(s).tensorboard_dir}" for s in specs)
    command = ["python", "-m", "tensorboard.main", "--logdir_spec", logdirs]
    command += ["--host", "0.0.0.0", "--port", str(TENSORBOARD_PORT)]  # all addresses: port-forward and Service
    container = {
        "name": TENSORBOARD_CONTAINER,
        "image": first.image,
        "imagePullPolicy": first.image_pull_policy,
        "command": command,
        "env": [{"name": "HOME", "value": _TMP}, {"name": "TMPDIR", "value": _TMP}],
        "ports": [{"name": "http", "containerPort": TENSORBOARD_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 30, "failureThreshold": 5},
        "resources": copy.deepcopy(TENSORBOARD_RESOURCES),
        "securityContext": {**render._container_security(), "readOnlyRootFilesystem": True},
        "volumeMounts": mounts,
    }
    security: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if first.run_as_user is not None:
        uid = first.run_as_user
        security.update(runAsUser=uid, runAsGroup=uid, fsGroup=uid, fsGroupChangePolicy="OnRootMismatch")
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": security,
        "containers": [container],
        "volumes": volumes,
    }
    if first.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in first.image_pull_secrets]
    return pod


def _subpath(spec: JobSpec) -> str:
    return str(Path(spec.job_dir).relative_to(layout.SHARED_MOUNT))


def render_tensorboard(specs: list[JobSpec], kube_version: str = render.DEFAULT_KUBE_VERSION) -> list[dict[str, Any]]:
    """[NetworkPolicy, Deployment, Service] showing the jobs' event files; named after the first job."""
    render.parse_kube_version(kube_version)
    if not specs:
        raise SpecError("tensorboard: name at least one job")
    first = specs[0]
    others = sorted({str(s.namespace) for s in specs} - {str(first.namespace)})
    if others:
        raise SpecError(
            f"tensorboard: jobs {', '.join(s.name for s in specs)} are in different namespaces ({first.namespace}, "
            f"{', '.join(str(n) for n in others)}); one pod reads one namespace's volumes: run one per namespace"
        )
    name = names.tensorboard(first.name)
    selector = render.selector_labels(first, "tensorboard")  # instance: the first job (one TensorBoard per job)
    object_labels = render.labels(first, "tensorboard")
    policy = {
        "apiVersion": render.NETWORK_POLICY_API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": first.namespace, "labels": dict(object_labels)},
        "spec": {
            "podSelector": {"matchLabels": dict(selector)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": first.namespace, "labels": dict(object_labels)},
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [{"name": "http", "port": TENSORBOARD_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": first.namespace, "labels": dict(object_labels)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(selector)},
            "template": {"metadata": {"labels": dict(object_labels)}, "spec": _tensorboard_pod(specs)},
        },
    }
    return [policy, deployment, service]


def port_forward_line(namespace: str, name: str, local_port: int = TENSORBOARD_PORT) -> str:
    """The command to paste to reach the TensorBoard Service from this machine (on 127.0.0.1:``local_port``)."""
    return f"kubectl port-forward -n {namespace} svc/{name} {local_port}:{TENSORBOARD_PORT}"
