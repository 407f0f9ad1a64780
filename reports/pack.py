"""The machine-readable half of an evidence pack: the files attached inside the PDF/A-3 and the manifest
that names them with their SHA-256. Pure: bytes in, bytes out.

``evidence.json``
    The sampled events: each one's canonical bytes (exactly what the ledger hashed), its ledger index, the
    requirements it is a sample of and its RFC 9162 inclusion path in the pack's checkpoint.
``checkpoints.json``
    The signed checkpoints from the one covering the period's first event to the pack's checkpoint (the one
    covering its last), the consistency proofs between neighbours and from the first straight to the last.
``keys.json``
    The log's public keys (verifier key strings) the generator trusted. They tell an auditor which keys to
    ask the operator for; ``pcigate verify-pack --key`` checks against keys obtained out of band.
``manifest.json``
    The pack's scope and checkpoint, and the name, size and SHA-256 of each file above. The manifest's own
    SHA-256 is printed on the cover, binding the pages a person reads to the files a machine checks.

The files are JSON with sorted keys, two-space indent and a final newline: the same ledger and arguments
give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from evidence.api import CheckpointRecord, ConsistencyProof
from reports.read import Integrity, Period

__all__ = [
    "CHECKPOINTS",
    "EVIDENCE",
    "FORMATS",
    "KEYS",
    "MANIFEST",
    "PackFile",
    "dumps",
    "pack_files",
    "sha256",
]

EVIDENCE: Final = "evidence.json"
CHECKPOINTS: Final = "checkpoints.json"
KEYS: Final = "keys.json"
MANIFEST: Final = "manifest.json"
FORMATS: Final = {
    EVIDENCE: "pcigate-pack-evidence/1",
    CHECKPOINTS: "pcigate-pack-checkpoints/1",
    KEYS: "pcigate-pack-keys/1",
    MANIFEST: "pcigate-pack-manifest/1",
}
DESCRIPTIONS: Final = {
    EVIDENCE: "sampled events: canonical bytes and inclusion proofs",
    CHECKPOINTS: "signed checkpoints over the period and their consistency proofs",
    KEYS: "the log's public keys (verifier key strings)",
    MANIFEST: "the pack's scope and the SHA-256 of every attached file",
}


@dataclass(frozen=True, slots=True)
class PackFile:
    name: str
    data: bytes
    description: str


def dumps(obj: Any) -> bytes:
    """Deterministic JSON: sorted keys, two-space indent, UTF-8, final newline."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _checkpoint(cp: CheckpointRecord) -> dict[str, Any]:
    return {"size": cp.size, "root": cp.root.hex(), "signed_at": utc(cp.created_at), "note": cp.note}


def _link(proof: ConsistencyProof) -> dict[str, Any]:
    return {"old_size": proof.old_size, "new_size": proof.new_size, "path": [h.hex() for h in proof.path]}


def _evidence(origin: str, integrity: Integrity) -> dict[str, Any]:
    return {
        "format": FORMATS[EVIDENCE],
        "log_origin": origin,
        "tree_size": None if integrity.last is None else integrity.last.size,
        "samples": [
            {
                "requirements": list(p.requirements),
                "event_id": p.bundle.event_id,
                "leaf_index": p.bundle.leaf_index,
                "event": p.bundle.event,
                "inclusion_path": [h.hex() for h in p.bundle.inclusion_path],
            }
            for p in integrity.proven
        ],
    }


def _checkpoints(origin: str, integrity: Integrity) -> dict[str, Any]:
    return {
        "format": FORMATS[CHECKPOINTS],
        "log_origin": origin,
        "checkpoints_in_period": integrity.chain_total,
        "chain": [_checkpoint(cp) for cp in integrity.chain],
        "links": [_link(p) for p in integrity.links],
        "first_to_last": None if integrity.consistency is None else _link(integrity.consistency),
    }


def pack_files(
    integrity: Integrity, period: Period, *, origin: str, keys: Sequence[str], generator: str
) -> tuple[list[PackFile], str]:
    """The attachments, manifest last, and the manifest's SHA-256 (for the cover)."""
    files = [
        PackFile(EVIDENCE, dumps(_evidence(origin, integrity)), DESCRIPTIONS[EVIDENCE]),
        PackFile(CHECKPOINTS, dumps(_checkpoints(origin, integrity)), DESCRIPTIONS[CHECKPOINTS]),
        PackFile(KEYS, dumps({"format": FORMATS[KEYS], "keys": sorted(keys)}), DESCRIPTIONS[KEYS]),
    ]
    last = integrity.last
    manifest = {
        "format": FORMATS[MANIFEST],
        "generator": generator,
        "log_origin": origin,
        "period": {
            "from": utc(period.since),
            "to": utc(period.until),
            "connections": sorted(period.connections),
        },
        "ledger_range": {"first_index": integrity.first_index, "last_index": integrity.last_index},
        "checkpoint": None if last is None else {"size": last.size, "root": last.root.hex()},
        "verified_when_generated": integrity.verified,
        "files": [{"name": f.name, "bytes": len(f.data), "sha256": sha256(f.data)} for f in files],
    }
    data = dumps(manifest)
    files.append(PackFile(MANIFEST, data, DESCRIPTIONS[MANIFEST]))
    return files, sha256(data)
