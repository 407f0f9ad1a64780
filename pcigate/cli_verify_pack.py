"""`pcigate verify-pack PACK.pdf [--key VKEY ...] [--json]`: check an evidence pack offline.

Reads the PDF's attached files and its cover text (pypdf) and hands them to ``reports.verify_pack``; no
network, no database, no configuration. Exit codes: 0 every check held; 1 a check failed, or the file is not
a readable PDF; 2 bad usage (no such file, a malformed ``--key``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pcigate.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE


class PackReadError(Exception):
    """The file is not a PDF whose attachments and first page can be read."""


def read_pack(path: Path) -> tuple[dict[str, bytes], str]:
    """The pack's attachments by name, and its first page's text."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path, strict=True)
        attached = reader.attachments
        files: dict[str, bytes] = {}
        for name, contents in attached.items():
            if len(contents) != 1:
                raise PackReadError(f"{len(contents)} attachments are named {name!r}")
            files[name] = contents[0]
        cover = reader.pages[0].extract_text() if len(reader.pages) else ""
    except PackReadError:
        raise
    except PyPdfError as exc:
        raise PackReadError(f"not a readable PDF: {exc}") from None
    except Exception as exc:  # a hostile file may break the parser anywhere: refuse it, no traceback
        raise PackReadError(f"not a readable PDF: {type(exc).__name__}: {exc}") from None
    return files, cover


def cmd_verify_pack(args: argparse.Namespace) -> int:
    from evidence.checkpoint import NoteError
    from reports.verify_pack import check_pack

    path = Path(args.pack)
    if not path.is_file():
        print(f"pcigate: no such file: {path}", file=sys.stderr)
        return EXIT_USAGE
    try:
        files, cover = read_pack(path)
    except (PackReadError, OSError) as exc:
        print(f"FAILED: {path}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        result = check_pack(files, cover, args.key)
    except NoteError as exc:
        print(f"pcigate: bad --key: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps({
            "ok": result.ok,
            "keys_from_pack": result.keys_from_pack,
            "findings": [{"check": f.check, "ok": f.ok, "detail": f.detail} for f in result.findings],
        }))  # fmt: skip
    else:
        for finding in result.findings:
            print(f"{'ok' if finding.ok else 'FAILED'} {finding.check}: {finding.detail}")
        print("verified" if result.ok else "NOT VERIFIED")
    if result.keys_from_pack:
        print(
            "warning: no --key given, so the pack was checked against its own keys.json: this shows the "
            "pack is consistent, not that the log's owner signed it; get the keys from the operator "
            "(pcigate ledger keys) and pass them with --key",
            file=sys.stderr,
        )
    return EXIT_OK if result.ok else EXIT_FAILURE


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], config_opt: argparse.ArgumentParser
) -> None:
    """Add this module's subcommand to the top-level parser (it takes no configuration)."""
    del config_opt
    p = sub.add_parser(
        "verify-pack",
        help="check an evidence pack offline: attachments, signatures, consistency and inclusion proofs",
    )
    p.add_argument("pack", metavar="PACK.pdf", help="the evidence pack written by pcigate report")
    p.add_argument(
        "--key",
        action="append",
        metavar="VKEY",
        help="a trusted public key of the log (pcigate ledger keys), repeatable; without it the pack's own "
        "keys.json is used and the result says so",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_verify_pack)
