"""The masking hook: card data never leaves the gateway in clear, and what was hidden becomes evidence.

Per connection a :class:`MaskingPolicy` holds the compiled column rules and the lineage analyzer; per
session a :class:`MaskingHook` applies them:

- before a statement runs: track data in its text or parameters blocks it (PCI DSS 3.3.1; ``sad.detected``);
  its lineage is worked out, and a statement whose lineage cannot be determined is refused (fail closed);
- on each result: the RowDescription, the column rules, the catalog and the lineage decide an action per
  column (:class:`~gateway.masking.rows.ResultPlan`); the rows are masked a buffer at a time;
- COPY TO STDOUT data, error and notice fields, notification payloads and function results are masked by
  content (and COPY columns by lineage);
- per statement one ``masking.applied`` (locations and counts, never values) and, where CVV, track data or
  PIN blocks were hidden, one ``sad.detected``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, cast

from gateway.hooks import (
    MASK_ALL,
    MASK_COLUMNS,
    Hook,
    PendingStatement,
    RowHandler,
    SessionInfo,
    StatementView,
    Verdict,
)
from gateway.masking.catalog import CatalogCache
from gateway.masking.copyout import CopyMasker
from gateway.masking.detect import Masked, find_track_data, has_candidate, mask_card_data
from gateway.masking.lineage import ColumnRules, Handle
from gateway.masking.lineage_glue import LineageView, StatementLineage
from gateway.masking.rows import ColumnMask, ResultPlan, Tally
from gateway.masking.values import Action
from gateway.pgwire import messages as m
from gateway.pgwire.messages import FieldDesc
from pcigate.config import ColumnRule, MaskingProfile
from schemas.models import (
    FieldLocation,
    MaskingApplied,
    MaskingAppliedData,
    MaskLocation,
    SadDetected,
    SadDetectedData,
)

__all__ = ["MaskingHook", "MaskingPolicy"]

log = logging.getLogger(__name__)

_STRICTNESS: Final[dict[Action, int]] = {"clear": 0, "bin_last4": 1, "last4": 2, "full": 3, "null": 4}
_MAX_LOCATIONS: Final = 256
SadKind = Literal["cvv", "track1", "track2", "pin_block"]
# Column names of sensitive authentication data in the default rules, and what the evidence calls them.
_SAD_NAMES: Final[dict[str, SadKind]] = {
    "cvv": "cvv",
    "cvc": "cvv",
    "cvv2": "cvv",
    "cid": "cvv",
    "security_code": "cvv",
    "track1": "track1",
    "track2": "track2",
    "track_data": "track2",
    "pin_block": "pin_block",
}
_SAD_PCI: Final[dict[str, str]] = {
    "track1": "3.3.1.1",
    "track2": "3.3.1.1",
    "cvv": "3.3.1.2",
    "pin_block": "3.3.1.3",
}
_MAX_HANDLES: Final = 1024
_MAX_WAITED: Final = 64
_DDL_TAGS: Final = ("CREATE", "ALTER", "DROP", "IMPORT")
_TRACK_BLOCKED: Final = (
    "pcigate: the statement holds card track data (sensitive authentication data), which must never be "
    "stored after authorization (PCI DSS 3.3.1); remove it and run the statement again"
)


def stricter(a: Action, b: Action) -> Action:
    return a if _STRICTNESS[a] >= _STRICTNESS[b] else b


class MaskingPolicy:
    """One connection's masking: its profile's rules, compiled once and shared by its sessions."""

    def __init__(self, profile: MaskingProfile, catalog: CatalogCache | None = None) -> None:
        self.profile = profile
        self.catalog = catalog
        self.lineage = StatementLineage(profile, lambda: catalog.current if catalog is not None else None)
        # the first matching column rule's action for a column name ("clear" when none matches)
        self.column_action = ColumnRules(profile.columns).action
        self._overrides: dict[str, Override] = {}

    def override(self, rule: str, columns: tuple[ColumnRule, ...]) -> Override:
        """A mask rule's columns, compiled once: by name, and through lineage, so an alias or an expression
        of a column the rule names is hidden like the column."""
        found = self._overrides.get(rule)
        if found is None:
            catalog = self.catalog
            lineage = StatementLineage(
                MaskingProfile(columns=columns), lambda: catalog.current if catalog is not None else None
            )
            found = self._overrides[rule] = Override(ColumnRules(columns).action, lineage)
        return found

    def real_name(self, f: FieldDesc) -> str | None:
        """The table column behind a result column, whatever the query renamed it to."""
        current = self.catalog.current if self.catalog is not None else None
        return current.column(f.table_oid, f.column) if current is not None else None

    @property
    def keep_bin(self) -> int:
        return 8 if self.profile.bin8 else 6

    def hooks(self, session: SessionInfo) -> list[Hook]:
        return [MaskingHook(self, session)]


@dataclass(frozen=True, slots=True)
class Override:
    """One mask rule's ``mask.columns``: the action by column name, and the lineage that follows them."""

    by_name: Callable[[str], Action]
    lineage: StatementLineage

    def actions_for(self, text: str, fields: Sequence[FieldDesc]) -> list[Action | None]:
        view = self.lineage.analyze(text)
        if view.lineage.uses is not None:  # FETCH or EXECUTE of something this lineage did not see declared
            return ["full"] * len(fields)
        return view.actions_for(fields)


