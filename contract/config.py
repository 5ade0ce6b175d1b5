"""The trainer's configuration: one pydantic model, shared with jobctl.

This module must stay importable without MindSpore (jobctl validates specs with it on laptops that only
have the base install). Defaults are the seed recipe (`README-resnext101.md`); every key can come from a
YAML/JSON file (``--config``) or a flag, and flags win.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contract.env import TRAINER_PLATFORM, TrainerPlatform

# The trainer's --platform values: the pod contract's, one per platform family.
Platform = TrainerPlatform
Scheduler = Literal["cosine_annealing", "exponential", "step"]
AmpLevel = Literal["auto", "O0", "O1", "O2", "O3"]
Execution = Literal["auto", "graph", "pynative"]
CkptFormat = Literal["ckpt", "safetensors"]

# Architectures the trainer knows; trainer.model holds their definitions. Kept here (as names only) so the
# config can reject a typo without importing MindSpore.
ARCH_NAMES = ("resnext101_64x4d", "resnext101_32x4d", "resnext50_32x4d", "resnext_tiny")
ARCH_ALIASES = {"resnext101": "resnext101_64x4d", "resnext50": "resnext50_32x4d"}

# The seed's per-device learning rate: 0.05 at batch 64 on one device, scaled linearly with the global batch.
BASE_LR = 0.05
BASE_BATCH = 64
# The model zoo's training colour augmentation (RandomColorAdjust brightness, contrast, saturation), which the
# published 79.56% used and the seed README leaves out.
ZOO_COLOR_JITTER = 0.4


class ConfigError(ValueError):
    """A configuration the trainer cannot run; the message names the key and the fix."""


def _platform(value: object) -> object:
    if isinstance(value, str):
        canonical = TRAINER_PLATFORM.get(value.strip().lower())  # type: ignore[call-overload]
        if canonical:
            return canonical
    return value


class TrainConfig(BaseModel):
    """Everything `python -m trainer.train` reads. Flat keys, as in the seed's ``config.py``."""

    # allow_inf_nan=False: `lr=inf`, `1e999` and `.inf` are refused like `nan` (every float key must be finite).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False)

    # Where and how to run (jobctl sets these per job).
    platform: Platform = "CPU"
    data_dir: str = ""
    val_dir: str | None = None
    ckpt_path: str = "outputs"
    is_distributed: bool = False
    pretrained: str | None = None

    # Model.
    arch: str = Field("resnext101_64x4d", alias="backbone")
    num_classes: int | None = Field(None, ge=2, description="None: the number of class folders in data_dir")
    image_size: int = Field(224, ge=16, le=1024)

    # Optimisation (seed recipe).
    per_batch_size: int = Field(64, ge=1)
    lr: float | None = Field(None, gt=0, description="None: 0.05 * global_batch / 64")
    lr_scheduler: Scheduler = "cosine_annealing"
    lr_epochs: list[int] = Field(default_factory=lambda: [30, 60, 90, 120])
    lr_gamma: float = Field(0.1, gt=0, le=1)
    eta_min: float = Field(0.0, ge=0)
    T_max: int | None = Field(None, ge=1, description="None: max_epoch (the cosine reaches eta_min at the end)")
    max_epoch: int = Field(150, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many global steps (short runs)")
    warmup_epochs: float = Field(1.0, ge=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    is_dynamic_loss_scale: bool = False
    loss_scale: float = Field(1024.0, ge=1)
    label_smooth: bool = True
    label_smooth_factor: float = Field(0.1, ge=0, lt=1)
    amp_level: AmpLevel = Field("auto", description="auto: O2 on GPU/Ascend, O0 (fp32) on CPU")
    dataset_sink: bool | None = Field(None, description="None: on where the backend supports it (graph execution)")
    execution: Execution = Field(
        "auto",
        description="graph (GRAPH_MODE, static-graph data parallel), pynative (PyNative, the step compiled by "
        "mindspore.jit, gradients averaged explicitly); auto: graph while MindSpore has static-graph parallel "
        "(<= 2.11), else pynative",
    )
    seed: int = 1
    diverge_steps: int = Field(
        5, ge=1, description="stop the run as failed after this many consecutive steps with a non-finite loss"
    )

    # Data pipeline.
    num_parallel_workers: int = Field(8, ge=1)
    color_jitter: float = Field(
        ZOO_COLOR_JITTER, ge=0, le=1, description="training RandomColorAdjust brightness/contrast/saturation; 0: off"
    )
    eval_resize: Literal["square", "shorter"] = "square"
    eval_batch_size: int | None = Field(None, ge=1)

    # Checkpoints, validation, logging.
    ckpt_interval: int | None = Field(None, ge=1, description="steps; None: once per epoch")
    keep_checkpoint_max: int = Field(5, ge=1)
    ckpt_format: CkptFormat = Field("ckpt", description="file format of new checkpoints; resume reads both")
    async_save: bool = Field(
        True, description="write checkpoints on a background thread from a copy taken at the step boundary"
    )
    is_save_on_master: bool = True
    snapshot_interval: int | None = Field(
        None,
        ge=0,
        description="steps between in-memory snapshots of the training state (in a pod, for recovery from a "
        "surviving pod); 0: off; None: the shortest interval whose measured cost stays under 3 percent of a step",
    )
    eval_interval: int = Field(1, ge=1, description="epochs between validations when val_dir is set")
    log_interval: int = Field(100, ge=1, description="steps between progress lines (and at least one a minute)")

    # CPU: route oneDNN's k>1 convolutions to its gemm path (6x faster here, identical results).
    cpu_fast_conv: bool = True

    @field_validator("platform", mode="before")
    @classmethod
    def _any_case_platform(cls, value: object) -> object:
        return _platform(value)

    @field_validator("arch", mode="before")
    @classmethod
    def _known_arch(cls, value: object) -> object:
        if isinstance(value, str):
            value = ARCH_ALIASES.get(value, value)
            if value not in ARCH_NAMES:
                raise ValueError(f"unknown architecture {value!r}; choose one of {', '.join(ARCH_NAMES)}")
        return value

    @field_validator("lr_epochs", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(" ", "").split(",") if part]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.lr_scheduler in ("exponential", "step") and sorted(self.lr_epochs) != self.lr_epochs:
            raise ValueError("lr_epochs must be increasing, e.g. 30,60,90,120")
        if self.is_dynamic_loss_scale and self.platform == "CPU":
            raise ValueError("is_dynamic_loss_scale is not supported on CPU (MindSpore runs CPU in fp32); unset it")
        return self

    # Derived values -------------------------------------------------------------------------------------

    def effective_lr(self, group_size: int) -> float:
        """The base learning rate: the configured one, or the seed's 0.05 scaled with the global batch."""
        if self.lr is not None:
            return self.lr
        return BASE_LR * self.per_batch_size * group_size / BASE_BATCH

    def effective_T_max(self) -> int:
        return self.T_max if self.T_max is not None else self.max_epoch

    def resolved(self, group_size: int) -> TrainConfig:
        """The keys whose default follows a rule (lr, T_max) filled in with their values for ``group_size``
        devices: what a rendered train.yaml shows, so the effective recipe is visible before the run."""
        return self.model_copy(update={"lr": self.effective_lr(group_size), "T_max": self.effective_T_max()})

    def ignored_keys(self) -> list[str]:
        """Keys set explicitly that the chosen lr_scheduler never reads."""
        unused = _UNUSED_BY_SCHEDULER[self.lr_scheduler]
        return [key for key in unused if key in self.model_fields_set]

    def effective_amp_level(self) -> str:
        if self.amp_level != "auto":
            return self.amp_level
        return "O0" if self.platform == "CPU" else "O2"

    def effective_sink(self) -> bool:
        if self.dataset_sink is not None:
            return self.dataset_sink and self.platform != "CPU"
        return self.platform != "CPU"

    def flat(self) -> dict[str, Any]:
        """Plain JSON-able keys (what a checkpoint and a ConfigMap store)."""
        return self.model_dump(mode="json", by_alias=False)


# Keys each schedule ignores (trainer.schedule): cosine never reads the step boundaries, the step schedules never
# read the cosine's period and floor.
_UNUSED_BY_SCHEDULER: dict[str, tuple[str, ...]] = {
    "cosine_annealing": ("lr_epochs", "lr_gamma"),
    "exponential": ("T_max", "eta_min"),
    "step": ("T_max", "eta_min"),
}


def recipe_warnings(cfg: TrainConfig) -> list[str]:
    """One line per recipe key that has no effect under the chosen schedule (submit prints them)."""
    return [
        f"warning: train key {key} has no effect under lr_scheduler={cfg.lr_scheduler}; drop it, or choose a "
        f"schedule that uses it ({', '.join(s for s, unused in _UNUSED_BY_SCHEDULER.items() if key not in unused)})"
        for key in cfg.ignored_keys()
    ]


def format_error(err: ValidationError, source: str = "config") -> str:
    """One readable paragraph per bad key: the key, the bad value and what is expected."""
    parts = []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(config)"
        bad = item.get("input")
        shown = "" if isinstance(bad, Mapping) else f" (got {bad!r})"
        parts.append(f"{key}: {item['msg']}{shown}")
    return f"invalid {source}: " + "; ".join(parts)


def field_names() -> list[str]:
    return list(TrainConfig.model_fields)


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into flat keys."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}; check --config") from exc
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of keys to values, not {type(data).__name__}")
    return data


def build(values: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """Validate flat keys into a TrainConfig, raising ConfigError with a readable message."""
    unknown = [k for k in values if k not in TrainConfig.model_fields and k != "backbone"]
    if unknown:
        raise ConfigError(
            f"invalid {source}: unknown key(s) {', '.join(sorted(unknown))}; known keys: {', '.join(field_names())}"
        )
    try:
        return TrainConfig.model_validate(dict(values))
    except ValidationError as err:
        raise ConfigError(format_error(err, source)) from err


def parse_value(key: str, raw: str) -> Any:
    """Turn a KEY=VALUE string into the field's type (lists comma-separated, bools yes/no/true/1)."""
    if key not in TrainConfig.model_fields and key != "backbone":
        raise ConfigError(f"unknown key {key!r}; known keys: {', '.join(field_names())}")
    if raw.lower() in ("none", "null", ""):
        return None
    return yaml.safe_load(raw) if key not in ("lr_epochs",) else raw


def _add_flags(parser: argparse.ArgumentParser) -> None:
    for name, field in TrainConfig.model_fields.items():
        flags = [f"--{name}"] + (["--backbone"] if name == "arch" else [])
        if name == "platform":
            flags.append("--device_target")
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        help_text = "required" if default == "" else f"default {shown}"
        if field.description:  # a description that starts with "None:" already says what the default means
            help_text = (
                field.description if field.description.startswith("None:") else f"{field.description}; {help_text}"
            )
        parser.add_argument(*flags, dest=name, default=None, metavar="VALUE", help=help_text)


def parse_args(argv: Sequence[str] | None = None, prog: str = "trainer") -> TrainConfig:
    """Flags > --config file > defaults. Every TrainConfig key is a flag; ``--is_distributed`` needs no value."""
    parser = argparse.ArgumentParser(prog=prog, description="ResNeXt trainer (MindSpore)")
    parser.add_argument("--config", default=None, help="YAML or JSON file of config keys")
    _add_flags(parser)
    # Seed-style boolean switches may be given bare (`--is_distributed`).
    ns = parser.parse_args(_bare_bools(list(sys.argv[1:] if argv is None else argv)))
    values: dict[str, Any] = load_file(ns.config) if ns.config else {}
    for name in TrainConfig.model_fields:
        raw = getattr(ns, name)
        if raw is not None:
            if name == "arch":
                values.pop("backbone", None)
            values[name] = parse_value(name, raw)
    return build(values, source="config" if not ns.config else f"config ({ns.config} and flags)")


_BOOL_FIELDS = tuple(n for n, f in TrainConfig.model_fields.items() if f.annotation is bool)


def _bare_bools(argv: list[str]) -> list[str]:
    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(arg)
        name = arg[2:] if arg.startswith("--") and "=" not in arg else None
        if name in _BOOL_FIELDS:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is None or nxt.startswith("--"):
                out.append("true")
    return out
