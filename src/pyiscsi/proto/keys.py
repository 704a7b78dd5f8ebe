"""Text key=value codec and the negotiation key table, RFC 7143 §6.1-6.2 and §13 (+ RFC 7144).

The table :data:`KEYS` is data: one :class:`KeySpec` per key says its kind, result function,
use (LO/IO/ALL/FFPO), scope, default and range. :class:`Negotiation` is one side's view of a
negotiation sequence; the same object answers the peer's offers (responder role), checks the
peer's answers to our own offers (originator role) and records declarations, so the target and
the initiator share it. :class:`SessionParams` is the operational result.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import RemoteProtocolError
from .wire import LoginStage, LoginStatus

# ---------------------------------------------------------------- errors


class NegotiationError(RemoteProtocolError):
    """The peer broke the negotiation rules (RFC 7143 §6.2); during login this ends the login
    with ``status`` (a Login reject, initiator error 0x0200 unless said otherwise)."""

    def __init__(self, message: str, status: LoginStatus = LoginStatus.INITIATOR_ERROR) -> None:
        super().__init__(message)
        self.status = status


class TextFormatError(NegotiationError):
    """Malformed key=value text (RFC 7143 §6.1): no ``=``, bad key name, non-UTF-8, too long,
    or a key repeated within one negotiation."""


# ---------------------------------------------------------------- text codec

KEY_NAME_MAX = 63
"""Key names are at most 63 bytes (RFC 7143 §6.1)."""
VALUE_MAX = 255
"""Values are at most 255 bytes unless the key allows more (RFC 7143 §6.1)."""
LONG_VALUE_MAX = 8192
LONG_VALUE_KEYS = frozenset({"CHAP_C", "CHAP_R"})
"""Keys carrying large binary values, up to 8192 bytes (RFC 7143 §6.1, §12.1.3)."""
REPEATABLE_KEYS = frozenset({"TargetAddress"})
"""Keys that may appear more than once in one text (RFC 7143 §6.2, §13.8)."""

_KEY_NAME = re.compile(r"[A-Za-z0-9.\-+@_#]+")

REJECT = "Reject"
IRRELEVANT = "Irrelevant"
NOT_UNDERSTOOD = "NotUnderstood"
SPECIAL_ANSWERS = frozenset({REJECT, IRRELEVANT, NOT_UNDERSTOOD})
"""Constant answers of RFC 7143 §6.2: they never carry a value."""


def _value_limit(key: str) -> int:
    return LONG_VALUE_MAX if key in LONG_VALUE_KEYS else VALUE_MAX


def _check_pair(key: str, value: str, error: type[Exception]) -> None:
    if not key:
        raise error("empty key name")
    if len(key.encode()) > KEY_NAME_MAX or not _KEY_NAME.fullmatch(key):
        raise error(f"invalid key name {key[:80]!r}")
    if len(value.encode()) > _value_limit(key):
        raise error(f"value of {key} longer than {_value_limit(key)} bytes")
    if "\0" in value:
        raise error(f"NUL inside the value of {key}")


def parse_text(data: bytes | bytearray | memoryview, *, unique: bool = True
               ) -> list[tuple[str, str]]:
    """Split a text data segment into ``(key, value)`` pairs, RFC 7143 §6.1.

    Pairs are NUL-terminated; the last terminator and trailing padding NULs are optional.
    With ``unique`` a key repeated in the text (other than :data:`REPEATABLE_KEYS`) is an error
    (RFC 7143 §6.2). Raises :class:`TextFormatError`, and nothing else, on bad input.
    """
    raw = bytes(data).rstrip(b"\0")
    if not raw:
        return []
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in raw.split(b"\0"):
        try:
            text = item.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TextFormatError("key=value text is not UTF-8") from exc
        key, sep, value = text.partition("=")
        if not sep:
            raise TextFormatError(f"no '=' in {text[:80]!r}")
        _check_pair(key, value, TextFormatError)
        if unique and key in seen and key not in REPEATABLE_KEYS:
            raise TextFormatError(f"key {key} repeated")
        seen.add(key)
        pairs.append((key, value))
    return pairs


def encode_text(pairs: Iterable[tuple[str, str]]) -> bytes:
    """Encode pairs as ``key=value\\0`` each (RFC 7143 §6.1). Bad pairs raise ValueError."""
    out = bytearray()
    for key, value in pairs:
        _check_pair(key, value, ValueError)
        out += f"{key}={value}".encode() + b"\0"
    return bytes(out)


# ---------------------------------------------------------------- the key table


class Kind(Enum):
    """Value syntax of a key (RFC 7143 §5.1, §6.2)."""

    NUMBER = "number"
    BOOLEAN = "boolean"
    LIST = "list"
    STRING = "string"
    OBSOLETE = "obsolete"


class Result(Enum):
    """Result function of a negotiated key (RFC 7143 §6.2.2, §13 preamble)."""

    MIN = "min"
    MAX = "max"
    OR = "or"
    AND = "and"
    LIST = "list"
    DECLARATIVE = "declarative"


class Use(Enum):
    """When a key may be used (RFC 7143 §13 preamble)."""

    LO = "leading-only"
    IO = "initialize-only"
    ALL = "all"
    FFPO = "full-feature-only"
    SECURITY = "security-stage-only"


class Scope(Enum):
    SESSION = "SW"
    CONNECTION = "CO"


View = Mapping[str, str]
"""Current values of a negotiation (defaults, agreed values, declarations) by key name."""


def _discovery(view: View) -> bool:
    return view.get("SessionType") == "Discovery"


def _first_burst_irrelevant(view: View) -> bool:
    """FirstBurstLength is irrelevant when InitialR2T=Yes and ImmediateData=No (§13.14)."""
    return _discovery(view) or (view.get("InitialR2T") == "Yes"
                                and view.get("ImmediateData") == "No")


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One row of the key table (RFC 7143 §13)."""

    name: str
    kind: Kind
    result: Result
    use: Use
    scope: Scope = Scope.SESSION
    default: str | None = None
    low: int = 0
    high: int = 0
    values: tuple[str, ...] = ()
    any_stage: bool = False
    irrelevant_when: Callable[[View], bool] | None = None
    fixed_answer: str | None = None
    order: int = 1
    """Evaluation pass: declarations 0, negotiated 1, keys depending on others 2."""


