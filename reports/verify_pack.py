"""Offline check of an evidence pack's attached files (``pcigate verify-pack``). Pure: it takes the
attachments' bytes and the cover page's text; ``pcigate.cli_verify_pack`` reads them out of the PDF.

What holds when :func:`check_pack` is ok:

1. The cover prints the SHA-256 of the attached ``manifest.json``, and the manifest names every other
   attachment with its size and SHA-256, all matching: nothing was added, removed or changed in transport.
2. Every checkpoint of the chain is a C2SP signed note of the pack's log, signed by a trusted key, its sizes
   increasing; each one extends the one before (RFC 9162 consistency proofs), and the last extends the
   first; the last is the manifest's checkpoint and covers the period's last ledger index.
3. Every sampled event's canonical bytes hash (RFC 9162 leaf) into the last checkpoint's root through its
   inclusion path; it lies in the period (time, ledger range, connections) and evidences the requirements
   it is listed under, by the ledger's own mapping (``evidence.api.pci_requirements``) recomputed here.

Only signatures protect against someone who rewrites the whole pack; so trust comes from ``--key``, keys
obtained from the operator out of band. Without them the pack's own ``keys.json`` is used and the result
says so: that shows the pack is internally consistent, not that the log's owner signed it.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from evidence.api import (
    Checkpoint,
    NoteError,
    NoteVerifier,
    ProofBundle,
    ProofError,
    check_bundle,
    pci_requirements,
    verify_consistency,
)
from reports.pack import CHECKPOINTS, EVIDENCE, FORMATS, KEYS, MANIFEST, sha256

__all__ = ["Finding", "PackCheck", "check_pack", "cover_digest"]

_COVER_DIGEST = re.compile(r"ManifestSHA-256:?([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class Finding:
    check: str  # manifest | files | keys | checkpoints | evidence
    ok: bool
    detail: str


@dataclass(slots=True)
class PackCheck:
    findings: list[Finding] = field(default_factory=list)
    keys_from_pack: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.findings) and all(f.ok for f in self.findings)

    def passed(self, check: str, detail: str) -> None:
        self.findings.append(Finding(check, True, detail))

    def failed(self, check: str, detail: str) -> None:
        self.findings.append(Finding(check, False, detail))


class _RefusedError(Exception):
    """One check cannot go on; its message says why."""


def cover_digest(cover_text: str) -> str | None:
    """The manifest SHA-256 the cover prints (text extraction may break it over lines)."""
    found = _COVER_DIGEST.search(re.sub(r"\s+", "", cover_text))
    return found.group(1) if found else None


def _json(files: Mapping[str, bytes], name: str) -> dict[str, Any]:
    try:
        obj = json.loads(files[name])
    except KeyError:
        raise _RefusedError(f"{name} is not attached") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise _RefusedError(f"{name} is not UTF-8 JSON") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMATS[name]:
        raise _RefusedError(f"{name} is not a {FORMATS[name]} object")
    return obj


def _hashes(path: Any, what: str) -> tuple[bytes, ...]:
    if not isinstance(path, list) or not all(
        isinstance(h, str) and re.fullmatch("[0-9a-f]{64}", h) for h in path
    ):
        raise _RefusedError(f"{what}: a path is a list of 64-hex-digit hashes")
    return tuple(bytes.fromhex(h) for h in path)


def _int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise _RefusedError(f"{what} is not a non-negative integer")
    return value


def check_pack(
    files: Mapping[str, bytes], cover_text: str, trusted_keys: Sequence[str] | None = None
) -> PackCheck:
    """Check a pack's attachments; ``trusted_keys`` None: use the pack's own ``keys.json`` (and say so).
    A malformed ``trusted_keys`` entry raises NoteError: the caller's mistake, not the pack's."""
    given = [NoteVerifier.parse(k) for k in trusted_keys] if trusted_keys else None
    result = PackCheck()
    try:
        manifest = _manifest(files, cover_text, result)
    except _RefusedError as exc:
        result.failed("manifest", str(exc))
        return result
    _files(files, manifest, result)
    try:
        verifiers = given if given is not None else _pack_keys(files, result)
    except _RefusedError as exc:
        result.failed("keys", str(exc))
        return result
    try:
        last_note = _checkpoints(files, manifest, verifiers, result)
    except _RefusedError as exc:
        result.failed("checkpoints", str(exc))
        return result
    try:
        _evidence(files, manifest, last_note, verifiers, result)
    except _RefusedError as exc:
        result.failed("evidence", str(exc))
    return result


def _manifest(files: Mapping[str, bytes], cover_text: str, result: PackCheck) -> dict[str, Any]:
    if MANIFEST not in files:
        raise _RefusedError(
            f"{MANIFEST} is not attached: this is not a pcigate evidence pack, or it was stripped"
        )
    printed = cover_digest(cover_text)
    actual = sha256(files[MANIFEST])
    if printed is None:
        raise _RefusedError("the cover page does not print the manifest's SHA-256")
    if printed != actual:
        raise _RefusedError(
            f"the attached manifest is not the one the cover names (cover {printed[:16]}…, "
            f"attached {actual[:16]}…): the manifest was changed or replaced"
        )
    manifest = _json(files, MANIFEST)
    result.passed("manifest", f"SHA-256 {actual} matches the cover")
    return manifest


def _files(files: Mapping[str, bytes], manifest: Mapping[str, Any], result: PackCheck) -> None:
    listed = manifest.get("files")
    if not isinstance(listed, list) or not all(isinstance(f, dict) for f in listed):
        result.failed("files", "the manifest's files is not a list of objects")
        return
    names = [f.get("name") for f in listed]
    wanted = {EVIDENCE, CHECKPOINTS, KEYS}
    if sorted(map(str, names)) != sorted(wanted):
        result.failed("files", f"the manifest lists {names}, a pack lists exactly {sorted(wanted)}")
    for extra in sorted(set(files) - wanted - {MANIFEST}):
        result.failed("files", f"{extra} is attached but not in the manifest")
    bad = 0
    for entry in listed:
        name = str(entry.get("name"))
        data = files.get(name)
        if data is None:
            result.failed("files", f"{name} is in the manifest but not attached")
            bad += 1
        elif entry.get("sha256") != sha256(data) or entry.get("bytes") != len(data):
            result.failed(
                "files",
                f"{name} was changed: its SHA-256 is {sha256(data)}, the manifest says {entry.get('sha256')}",
            )
            bad += 1
    if not bad:
        result.passed("files", f"{len(listed)} attachments match the manifest's SHA-256")


def _pack_keys(files: Mapping[str, bytes], result: PackCheck) -> list[NoteVerifier]:
    keys = _json(files, KEYS).get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise _RefusedError(f"{KEYS} holds no key")
    try:
        verifiers = [NoteVerifier.parse(k) for k in keys]
    except NoteError as exc:
        raise _RefusedError(f"{KEYS}: {exc}") from None
    result.keys_from_pack = True
    result.passed(
        "keys", "the pack's own keys.json (no --key given): " + ", ".join(v.vkey for v in verifiers)
    )
    return verifiers


def _checkpoints(
    files: Mapping[str, bytes], manifest: Mapping[str, Any], verifiers: list[NoteVerifier], result: PackCheck
) -> str:
    """Check the chain; return the last checkpoint's note (the one the inclusion proofs are against)."""
    doc = _json(files, CHECKPOINTS)
    origin = manifest.get("log_origin")
    if doc.get("log_origin") != origin:
        raise _RefusedError(
            f"{CHECKPOINTS} is for log {doc.get('log_origin')!r}, the manifest for {origin!r}"
        )
    chain = doc.get("chain")
    if not isinstance(chain, list) or not chain:
        raise _RefusedError("no checkpoint in the chain")
    opened: list[Checkpoint] = []
    for i, item in enumerate(chain):
        if not isinstance(item, dict) or not isinstance(item.get("note"), str):
            raise _RefusedError(f"chain[{i}] carries no signed note")
        try:
            cp = Checkpoint.open(item["note"], verifiers, origin=str(origin))
        except NoteError as exc:
            raise _RefusedError(
                f"the checkpoint chain[{i}] (size {item.get('size')}) does not verify: {exc}"
            ) from None
        if cp.size != item.get("size") or cp.root.hex() != item.get("root"):
            raise _RefusedError(f"chain[{i}]: its size or root field is not what its signed note says")
        if opened and cp.size <= opened[-1].size:
            raise _RefusedError(f"chain[{i}]: sizes must increase ({opened[-1].size} then {cp.size})")
        opened.append(cp)
    links = doc.get("links")
    if not isinstance(links, list) or len(links) != len(opened) - 1:
        raise _RefusedError(f"{len(opened)} checkpoints need {len(opened) - 1} consistency proofs")
    for (old, new), link in zip(itertools.pairwise(opened), links, strict=True):
        _consistent(old, new, link)
    first, last = opened[0], opened[-1]
    if first.size < last.size:
        _consistent(first, last, doc.get("first_to_last"))
    pack_cp = manifest.get("checkpoint")
    if (
        not isinstance(pack_cp, dict)
        or pack_cp.get("size") != last.size
        or pack_cp.get("root") != last.root.hex()
    ):
        raise _RefusedError("the last checkpoint of the chain is not the manifest's checkpoint")
    span = manifest.get("ledger_range") or {}
    last_index, first_index = span.get("last_index"), span.get("first_index")
    if last_index is not None and _int(last_index, "ledger_range.last_index") >= last.size:
        raise _RefusedError(
            f"the checkpoint of size {last.size} does not cover the period's last index {last_index}"
        )
    if first_index is not None and _int(first_index, "ledger_range.first_index") >= first.size:
        raise _RefusedError(
            f"the first checkpoint (size {first.size}) does not cover the period's first index"
        )
    signers = sorted({f"{v.name}+{v.key_id:08x}" for v in verifiers})
    result.passed(
        "checkpoints",
        (
            f"{len(opened)} signed checkpoints (sizes {first.size:,} to {last.size:,}), each consistent with "
            "the one before and the last with the first"
            if len(opened) > 1
            else f"1 signed checkpoint (size {last.size:,})"
        )
        + f"; trusted keys {', '.join(signers)}",
    )
    return str(chain[-1]["note"])


