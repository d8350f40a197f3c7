"""The ``budgetax`` command."""

from __future__ import annotations

import argparse
import sys

import budgetax


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="budgetax",
        description="Budget-aware training for JAX/Optax: which schedule wins at my budget?",
    )
    parser.add_argument("--version", action="version", version=f"budgetax {budgetax.__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
