"""`sora-hf` command line. Each subcommand lives beside the code it drives and
registers itself through an `add_parser(subparsers)` function that sets `func`."""

from __future__ import annotations

import argparse
import importlib
import sys

# modules that contribute subcommands, in the order `sora-hf --help` lists them
COMMAND_MODULES = [
    "sora_hf.shapeworld.cli",
    "sora_hf.generate",
    "sora_hf.training.train_vae",
    "sora_hf.training.train_dit",
    "sora_hf.app",
    "sora_hf.hub",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sora-hf", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as error:  # bad input: one clear line, no traceback
        print(f"sora-hf {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
