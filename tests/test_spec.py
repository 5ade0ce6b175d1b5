"""JobSpec: defaults, precedence, and a clear SpecError for every invalid input (never another exception)."""

from __future__ import annotations

import re
import string
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobctl.spec import (
    DNS_1035,
    DNS_1123_SUBDOMAIN,
    IMAGE_REF,
    MAX_MESSAGE,
    QUANTITY,
    JobSpec,
    SpecError,
    load_spec,
    parse_quantity,
    train_config,
    validate_spec,
)
from jobctl.strict_yaml import MAX_DEPTH

BASE: dict[str, Any] = {"name": "job", "platform": "gpu", "devices": 8}


def spec_of(**fields: Any) -> JobSpec:
    return validate_spec({**BASE, **fields})


# Defaults -------------------------------------------------------------------------------------------------------


def test_submit_with_two_flags_is_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBCTL_REGISTRY", raising=False)
    spec = load_spec(None, {"devices": 8, "platform": "ascend"}, [])
    assert re.fullmatch(r"resnext-ascend-[a-z0-9]{6}", spec.name)
    assert spec.image == "resnext-jobs-ascend:0.1.0"
    assert (spec.namespace, spec.data.claim, spec.shared.claim) == (
        "mindspore-jobs-ascend",
        "imagenet",
        "jobctl-shared",
    )
    assert (spec.devices_per_node, spec.pods, spec.launcher) == (8, 1, "ranktable")
    assert (spec.data_dir, spec.val_dir, spec.ckpt_dir) == (
        "/data/train",
        "/data/val",
        f"/shared/jobs/{spec.name}/ckpt",
    )


def test_generated_names_differ() -> None:
    names = {load_spec(None, {"platform": "cpu"}, []).name for _ in range(5)}
    assert len(names) == 5


def test_registry_env_prefixes_the_default_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBCTL_REGISTRY", "registry.example.com:5000/")
    assert spec_of().image == "registry.example.com:5000/resnext-jobs-gpu:0.1.0"
    assert spec_of(image="my/image:1").image == "my/image:1"


@pytest.mark.parametrize(
    ("platform", "devices", "per_node", "pods"),
    [("ascend", 1, 1, 1), ("ascend", 16, 8, 2), ("gpu", 512, 8, 64), ("cpu", 2, 2, 1), ("cpu", 40, 40, 1)],
)
def test_devices_per_node_default(platform: str, devices: int, per_node: int, pods: int) -> None:
    spec = spec_of(platform=platform, devices=devices)
    assert (spec.devices_per_node, spec.pods) == (per_node, pods)


def test_resources_scale_with_devices_per_pod() -> None:
    spec = spec_of(platform="gpu", devices=16)
    assert (spec.cpu, spec.memory, spec.shm_size) == ("64", "256Gi", "32Gi")
    assert spec_of(cpu="4", memory="20Gi", shm_size="2Gi").cpu == "4"


def test_train_config_has_the_in_pod_paths() -> None:
    spec = spec_of(name="r1", devices=16, train={"max_epoch": 2, "backbone": "resnext50"})
    cfg = train_config(spec)
    assert (cfg.platform, cfg.data_dir, cfg.val_dir) == ("GPU", "/data/train", "/data/val")
    assert (cfg.ckpt_path, cfg.is_distributed, cfg.max_epoch) == ("/shared/jobs/r1/ckpt", True, 2)
    assert cfg.arch == "resnext50_32x4d"
    assert spec.train == {"max_epoch": 2, "arch": "resnext50_32x4d"}
    assert train_config(spec_of(devices=1, data={"val_subpath": None})).val_dir is None
    assert train_config(spec_of(devices=1)).is_distributed is False


def test_resolved_spec_round_trips() -> None:
    spec = spec_of(train={"lr_epochs": "30,60"}, tolerations=[{"key": "a", "operator": "Exists"}], env={"X": 1})
    again = validate_spec(yaml.safe_load(spec.to_yaml()))
    assert again == spec
    assert spec.train["lr_epochs"] == [30, 60] and spec.env == {"X": "1"}


# Precedence -------------------------------------------------------------------------------------------------------