_U24 = (1 << 24) - 1
_BOOL = ("Yes", "No")
_DIGESTS = ("CRC32C", "None")
_AUTH = ("KRB5", "SPKM1", "SPKM2", "SRP", "CHAP", "None")


def _num(name: str, result: Result, use: Use, default: int, low: int, high: int, *,
         scope: Scope = Scope.SESSION, irrelevant: Callable[[View], bool] | None = _discovery,
         order: int = 1) -> KeySpec:
    return KeySpec(name, Kind.NUMBER, result, use, scope, str(default), low, high,
                   irrelevant_when=irrelevant, order=order)


def _bool(name: str, result: Result, default: str) -> KeySpec:
    return KeySpec(name, Kind.BOOLEAN, result, Use.LO, Scope.SESSION, default, values=_BOOL,
                   irrelevant_when=_discovery)


def _decl(name: str, use: Use, *, values: tuple[str, ...] = (), default: str | None = None,
          kind: Kind = Kind.STRING, low: int = 0, high: int = 0) -> KeySpec:
    return KeySpec(name, kind, Result.DECLARATIVE, use, Scope.SESSION, default, low, high,
                   values, any_stage=True, order=0)


def _obsolete(name: str) -> KeySpec:
    """Marker keys removed by RFC 7143 §13.26: answer the constant Reject."""
    return KeySpec(name, Kind.OBSOLETE, Result.DECLARATIVE, Use.IO, Scope.CONNECTION,
                   fixed_answer=REJECT)


