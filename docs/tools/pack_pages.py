"""Render chosen pages of an evidence pack as PNG for the docs: ``docs/images/pack-<name>.png``.

    .venv/bin/python docs/tools/pack_pages.py pack.pdf [--out docs/images] [--dpi 70]

Pages are found by the section their running header names (the cover is page 1), so the pictures follow
the template. Needs poppler's ``pdftoppm`` (Debian: poppler-utils); only used to refresh the pictures.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pypdf import PdfReader

PAGES = {"cover": None, "summary": "Summary", "matrix": "Control matrix", "integrity": "Integrity"}


def page_of(reader: PdfReader, section: str | None) -> int:
    """1-based number of the first page whose header line names ``section`` (None: the cover)."""
    if section is None:
        return 1
    for number, page in enumerate(reader.pages, start=1):
        lines = (page.extract_text() or "").splitlines()
        if lines and lines[0].startswith(section):
            return number
    raise SystemExit(f"no page headed {section!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pack", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--dpi", type=int, default=70)
    args = parser.parse_args()
    if shutil.which("pdftoppm") is None:
        print("pdftoppm is missing (Debian: apt install poppler-utils)", file=sys.stderr)
        return 2
    reader = PdfReader(args.pack)
    with tempfile.TemporaryDirectory() as tmp:
        for name, section in PAGES.items():
            number = page_of(reader, section)
            stem = Path(tmp) / name
            subprocess.run(
                ["pdftoppm", "-r", str(args.dpi), "-png", "-singlefile", "-f", str(number), "-l", str(number),
                 str(args.pack), str(stem)],
                check=True,
            )  # fmt: skip
            target = args.out / f"pack-{name}.png"
            shutil.move(f"{stem}.png", target)
            print(f"{target}: page {number}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