def test_flags_beat_set_beat_file(tmp_path: Path) -> None:
    file = tmp_path / "spec.yaml"
    file.write_text("name: from-file\nplatform: gpu\ndevices: 8\ntrain: {max_epoch: 5, per_batch_size: 32}\n")
    spec = load_spec(file, {"devices": 16, "name": None, "data.claim": "other"}, ["max_epoch=3"])
    assert (spec.name, spec.devices, spec.data.claim) == ("from-file", 16, "other")
    assert spec.train == {"max_epoch": 3, "per_batch_size": 32}
    spec = load_spec(file, {"train": {"max_epoch": 1}}, ["max_epoch=3"])
    assert spec.train["max_epoch"] == 1


def test_a_volume_flag_replaces_the_files_volume_source(tmp_path: Path) -> None:
    file = tmp_path / "spec.yaml"
    file.write_text("platform: cpu\ndata: {claim: imagenet-small, val_subpath: v}\nshared: {host_path: /srv}\n")
    spec = load_spec(file, {"data.host_path": "/datasets/in", "shared.claim": "team-shared"}, [])
    assert (spec.data.claim, spec.data.host_path, spec.data.val_subpath) == (None, "/datasets/in", "v")
    assert (spec.shared.claim, spec.shared.host_path) == ("team-shared", None)


def test_set_values_are_typed() -> None:
    spec = load_spec(None, {"platform": "cpu"}, ["lr_epochs=30,60,90", "lr_scheduler=step", "label_smooth=no"])
    assert spec.train == {"lr_epochs": [30, 60, 90], "lr_scheduler": "step", "label_smooth": False}


@pytest.mark.parametrize("key", ["platform", "data_dir", "val_dir", "ckpt_path", "is_distributed"])
def test_launch_keys_are_refused_with_a_pointer(key: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=rf"{key} is set by jobctl"):
        load_spec(None, {"platform": "cpu"}, [f"{key}=x"])
    file = tmp_path / "s.yaml"
    file.write_text(f"platform: cpu\ntrain: {{{key}: x}}\n")
    with pytest.raises(SpecError, match=rf"train: {key} is set by jobctl") as err:
        load_spec(file, {}, [])
    assert "use" in str(err.value) or "jobctl sets" in str(err.value) or "choose" in str(err.value)