_SPECS = (
    KeySpec("HeaderDigest", Kind.LIST, Result.LIST, Use.IO, Scope.CONNECTION, "None",
            values=_DIGESTS),                                                      # §13.1
    KeySpec("DataDigest", Kind.LIST, Result.LIST, Use.IO, Scope.CONNECTION, "None",
            values=_DIGESTS),                                                      # §13.1
    _num("MaxConnections", Result.MIN, Use.LO, 1, 1, 65535),                       # §13.2
    KeySpec("SendTargets", Kind.STRING, Result.DECLARATIVE, Use.FFPO),             # §13.3
    _decl("TargetName", Use.IO),                                                   # §13.4
    _decl("InitiatorName", Use.IO),                                                # §13.5
    _decl("TargetAlias", Use.ALL),                                                 # §13.6
    _decl("InitiatorAlias", Use.ALL),                                              # §13.7
    _decl("TargetAddress", Use.ALL),                                               # §13.8
    _decl("TargetPortalGroupTag", Use.IO, kind=Kind.NUMBER, high=65535),           # §13.9
    _bool("InitialR2T", Result.OR, "Yes"),                                         # §13.10
    _bool("ImmediateData", Result.AND, "Yes"),                                     # §13.11
    KeySpec("MaxRecvDataSegmentLength", Kind.NUMBER, Result.DECLARATIVE, Use.ALL,
            Scope.CONNECTION, "8192", 512, _U24, order=0),                         # §13.12
    _num("MaxBurstLength", Result.MIN, Use.LO, 262144, 512, _U24),                 # §13.13
    _num("FirstBurstLength", Result.MIN, Use.LO, 65536, 512, _U24,
         irrelevant=_first_burst_irrelevant, order=2),                             # §13.14
    _num("DefaultTime2Wait", Result.MAX, Use.LO, 2, 0, 3600),                      # §13.15
    _num("DefaultTime2Retain", Result.MIN, Use.LO, 20, 0, 3600),                   # §13.16
    _num("MaxOutstandingR2T", Result.MIN, Use.LO, 1, 1, 65535),                    # §13.17
    _bool("DataPDUInOrder", Result.OR, "Yes"),                                     # §13.18
    _bool("DataSequenceInOrder", Result.OR, "Yes"),                                # §13.19
    _num("ErrorRecoveryLevel", Result.MIN, Use.LO, 0, 0, 2),                       # §13.20
    _decl("SessionType", Use.LO, values=("Discovery", "Normal"), default="Normal"),  # §13.21
    KeySpec("AuthMethod", Kind.LIST, Result.LIST, Use.SECURITY, Scope.CONNECTION, "None",
            values=_AUTH),                                                         # §12
    KeySpec("TaskReporting", Kind.LIST, Result.LIST, Use.LO, Scope.SESSION, "RFC3720",
            values=("RFC3720", "ResponseFence", "FastAbort"),
            irrelevant_when=_discovery),                                           # 7144 §13.1
    _num("iSCSIProtocolLevel", Result.MIN, Use.IO, 0, 0, 31, irrelevant=None),     # 7144 §13.2
    _obsolete("OFMarker"), _obsolete("IFMarker"),
    _obsolete("OFMarkInt"), _obsolete("IFMarkInt"),
)

KEYS: dict[str, KeySpec] = {spec.name: spec for spec in _SPECS}
"""Every key we know, by name. A key not here (including X- and X# extension keys) is
answered ``NotUnderstood`` (RFC 7143 §6.2, §13.23)."""

DEFAULTS: dict[str, str] = {s.name: s.default for s in _SPECS if s.default is not None}


# ---------------------------------------------------------------- values


def parse_number(text: str) -> int | None:
    """A decimal or ``0x`` hex numerical value (RFC 7143 §5.1), or None if malformed."""
    if len(text) > 20:
        return None
    if re.fullmatch(r"[0-9]+", text):
        return int(text)
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
        return int(text, 16)
    return None


def _valid_number(spec: KeySpec, value: str) -> bool:
    n = parse_number(value)
    return n is not None and spec.low <= n <= spec.high


def _valid_enum(spec: KeySpec, value: str) -> bool:
    return value in spec.values if spec.values else bool(value)


def _valid_list(spec: KeySpec, value: str) -> bool:
    return all(value.split(","))


