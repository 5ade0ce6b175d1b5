"""The README's job spec reference must stay a valid spec, so the documentation cannot rot."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jobctl.render import render
from jobctl.spec import load_spec
from jobctl.validate import validate_objects

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_spec_reference_renders_and_validates(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    reference = [b for b in blocks if b.startswith("name:")]
    assert len(reference) == 1, "expected one spec example (a yaml block starting with name:) in the README"
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(reference[0])
    spec = load_spec(spec_file, {}, [])
    assert (spec.platform, spec.devices, spec.pods) == ("ascend", 16, 2)
    validate_objects(render(spec, "1.37"), "1.37")


def everyday_block() -> list[str]:
    """The command lines of the README's "Everyday commands" bash block (the first after that heading)."""
    section = README.read_text().split("## Everyday commands", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block is not None, "no bash block under ## Everyday commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.slow
def test_the_everyday_commands_run_as_written_after_a_demo_like_job(tmp_path: Path, dataset: Path) -> None:
    """In a folder laid out as after `make demo` (./data/synth, ./shared, .venv) and no cluster configured, every
    line of the README's everyday block runs as printed, `source .venv/bin/activate` included."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synth").symlink_to(dataset)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "JOBCTL_BACKEND")}
    env |= {"HOME": str(tmp_path), "ONEDNN_MAX_CPU_ISA": "AVX2", "PATH": "/usr/bin:/bin"}
    submit = [sys.executable, "-m", "jobctl", "submit", "--platform", "cpu", "--devices", "2", "--name", "demo"]
    submit += ["--data", "./data/synth", "--shared", "./shared", "--wait"]
    for key_value in ("arch=resnext_tiny", "image_size=32", "per_batch_size=8", "max_epoch=1", "ckpt_interval=2"):
        submit += ["--set", key_value]
    trained = subprocess.run(submit, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "backend: local (no Kubernetes cluster is configured" in trained.stderr
    lines = everyday_block()
    assert lines[0] == "source .venv/bin/activate"
    outputs = {}
    for line in lines[1:]:
        run = subprocess.run(
            ["bash", "-c", f"{lines[0]} && {line}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, f"{line}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
        outputs[line.split("#")[0].split()[1]] = run.stdout
    assert "Complete" in outputs["status"] and "[rank 0]" in outputs["logs"] and "metrics {" not in outputs["logs"]
    assert (tmp_path / "demo.png").is_file() and "top-1" in outputs["eval"].lower()
    onnx_file = Path(outputs["export"].strip().splitlines()[-1])
    assert onnx_file.parent == tmp_path / "export" and onnx_file.suffix == ".onnx"
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_file))
    (logits,) = session.run(None, {session.get_inputs()[0].name: np.zeros((1, 3, 32, 32), np.float32)})
    assert logits.shape == (1, 4)
    assert "127.0.0.1" in outputs["tensorboard"] and "mindspore: " in outputs["version"]


DOCS = [README, *sorted((README.parent / "docs").glob("*.md")), README.parent / "docker" / "README.md"]
# Directories that are not the product (the user's own files, environments, caches).
NOT_PRODUCT = {"tests", "shared", "data", "build", "dist"}


def test_every_relative_link_in_the_docs_resolves() -> None:
    """The README is the front door: the pages it (and they) link to exist, and so do the anchors in the README."""
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", README.read_text(), flags=re.M)}
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            resolved = (doc.parent / path).resolve() if path else doc
            assert resolved.exists(), f"{doc.name} links to {target}, which does not exist"
            if anchor and resolved == README:
                assert anchor in anchors, f"{doc.name} links to {target}: the README has no such heading"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_product_names_no_development_machine_path() -> None:
    """How to get a container engine is said in general terms: no helper path of our development machines."""
    root = README.parent
    files = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    for folder in root.iterdir():
        product = folder.name not in NOT_PRODUCT and not folder.name.startswith(".")
        if folder.is_dir() and product and not folder.name.endswith(".egg-info"):
            files += [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for path in files:
        if path.suffix in {".png", ".ckpt", ".pyc"}:
            continue
        text = path.read_text(errors="replace")
        for needle in ("/work/shared", "local-docker.sh"):
            assert needle not in text, f"{path.relative_to(root)} names {needle}"
