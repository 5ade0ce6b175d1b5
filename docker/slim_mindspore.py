"""Remove the MindSpore backends a platform's image does not use (run in the image build, after pip install).

The mindspore wheel carries every backend under mindspore/lib/plugin/. MindSpore 2.10 loads, at first use of a
device, every file named libmindspore_*.so* in that directory (one file per name before the first dot; for the
GPU plugin, the one matching $CUDA_HOME's nvcc when several CUDA flavours are present), and each plugin reaches
its own subdirectory through its RPATH. So a backend is removed by deleting its libmindspore_* file and its
subdirectory; the CPU backend (libmindspore_ops_cpu.so, cpu/) stays everywhere because the GPU plugin links it and
host-side ops run on it. Keeping one CUDA flavour also means MindSpore loads it without needing nvcc to choose.

Fails (exit 1, nothing removed) when the wheel's layout is not the one described here, when a kept library needs
a MindSpore library that would be removed, or when no CUDA flavour fits: a newer wheel must be looked at, not
trimmed blindly. Standard library only: it runs in the bare build stage.

    python slim_mindspore.py cpu|gpu|ascend [--cuda 11.6] [--mindspore DIR] [--dry-run]
"""

from __future__ import annotations

import argparse
import mmap
import os
import re
import shutil
import struct
import sys
from collections.abc import Iterable
from pathlib import Path

PLATFORMS = ("cpu", "gpu", "ascend")
CPU_ENTRIES = frozenset({"cpu", "libmindspore_ops_cpu.so"})
ASCEND_ENTRIES = frozenset({"ascend", "libmindspore_ascend.so.2", "libmindspore_ops_ascend.so"})
GPU_COMMON = "gpu"  # libcuda_ops.so.11, shared by every CUDA flavour
GPU_FLAVOUR_DIR = re.compile(r"^gpu(\d+)\.(\d+)$")
GPU_PLUGIN = "libmindspore_gpu.so.{}"
# Outside plugin/ but Ascend's alone: the GE graph backend, which libmindspore_backend_manager dlopens only for
# Ascend's GE mode, and which links the Ascend plugin's libraries.
ASCEND_ONLY_LIBS = ("libmindspore_ge_backend.so",)


class LayoutError(Exception):
    """The wheel is not laid out as this script expects, or the platform cannot be served by it."""


def cuda_flavours(entries: Iterable[str]) -> dict[tuple[int, int], str]:
    """The wheel's CUDA flavours: (major, minor) -> "X.Y" for each gpuX.Y directory."""
    found = {}
    for entry in entries:
        match = GPU_FLAVOUR_DIR.match(entry)
        if match:
            found[(int(match[1]), int(match[2]))] = f"{match[1]}.{match[2]}"
    return found


def pick_cuda_flavour(cuda_version: str, flavours: dict[tuple[int, int], str]) -> str:
    """The flavour MindSpore itself would pick for this CUDA: the same X.Y, else the newest older one of major X."""
    match = re.match(r"^(\d+)\.(\d+)", cuda_version.strip())
    if not match:
        raise LayoutError(f"CUDA version {cuda_version!r} is not X.Y[.Z]: pass --cuda (or set CUDA_VERSION) like 11.6")
    major, minor = int(match[1]), int(match[2])
    fitting = [v for v in flavours if v[0] == major and v[1] <= minor]
    if not fitting:
        raise LayoutError(
            f"no MindSpore GPU plugin fits CUDA {major}.{minor}: the wheel has "
            f"{', '.join(sorted(flavours.values())) or 'none'}; use a base image with one of those CUDA versions"
        )
    return flavours[max(fitting)]


def entries_to_keep(platform: str, entries: Iterable[str], cuda_version: str | None) -> set[str]:
    """Which top-level entries of lib/plugin/ the platform keeps; raises LayoutError if the layout is unknown."""
    entries = set(entries)
    flavours = cuda_flavours(entries)
    gpu_entries = (
        {GPU_COMMON} | {f"gpu{v}" for v in flavours.values()} | {GPU_PLUGIN.format(v) for v in flavours.values()}
    )
    unknown = sorted(entries - CPU_ENTRIES - ASCEND_ENTRIES - gpu_entries)
    if unknown:
        raise LayoutError(f"unknown entries in mindspore/lib/plugin: {', '.join(unknown)} (has the wheel changed?)")
    keep = set(CPU_ENTRIES)
    if platform == "ascend":
        keep |= ASCEND_ENTRIES
    elif platform == "gpu":
        if not cuda_version:
            raise LayoutError("PLATFORM=gpu needs the base's CUDA version: --cuda X.Y or the CUDA_VERSION env")
        flavour = pick_cuda_flavour(cuda_version, flavours)
        keep |= {GPU_COMMON, f"gpu{flavour}", GPU_PLUGIN.format(flavour)}
    elif platform != "cpu":
        raise LayoutError(f"platform must be one of {', '.join(PLATFORMS)}, not {platform!r}")
    missing = sorted(keep - entries)
    if missing:
        raise LayoutError(f"the wheel lacks {', '.join(missing)} in mindspore/lib/plugin, which {platform} needs")
    return keep