def _consistent(old: Checkpoint, new: Checkpoint, link: Any) -> None:
    if not isinstance(link, dict) or link.get("old_size") != old.size or link.get("new_size") != new.size:
        raise _RefusedError(f"no consistency proof from size {old.size} to {new.size}")
    try:
        verify_consistency(old.size, new.size, _hashes(link.get("path"), "consistency"), old.root, new.root)
    except ProofError as exc:
        raise _RefusedError(
            f"the checkpoint of size {new.size} does not extend size {old.size}: {exc}"
        ) from None


def _evidence(
    files: Mapping[str, bytes],
    manifest: Mapping[str, Any],
    note: str,
    verifiers: list[NoteVerifier],
    result: PackCheck,
) -> None:
    doc = _json(files, EVIDENCE)
    origin = str(manifest.get("log_origin"))
    checkpoint = manifest.get("checkpoint") or {}
    if doc.get("log_origin") != origin or doc.get("tree_size") != checkpoint.get("size"):
        raise _RefusedError(f"{EVIDENCE} is not against the manifest's log and checkpoint")
    samples = doc.get("samples")
    if not isinstance(samples, list):
        raise _RefusedError("samples is not a list")
    scope = _Scope.of(manifest)
    for i, sample in enumerate(samples):
        if not isinstance(sample, dict):
            raise _RefusedError(f"samples[{i}] is not an object")
        where = f"samples[{i}] (entry {sample.get('leaf_index')})"
        bundle: dict[str, Any] = {
            "format": "pcigate-inclusion-proof/1",
            "log_origin": origin,
            "event_id": sample.get("event_id"),
            "event": sample.get("event"),
            "leaf_index": sample.get("leaf_index"),
            "tree_size": checkpoint.get("size"),
            "inclusion_path": sample.get("inclusion_path"),
            "checkpoint": note,
            "verifier_keys": [],
        }
        checked = check_bundle(bundle, verifiers)
        if not checked.ok:
            raise _RefusedError(f"{where}: {checked.problem}")
        scope.check(ProofBundle.from_dict(bundle), sample.get("requirements"), where)
    result.passed(
        "evidence",
        f"{len(samples)} sampled events included in the checkpoint of size {checkpoint.get('size'):,}",
    )


