"""The launcher's compile-cache key: the same graph inputs share a cache, any change gets a fresh one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from trainer.launcher import compile_cache
from trainer.launcher.contract import PodEnv


def make_env(tmp_path: Path, config: str = "arch: resnext_tiny\n") -> PodEnv:
    (tmp_path / "train.yaml").write_text(config)
    return PodEnv(
        job_name="c", family="cpu", launcher="msrun", num_pods=2, devices_per_pod=1, master_addr="x",
        job_dir=tmp_path / "job", data_dir="/data/train", train_config=tmp_path / "train.yaml",
    )  # fmt: skip


def test_the_key_follows_what_the_graph_depends_on(tmp_path) -> None:
    env = make_env(tmp_path)
    command = ["python", "-m", "trainer.train", "--platform", "CPU", "--is_distributed"]
    first = compile_cache.cache_dir(env, command)
    assert first.parent == env.layout.compile_cache_dir
    assert compile_cache.cache_dir(replace(env, pod_index=1), command) == first  # every pod, every restart
    assert compile_cache.cache_dir(replace(env, num_pods=4), command) != first  # another world size
    assert compile_cache.cache_dir(env, [*command, "--per_batch_size", "8"]) != first  # other flags
    changed = make_env(tmp_path, "arch: resnext_tiny\nimage_size: 64\n")
    assert compile_cache.cache_dir(changed, command) != first  # another config


def test_the_log_line_says_whether_it_is_reused(tmp_path) -> None:
    path = tmp_path / "cache"
    assert compile_cache.describe(path).endswith("empty, the first compile fills it")
    (path / "rank_0" / "graph_cache").mkdir(parents=True)
    (path / "rank_0" / "graph_cache" / "compile_cache_0.mindir").write_bytes(b"x")
    assert "reusing 1 cached file(s)" in compile_cache.describe(path)
    assert compile_cache.cache_env(path) == {"MS_COMPILER_CACHE_ENABLE": "1", "MS_COMPILER_CACHE_PATH": str(path)}
