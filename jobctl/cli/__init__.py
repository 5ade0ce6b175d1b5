"""`jobctl`: submit, follow and evaluate ResNeXt training jobs on Kubernetes or locally (a thin typer app).

One module per command group; importing them registers their commands on the one `app` (jobctl.cli.common).
"""

from __future__ import annotations

# Importing registers the commands; help lists them in this order.
# isort: off
from jobctl.cli import submit, lifecycle, tools, fault  # noqa: F401

# isort: on
from jobctl.cli.common import JobOptions, app
from jobctl.cli.ranktable import ranktable_app

app.add_typer(ranktable_app, name="ranktable")

__all__ = ["JobOptions", "app", "main"]


def main() -> None:
    app()