_VALIDATORS: dict[Kind, Callable[[KeySpec, str], bool]] = {
    Kind.NUMBER: _valid_number,
    Kind.BOOLEAN: _valid_enum,
    Kind.LIST: _valid_list,
    Kind.STRING: _valid_enum,
    Kind.OBSOLETE: lambda spec, value: True,
}


def valid_value(spec: KeySpec, value: str) -> bool:
    """Is ``value`` syntactically valid and in range for ``spec``? (RFC 7143 §6.2)"""
    return _VALIDATORS[spec.kind](spec, value)


def _yes(value: str) -> bool:
    return value == "Yes"


def _yes_no(flag: bool) -> str:
    return "Yes" if flag else "No"


def _pick_list(offered: str, ours: str) -> str:
    """First value of the offerer's list that we support, else Reject (RFC 7143 §6.2.1)."""
    supported = ours.split(",")
    return next((v for v in offered.split(",") if v in supported), REJECT)


def _num_of(value: str) -> int:
    n = parse_number(value)
    assert n is not None  # values are validated before the result function runs
    return n


RESULT_FUNCTIONS: dict[Result, Callable[[str, str], str]] = {
    Result.MIN: lambda offered, ours: str(min(_num_of(offered), _num_of(ours))),
    Result.MAX: lambda offered, ours: str(max(_num_of(offered), _num_of(ours))),
    Result.OR: lambda offered, ours: _yes_no(_yes(offered) or _yes(ours)),
    Result.AND: lambda offered, ours: _yes_no(_yes(offered) and _yes(ours)),
    Result.LIST: _pick_list,
}
"""Responder's selection ``f(offered, ours)`` per result function (RFC 7143 §6.2.2)."""

ANSWER_CHECKS: dict[Result, Callable[[str, str], bool]] = {
    Result.MIN: lambda offered, answer: _num_of(answer) <= _num_of(offered),
    Result.MAX: lambda offered, answer: _num_of(answer) >= _num_of(offered),
    Result.OR: lambda offered, answer: not _yes(offered) or _yes(answer),
    Result.AND: lambda offered, answer: _yes(offered) or not _yes(answer),
    Result.LIST: lambda offered, answer: answer in offered.split(","),
}
"""Originator's check that an answer is a possible result of the function (RFC 7143 §13)."""


def select(spec: KeySpec, offered: str, ours: str | None) -> str:
    """The responder's answer to a valid offer. Without a local preference any valid offer is
    accepted (lists: the first value the table knows)."""
    if ours is None:
        ours = ",".join(spec.values) if spec.kind is Kind.LIST else offered
    return RESULT_FUNCTIONS[spec.result](offered, ours)


# ---------------------------------------------------------------- negotiation


