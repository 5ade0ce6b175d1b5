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
