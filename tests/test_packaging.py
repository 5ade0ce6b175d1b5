"""The base install (no extras) is what a laptop needs to submit jobs: jobctl must never import MindSpore/numpy."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# `sys.modules[name] = None` makes any import of that module raise ImportError, as on a machine without it.
BLOCK = "import sys\nfor name in ('mindspore', 'numpy', 'PIL'):\n    sys.modules[name] = None\n"


def run_jobctl(*args: str) -> subprocess.CompletedProcess[str]:
    code = BLOCK + f"sys.argv = ['jobctl', *{list(args)!r}]\nfrom jobctl.cli import main\nsys.exit(main())\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_render_and_submit_dry_run_without_the_train_extra() -> None:
    rendered = run_jobctl("render", "--platform", "ascend", "--devices", "16", "--name", "rx")
    assert rendered.returncode == 0, rendered.stderr
    assert "kind: Job" in rendered.stdout and "huawei.com/Ascend910" in rendered.stdout
    dry = run_jobctl("submit", "--platform", "gpu", "--devices", "8", "--dry-run", "-o", "json")
    assert dry.returncode == 0, dry.stderr
    assert '"nvidia.com/gpu"' in dry.stdout


def test_ranktable_tools_without_the_train_extra(tmp_path: Path) -> None:
    conf = tmp_path / "hccn.conf"
    conf.write_text("".join(f"address_{i}=192.168.10{i}.1\nnetmask_{i}=255.255.255.0\n" for i in range(8)))
    out = tmp_path / "table.json"
    built = run_jobctl("ranktable", "build", "--hccn-conf", str(conf), "--server-id", "10.0.0.11", "-o", str(out))
    assert built.returncode == 0, built.stderr
    assert '"rank_id": "7"' in out.read_text()


def test_contract_and_launcher_import_without_the_train_extra() -> None:
    """The launcher and the contract run in the pod before MindSpore is touched, and jobctl needs the contract."""
    modules = [f"contract.{p.stem}" for p in sorted((ROOT / "contract").glob("*.py")) if p.stem != "__init__"]
    modules += [f"launcher.{p.stem}" for p in sorted((ROOT / "launcher").glob("*.py")) if p.stem != "__init__"]
    code = BLOCK + "".join(f"import {m}\n" for m in modules)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_distribution_lists_every_package() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {"contract*", "launcher*", "trainer*", "jobctl*"} <= set(include)
    assert set(project["tool"]["mypy"]["packages"]) == {"contract", "launcher", "trainer", "jobctl"}
