"""trainer.compile_cache: MindSpore's compile cache scoped to the graph's identity (pure)."""

from __future__ import annotations

from pathlib import Path

from contract.env import COMPILE_CACHE_ENABLE as ENABLE_VAR
from contract.env import COMPILE_CACHE_PATH as PATH_VAR
from trainer.compile_cache import config_identity, graph_key, holds_a_graph, scope


def test_scope_points_the_cache_at_a_directory_per_graph(tmp_path: Path) -> None:
    env = {ENABLE_VAR: "1", PATH_VAR: str(tmp_path)}
    first = scope(env, {"arch": "resnext_tiny", "num_classes": 10})
    assert first is not None and first.parent == tmp_path and env[PATH_VAR] == str(first)
    again = scope({ENABLE_VAR: "1", PATH_VAR: str(tmp_path)}, {"num_classes": 10, "arch": "resnext_tiny"})
    other = scope({ENABLE_VAR: "1", PATH_VAR: str(tmp_path)}, {"arch": "resnext_tiny", "num_classes": 12})
    assert again == first and other != first
    assert not holds_a_graph(first, rank=0)
    (first / "rank_0" / "graph_cache").mkdir(parents=True)
    (first / "rank_0" / "graph_cache" / "compile_cache_0.mindir").write_bytes(b"x")
    assert holds_a_graph(first, rank=0) and not holds_a_graph(first, rank=1)


def test_off_unless_enabled_with_a_path() -> None:
    for env in (
        {},
        {ENABLE_VAR: "1"},
        {ENABLE_VAR: "0", PATH_VAR: "/c"},
        {PATH_VAR: "/c"},
    ):
        before = dict(env)
        assert scope(env, {}) is None and env == before


def test_the_key_covers_the_trainer_source_but_not_paths_or_logging(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text("width = 1\n")
    key = graph_key({"a": 1}, source_dir=tmp_path)
    (tmp_path / "model.py").write_text("width = 2\n")
    assert graph_key({"a": 1}, source_dir=tmp_path) != key
    flat = {"arch": "x", "image_size": 32, "ckpt_path": "/a", "log_interval": 5, "max_steps": 3, "lr": 0.1}
    assert config_identity(flat) == {"arch": "x", "image_size": 32, "lr": 0.1}