def elf_needed(path: Path) -> list[str]:
    """The DT_NEEDED names of a 64-bit little-endian ELF file ([] for anything else)."""
    with path.open("rb") as file:
        if file.read(6) != b"\x7fELF\x02\x01":
            return []
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _dynamic_needed(data)


def _dynamic_needed(data: mmap.mmap) -> list[str]:
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = []
    for _name, sh_type, _flags, _addr, offset, size, link, _info, _align, _entsize in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        strtab_offset = sections[link][4]
        for pos in range(offset, offset + size, 16):
            tag, value = struct.unpack_from("<qQ", data, pos)
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED
                end = data.find(b"\0", strtab_offset + value)
                names.append(data[strtab_offset + value : end].decode())
    return names


def shared_libraries(root: Path) -> dict[str, list[Path]]:
    """Every shared library under root: file name -> paths."""
    found: dict[str, list[Path]] = {}
    for path in root.rglob("*.so*"):
        if path.is_file() and re.search(r"\.so(\.\d+)*$", path.name):
            found.setdefault(path.name, []).append(path)
    return found


def check_links(lib_dir: Path, removed: set[Path]) -> None:
    """Every library that stays must find the MindSpore libraries it links (those shipped in lib_dir)."""
    libraries = shared_libraries(lib_dir)
    kept = {
        name: [p for p in paths if not any(p.is_relative_to(r) for r in removed)] for name, paths in libraries.items()
    }
    broken = []
    for paths in kept.values():
        for path in paths:
            lost = [n for n in elf_needed(path) if n in libraries and not kept[n]]
            if lost:
                broken.append(f"{path.relative_to(lib_dir)} needs {', '.join(lost)}")
    if broken:
        raise LayoutError("removing the unused backends would break: " + "; ".join(broken))


def slim(mindspore_dir: Path, platform: str, cuda_version: str | None, dry_run: bool = False) -> list[Path]:
    """Remove the plugins the platform does not use; returns what was (or, dry, would be) removed."""
    plugin_dir = mindspore_dir / "lib" / "plugin"
    if not plugin_dir.is_dir():
        raise LayoutError(f"{plugin_dir} is not a directory: is {mindspore_dir} a MindSpore 2.x install?")
    keep = entries_to_keep(platform, os.listdir(plugin_dir), cuda_version)
    removed = sorted(p for p in plugin_dir.iterdir() if p.name not in keep)
    if platform != "ascend":
        removed += [
            mindspore_dir / "lib" / name for name in ASCEND_ONLY_LIBS if (mindspore_dir / "lib" / name).exists()
        ]
    check_links(mindspore_dir / "lib", set(removed))
    if not dry_run:
        for path in removed:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    return removed


def size_of(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())


def installed_mindspore() -> Path:
    """The mindspore package directory of this interpreter, found without importing it."""
    for entry in sys.path:
        candidate = Path(entry) / "mindspore"
        if (candidate / "lib" / "plugin").is_dir():
            return candidate
    raise LayoutError("no mindspore package with lib/plugin on this interpreter's sys.path; pass --mindspore DIR")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("platform", choices=PLATFORMS)
    parser.add_argument("--cuda", default=os.environ.get("CUDA_VERSION"), help="GPU: the base's CUDA X.Y")
    parser.add_argument("--mindspore", type=Path, help="the mindspore package directory (default: this Python's)")
    parser.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    args = parser.parse_args(argv)
    try:
        mindspore_dir = args.mindspore or installed_mindspore()
        lib_dir = mindspore_dir / "lib"
        sizes = {p: size_of(p) for p in [*(lib_dir / "plugin").iterdir(), *(lib_dir / n for n in ASCEND_ONLY_LIBS)]}
        removed = slim(mindspore_dir, args.platform, args.cuda, args.dry_run)
    except LayoutError as exc:
        print(f"slim_mindspore: {args.platform}: {exc}", file=sys.stderr)
        return 1
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"slim_mindspore: {verb} {path.relative_to(lib_dir.parent)} ({sizes[path] / 1e6:.0f} MB)")
    kept = sorted(p.name for p in sizes if p not in removed and p.parent.name == "plugin")
    print(
        f"slim_mindspore: {args.platform}: {verb} {sum(sizes[p] for p in removed) / 1e6:.0f} MB, "
        f"kept {sum(sizes[p] for p in sizes if p not in removed) / 1e6:.0f} MB (plugins: {', '.join(kept)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
