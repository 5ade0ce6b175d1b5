"""The README's job spec reference must stay a valid spec, so the documentation cannot rot."""

import re
from pathlib import Path

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