class Negotiation:
    """One side of a negotiation sequence (login or text), RFC 7143 §6.2.

    ``local`` maps key names to our preference: a number or Yes/No, or a comma list of the
    values we support (in our order of preference). :meth:`receive` takes the peer's pairs:
    a pair for a key we :meth:`offer`\\ ed is an answer (checked against the result function),
    any other pair is the peer's offer or declaration and gets our answer. A key the peer sends
    twice in the sequence is a :class:`NegotiationError` (RFC 7143 §6.2).
    """

    def __init__(self, local: Mapping[str, str] | None = None, *,
                 table: Mapping[str, KeySpec] = KEYS) -> None:
        self.local: dict[str, str] = dict(local or {})
        self.table = table
        self.agreed: dict[str, str] = {}
        self.declared_local: dict[str, str] = {}
        self.declared_peer: dict[str, str] = {}
        self.offered: dict[str, str] = {}
        self.rejected: dict[str, str] = {}
        """Keys answered (either way) Reject/Irrelevant/NotUnderstood: they keep defaults."""
        self._seen: set[str] = set()

    # -- views

    def view(self) -> dict[str, str]:
        """Defaults overlaid with declarations and agreed values (directional keys excluded)."""
        merged = dict(DEFAULTS)
        merged.update(self.declared_peer)
        merged.update(self.declared_local)
        merged.update(self.agreed)
        merged.pop("MaxRecvDataSegmentLength", None)
        return merged

    @property
    def pending(self) -> bool:
        """Do offers of ours still await the peer's answer?"""
        return bool(self.offered)

    # -- originator

    def offer(self, key: str, value: str) -> tuple[str, str]:
        """Offer ``key=value`` (or declare it, for a declarative key); returns the pair."""
        spec = self.table.get(key)
        if spec is None or spec.result is Result.DECLARATIVE:
            self.declared_local[key] = value
        else:
            self.offered[key] = value
        return key, value

    def declare(self, key: str, value: str) -> tuple[str, str]:
        """Declare ``key=value`` (no answer expected, RFC 7143 §6.2)."""
        self.declared_local[key] = value
        return key, value

    # -- responder

    def receive(self, pairs: Iterable[tuple[str, str]], *,
                stage: LoginStage = LoginStage.OPERATIONAL, leading: bool = True
                ) -> list[tuple[str, str]]:
        """Process the peer's pairs; return our answers, in the order the keys came.

        ``stage`` is the login stage (SECURITY/OPERATIONAL) or FULL_FEATURE for text
        negotiation; with ``leading`` False (a connection joining a session) LO keys are
        answered Irrelevant. Both decide which keys are usable (RFC 7143 §13 preamble).
        """
        items = list(pairs)
        for key, _ in items:
            if key in self._seen and key not in REPEATABLE_KEYS:
                raise NegotiationError(f"key {key} negotiated twice")
            self._seen.add(key)
        answers: dict[int, tuple[str, str]] = {}
        ranked = sorted(range(len(items)), key=lambda i: self._order(items[i][0]))
        for i in ranked:
            key, value = items[i]
            answer = self._receive_one(key, value, stage, leading)
            if answer is not None:
                answers[i] = (key, answer)
            if answer in SPECIAL_ANSWERS:
                self.rejected[key] = answer
        return [answers[i] for i in sorted(answers)]

    def _order(self, key: str) -> int:
        spec = self.table.get(key)
        return spec.order if spec is not None else 1

    def _receive_one(self, key: str, value: str, stage: LoginStage, leading: bool
                     ) -> str | None:
        spec = self.table.get(key)
        if key in self.offered:
            self._take_answer(spec, key, self.offered.pop(key), value)
            return None
        if spec is None:
            return NOT_UNDERSTOOD
        if value in SPECIAL_ANSWERS:
            return None  # an answer to nothing we asked: nothing to say back
        if spec.fixed_answer is not None:
            return spec.fixed_answer
        usable = _USE_RULES[spec.use](stage)
        if usable is None and spec.use is Use.LO and not leading:
            usable = IRRELEVANT
        if usable is not None:
            return usable
        if spec.irrelevant_when is not None and spec.irrelevant_when(self.view()):
            return IRRELEVANT
        if not valid_value(spec, value):
            return REJECT
        if spec.result is Result.DECLARATIVE:
            self.declared_peer[key] = value
            return None
        answer = select(spec, value, self.local.get(key))
        if key == "FirstBurstLength" and answer != REJECT:
            answer = str(min(int(answer), int(self.view()["MaxBurstLength"])))
        if answer not in SPECIAL_ANSWERS:
            self.agreed[key] = answer
        return answer

    def _take_answer(self, spec: KeySpec | None, key: str, offered: str, answer: str) -> None:
        if answer in SPECIAL_ANSWERS:
            self.rejected[key] = answer
            return
        if spec is None or spec.result is Result.DECLARATIVE:
            self.declared_peer[key] = answer
            return
        if not valid_value(spec, answer) or not ANSWER_CHECKS[spec.result](offered, answer):
            raise NegotiationError(f"answer {key}={answer!r} impossible for offer {offered!r}")
        self.agreed[key] = answer

    # -- outcome

    def params(self) -> SessionParams:
        """The operational parameters, defaults for whatever was not negotiated."""
        view = self.view()
        kwargs: dict[str, Any] = {
            name: convert(view[key]) if key in view else None
            for name, (key, convert) in _PARAM_FIELDS.items()
        }
        kwargs["max_recv_data_segment_length"] = _num_of(
            self.declared_local.get("MaxRecvDataSegmentLength", "8192"))
        kwargs["max_send_data_segment_length"] = _num_of(
            self.declared_peer.get("MaxRecvDataSegmentLength", "8192"))
        kwargs["first_burst_length"] = min(kwargs["first_burst_length"],
                                           kwargs["max_burst_length"])
        return SessionParams(**kwargs)


