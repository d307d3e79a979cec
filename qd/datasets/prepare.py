"""Data on first use (a config's `data.prepare`), and the command line `python -m qd data synth|fetch`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qd.core.data import FILES
from qd.core.errors import QDError, disk_errors, exit_on_user_error
from qd.datasets.folders import COURSE_SIZES
from qd.datasets.real import write_real_sample
from qd.datasets.synth import write_synthetic

SYNTHETIC_DIR, REAL_SAMPLE_DIR, COURSE_DIR = Path("data/synthetic"), Path("data/real_sample"), Path("datasets")
BUILDERS = {"synthetic": write_synthetic, "real_sample": write_real_sample}


def ensure_data(data_cfg: dict) -> None:
    """Build the configured data set on first use (`prepare`: none, synthetic or real_sample)."""
    data_dir, prepare = Path(data_cfg["dir"]), data_cfg.get("prepare", "none")
    if prepare != "none" and prepare not in BUILDERS:
        raise QDError(f"data.prepare: got {prepare!r}; expected none, synthetic or real_sample")
    if not to_build(data_cfg):
        return
    print(f"preparing the {prepare} data set in {data_dir} (first use)", file=sys.stderr)
    BUILDERS[prepare](data_dir)


def to_build(data_cfg: dict) -> bool:
    """Whether the configured data set is still to be built (`prepare` names a builder, and a file is missing)."""
    data_dir = Path(data_cfg["dir"])
    missing = not all((data_dir / n).exists() for names in FILES.values() for n in names if n)
    return data_cfg.get("prepare", "none") != "none" and missing


def check_course_data(data_dir: Path, splits: tuple[str, ...], instead: str) -> None:
    """The course's own folder, datasets/, without the course's files: one line naming `instead`, the user's command
    on the real drawings qd carries. (Other folders are checked where they are read.)"""
    missing = [name for split in splits for name in FILES[split] if name and not (data_dir / name).exists()]
    if data_dir == COURSE_DIR and missing:
        raise QDError(f"{data_dir}: the course's data files are not here ({', '.join(missing)}); to use the 2,400 real "
                      f"drawings qd carries instead, run: {instead}")  # fmt: skip


def _synth(args: argparse.Namespace) -> None:
    print(write_synthetic(args.out, seed=args.seed, sizes=tuple(args.sizes)))


def _fetch(args: argparse.Namespace) -> None:
    from qd.datasets.fetch import DEFAULT_SOURCE, build  # here: it needs tqdm, the rest does not

    print(build(args.out, source=args.source or DEFAULT_SOURCE, seed=args.seed, sizes=tuple(args.sizes)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m qd data",
        description="synth: the embedded synthetic set; fetch: course-shaped splits of Google's QuickDraw bitmaps",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, run, out_default in (("synth", _synth, SYNTHETIC_DIR), ("fetch", _fetch, None)):
        p = sub.add_parser(name)
        p.add_argument("--out", type=Path, default=out_default, required=out_default is None)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--sizes", type=int, nargs=3, default=list(COURSE_SIZES), metavar=("TRAIN", "DEV", "TEST"))
        p.set_defaults(run=run)
    sub.choices["fetch"].add_argument("--source", help="base URL or folder of <class>.npy files")
    args = parser.parse_args(argv)
    with exit_on_user_error(), disk_errors(args.out, "nothing written"):
        args.run(args)
