"""The ``dfl-train`` console script: one subcommand per training tool (synth, fit, evaluate, ...).

Each tool module exposes ``add_parser(subparsers)``, which registers its subcommand and sets
``func`` on the parsed arguments; this file only assembles them.
"""

from __future__ import annotations

import argparse
import logging
import sys

from dfl_infer.training import composite, evaluate, fit, holdout, pseudolabel
from dfl_infer.training.synth import cli as synth_cli
from dfl_infer.training.synth import clip as synth_clip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dfl-train", description="Train and evaluate DFL models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for tool in (synth_cli, synth_clip, fit, evaluate, pseudolabel, holdout, composite):
        tool.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
        # User mistakes (bad paths, bad values) get one clear line, not a traceback.
        print(f"dfl-train {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
