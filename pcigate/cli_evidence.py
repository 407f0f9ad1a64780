"""The `pcigate evidence` command(s): argument parsing and exit codes; the work lives in ``evidence``."""

from __future__ import annotations

import argparse


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], config_opt: argparse.ArgumentParser
) -> None:
    """Add this module's subcommands to the top-level parser."""