@pytest.mark.parametrize(
    ("sets", "needle"),
    [(["nope=1"], "unknown key 'nope'"), (["max_epoch"], "not KEY=VALUE"), (["=3"], "not KEY=VALUE")],
)
def test_bad_set_items(sets: list[str], needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        load_spec(None, {"platform": "cpu"}, sets)


@pytest.mark.parametrize(
    ("text", "needle"), [("- a\n- b\n", "must hold a mapping"), ("a: [\n", "not valid YAML"), (None, "cannot read")]
)
def test_bad_spec_files(tmp_path: Path, text: str | None, needle: str) -> None:
    file = tmp_path / "spec.yaml"
    if text is not None:
        file.write_text(text)
    with pytest.raises(SpecError, match=needle):
        load_spec(file, {}, [])


# Hostile YAML: kubectl's strict decoding refuses duplicate keys; depth and integer size are bounded ------------

HUGE = "9" * 5000  # more digits than int() reads (sys.get_int_max_str_digits(): 4300)
DEEP_LIST = "[" * 3000 + "]" * 3000
DEEP_MAP = "{a: " * 3000 + "1" + "}" * 3000


def _load_text(tmp_path: Path, text: str, sets: tuple[str, ...] = ()) -> JobSpec:
    file = tmp_path / "spec.yaml"
    file.write_text(text)
    return load_spec(file, {}, list(sets))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: a\nname: b\nplatform: cpu\n", r"key 'name' is given twice \(first on line 1\); keep one \(line 2"),
        ("platform: cpu\ndata: {claim: a, claim: b}\n", r"key 'claim' is given twice .*line 2, column 18"),
        ("platform: cpu\nenv:\n  A: x\n  A: y\n", r"key 'A' is given twice \(first on line 3\).*line 4"),
    ],
)
def test_duplicate_keys_are_refused_with_the_line(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        _load_text(tmp_path, text)


def test_merge_keys_may_still_be_overridden_but_not_repeated(tmp_path: Path) -> None:
    spec = _load_text(tmp_path, "platform: cpu\ndata: {<<: {claim: a, train_subpath: t}, claim: b}\n")
    assert (spec.data.claim, spec.data.train_subpath) == ("b", "t")
    with pytest.raises(SpecError, match="key 'claim' is given twice"):
        _load_text(tmp_path, "platform: cpu\ndata: {<<: {claim: a}, claim: b, claim: c}\n")


@pytest.mark.parametrize(
    ("text", "sets", "needle"),
    [
        (f"platform: cpu\ntrain: {DEEP_LIST}\n", (), r"spec file .*nested more than 64 levels deep \(line 2"),
        (f"platform: cpu\nenv: {DEEP_MAP}\n", (), "nested more than 64 levels deep"),
        ("platform: cpu\n", (f"max_epoch={DEEP_LIST}",), r"--set max_epoch: nested more than 64 levels"),
        ("platform: cpu\n", (f"lr_epochs={DEEP_LIST}",), r"--set lr_epochs: nested more than 64 levels"),
        (f"platform: cpu\ndevices: {HUGE}\n", (), r"an integer of more than 4300 digits \(line 2, column 10\)"),
        (f"platform: cpu\ntrain: {{max_epoch: 0x{'f' * 4000}}}\n", (), "an integer of more than 4300 digits"),
        ("platform: cpu\n", (f"max_epoch={HUGE}",), r"--set max_epoch: an integer of more than 4300 digits"),
    ],
)
def test_deep_nesting_and_huge_integers_are_spec_errors(
    tmp_path: Path, text: str, sets: tuple[str, ...], needle: str
) -> None:
    with pytest.raises(SpecError, match=needle) as err:
        _load_text(tmp_path, text, sets)
    assert len(str(err.value)) < 200


def test_nesting_is_bounded_at_max_depth(tmp_path: Path) -> None:
    # The document is level 1, so train's value may open 62 more lists: 64 levels parse, 65 do not.
    with pytest.raises(SpecError, match=r"train keys: lr_epochs"):  # parsed, then refused by the trainer's schema
        _load_text(tmp_path, "platform: cpu\ntrain:\n  lr_epochs: " + "[" * 62 + "]" * 62 + "\n")
    with pytest.raises(SpecError, match=f"nested more than {MAX_DEPTH} levels"):
        _load_text(tmp_path, "platform: cpu\ntrain:\n  lr_epochs: " + "[" * 63 + "]" * 63 + "\n")


# Long errors are cut: a few names, then a pointer to the full list ---------------------------------------------


def test_unknown_fields_are_listed_together_with_a_few_known_ones() -> None:
    with pytest.raises(SpecError) as err:
        spec_of(**{f"bogus{i}": i for i in range(40)})
    text = str(err.value)
    assert text.startswith("invalid job spec: bogus0, bogus1, bogus2, bogus3, bogus4, bogus5, …: unknown fields;")
    assert "known fields: name, namespace, platform, devices, devices_per_node, accelerator, … (all 35 in" in text
    assert "README.md" in text and "bogus39" not in text and len(text) < 300


def test_unknown_trainer_keys_point_at_the_trainer_help(tmp_path: Path) -> None:
    for load in (lambda: load_spec(None, {"platform": "cpu"}, ["nope=1"]), lambda: spec_of(train={"nope": 1})):
        with pytest.raises(SpecError, match=r"known keys: .*, … \(\d+ in all\).*python -m trainer.train --help") as err:
            load()
        assert len(str(err.value)) < 400


def test_many_problems_show_the_first_and_name_the_rest() -> None:
    bad = {"name": "A", "devices": -1, "namespace": "X", "queue": "Q", "cpu": "0", "max_restarts": -1}
    with pytest.raises(SpecError) as err:
        spec_of(**bad, tolerations=[{"operator": "Never"}] * 50)
    text = str(err.value)
    assert "name: 'A' is not a DNS-1035 label" in text and "; also " in text
    assert text.count("tolerations") <= 1 and len(text) < 600


def test_long_values_are_cut_in_the_message() -> None:
    with pytest.raises(SpecError) as err:
        spec_of(namespace="X" * 5000)
    assert "namespace: " in str(err.value) and len(str(err.value)) < 300


# Names --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["A", "1abc", "abc-", "a_b", "a.b", "", "a" * 64])
def test_names_must_be_dns_1035(name: str) -> None:
    with pytest.raises(SpecError, match="name"):
        spec_of(name=name)


def test_name_length_counts_the_longest_generated_name() -> None:
    # "-metrics" (8), the metrics reader Job, is the longest of what jobctl derives (contract.names): 63.
    assert spec_of(name="a" * 55, devices=16).name
    with pytest.raises(SpecError, match=r"metrics reader Job, 'a+-metrics'.*at most 55 characters"):
        spec_of(name="a" * 56, devices=16)
    controller = {"platform": "ascend", "devices": 16, "launcher": "controller"}  # "rings-config-" (13)
    assert spec_of(name="a" * 50, **controller).name
    with pytest.raises(SpecError, match=r"'rings-config-a+'.*at most 50 characters"):
        spec_of(name="a" * 51, **controller)


# Devices ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"devices": 12}, "devices: 12 is not divisible by devices_per_node 8"),
        ({"devices": 24, "devices_per_node": 16}, "not divisible"),
        ({"devices": 32, "devices_per_node": 32}, "at most 16"),
        ({"platform": "ascend", "devices": 32, "devices_per_node": 32}, "at most 16"),
        ({"platform": "ascend", "accelerator": "910", "devices": 6, "devices_per_node": 3}, "per node: 1, 2, 4, 8;"),
        ({"platform": "ascend", "accelerator": "a3", "devices": 12}, "per node: 1, 2, 4, 8, 16;"),
        ({"platform": "ascend", "accelerator": 910, "devices": 16, "devices_per_node": 16}, "(Ascend 910) node holds"),
        ({"platform": "ascend", "devices": 18, "devices_per_node": 9}, "per node: 1, 2, 3, 4, 5, 6, 7, 8, 10, 12"),
        ({"platform": "cpu", "devices": 65, "devices_per_node": 65}, "at most 64"),
        ({"devices": 0}, "devices"),
        ({"launcher": "ranktable"}, "launcher: 'ranktable' is not available on gpu"),
    ],
)
def test_device_layout_errors(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError, match=re.escape(needle) if "*" not in needle else needle):
        spec_of(**fields)


