"""`jobctl ranktable build|merge`: HCCL rank tables for bare-metal Ascend runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from jobctl.cli.common import bad_input, fail_cleanly

if TYPE_CHECKING:
    from contract.accelerators import Accelerator

ranktable_app = typer.Typer(help="HCCL rank tables for bare-metal Ascend runs.", no_args_is_help=True)


def write_text(text: str, destination: Path | None) -> None:
    if destination is None:
        print(text, end="")
        return
    from jobctl.jobdir import write_atomic

    try:
        write_atomic(destination, text)
    except OSError as exc:
        raise bad_input(f"-o {destination}: cannot write it: {exc.strerror}") from None


RankTableAcceleratorOpt = Annotated[
    str, typer.Option("--accelerator", help="Ascend generation: 910, 910b or a3 (rank-table version and device rules)")
]


@ranktable_app.command("build")
@fail_cleanly
def ranktable_build(
    hccn_conf: Annotated[Path, typer.Option("--hccn-conf", help="the server's /etc/hccn.conf")],
    server_id: Annotated[str, typer.Option("--server-id", help="the server's host IP")],
    devices: Annotated[str | None, typer.Option("--devices", help="0-7, 0,1,2,3 or [0,8)")] = None,
    accelerator: RankTableAcceleratorOpt = "910b",
    destination: Annotated[Path | None, typer.Option("--output", "-o", help="file (default: stdout)")] = None,
) -> None:
    """A one-server HCCL rank table from hccn.conf, like the model zoo's hccl_tools.py, with HCCL's own checks:
    every device of the server in hccn.conf, and a device set the generation accepts."""
    from contract.ranktable import build_table, parse_device_range, server_from_hccn

    accel = rank_table_accelerator(accelerator)
    if accel.rank_table_version != "1.0":
        raise bad_input(
            f"--accelerator {accelerator}: hccn.conf has no super-device ids, so it cannot make a version "
            f"{accel.rank_table_version} table; build A3 tables in the pods (launcher ranktable) or from the "
            "device plugin's annotations"
        )
    try:
        text = hccn_conf.read_text()
    except OSError as exc:
        raise bad_input(f"--hccn-conf {hccn_conf}: cannot read it: {exc.strerror}") from None
    chosen = parse_device_range(devices) if devices is not None else None
    server = server_from_hccn(server_id, text, chosen, accel, source=str(hccn_conf))
    write_text(build_table([server], accel.rank_table_version).to_json(), destination)


def rank_table_accelerator(name: str) -> Accelerator:
    from contract.accelerators import accelerator, rank_table_accelerators

    if name not in rank_table_accelerators():
        raise bad_input(
            f"--accelerator: {name!r} is not an Ascend generation; accepted: {', '.join(rank_table_accelerators())}"
        )
    return accelerator(name)


@ranktable_app.command("merge")
@fail_cleanly
def ranktable_merge(
    tables: Annotated[list[Path], typer.Argument(help="rank tables, in server order")],
    accelerator: RankTableAcceleratorOpt = "910b",
    destination: Annotated[Path | None, typer.Option("--output", "-o", help="file (default: stdout)")] = None,
) -> None:
    """One rank table from several (servers in argument order, ranks renumbered), like merge_hccl.py; refuses
    tables HCCL would refuse (duplicate device IPs, a version the generation does not use)."""
    from contract.ranktable import RankTable, merge_tables

    accel = rank_table_accelerator(accelerator)
    merged = merge_tables([RankTable.load(path) for path in tables], accel.rank_table_version)
    write_text(merged.to_json(), destination)
