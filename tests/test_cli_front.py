"""The CLI's front (issues 23.1, 23.5, 23.7, 24.1, 24.4, 24.11): the backend chosen without a cluster, job names
that cannot escape the shared directory, --shared checked before anything is created, one-paragraph usage
errors, the human log view, render's table, kubectl's --dry-run=client and the state of a deleted local job."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contract.metrics import log_record_line
from contract.progress import format_progress
from jobctl.backends.local.backend import LocalBackend
from jobctl.cli import app
from jobctl.cli.common import BackendName, resolve_backend
from jobctl.jobdir import JobDir, JobPathError
from jobctl.logview import LogView
from jobctl.render import SUPPORTED_KUBE_VERSIONS, render
from tests.test_local_backend import make_spec, with_command

runner = CliRunner()


def jobctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture(autouse=True)
def no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A laptop: no kubeconfig, not in a pod, no JOBCTL_BACKEND."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("KUBERNETES_SERVICE_HOST", "JOBCTL_BACKEND"):
        monkeypatch.delenv(name, raising=False)


def one_paragraph(result: Any, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "╭" not in result.output and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


# 23.1: which backend -------------------------------------------------------------------------------------------


def test_without_a_cluster_the_backend_is_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_backend(None, None) is BackendName.local
    assert resolve_backend(BackendName.k8s, None) is BackendName.k8s
    assert resolve_backend(None, "some-context") is BackendName.k8s
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{kubeconfig}")
    assert resolve_backend(None, None) is BackendName.k8s
    monkeypatch.delenv("KUBECONFIG")
    assert resolve_backend(None, None) is BackendName.local  # $HOME/.kube/config does not exist
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert resolve_backend(None, None) is BackendName.k8s


def test_everyday_commands_need_no_backend_flag_on_a_laptop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = jobctl("status", "ghost")
    assert result.exit_code == 1 and "no local job named 'ghost'" in result.stderr, result.output
    monkeypatch.setenv("JOBCTL_BACKEND", "k8s")  # the environment still overrides
    assert "no Kubernetes cluster configured" in jobctl("status", "ghost").stderr


def test_submit_says_which_backend_it_chose(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    dry = jobctl("submit", "--platform", "cpu", "--name", "loc", "--dry-run")
    assert dry.exit_code == 0 and "backend:" not in dry.stderr  # a dry run renders cluster objects: no choice
    args = ["--platform", "cpu", "--name", "loc", "--data", str(data), "--shared", str(tmp_path / "s")]
    result = jobctl("submit", *args, "--set", "bogus_key=1")  # a bad spec: nothing starts
    assert "backend: local (no Kubernetes cluster is configured" in result.stderr


# 24.1: job names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "logs", "wait", "delete", "eval", "plot"])
def test_names_that_would_leave_the_shared_directory_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    victim = tmp_path / "V"
    (victim / "local").mkdir(parents=True)
    (victim / "local" / "keep").write_text("x")
    monkeypatch.chdir(tmp_path)
    shared = tmp_path / "S" / "deep"
    for name in (str(victim), "../../V", "/usr", "a/../../V", ".."):
        result = jobctl(command, name, "--backend", "local", "--shared", str(shared))
        one_paragraph(result, "NAME", "DNS-1035")
        assert (victim / "local" / "keep").is_file()
    assert not (tmp_path / "S").exists()


def test_the_job_directory_code_never_leaves_jobs(tmp_path: Path) -> None:
    assert JobDir.of(tmp_path, "rx").root == tmp_path.resolve() / "jobs" / "rx"
    for name in ("../V", "/usr", "..", ".", "", "a/b", "x/../../y"):
        with pytest.raises(JobPathError, match="directly under"):
            JobDir.of(tmp_path, name)
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "link").symlink_to(tmp_path)  # a folder that points elsewhere is not a job folder
    with pytest.raises(JobPathError):
        LocalBackend(tmp_path).delete("link")


# 24.4: --shared ----------------------------------------------------------------------------------------------


def test_the_local_shared_directory_is_created_only_after_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    base = ["submit", "--backend", "local", "--platform", "cpu", "--data", str(data)]
    result = jobctl(*base, "--shared", "NEW/deep", "--name", "BAD")
    one_paragraph(result, "name")
    assert not (tmp_path / "NEW").exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    sock_path = tmp_path / "x.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        for shared, words in (
            ("/proc/x", ["/proc", "--shared"]),
            (str(a_file), ["not a directory"]),
            (str(a_file / "below"), ["not a directory"]),
            (str(sock_path), ["socket"]),
        ):
            one_paragraph(jobctl(*base, "--shared", shared, "--name", "ok"), *words)
            one_paragraph(jobctl("list", "--backend", "local", "--shared", shared), "--shared")
    finally:
        sock.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "file", "x.sock"]


# 24.11: usage errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["submit", "--devices", "abc"], ["--devices", "integer"]),
        (["render", "-o", "xml"], ["--output", "'xml'", "yaml"]),
        (["logs", "rx", "--rank", "-1"], ["--rank", "0"]),
        (["wait", "rx", "--timeout", "-5"], ["--timeout"]),
        (["status"], ["NAME"]),
        (["frobnicate"], ["frobnicate"]),
        (["ranktable", "build", "--bogus"], ["--bogus"]),
    ],
)
def test_usage_errors_are_one_paragraph(args: list[str], words: list[str]) -> None:
    one_paragraph(jobctl(*args), *words, "--help")


# 23.5: the log view ----------------------------------------------------------------------------------------------


def progress(rank: int, step: int) -> str:
    return f"[rank {rank}] " + format_progress(rank, 1, 1, step, 4, 1.5, 0.1, 10.0, 30.0)


def test_the_merged_view_shows_one_progress_line_per_step_and_no_records() -> None:
    record = "[rank 0] rank=0 " + log_record_line({"kind": "start", "step": 0, "epoch": 0})
    lines = [record, progress(0, 1), progress(1, 1), "[launcher] attempt 0: all 2 pod(s) joined; world size 2"]
    out = io.StringIO()
    view = LogView(out)
    view.write("".join(line + "\n" for line in lines))
    view.close()
    assert out.getvalue().splitlines() == [lines[1], lines[3]]
    out = io.StringIO()
    view = LogView(out, all_ranks=True)
    view.write("".join(line + "\n" for line in lines))
    view.close()
    assert out.getvalue().splitlines() == lines[1:]


def test_tail_keeps_the_last_lines_of_the_backlog_then_follows() -> None:
    out = io.StringIO()
    view = LogView(out, tail=2)
    view.write("".join(progress(0, step) + "\n" for step in range(1, 5)))
    assert out.getvalue() == ""
    view.flush()  # the backends flush after each read round: the first ends the backlog
    assert out.getvalue().splitlines() == [progress(0, 3), progress(0, 4)]
    view.write(progress(0, 5) + "\n")
    view.close()
    assert out.getvalue().splitlines()[-1] == progress(0, 5)


LOG_SCRIPT = """
import os, sys
from contract.metrics import log_record_line
from contract.progress import format_progress
index = int(os.environ["JOB_COMPLETION_INDEX"])
if index == 0:
    print("[rank 0] rank=0 " + log_record_line({"kind": "start", "step": 0, "epoch": 0}))
