"""The shared trainer config: flags over file over defaults, clear errors, no MindSpore import."""

import json
import subprocess
import sys

import pytest

from contract.config import ConfigError, TrainConfig, build, parse_args


def test_defaults_are_the_seed_recipe() -> None:
    cfg = TrainConfig()
    assert cfg.arch == "resnext101_64x4d"
    assert (cfg.per_batch_size, cfg.momentum, cfg.weight_decay) == (64, 0.9, 1e-4)
    assert (cfg.lr_scheduler, cfg.T_max, cfg.max_epoch, cfg.warmup_epochs) == ("cosine_annealing", 150, 150, 1.0)
    assert (cfg.loss_scale, cfg.label_smooth_factor, cfg.eta_min) == (1024.0, 0.1, 0.0)
    assert cfg.lr_epochs == [30, 60, 90, 120]
    # 0.05 on one device at batch 64; the seed's 8-device scripts use 0.4.
    assert cfg.effective_lr(1) == pytest.approx(0.05)
    assert cfg.effective_lr(8) == pytest.approx(0.4)


def test_flags_win_over_file(tmp_path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("backbone: resnext50\nper_batch_size: 32\nlr_epochs: [10, 20]\n")
    cfg = parse_args(["--config", str(f), "--per_batch_size", "16", "--platform", "gpu", "--is_distributed"])
    assert cfg.arch == "resnext50_32x4d"
    assert cfg.per_batch_size == 16
    assert cfg.platform == "GPU"
    assert cfg.is_distributed is True
    assert cfg.lr_epochs == [10, 20]


def test_json_file_and_comma_lists(tmp_path) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"lr_scheduler": "exponential"}))
    cfg = parse_args(["--config", str(f), "--lr_epochs", "5,7", "--platform", "ASCEND"])
    assert (cfg.lr_scheduler, cfg.lr_epochs, cfg.platform) == ("exponential", [5, 7], "Ascend")


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"per_batch_size": 0}, "per_batch_size"),
        ({"arch": "resnet50"}, "unknown architecture"),
        ({"no_such_key": 1}, "unknown key(s) no_such_key"),
        ({"lr_scheduler": "exponential", "lr_epochs": [60, 30]}, "lr_epochs must be increasing"),
        ({"platform": "TPU"}, "platform"),
    ],
)
def test_bad_values_name_the_key(values: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        build(values)


def test_config_module_does_not_import_mindspore() -> None:
    code = "import sys, contract.config; sys.exit('mindspore' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_help_lists_every_key_with_its_default(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        parse_args(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--data_dir VALUE required" in text
    assert "--lr_epochs VALUE default 30,60,90,120" in text
    assert all(f"--{name}" in text for name in TrainConfig.model_fields)