@dataclass(frozen=True, slots=True)
class _Scope:
    """The period a pack covers, as its manifest states it."""

    since: datetime
    until: datetime
    connections: frozenset[str]
    first_index: int | None
    last_index: int | None

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> _Scope:
        period = manifest.get("period") or {}
        span = manifest.get("ledger_range") or {}
        try:
            since = datetime.fromisoformat(str(period.get("from")))
            until = datetime.fromisoformat(str(period.get("to")))
        except ValueError:
            raise _RefusedError("the manifest's period is not two ISO 8601 times") from None
        first, last = span.get("first_index"), span.get("last_index")
        return cls(
            since,
            until,
            frozenset(map(str, period.get("connections") or ())),
            None if first is None else _int(first, "ledger_range.first_index"),
            None if last is None else _int(last, "ledger_range.last_index"),
        )

    def check(self, bundle: ProofBundle, requirements: Any, where: str) -> None:
        """A proven sample lies in the period and evidences the requirements it is listed under."""
        event = json.loads(bundle.event)
        try:
            time = datetime.fromisoformat(str(event.get("time")))
        except ValueError:
            raise _RefusedError(f"{where}: the event has no ISO 8601 time") from None
        if not self.since <= time < self.until:
            raise _RefusedError(f"{where}: its time {event.get('time')} is outside the period")
        if self.first_index is None or self.last_index is None:
            raise _RefusedError(f"{where}: the manifest says the period has no events")
        if not self.first_index <= bundle.leaf_index <= self.last_index:
            raise _RefusedError(f"{where}: outside the period's ledger range")
        evidenced = pci_requirements(event)  # the ledger's own mapping (docs/ledger.md), recomputed here
        if not isinstance(requirements, list) or not requirements or not set(requirements) <= set(evidenced):
            raise _RefusedError(
                f"{where}: listed under {requirements}, but the event evidences {list(evidenced)}"
            )
        target = event.get("target")
        connection = target.get("connection") if isinstance(target, dict) else None
        if self.connections and connection is not None and connection not in self.connections:
            raise _RefusedError(f"{where}: connection {connection!r} is outside the pack's scope")
