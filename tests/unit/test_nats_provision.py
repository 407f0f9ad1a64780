"""Which existing stream settings count as weaker than the audit contract requires (pure, no server)."""

from __future__ import annotations

import dataclasses

import pytest
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from pcigate import nats_provision as np

SETTINGS = np.Settings(duplicate_window=120, replicas=1, audit_max_age=400 * np.DAY)


def audit() -> StreamConfig:
    return np.required_streams(SETTINGS)[0]


def test_required_streams_match_design() -> None:
    streams = {s.name: s for s in np.required_streams(SETTINGS)}
    assert set(streams) == {np.AUDIT_STREAM, np.CHECKPOINT_STREAM, np.RECORDING_STREAM}
    a = streams[np.AUDIT_STREAM]
    assert a.subjects == ["pcigate.audit.>"]
    assert a.storage == StorageType.FILE
    assert a.discard == DiscardPolicy.NEW
    assert a.deny_delete and a.deny_purge
    assert a.duplicate_window == 120
    assert streams[np.CHECKPOINT_STREAM].subjects == ["pcigate.checkpoints"]


def test_identical_config_is_not_weaker() -> None:
    assert np.weaknesses(audit(), audit()) == []


def test_stronger_config_is_accepted() -> None:
    stronger = dataclasses.replace(audit(), duplicate_window=600, num_replicas=3, max_age=0)
    assert np.weaknesses(stronger, audit()) == []


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"storage": StorageType.MEMORY}, "storage is memory"),
        ({"deny_delete": False}, "deny_delete"),
        ({"deny_purge": False}, "deny_purge"),
        ({"discard": DiscardPolicy.OLD}, "discard is old"),
        ({"duplicate_window": 30}, "duplicate_window is 30s"),
        ({"allow_rollup_hdrs": True}, "allow_rollup_hdrs"),
        ({"retention": RetentionPolicy.WORK_QUEUE}, "retention is workqueue"),
        ({"subjects": ["pcigate.other.>"]}, "subjects lack pcigate.audit.>"),
        ({"max_age": 30 * np.DAY}, "max_age is 30d"),
        ({"allow_msg_ttl": True}, "allow_msg_ttl"),
    ],
)
def test_each_weakening_is_named(change: dict[str, object], needle: str) -> None:
    problems = np.weaknesses(dataclasses.replace(audit(), **change), audit())  # type: ignore[arg-type]
    assert len(problems) == 1, problems
    assert needle in problems[0]


def test_error_lists_every_problem_and_what_to_do() -> None:
    err = np.ProvisionError("PCIGATE_AUDIT", ["deny_purge is false (required true)", "discard is old"])
    text = str(err)
    assert "PCIGATE_AUDIT" in text and "deny_purge" in text and "discard is old" in text
    assert "nats stream edit PCIGATE_AUDIT" in text


def approvals() -> StreamConfig:
    return np.kv_stream(np.required_kv(SETTINGS), SETTINGS.duplicate_window)


def test_approvals_bucket_layout() -> None:
    kv = approvals()
    assert kv.name == "KV_PCIGATE_APPROVALS"
    assert kv.subjects == ["$KV.PCIGATE_APPROVALS.>"]
    assert kv.max_msgs_per_subject == np.APPROVALS_HISTORY
    assert not kv.allow_msg_ttl and not kv.max_age
    assert np.weaknesses(kv, kv, kv=True) == []


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"max_msgs_per_subject": 1}, "history is 1"),
        ({"max_age": 3600.0}, "ttl is 3600s"),
        ({"allow_msg_ttl": True}, "allow_msg_ttl"),
        ({"storage": StorageType.MEMORY}, "storage is memory"),
    ],
)
def test_weaker_bucket_is_named(change: dict[str, object], needle: str) -> None:
    problems = np.weaknesses(dataclasses.replace(approvals(), **change), approvals(), kv=True)  # type: ignore[arg-type]
    assert len(problems) == 1, problems
    assert needle in problems[0]