# Quantities and other fields ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("16", 16),
        ("500m", 0.5),
        ("64Gi", 64 * 2**30),
        ("1e3", 1000),
        ("1.5k", 1500),
        (".5", 0.5),
        ("1E", 1e18),
        ("2Ei", 2 * 2.0**60),
        ("5E-1", 0.5),
    ],
)
def test_quantities(text: str, value: float) -> None:
    assert float(parse_quantity(text)) == pytest.approx(value)


@pytest.mark.parametrize("text", ["12x", "-1", "1.2.3", "Gi", "1 Gi", "1gi", "1KI", "NaN", "inf", ""])
def test_bad_quantities_name_the_field(text: str) -> None:
    with pytest.raises(SpecError, match=r"memory: .* Kubernetes quantity"):
        spec_of(memory=text)


def test_zero_quantity_and_shm_above_memory() -> None:
    with pytest.raises(SpecError, match="cpu: '0' must be more than zero"):
        spec_of(cpu="0")
    with pytest.raises(SpecError, match="shm_size: 8Gi must be less than memory 4Gi"):
        spec_of(memory="4Gi", shm_size="8Gi")


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"env": {"JOBCTL_PLATFORM": "x"}}, "env: JOBCTL_PLATFORM is set by jobctl"),
        ({"env": {"RANK_ID": "1"}}, "env: RANK_ID is set by jobctl"),
        ({"env": {"1X": "1"}}, "env: '1X' is not an environment variable name"),
        ({"node_selector": {"bad key!": "x"}}, "node_selector: key 'bad key!'"),
        ({"node_selector": {"a": "x" * 64}}, "node_selector: the value of a"),
        ({"tolerations": [{"operator": "Exists", "value": "v"}]}, "tolerations.0: operator Exists takes no value"),
        ({"tolerations": [{"value": "v"}]}, "tolerations.0: operator Equal needs a key"),
        ({"tolerations": [{"key": "k", "tolerationSeconds": 5}]}, "tolerationSeconds only applies"),
        ({"data": {"claim": "a", "host_path": "/x"}}, "data: set either claim or host_path"),
        ({"data": {"train_subpath": "../etc"}}, "data.train_subpath"),
        ({"data": {"host_path": "relative"}}, "data.host_path"),
        ({"shared": {"claim": "Bad_Claim"}}, "shared.claim"),
        ({"image": "Not An Image"}, "image: 'Not An Image' is not an image reference"),
        ({"queue": "Q"}, "queue"),
        ({"priority_class": "-x"}, "priority_class"),
        ({"image_pull_secrets": ["a/b"]}, "image_pull_secrets"),
        ({"namespace": "Default"}, "namespace"),
        ({"max_restarts": -1}, "max_restarts"),
        ({"rendezvous_timeout": 1}, "rendezvous_timeout"),
        ({"train": {"max_epoch": 0}}, "train keys: max_epoch"),
        ({"train": {"nope": 1}}, "train keys: unknown key"),
        ({"platform": "cpu", "train": {"is_dynamic_loss_scale": True}}, "train keys:.*not supported on CPU"),
        ({"bogus": 1}, "bogus: unknown field; known fields: name"),
        ({"data": {"bogus": 1}}, "data.bogus: unknown field; known fields: claim"),
    ],
)
def test_field_errors(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError, match=needle if ".*" in needle else re.escape(needle)):
        spec_of(**fields)