@dataclass
class _Pending:
    """What one statement's masking hid so far, reported when it completes."""

    tally: Tally = field(default_factory=Tally)
    sad: dict[tuple[SadKind, int | None, str], int] = field(default_factory=dict)  # (kind, ordinal, detector)
    surfaces: set[str] = field(default_factory=set)


class _Rows:
    """The row handler of one result set."""

    __slots__ = ("_plan", "_tally")

    def __init__(self, plan: ResultPlan, tally: Tally) -> None:
        self._plan = plan
        self._tally = tally

    def data_rows(self, buf: bytearray, spans: Sequence[tuple[int, int]]) -> list[bytes | None] | None:
        return self._plan.mask_rows(buf, spans, self._tally)


class MaskingHook(Hook):
    """See the module docstring."""

    def __init__(self, policy: MaskingPolicy, session: SessionInfo) -> None:
        self.policy = policy
        self.session = session
        self._pending: dict[int, _Pending] = {}  # by statement sequence (0: outside any statement)
        self._copy: CopyMasker | None = None
        self._sad_ordinals: dict[int, dict[int, SadKind]] = {}
        self._handles: dict[Handle, LineageView] = {}  # this session's cursors and prepared statements
        self._waited: set[str] = set()  # statements that waited for the catalog and are not judged yet

    # --- statements -----------------------------------------------------------------------------

    def wait_before(self, stmt: PendingStatement) -> Awaitable[None] | None:
        """A statement whose lineage is unknown may name a table created since the catalog was read: it
        waits once for a fresh catalog (shared, rate-limited, bounded) before it is judged."""
        text = stmt.text
        catalog = self.policy.catalog
        if catalog is None or self.policy.profile.unknown_lineage != "block" or text in self._waited:
            return None
        view = self.policy.lineage.analyze(text)
        if view.unknown is None or view.lineage.uses is not None:  # a cursor's lineage is its DECLARE's
            return None
        if len(self._waited) >= _MAX_WAITED:
            self._waited.clear()
        self._waited.add(text)
        return catalog.fresh()

    def statement(self, stmt: StatementView) -> Verdict | None:
        self._waited.discard(stmt.text)
        tracks = _tracks_in(stmt)
        if tracks:
            surface, kinds = tracks
            self._emit_track_kinds(stmt, surface, kinds, "statement_blocked")
            return Verdict("block", "42501", _TRACK_BLOCKED, rule="sad-in-statement", reason="sad_detected")
        lineage = self.policy.lineage.analyze(stmt.text)
        if lineage.lineage.defines is not None:  # DECLARE / PREPARE: remember what FETCH / EXECUTE return
            self._handles[lineage.lineage.defines] = lineage
            if len(self._handles) > _MAX_HANDLES:
                self._handles.pop(next(iter(self._handles)))
        elif lineage.lineage.uses is not None:
            defined = self._handles.get(lineage.lineage.uses)
            if defined is not None:
                lineage = lineage.used_as(defined)
        stmt.notes["lineage"] = lineage
        if lineage.sensitive:
            stmt.chd_access = True
        if lineage.unknown is not None and self.policy.profile.unknown_lineage == "block":
            return Verdict(
                "block",
                "42501",
                "pcigate: which result columns of this statement carry card data cannot be determined "
                f"({lineage.unknown}), so it was not run; select the columns by name",
                rule="masking-lineage-unknown",
            )
        if lineage.derived and self.policy.profile.derived == "block":
            return Verdict(
                "block",
                "42501",
                "pcigate: this statement computes values from card data columns, which this connection "
                "does not allow; select the masked columns themselves instead",
                rule="masking-derived",
            )
        return None

    # --- results --------------------------------------------------------------------------------

    def row_description(self, stmt: StatementView | None, fields: Sequence[FieldDesc]) -> RowHandler | None:
        policy = self.policy
        lineage = _lineage_of(stmt)
        by_lineage = lineage.actions_for(fields) if lineage is not None else [None] * len(fields)
        mask_all = stmt is not None and stmt.notes.get(MASK_ALL) is True
        overrides = [policy.override(rule, columns) for rule, columns in _column_overrides(stmt)]
        by_rules = [o.actions_for(stmt.text, fields) for o in overrides] if stmt is not None else []
        masks: list[ColumnMask] = []
        sad: dict[int, SadKind] = {}
        for i, f in enumerate(fields):
            by_name = policy.column_action(f.name)
            real = policy.real_name(f)
            if real is not None and real != f.name:
                by_name = stricter(by_name, policy.column_action(real))
            derived = by_lineage[i] or "clear"
            action = stricter(by_name, derived)
            detector: Literal["column_policy", "lineage", "custom_rule"] = (
                "column_policy" if _STRICTNESS[by_name] >= _STRICTNESS[derived] else "lineage"
            )
            if mask_all and _STRICTNESS[action] < _STRICTNESS["full"]:
                action, detector = "full", "custom_rule"  # a policy rule with action: mask
            for override, by_rule in zip(overrides, by_rules, strict=True):  # a mask rule's columns
                named = override.by_name
                ruled = named(f.name) if real is None else stricter(named(f.name), named(real))
                ruled = stricter(ruled, by_rule[i] or "clear")
                if _STRICTNESS[ruled] > _STRICTNESS[action]:  # only ever stricter than the profile
                    action, detector = ruled, "custom_rule"
            if action == "clear":
                continue
            masks.append(ColumnMask(i, action, detector))
            kind = (
                _SAD_NAMES.get(f.name.casefold())
                or _SAD_NAMES.get((real or "").casefold())
                or (lineage.sad_kind(i) if lineage is not None else None)
            )
            if kind is not None and action == "null":
                sad[i] = kind
        plan = ResultPlan(
            fields, masks, content=policy.profile.detect_content, keep_bin=policy.keep_bin, sad=frozenset(sad)
        )
        if not plan.active:
            return None
        key = stmt.sequence if stmt is not None else 0
        pending = self._pending.setdefault(key, _Pending())
        pending.surfaces.add("result_set")
        self._sad_ordinals[key] = sad
        return _Rows(plan, pending.tally)

    def command_complete(self, stmt: StatementView, tag: str, rows: int | None) -> None:
        self._report(stmt)
        if self.policy.catalog is not None and tag.startswith(_DDL_TAGS):
            self.policy.catalog.changed()

    def error(self, stmt: StatementView | None, fields: dict[str, str]) -> None:
        self._copy = None
        if stmt is not None:
            self._report(stmt)

    def close(self, session: SessionInfo, reason: str) -> None:
        for key in list(self._pending):
            self._flush(key, None)

    # --- COPY and server messages ---------------------------------------------------------------

    def server_message(self, stmt: StatementView | None, mtype: int, body: bytes) -> bytes | None:
        if mtype in (m.COPY_OUT_RESPONSE, m.COPY_BOTH_RESPONSE):
            overall, formats = m.parse_copy_response(body)
            lineage = _lineage_of(stmt)
            actions = lineage.copy_actions(len(formats)) if lineage else None
            if stmt is not None and (stmt.notes.get(MASK_ALL) is True or _column_overrides(stmt)):
                # a policy rule with action: mask (COPY data names no columns: its columns hide them all)
                actions = ["full"] * len(formats)
            self._copy = CopyMasker(
                binary=overall == 1,
                csv=lineage.copy_csv if lineage else None,
                actions=actions,
                content=self.policy.profile.detect_content,
                keep_bin=self.policy.keep_bin,
                delimiter=lineage.copy_delimiter if lineage else None,
            )
            return None
        if mtype == m.COPY_DONE:
            self._copy = None
            return None
        if mtype in (m.ERROR_RESPONSE, m.NOTICE_RESPONSE):
            return self._mask_fields(stmt, mtype, body)
        if mtype == m.NOTIFICATION_RESPONSE:
            return self._mask_blob(stmt, body, "notice")
        if mtype == m.FUNCTION_CALL_RESPONSE:
            if stmt is not None and (stmt.notes.get(MASK_ALL) is True or _column_overrides(stmt)):
                return self._hide_result(stmt, body)
            return self._mask_blob(stmt, body, "result_set")
        return None

    def copy_out(
        self, stmt: StatementView | None, buf: bytearray, spans: Sequence[tuple[int, int]]
    ) -> list[bytes | None] | None:
        if self._copy is None:
            return None
        pending = self._pending.setdefault(stmt.sequence if stmt else 0, _Pending())
        pending.surfaces.add("copy_data")
        return self._copy.mask_run(buf, spans, pending.tally)

    def _mask_fields(self, stmt: StatementView | None, mtype: int, body: bytes) -> bytes | None:
        # Messages, details and hints quote values: "Key (pan)=(...) already exists", "Failing row ...".
        if not has_candidate(body):
            return None
        masked = mask_card_data(body, self.policy.keep_bin)
        if masked.data == body:
            return None
        surface = "error_message" if mtype == m.ERROR_RESPONSE else "notice"
        self._report_now(stmt, surface, masked)
        return masked.data

    def _hide_result(self, stmt: StatementView, body: bytes) -> bytes | None:
        """A fast-path call a mask rule matched (``loread`` of a large object): its result has no columns
        to pick from, so all of it is hidden, keeping its length."""
        length = int.from_bytes(body[:4], "big", signed=True)
        if length <= 0:
            return None
        tally = Tally()
        tally.add(None, "custom_rule", "redact")
        self._emit_applied(stmt, "result_set", tally)
        return body[:4] + b"*" * length

    def _mask_blob(self, stmt: StatementView | None, body: bytes, surface: str) -> bytes | None:
        if not has_candidate(body):
            return None
        masked = mask_card_data(body, self.policy.keep_bin)  # same length: framing inside stays valid
        if masked.data == body:
            return None
        self._report_now(stmt, surface, masked)
        return masked.data

    # --- evidence -------------------------------------------------------------------------------

    def _report_now(self, stmt: StatementView | None, surface: str, masked: Masked) -> None:
        tally = Tally()
        if masked.pans:
            tally.add(None, "pan_luhn", "first6_last4", masked.pans)
        if masked.tracks:
            tally.add(None, "track_format", "redact", masked.tracks)
            self._emit_tracks(stmt, surface, masked.tracks, masked.track1)
        self._emit_applied(stmt, surface, tally)

    def _report(self, stmt: StatementView) -> None:
        self._flush(stmt.sequence, stmt)

    def _flush(self, key: int, stmt: StatementView | None) -> None:
        pending = self._pending.pop(key, None)
        sad = self._sad_ordinals.pop(key, {})
        if pending is None or not pending.tally.locations:
            return
        surface = "copy_data" if "copy_data" in pending.surfaces else "result_set"
        self._emit_applied(stmt, surface, pending.tally)
        for ordinal, count in pending.tally.sad_columns.items():
            kind = sad.get(ordinal, "cvv")
            self._emit_sad(
                stmt,
                kind,
                surface=surface,
                ordinal=ordinal,
                detector="column_policy",
                action="redacted",
                count=count,
            )
        if pending.tally.tracks:
            self._emit_tracks(stmt, surface, pending.tally.tracks, pending.tally.track1)

    def _emit_applied(self, stmt: StatementView | None, surface: str, tally: Tally) -> None:
        items = sorted(tally.locations.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or 0))
        locations = tuple(
            MaskLocation(
                table=None,
                column=None,
                ordinal=ordinal,
                detector=detector,
                method=method,
                count=count,
            )
            for (ordinal, detector, method), count in items[:_MAX_LOCATIONS]
        )
        if stmt is not None:
            stmt.masked_values += tally.total
        self.session.emit(
            MaskingApplied,
            MaskingAppliedData(
                command_event_id=stmt.event_id if stmt else None,
                statement_fingerprint=stmt.info.fingerprint if stmt else None,
                surface=surface,
                locations=locations,
                locations_truncated=len(items) > _MAX_LOCATIONS,
                total_values=tally.total,
            ),
            rule=None,
        )

    def _emit_tracks(self, stmt: StatementView | None, surface: str, count: int, track1: int) -> None:
        self._emit_track_kinds(stmt, surface, {"track1": track1, "track2": count - track1}, "redacted")

    def _emit_track_kinds(
        self,
        stmt: StatementView | None,
        surface: str,
        kinds: dict[SadKind, int],
        action: Literal["redacted", "statement_blocked"],
    ) -> None:
        for kind, n in kinds.items():
            if n:
                self._emit_sad(
                    stmt, kind, surface=surface, ordinal=None, detector="track_format", action=action, count=n
                )

    def _emit_sad(
        self,
        stmt: StatementView | None,
        kind: SadKind,
        *,
        surface: str,
        ordinal: int | None,
        detector: str,
        action: str,
        count: int,
    ) -> None:
        self.session.emit(
            SadDetected,
            SadDetectedData(
                kind=kind,
                surface=surface,
                location=None if ordinal is None else FieldLocation(table=None, column=None, ordinal=ordinal),
                detector=detector,
                action=action,
                count=count,
                command_event_id=stmt.event_id if stmt else None,
                statement_fingerprint=stmt.info.fingerprint if stmt else None,
            ),
            rule=None,
            pci=(_SAD_PCI[kind],),
        )