for step in (1, 2, 3):
    print(f"[rank {index}] " + format_progress(index, 1, 1, step, 3, 1.5, 0.1, 10.0, 1.0), flush=True)
"""


@pytest.fixture
def finished_job(tmp_path: Path) -> tuple[str, list[str]]:
    """A finished two-rank local job whose pods print a metrics record and three progress lines per rank."""
    spec = make_spec(tmp_path, name="two", devices=2, per_node=1)
    objects = with_command(render(spec, SUPPORTED_KUBE_VERSIONS[0]), {})
    container = objects[-1]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python", "-c", LOG_SCRIPT]
    backend = LocalBackend(tmp_path / "shared")
    backend.submit(spec, objects, resume=False, replace=False)
    assert backend.wait("two", for_phase=None, timeout=60) == "Complete"
    return "two", ["--backend", "local", "--shared", str(tmp_path / "shared")]


def test_logs_of_a_local_job(finished_job: tuple[str, list[str]]) -> None:
    name, flags = finished_job
    merged = jobctl("logs", name, *flags)
    assert merged.exit_code == 0, merged.output
    lines = merged.stdout.splitlines()
    ranks = [line[:9] for line in lines if line.startswith("[rank")]  # [jobctl] lines say what the pods did
    assert ranks == ["[rank 0] "] * 3 and "metrics" not in merged.stdout
    every = jobctl("logs", name, "--all-ranks", *flags).stdout.splitlines()
    assert sorted(line[:9] for line in every if line.startswith("[rank")) == ["[rank 0] "] * 3 + ["[rank 1] "] * 3
    assert jobctl("logs", name, "--tail", "1", *flags).stdout.splitlines() == lines[-1:]
    assert jobctl("logs", name, "--tail", "0", *flags).stdout == ""
    one_paragraph(jobctl("logs", name, "--rank", "5", *flags), "--rank 5", "0-1")
    # Local pod logs have no time per line: --since is refused with the reason and what to use instead.
    one_paragraph(jobctl("logs", name, "--since", "5m", *flags), "--since", "--tail")


@pytest.mark.parametrize(("text", "seconds"), [("5s", 5), ("2m", 120), ("1h", 3600), ("1h30m", 5400), ("90s", 90)])
def test_since_takes_kubectl_durations(text: str, seconds: int) -> None:
    from jobctl.cli.lifecycle import parse_since

    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["5", "m", "0s", "-1m", "5 minutes", "1d", ""])
def test_since_refuses_what_is_no_duration(text: str) -> None:
    one_paragraph(jobctl("logs", "any", "--since", text, "--backend", "local"), "--since")


# 23.7: flags that say what they do --------------------------------------------------------------------------------


def test_render_table_lists_the_objects() -> None:
    result = jobctl("render", "--platform", "ascend", "--devices", "16", "--name", "a16", "-o", "table")
    assert result.exit_code == 0, result.output
    rows = [line.split()[:2] for line in result.stdout.splitlines()]
    assert rows[0] == ["KIND", "NAME"] and ["Job", "a16"] in rows and ["ConfigMap", "a16-config"] in rows
    assert "apiVersion" not in result.stdout


def test_dry_run_client_is_dry_run() -> None:
    base = ["submit", "--platform", "cpu", "--name", "c1", "-o", "json"]
    plain = jobctl(*base, "--dry-run")
    client = jobctl(*base, "--dry-run=client")
    assert client.exit_code == 0, client.output
    assert json.loads(client.stdout) == json.loads(plain.stdout)
    one_paragraph(jobctl(*base, "--dry-run=server"), "--dry-run")


def test_a_kube_version_newer_than_known_renders_for_the_newest_with_a_note() -> None:
    newest = SUPPORTED_KUBE_VERSIONS[-1]
    result = jobctl("render", "--platform", "cpu", "--name", "c1", "--kube-version", "1.99")
    assert result.exit_code == 0, result.output
    assert f"rendering for {newest}" in result.stderr and "1.99" in result.stderr
    assert "rendering for" not in jobctl("render", "--platform", "cpu", "--name", "c1", "--kube-version", newest).stderr
    help_text = " ".join(jobctl("submit", "--help").stdout.split())
    assert "the cluster's" in help_text


def test_status_of_a_deleted_local_job_says_where_its_checkpoints_are(tmp_path: Path) -> None:
    job_dir = JobDir.of(tmp_path / "shared", "gone")
    job_dir.create()
    (job_dir.ckpt_dir / "resnext_tiny-1_2.ckpt").write_bytes(b"x")
    result = jobctl("status", "gone", "--backend", "local", "--shared", str(tmp_path / "shared"))
    assert result.exit_code == 1 and "job gone was deleted" in result.stderr, result.output
    assert str(job_dir.root) in result.stderr and "1 checkpoint(s)" in result.stderr


def test_the_installed_entry_point_formats_usage_errors() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jobctl", "logs", "rx", "--rank", "-1"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# 23.8 and 24.11: export, eval of a bad file, version, completion ---------------------------------------------------


def test_export_refuses_air_off_ascend_and_a_missing_checkpoint(finished_job: tuple[str, list[str]]) -> None:
    name, flags = finished_job
    one_paragraph(jobctl("export", name, "--format", "AIR", *flags), "AIR", "Ascend", "MINDIR")
    one_paragraph(jobctl("export", name, *flags), "no complete checkpoint")
    one_paragraph(jobctl("export", name, "--checkpoint", "nope.ckpt", *flags), "nope.ckpt")


@pytest.mark.slow
def test_eval_of_a_file_that_is_no_checkpoint_is_one_line(finished_job: tuple[str, list[str]], tmp_path: Path) -> None:
    name, flags = finished_job
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint" * 64)
    one_paragraph(jobctl("eval", name, "--checkpoint", str(bad), "--data", str(tmp_path / "data" / "val"), *flags))


def test_version_never_fails_without_a_cluster() -> None:
    result = jobctl("version")
    assert result.exit_code == 0, result.output
    fields = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert set(fields) == {"jobctl", "contract", "mindspore", "kubernetes"}
    assert fields["kubernetes"] == "no cluster configured" and fields["mindspore"] != ""


def test_version_with_an_unreachable_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{name: k, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    result = jobctl("version")
    assert result.exit_code == 0 and "kubernetes: not reachable" in result.stdout, result.output


def test_shell_completion(tmp_path: Path) -> None:
    script = jobctl("--show-completion", "bash")
    assert script.exit_code == 0 and "_JOBCTL_COMPLETE" in script.stdout.upper(), script.output
    env = {"_JOBCTL_COMPLETE": "complete_bash", "COMP_WORDS": "jobctl sta", "COMP_CWORD": "1"}
    entry_point = str(Path(sys.executable).parent / "jobctl")  # completion keys on the program's name
    proc = subprocess.run([entry_point], env={**os_environ(), **env}, capture_output=True, text=True)
    assert proc.stdout.split() == ["status"], proc.stdout + proc.stderr
    env = {"_JOBCTL_COMPLETE": "complete_bash", "COMP_WORDS": "jobctl logs x --al", "COMP_CWORD": "3"}
    proc = subprocess.run([entry_point], env={**os_environ(), **env}, capture_output=True, text=True)
    assert "--all-ranks" in proc.stdout.split(), proc.stdout + proc.stderr


def os_environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_jobctl_says_attempt_only_in_the_launchers_numbering(finished_job: tuple[str, list[str]]) -> None:
    name, flags = finished_job
    own = [line for line in jobctl("logs", name, *flags).stdout.splitlines() if line.startswith("[jobctl] ")]
    assert own and all("attempt" not in line for line in own) and "restarts 0" in own[0]
