"""schemas/README.md is part of the contract: its examples must validate and its PCI table must be true."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import schemas
from pcigate.devstack.testcards import luhn_valid
from schemas import EVENT_MODELS, EVENT_TYPES, parse_event, pci_requirements, validate

PACKAGE = Path(schemas.__file__).parent
README = (PACKAGE / "README.md").read_text(encoding="utf-8")


def _json_blocks(markdown: str) -> list[Any]:
    return [json.loads(block) for block in re.findall(r"^```json\n(.*?)^```$", markdown, re.M | re.S)]


EXAMPLES = _json_blocks(README)


def test_readme_has_one_example_per_type() -> None:
    assert sorted(example["type"] for example in EXAMPLES) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("example", EXAMPLES, ids=[example["type"] for example in EXAMPLES])
def test_readme_example_validates_with_files_and_models(example: dict[str, Any]) -> None:
    validate(example)
    model = parse_event(example)
    assert type(model) is EVENT_MODELS[example["type"]]
    assert model.model_dump(mode="json") == example
    assert set(pci_requirements(example["type"])) <= set(example["pci"])


def test_readme_mapping_table_matches_pci_requirements() -> None:
    section = README.split("## PCI DSS v4.0.1 mapping", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_.]+)` \| ([^|]+) \|", section, re.M)
    table = {event_type: tuple(req.strip() for req in reqs.split(",")) for event_type, reqs in rows}
    assert table == {event_type: pci_requirements(event_type) for event_type in EVENT_TYPES}


def test_readme_documents_every_envelope_field() -> None:
    section = README.split("## Envelope", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
    assert documented == set(schemas.load_schema("envelope")["properties"])


# 13 to 19 digits, optionally split by single spaces or dashes, not inside a longer digit run.
_CANDIDATE = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")


def test_luhn_check_finds_a_card_number() -> None:
    """The scanner below can fail: it finds a test PAN built at run time, plain and grouped."""
    pan = "4" + "1" * 14
    pan += next(d for d in "0123456789" if luhn_valid(pan + d))
    for text in (f"pan={pan};", " ".join([pan[:4], pan[4:8], pan[8:12], pan[12:]])):
        assert any(luhn_valid(re.sub("[ -]", "", m)) for m in _CANDIDATE.findall(text))


@pytest.mark.parametrize(
    "path",
    sorted(
        [
            *PACKAGE.rglob("*.json"),
            *PACKAGE.rglob("*.py"),
            *PACKAGE.rglob("*.md"),
            *Path(__file__).parent.glob("test_schemas*.py"),
        ]
    ),
    ids=lambda path: path.name,
)
def test_no_card_number_anywhere(path: Path) -> None:
    """No full PAN in the contract's files: masked forms like 411111******1111 only."""
    text = path.read_text(encoding="utf-8")
    found = [m for m in _CANDIDATE.findall(text) if luhn_valid(re.sub("[ -]", "", m))]
    assert not found, f"{path.name}: {len(found)} Luhn-valid digit run(s)"