def _column_overrides(stmt: StatementView | None) -> tuple[tuple[str, tuple[ColumnRule, ...]], ...]:
    """The policy's mask rules with columns for this statement (MASK_COLUMNS): (rule, columns) pairs."""
    if stmt is None:
        return ()
    return cast("tuple[tuple[str, tuple[ColumnRule, ...]], ...]", stmt.notes.get(MASK_COLUMNS, ()))


def _lineage_of(stmt: StatementView | None) -> LineageView | None:
    if stmt is None:
        return None
    found = stmt.notes.get("lineage")
    return found if isinstance(found, LineageView) else None


def _tracks_in(stmt: StatementView) -> tuple[str, dict[SadKind, int]] | None:
    """Track data in the statement's text or parameters: where, and how many of each kind."""
    candidates: list[tuple[str, bytes]] = [("statement_text", stmt.text.encode("utf-8", "replace"))]
    candidates += [("parameters", p) for p in stmt.params or () if p is not None]
    for surface, data in candidates:
        if not has_candidate(data):
            continue
        spans = find_track_data(data)
        if spans:
            kinds: dict[SadKind, int] = {}
            for span in spans:
                kind: SadKind = "track1" if span.kind == "track1" else "track2"
                kinds[kind] = kinds.get(kind, 0) + 1
            return surface, kinds
    return None


HookBuilder = Callable[[SessionInfo], list[Hook]]