def test_missing_platform_says_which_flag() -> None:
    with pytest.raises(SpecError, match=r"platform: required; pass --platform ascend\|gpu\|cpu"):
        load_spec(None, {}, [])


def test_error_is_one_paragraph() -> None:
    with pytest.raises(SpecError) as err:
        validate_spec({"name": "A", "platform": "x", "devices": -1, "env": {"1": 2}})
    text = str(err.value)
    assert "\n" not in text
    assert all(field in text for field in ("name", "platform", "devices", "env"))


# Random invalid specs -----------------------------------------------------------------------------------------------

_anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.lists(st.integers())
)


def _not(pattern: re.Pattern[str]) -> st.SearchStrategy[str]:
    return st.text(max_size=30).filter(lambda s: not pattern.fullmatch(s))


# field name -> strategy of values that must be rejected
INVALID: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(_not(DNS_1035), st.text(string.ascii_lowercase, min_size=59, max_size=80), st.integers()),
    "namespace": st.one_of(
        st.text(max_size=30).filter(lambda s: not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", s))
    ),
    "platform": st.text(max_size=10).filter(lambda s: s not in ("cpu", "gpu", "ascend")),
    "devices": st.one_of(st.integers(max_value=0), st.integers(min_value=65537), st.sampled_from([9, 12, 20])),
    "devices_per_node": st.one_of(st.integers(max_value=0), st.integers(min_value=17), st.just(3)),
    "image": st.one_of(_not(IMAGE_REF), st.integers()),
    "cpu": st.one_of(_not(QUANTITY), st.sampled_from(["0", "0m", "-1"])),
    "memory": st.one_of(_not(QUANTITY), st.sampled_from(["0", "1Mi"])),
    "shm_size": st.one_of(_not(QUANTITY), st.sampled_from(["0", "1Ti"])),
    "node_selector": st.one_of(
        st.dictionaries(st.sampled_from(["", "-a", "a b", "a/", "UP/x", "x" * 64]), st.just("v"), min_size=1),
        st.lists(st.integers(), min_size=1),
    ),
    "tolerations": st.one_of(
        st.lists(
            st.fixed_dictionaries({"operator": st.text(max_size=8).filter(lambda s: s not in ("Exists", "Equal"))}),
            min_size=1,
        ),
        st.just([{"effect": "Sometimes", "key": "k"}]),
        st.integers(),
    ),
    "priority_class": st.one_of(_not(re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")), st.integers()),
    "queue": st.one_of(
        st.text(min_size=1, max_size=8).filter(lambda s: not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", s))
    ),
    "max_restarts": st.one_of(
        st.integers(max_value=-1), st.integers(min_value=1001), st.sampled_from(["x", "", "1.5", "three"])
    ),
    "ttl_seconds_after_finished": st.integers(max_value=-1),
    "env": st.one_of(
        st.dictionaries(
            st.sampled_from(["JOBCTL_X", "MS_ROLE", "RANK_ID", "1A", "A-B", "POD_NAME"]), st.just("v"), min_size=1
        ),
        st.lists(st.integers(), min_size=1),
    ),
    # Secret names are DNS-1123 subdomains: dots are allowed ("0.0" is a valid name).
    "image_pull_secrets": st.lists(_not(DNS_1123_SUBDOMAIN), min_size=1),
    "launcher": st.text(max_size=10).filter(lambda s: s != "msrun"),
    "rendezvous_timeout": st.one_of(st.integers(max_value=9), st.integers(min_value=86401)),
    "stall_timeout": st.integers(max_value=59),
    "run_as_user": st.integers(max_value=-1),
    "data": st.one_of(
        st.fixed_dictionaries({"train_subpath": st.sampled_from(["/abs", "../up", "a/../b", "", "a b"])}),
        st.fixed_dictionaries({"claim": st.sampled_from(["UPPER", "-x", ""]), "host_path": st.just("/x")}),
        st.fixed_dictionaries({"host_path": st.sampled_from(["rel", "/", "/a/../b"])}),
        st.fixed_dictionaries({"surprise": _anything}),
    ),
    "shared": st.one_of(
        st.fixed_dictionaries({"claim": st.sampled_from(["UPPER", "-x"])}),
        st.fixed_dictionaries({"host_path": st.sampled_from(["rel", "/"])}),
        st.text(max_size=5),
    ),
    "train": st.one_of(
        st.fixed_dictionaries({"max_epoch": st.integers(max_value=0)}),
        st.fixed_dictionaries({"momentum": st.floats(min_value=1.0, allow_nan=False)}),
        st.fixed_dictionaries({"arch": st.text(max_size=8)}),
        st.dictionaries(
            st.sampled_from(["platform", "data_dir", "ckpt_path", "nope", "is_distributed"]), _anything, min_size=1
        ),
        st.lists(st.integers(), min_size=1),
    ),
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(data=st.data(), field=st.sampled_from(sorted(INVALID)))
def test_random_invalid_specs_give_a_spec_error_naming_the_field(data: st.DataObject, field: str) -> None:
    value = data.draw(INVALID[field], label=field)
    values = {**BASE, field: value}
    with pytest.raises(SpecError) as err:
        validate_spec(values)
    message = str(err.value)
    assert field in message, message
    assert_short_paragraph(message)


def assert_short_paragraph(message: str) -> None:
    assert "\n" not in message and "Traceback" not in message, message
    assert len(message) <= MAX_MESSAGE, f"{len(message)} characters: {message[:200]}…"


@settings(max_examples=100, deadline=None)
@given(
    junk=st.dictionaries(st.text(max_size=12), _anything, max_size=6), sets=st.lists(st.text(max_size=12), max_size=3)
)
def test_random_junk_never_raises_anything_but_spec_error(junk: dict[str, Any], sets: list[str]) -> None:
    try:
        load_spec(None, junk, sets)
    except SpecError as err:
        assert_short_paragraph(str(err))


# Random YAML-ish text (brackets, anchors, repeated keys, long digit runs) as a spec file or a --set value.
_yaml_piece = st.sampled_from(["[", "]", "{", "}", ": ", ", ", "\n", "- ", "&a ", "*a", "<<: ", "name", "a", "9" * 50])
_yaml_junk = st.lists(st.one_of(_yaml_piece, st.text(max_size=4)), max_size=400).map("".join)


@settings(max_examples=150, deadline=None)
@given(text=_yaml_junk, repeat=st.integers(1, 120))
def test_random_yaml_text_gives_a_short_spec_error_or_a_spec(text: str, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "spec.yaml"
        file.write_text(f"platform: cpu\ntrain: {text * repeat}\n", encoding="utf-8", errors="surrogatepass")
        for load in (lambda: load_spec(file, {}, []), lambda: load_spec(None, {"platform": "cpu"}, [f"arch={text}"])):
            try:
                load()
            except SpecError as err:
                assert_short_paragraph(str(err))