def _use_login_only(stage: LoginStage) -> str | None:
    return REJECT if stage is LoginStage.FULL_FEATURE else None


def _use_ffp_only(stage: LoginStage) -> str | None:
    return None if stage is LoginStage.FULL_FEATURE else IRRELEVANT


def _use_security(stage: LoginStage) -> str | None:
    if stage is LoginStage.SECURITY:
        return None
    raise NegotiationError("security key outside the SecurityNegotiation stage")


_USE_RULES: dict[Use, Callable[[LoginStage], str | None]] = {
    Use.LO: _use_login_only,
    Use.IO: _use_login_only,
    Use.ALL: lambda stage: None,
    Use.FFPO: _use_ffp_only,
    Use.SECURITY: _use_security,
}
"""Use rule -> (stage -> forced answer or None when the key is usable there). Operational keys
in the security stage are accepted (lenient); IO/LO keys in full feature phase are rejected."""


@dataclass(frozen=True, slots=True)
class SessionParams:
    """Operational parameters in force after login (RFC 7143 §13)."""

    header_digest: bool = False
    data_digest: bool = False
    max_connections: int = 1
    initial_r2t: bool = True
    immediate_data: bool = True
    max_recv_data_segment_length: int = 8192
    """What we accept per PDU (we declared it)."""
    max_send_data_segment_length: int = 8192
    """What the peer declared it accepts: the cap for PDUs we send."""
    max_burst_length: int = 262144
    first_burst_length: int = 65536
    default_time2wait: int = 2
    default_time2retain: int = 20
    max_outstanding_r2t: int = 1
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True
    error_recovery_level: int = 0
    session_type: str = "Normal"
    target_name: str | None = None
    initiator_name: str | None = None
    initiator_alias: str | None = None
    target_alias: str | None = None
    target_portal_group_tag: int | None = None
    task_reporting: str = "RFC3720"
    iscsi_protocol_level: int = 0

    @property
    def discovery(self) -> bool:
        return self.session_type == "Discovery"


def _str(value: str) -> str:
    return value


_PARAM_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "header_digest": ("HeaderDigest", lambda v: v == "CRC32C"),
    "data_digest": ("DataDigest", lambda v: v == "CRC32C"),
    "max_connections": ("MaxConnections", _num_of),
    "initial_r2t": ("InitialR2T", _yes),
    "immediate_data": ("ImmediateData", _yes),
    "max_burst_length": ("MaxBurstLength", _num_of),
    "first_burst_length": ("FirstBurstLength", _num_of),
    "default_time2wait": ("DefaultTime2Wait", _num_of),
    "default_time2retain": ("DefaultTime2Retain", _num_of),
    "max_outstanding_r2t": ("MaxOutstandingR2T", _num_of),
    "data_pdu_in_order": ("DataPDUInOrder", _yes),
    "data_sequence_in_order": ("DataSequenceInOrder", _yes),
    "error_recovery_level": ("ErrorRecoveryLevel", _num_of),
    "session_type": ("SessionType", _str),
    "target_name": ("TargetName", _str),
    "initiator_name": ("InitiatorName", _str),
    "initiator_alias": ("InitiatorAlias", _str),
    "target_alias": ("TargetAlias", _str),
    "target_portal_group_tag": ("TargetPortalGroupTag", _num_of),
    "task_reporting": ("TaskReporting", _str),
    "iscsi_protocol_level": ("iSCSIProtocolLevel", _num_of),
}
"""SessionParams field -> (key, converter): the table that turns agreed text into params."""
