"""Login phase state machines for both roles, RFC 7143 §6.3 and §11.12-11.13.

:class:`TargetLogin` turns each Login Request (BHS + text) into a :class:`LoginStep` whose
Login Response is complete on the wire: the machine fills StatSN (counting from the
``statsn`` it was given), ExpCmdSN (the request's CmdSN: login requests are immediate and do
not advance it) and MaxCmdSN (ExpCmdSN + ``cmdsn_window`` - 1). After a successful login
:attr:`TargetLogin.next_statsn` is the StatSN of the connection's first full-feature status PDU.

:class:`InitiatorLogin` is the other side: :meth:`~InitiatorLogin.start` gives the first
request, :meth:`~InitiatorLogin.receive` the next one or a :class:`LoginDone`.

Both split text longer than the login data segment limit (8192 bytes) with the C bit and
reassemble the peer's continued text before processing it (RFC 7143 §6.1, §11.12.2).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from .chap import KEYS as CHAP_KEYS
from .chap import ChapState, InitiatorChap, as_auth_config
from .errors import LocalProtocolError, LoginFailed, RemoteProtocolError
from .keys import (
    Negotiation,
    NegotiationError,
    SessionParams,
    encode_text,
    parse_text,
)
from .pdu import LoginRequest, LoginResponse
from .wire import ISCSI_VERSION, LoginStage, LoginStatus

LOGIN_MAX_DATA_SEGMENT = 8192
"""Data segment limit of every login PDU, both directions (RFC 7143 §13.12: the declared
MaxRecvDataSegmentLength only applies after login)."""
MAX_LOGIN_TEXT = 65536
"""Cap on one reassembled text (C bit); longer is an initiator error (resource guard)."""
MAX_ROUNDS = 32
"""Initiator's bound on login round trips without progress."""

_SERIAL = 0xFFFFFFFF

TRANSITIONS: frozenset[tuple[LoginStage, LoginStage]] = frozenset({
    (LoginStage.SECURITY, LoginStage.OPERATIONAL),
    (LoginStage.SECURITY, LoginStage.FULL_FEATURE),
    (LoginStage.OPERATIONAL, LoginStage.FULL_FEATURE),
})
"""Legal (CSG, NSG) pairs when T=1 (RFC 7143 §6.3, §11.12.3)."""

_STAGES = {stage.value: stage for stage in LoginStage}


def _yes_no(flag: bool) -> str:
    return "Yes" if flag else "No"


def _chunks(text: bytes) -> list[bytes]:
    size = LOGIN_MAX_DATA_SEGMENT
    return [text[i:i + size] for i in range(0, len(text), size)] or [b""]


def _status(code: int) -> LoginStatus:
    """The LoginStatus for a wire code; unknown details fall back to their class."""
    try:
        return LoginStatus(code)
    except ValueError:
        fallback = {1: LoginStatus.TARGET_MOVED_TEMPORARILY, 2: LoginStatus.INITIATOR_ERROR}
        return fallback.get(code >> 8, LoginStatus.TARGET_ERROR)


def _fail(status: LoginStatus, message: str = "") -> LoginFailed:
    return LoginFailed(status, message)


# ---------------------------------------------------------------- target side


class Authenticator(Protocol):
    """Hook for an authentication method of the SecurityNegotiation stage (RFC 7143 §12).

    ``method`` is the AuthMethod value (e.g. ``"CHAP"``); keys named ``<method>_*`` are routed
    to :meth:`step`, which returns the keys to answer and whether authentication succeeded.
    It raises :class:`LoginFailed` (AUTHENTICATION_FAILURE) to refuse.
    """

    @property
    def method(self) -> str: ...

    def step(self, initiator_name: str, keys: Mapping[str, str]
             ) -> tuple[list[tuple[str, str]], bool]: ...


def _no_target(name: str) -> bool:
    return False


def _allow_all(initiator_name: str, target_name: str) -> bool:
    return True


def _tsih_counter() -> Callable[[int, str], int]:
    counter = itertools.count()

    def assign(isid: int, initiator_name: str) -> int:
        return next(counter) % 0xFFFF + 1

    return assign


@dataclass(frozen=True, slots=True)
class TargetLoginConfig:
    """What the target offers and accepts, plus the caller's hooks (RFC 7143 §13).

    Numeric limits are our side of the MIN/MAX result functions; ``initial_r2t=False`` and
    ``immediate_data=True`` allow unsolicited data (the initiator may still force InitialR2T=Yes
    / ImmediateData=No). The callbacks may raise :class:`LoginFailed` for a specific status.
    """

    lookup_target: Callable[[str], bool] = _no_target
    """Is this TargetName served here? (else 0x0203)"""
    authorize: Callable[[str, str], bool] = _allow_all
    """ACL: (InitiatorName, TargetName) -> allowed? (else 0x0202)"""
    assign_tsih: Callable[[int, str], int] = field(default_factory=_tsih_counter)
    """(ISID, InitiatorName) -> non-zero TSIH of a new session (leading login only; a login
    with a non-zero TSIH gets that TSIH back)."""
    authenticator: Authenticator | None = None
    """When set, authentication with its method is required; else AuthMethod=None only."""
    resolve: Callable[[str, str | None], TargetLoginConfig | None] | None = None
    """(SessionType, TargetName or None for discovery) -> the config of this login, called
    once the first text names them (after the name and ACL checks): per-target credentials
    and limits. None (or a None answer) keeps this config."""
    max_recv_data_segment_length: int = 262144
    max_burst_length: int = 1048576
    first_burst_length: int = 65536
    max_outstanding_r2t: int = 8
    max_connections: int = 1
    initial_r2t: bool = False
    immediate_data: bool = True
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True
    error_recovery_level: int = 0
    default_time2wait: int = 2
    default_time2retain: int = 20
    digests_allowed: bool = True
    target_alias: str | None = None
    portal_group_tag: int = 1
    allow_discovery: bool = True
    cmdsn_window: int = 32
    iscsi_protocol_level: int = 1

    def local_keys(self) -> dict[str, str]:
        """Our side of every negotiable key, as key=value text."""
        digests = "CRC32C,None" if self.digests_allowed else "None"
        auth = self.authenticator.method if self.authenticator is not None else "None"
        return {
            "HeaderDigest": digests,
            "DataDigest": digests,
            "MaxConnections": str(self.max_connections),
            "InitialR2T": _yes_no(self.initial_r2t),
            "ImmediateData": _yes_no(self.immediate_data),
            "MaxBurstLength": str(self.max_burst_length),
            "FirstBurstLength": str(self.first_burst_length),
            "DefaultTime2Wait": str(self.default_time2wait),
            "DefaultTime2Retain": str(self.default_time2retain),
            "MaxOutstandingR2T": str(self.max_outstanding_r2t),
            "DataPDUInOrder": _yes_no(self.data_pdu_in_order),
            "DataSequenceInOrder": _yes_no(self.data_sequence_in_order),
            "ErrorRecoveryLevel": str(self.error_recovery_level),
            "AuthMethod": auth,
            "TaskReporting": "RFC3720",
            "iSCSIProtocolLevel": str(self.iscsi_protocol_level),
        }


@dataclass(frozen=True, slots=True)
class LoginStep:
    """The target's answer to one Login Request: a complete Login Response and its text."""

    response: LoginResponse
    data: bytes = b""
    complete: bool = False
    """Full feature phase reached (this response carries T=1, NSG=3 and the TSIH)."""
    failed: bool = False
    """The login is refused (``status``); send the response, then close the connection."""
    params: SessionParams | None = None
    status: LoginStatus = LoginStatus.SUCCESS


class LoginState(Enum):
    START = "start"
    SECURITY = "security"
    OPERATIONAL = "operational"
    FULL_FEATURE = "full-feature"
    FAILED = "failed"


_STATE_OF_STAGE = {
    LoginStage.SECURITY: LoginState.SECURITY,
    LoginStage.OPERATIONAL: LoginState.OPERATIONAL,
    LoginStage.FULL_FEATURE: LoginState.FULL_FEATURE,
}
_STAGE_OF_STATE = {state: stage for stage, state in _STATE_OF_STAGE.items()}


@dataclass(slots=True)
class _Pending:
    """Our response text still being sent with the C bit, and the decision for its end."""

    chunks: list[bytes]
    stage: LoginStage
    transit: bool
    nsg: LoginStage


class TargetLogin:
    """Target side of one connection's login (RFC 7143 §6.3). Feed every Login Request to
    :meth:`receive`; after ``complete`` or ``failed`` the machine accepts nothing more."""

    def __init__(self, config: TargetLoginConfig, *, statsn: int = 0) -> None:
        self.config = config
        self.state = LoginState.START
        self.negotiation = Negotiation(config.local_keys())
        self.isid: int | None = None
        self.tsih = 0
        self.initiator_name: str | None = None
        self.target_name: str | None = None
        self.session_type = "Normal"
        self.leading = True
        """False when the initiator joins an existing session (non-zero TSIH): the caller
        checks the session exists; LO keys are then Irrelevant and the session-wide fields
        of ``params`` are defaults (take them from the session)."""
        self.params: SessionParams | None = None
        self._statsn = statsn & _SERIAL
        self._inbox = bytearray()
        self._pending: _Pending | None = None
        self._identified = False
        self._sent_text = False
        self._declared_mrdsl = False
        self._authenticated = config.authenticator is None
        self._auth_method: str | None = None
        self._offers_sent: set[str] = set()

    @property
    def next_statsn(self) -> int:
        """StatSN of the next status PDU on this connection."""
        return self._statsn

    # -- entry point

    def receive(self, request: LoginRequest, data: bytes | bytearray | memoryview = b""
                ) -> LoginStep:
        """Process one Login Request and its (unpadded) data segment."""
        if self.state in (LoginState.FULL_FEATURE, LoginState.FAILED):
            raise LocalProtocolError(f"login already {self.state.value}")
        try:
            return self._receive(request, bytes(data))
        except LoginFailed as exc:
            return self._refuse(request, exc.status)
        except NegotiationError as exc:
            return self._refuse(request, exc.status)

    def _receive(self, request: LoginRequest, data: bytes) -> LoginStep:
        stage = self._check_header(request)
        if len(data) > LOGIN_MAX_DATA_SEGMENT:
            raise _fail(LoginStatus.INITIATOR_ERROR, "login data segment over 8192 bytes")
        if self._pending is not None:
            if data.strip(b"\0"):
                raise _fail(LoginStatus.INITIATOR_ERROR, "text sent while ours continues")
            return self._next_chunk(request)
        self._inbox += data
        if len(self._inbox) > MAX_LOGIN_TEXT:
            raise _fail(LoginStatus.INITIATOR_ERROR, "login text too long")
        if request.cont:
            return self._emit(request, stage, b"", cont=False, transit=False, nsg=stage)
        pairs = parse_text(self._inbox)
        self._inbox.clear()
        reply = self._negotiate(stage, pairs)
        nsg = _STAGES.get(request.nsg, stage)
        transit = request.transit and self._may_transit(stage)
        self._pending = _Pending(_chunks(encode_text(reply)), stage, transit, nsg)
        return self._next_chunk(request)

    def _check_header(self, request: LoginRequest) -> LoginStage:
        """Version, TSIH, CSG/NSG/T/C checks (RFC 7143 §11.12)."""
        stage = _STAGES.get(request.csg)
        if self.state is LoginState.START:
            if not request.version_min <= ISCSI_VERSION <= request.version_max:
                raise _fail(LoginStatus.UNSUPPORTED_VERSION)
            self.leading = request.tsih == 0
            if stage not in (LoginStage.SECURITY, LoginStage.OPERATIONAL):
                raise _fail(LoginStatus.INITIATOR_ERROR, f"login starts in CSG {request.csg}")
            if stage is LoginStage.OPERATIONAL and not self._authenticated:
                raise _fail(LoginStatus.AUTHENTICATION_FAILURE, "authentication required")
            self.isid = request.isid
            self.state = _STATE_OF_STAGE[stage]
        elif stage is not _STAGE_OF_STATE[self.state]:
            raise _fail(LoginStatus.INITIATOR_ERROR, f"CSG {request.csg} in {self.state.value}")
        assert stage is not None
        if request.transit:
            nsg = _STAGES.get(request.nsg)
            if request.cont or nsg is None or (stage, nsg) not in TRANSITIONS:
                raise _fail(LoginStatus.INITIATOR_ERROR,
                            f"bad transit CSG {request.csg} -> NSG {request.nsg}")
        return stage

    # -- negotiation

    def _identify(self, keys: Mapping[str, str], stage: LoginStage) -> None:
        """Checks on the first text of the login (RFC 7143 §13.4, §13.5, §13.21); then the
        login's own config is chosen (:attr:`TargetLoginConfig.resolve`)."""
        self._identified = True
        name = keys.get("InitiatorName")
        if not name:
            raise _fail(LoginStatus.MISSING_PARAMETER, "InitiatorName missing")
        self.initiator_name = name
        self.session_type = keys.get("SessionType", "Normal")
        if self.session_type not in ("Normal", "Discovery") or (
                self.session_type == "Discovery" and not self.config.allow_discovery):
            raise _fail(LoginStatus.SESSION_TYPE_NOT_SUPPORTED, self.session_type)
        if self.session_type != "Discovery":
            self._identify_target(name, keys)
        self._adopt(stage)

    def _identify_target(self, name: str, keys: Mapping[str, str]) -> None:
        target = keys.get("TargetName")
        if not target:
            raise _fail(LoginStatus.MISSING_PARAMETER, "TargetName missing")
        if not self.config.lookup_target(target):
            raise _fail(LoginStatus.NOT_FOUND, target)
        if not self.config.authorize(name, target):
            raise _fail(LoginStatus.AUTHORIZATION_FAILURE, f"{name} -> {target}")
        self.target_name = target

    def _adopt(self, stage: LoginStage) -> None:
        """Take the config :attr:`TargetLoginConfig.resolve` chooses for this session: its
        authenticator and the values we offer (nothing was negotiated yet)."""
        resolve = self.config.resolve
        chosen = resolve(self.session_type, self.target_name) if resolve is not None else None
        if chosen is not None and chosen is not self.config:
            self.config = chosen
            self.negotiation.local.update(chosen.local_keys())
            self._authenticated = chosen.authenticator is None
        if stage is LoginStage.OPERATIONAL and not self._authenticated:
            raise _fail(LoginStatus.AUTHENTICATION_FAILURE, "authentication required")

    def _negotiate(self, stage: LoginStage, pairs: list[tuple[str, str]]
                   ) -> list[tuple[str, str]]:
        keys = dict(pairs)
        if not self._identified:
            self._identify(keys, stage)
        auth = self.config.authenticator
        prefix = f"{auth.method}_" if auth is not None else None
        auth_keys = {k: v for k, v in pairs if prefix is not None and k.startswith(prefix)}
        if auth_keys and stage is not LoginStage.SECURITY:
            raise _fail(LoginStatus.INITIATOR_ERROR, "security keys in operational stage")
        reply = self._declarations(stage)
        reply += self.negotiation.receive(
            [(k, v) for k, v in pairs if k not in auth_keys], stage=stage, leading=self.leading)
        reply += self._unsent_offers()
        if "AuthMethod" in keys:
            self._auth_method = self.negotiation.agreed.get("AuthMethod")
            if self._auth_method is None:
                raise _fail(LoginStatus.AUTHENTICATION_FAILURE, "no acceptable AuthMethod")
        if auth is not None and stage is LoginStage.SECURITY:
            reply += self._authenticate(auth, auth_keys)
        return reply

    def _authenticate(self, auth: Authenticator, keys: Mapping[str, str]
                      ) -> list[tuple[str, str]]:
        """Route the method's keys to the authenticator once AuthMethod is agreed (§12);
        the security stage cannot end before it says the initiator is authenticated."""
        if self._auth_method is None:
            raise _fail(LoginStatus.AUTHENTICATION_FAILURE, "AuthMethod not offered")
        if self._auth_method != auth.method:
            raise _fail(LoginStatus.INITIATOR_ERROR, "security keys of another AuthMethod")
        extra, done = auth.step(self.initiator_name or "", keys)
        self._authenticated = done
        return extra

    def _declarations(self, stage: LoginStage) -> list[tuple[str, str]]:
        """What the target declares unasked: TargetPortalGroupTag and TargetAlias in the first
        response of a Normal session (§13.9, §13.6), our MaxRecvDataSegmentLength once
        in the operational stage (§13.12)."""
        out: list[tuple[str, str]] = []
        declare = self.negotiation.declare
        if not self._sent_text and self.session_type == "Normal":
            out.append(declare("TargetPortalGroupTag", str(self.config.portal_group_tag)))
            if self.config.target_alias:
                out.append(declare("TargetAlias", self.config.target_alias))
        if stage is LoginStage.OPERATIONAL and not self._declared_mrdsl:
            self._declared_mrdsl = True
            out.append(declare("MaxRecvDataSegmentLength",
                               str(self.config.max_recv_data_segment_length)))
        self._sent_text = True
        return out

    def _unsent_offers(self) -> list[tuple[str, str]]:
        """Keys the caller made the target originate via ``negotiation.offer`` (§6.2)."""
        fresh = [(k, v) for k, v in self.negotiation.offered.items() if k not in self._offers_sent]
        self._offers_sent.update(k for k, _ in fresh)
        return fresh

    def _may_transit(self, stage: LoginStage) -> bool:
        if stage is LoginStage.SECURITY and not self._authenticated:
            return False
        return not self.negotiation.pending

    # -- responses

    def _next_chunk(self, request: LoginRequest) -> LoginStep:
        pending = self._pending
        assert pending is not None
        chunk = pending.chunks.pop(0)
        if pending.chunks:
            return self._emit(request, pending.stage, chunk, cont=True, transit=False,
                              nsg=pending.stage)
        self._pending = None
        return self._emit(request, pending.stage, chunk, cont=False, transit=pending.transit,
                          nsg=pending.nsg)

    def _emit(self, request: LoginRequest, stage: LoginStage, chunk: bytes, *, cont: bool,
              transit: bool, nsg: LoginStage) -> LoginStep:
        complete = transit and nsg is LoginStage.FULL_FEATURE
        if complete:
            self.params = self.negotiation.params()
            self.tsih = (self.config.assign_tsih(request.isid, self.initiator_name or "")
                         if self.leading else request.tsih)
        if transit:
            self.state = _STATE_OF_STAGE[nsg]
        response = self._response(request, stage, chunk, cont=cont, transit=transit,
                                  nsg=nsg if transit else LoginStage.SECURITY,
                                  tsih=self.tsih if complete else request.tsih)
        return LoginStep(response, chunk, complete=complete, params=self.params)

    def _refuse(self, request: LoginRequest, status: LoginStatus) -> LoginStep:
        """A Login reject: status class/detail set, no text; the machine is dead after."""
        self.state = LoginState.FAILED
        stage = _STAGES.get(request.csg, LoginStage.SECURITY)
        response = self._response(request, stage, b"", cont=False, transit=False,
                                  nsg=LoginStage.SECURITY, tsih=0, status=status)
        return LoginStep(response, b"", failed=True, status=status)

    def _response(self, request: LoginRequest, stage: LoginStage, chunk: bytes, *,
                  cont: bool, transit: bool, nsg: LoginStage, tsih: int,
                  status: LoginStatus = LoginStatus.SUCCESS) -> LoginResponse:
        statsn = self._statsn
        self._statsn = (statsn + 1) & _SERIAL
        return LoginResponse(
            itt=request.itt, isid=request.isid, tsih=tsih, statsn=statsn,
            expcmdsn=request.cmdsn,
            maxcmdsn=(request.cmdsn + self.config.cmdsn_window - 1) & _SERIAL,
            status_class=status.status_class, status_detail=status.status_detail,
            transit=transit, cont=cont, csg=stage, nsg=nsg, version_max=ISCSI_VERSION,
            version_active=ISCSI_VERSION, data_length=len(chunk))


# ---------------------------------------------------------------- initiator side


@dataclass(frozen=True, slots=True)
class InitiatorLoginConfig:
    """What our initiator offers (RFC 7143 §13). Digest lists are in preference order."""

    max_recv_data_segment_length: int = 262144
    max_burst_length: int = 1048576
    first_burst_length: int = 262144
    max_outstanding_r2t: int = 1
    max_connections: int = 1
    initial_r2t: bool = False
    immediate_data: bool = True
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True
    error_recovery_level: int = 0
    default_time2wait: int = 2
    default_time2retain: int = 20
    header_digest: tuple[str, ...] = ("None", "CRC32C")
    data_digest: tuple[str, ...] = ("None", "CRC32C")
    initiator_alias: str | None = None
    security_stage: bool = False
    """Start in SecurityNegotiation with AuthMethod=None instead of going straight to the
    operational stage (CSG=1) as libiscsi does without CHAP."""

    def operational_offers(self, discovery: bool) -> list[tuple[str, str]]:
        """Operational keys to offer; a discovery session only needs the digests and the
        declared MaxRecvDataSegmentLength (the others are irrelevant there, §13)."""
        offers = [
            ("HeaderDigest", ",".join(self.header_digest)),
            ("DataDigest", ",".join(self.data_digest)),
        ]
        if not discovery:
            offers += [
                ("MaxConnections", str(self.max_connections)),
                ("InitialR2T", _yes_no(self.initial_r2t)),
                ("ImmediateData", _yes_no(self.immediate_data)),
                ("MaxBurstLength", str(self.max_burst_length)),
                ("FirstBurstLength", str(self.first_burst_length)),
                ("DefaultTime2Wait", str(self.default_time2wait)),
                ("DefaultTime2Retain", str(self.default_time2retain)),
                ("MaxOutstandingR2T", str(self.max_outstanding_r2t)),
                ("DataPDUInOrder", _yes_no(self.data_pdu_in_order)),
                ("DataSequenceInOrder", _yes_no(self.data_sequence_in_order)),
                ("ErrorRecoveryLevel", str(self.error_recovery_level)),
            ]
        return offers

    def local_keys(self) -> dict[str, str]:
        """Our answers should the target offer keys itself."""
        return {**dict(self.operational_offers(False)), "AuthMethod": "None",
                "TaskReporting": "RFC3720", "iSCSIProtocolLevel": "1"}


@dataclass(frozen=True, slots=True)
class LoginDone:
    """The initiator reached full feature phase (RFC 7143 §6.3)."""

    params: SessionParams
    tsih: int
    exp_statsn: int
    """StatSN expected in the next status PDU from the target."""
    expcmdsn: int
    maxcmdsn: int


class InitiatorLogin:
    """Initiator side of one connection's login. ``target_name=None`` means a discovery
    session. ``credentials`` (an :class:`~pyiscsi.proto.chap.AuthConfig`, a ``ChapSecret`` or
    a ``(user, secret)`` pair) turns on CHAP (RFC 7143 §12.1.3): the login then starts in the
    security stage offering AuthMethod=CHAP (``CHAP,None`` for one-way CHAP)."""

    def __init__(self, initiator_name: str, target_name: str | None, isid: int, *,
                 config: InitiatorLoginConfig | None = None, itt: int = 0, cid: int = 0,
                 cmdsn: int = 0, exp_statsn: int = 0, credentials: object | None = None
                 ) -> None:
        self.config = config or InitiatorLoginConfig()
        self.initiator_name = initiator_name
        self.target_name = target_name
        self.isid = isid
        self.itt = itt
        self.cid = cid
        self.cmdsn = cmdsn
        self.credentials = credentials
        auth = as_auth_config(credentials)
        self.chap = InitiatorChap(auth) if auth is not None else None
        self.state = LoginState.START
        self.negotiation = Negotiation(self.config.local_keys())
        self._exp_statsn = exp_statsn & _SERIAL
        self._stage = LoginStage.SECURITY
        self._nsg = LoginStage.OPERATIONAL
        self._inbox = bytearray()
        self._outbox: list[bytes] = []
        self._rounds = 0

    @property
    def discovery(self) -> bool:
        return self.target_name is None

    def start(self) -> tuple[LoginRequest, bytes]:
        """The first Login Request and its text."""
        if self.state is not LoginState.START:
            raise LocalProtocolError("login already started")
        n = self.negotiation
        pairs = [n.declare("InitiatorName", self.initiator_name)]
        if self.target_name is not None:
            pairs.append(n.declare("TargetName", self.target_name))
        pairs.append(n.declare("SessionType", "Discovery" if self.discovery else "Normal"))
        if self.config.initiator_alias:
            pairs.append(n.declare("InitiatorAlias", self.config.initiator_alias))
        if self.chap is not None:
            self._stage, self._nsg = LoginStage.SECURITY, LoginStage.OPERATIONAL
            pairs.append(n.offer("AuthMethod", "CHAP" if self.chap.mutual else "CHAP,None"))
        elif self.config.security_stage:
            self._stage, self._nsg = LoginStage.SECURITY, LoginStage.OPERATIONAL
            pairs.append(n.offer("AuthMethod", "None"))
        else:
            self._stage, self._nsg = LoginStage.OPERATIONAL, LoginStage.FULL_FEATURE
            pairs += self._operational_offers()
        self.state = _STATE_OF_STAGE[self._stage]
        return self._send(pairs)

    def receive(self, response: LoginResponse, data: bytes | bytearray | memoryview = b""
                ) -> tuple[LoginRequest, bytes] | LoginDone:
        """Process one Login Response: the next request, or :class:`LoginDone`.

        A non-zero status raises :class:`LoginFailed`; a target breaking the protocol raises
        :class:`RemoteProtocolError` (close the connection).
        """
        if self.state in (LoginState.START, LoginState.FULL_FEATURE, LoginState.FAILED):
            raise LocalProtocolError(f"not expecting a login response in {self.state.value}")
        try:
            return self._receive(response, bytes(data))
        except (LoginFailed, RemoteProtocolError):
            self.state = LoginState.FAILED
            raise

    def _receive(self, response: LoginResponse, data: bytes
                 ) -> tuple[LoginRequest, bytes] | LoginDone:
        code = response.status_class << 8 | response.status_detail
        if code:
            raise self._refused(code, data)
        if response.itt != self.itt or response.isid != self.isid:
            raise RemoteProtocolError("login response for another ITT/ISID")
        if response.csg != self._stage:
            raise RemoteProtocolError(f"login response CSG {response.csg} in {self._stage}")
        self._exp_statsn = (response.statsn + 1) & _SERIAL
        self._rounds += 1
        if self._rounds > MAX_ROUNDS:
            raise NegotiationError("login does not converge")
        if self._outbox:
            return self._next_chunk()
        self._inbox += data
        if len(self._inbox) > MAX_LOGIN_TEXT:
            raise NegotiationError("login response text too long")
        if response.cont:
            return self._request(b"", cont=False, transit=False)
        pairs = parse_text(self._inbox)
        self._inbox.clear()
        chap_keys = {k: v for k, v in pairs if self.chap is not None and k in CHAP_KEYS}
        reply = self.negotiation.receive([(k, v) for k, v in pairs if k not in chap_keys],
                                         stage=self._stage)
        reply += self._authenticate(chap_keys)
        if response.transit:
            return self._transit(response, reply)
        return self._send(reply)

    def _authenticate(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        """Drive CHAP once the target agreed AuthMethod=CHAP (RFC 7143 §12.1.3)."""
        chap = self.chap
        if chap is None or self._stage is not LoginStage.SECURITY:
            if keys:
                raise RemoteProtocolError("CHAP keys outside the security stage")
            return []
        if self.negotiation.agreed.get("AuthMethod") != chap.method:
            if keys:
                raise RemoteProtocolError("CHAP keys without AuthMethod=CHAP")
            return []
        if chap.state is ChapState.START:
            return chap.start()
        return chap.step(keys) if keys or not chap.done else []

    def _transit(self, response: LoginResponse, reply: list[tuple[str, str]]
                 ) -> tuple[LoginRequest, bytes] | LoginDone:
        chap = self.chap
        if chap is not None and self._stage is LoginStage.SECURITY and not chap.done and (
                chap.mutual or self.negotiation.agreed.get("AuthMethod") == chap.method):
            raise LoginFailed(LoginStatus.AUTHENTICATION_FAILURE,
                              "target left the security stage without completing CHAP")
        nsg = _STAGES.get(response.nsg)
        if nsg is None or (self._stage, nsg) not in TRANSITIONS or nsg.value > self._nsg.value:
            raise RemoteProtocolError(f"target transit to NSG {response.nsg} not requested")
        self._stage = nsg
        self.state = _STATE_OF_STAGE[nsg]
        if nsg is LoginStage.FULL_FEATURE:
            return LoginDone(self.negotiation.params(), response.tsih, self._exp_statsn,
                             response.expcmdsn, response.maxcmdsn)
        self._nsg = LoginStage.FULL_FEATURE
        return self._send(reply + self._operational_offers())

    def _refused(self, code: int, data: bytes) -> LoginFailed:
        status = _status(code)
        message = f"login status 0x{code:04x} ({status.name})"
        if status.status_class == 1:
            try:
                where = dict(parse_text(data, unique=False)).get("TargetAddress")
            except NegotiationError:
                where = None
            message += f", redirected to {where}"
        return LoginFailed(status, message)

    def _operational_offers(self) -> list[tuple[str, str]]:
        n = self.negotiation
        pairs = [n.offer(k, v) for k, v in self.config.operational_offers(self.discovery)]
        pairs.append(n.declare("MaxRecvDataSegmentLength",
                               str(self.config.max_recv_data_segment_length)))
        return pairs

    def _send(self, pairs: list[tuple[str, str]]) -> tuple[LoginRequest, bytes]:
        chunks = _chunks(encode_text(pairs))
        self._outbox = chunks[1:]
        return self._request(chunks[0], cont=bool(self._outbox), transit=not self._outbox)

    def _next_chunk(self) -> tuple[LoginRequest, bytes]:
        chunk = self._outbox.pop(0)
        return self._request(chunk, cont=bool(self._outbox), transit=not self._outbox)

    def _request(self, chunk: bytes, *, cont: bool, transit: bool
                 ) -> tuple[LoginRequest, bytes]:
        request = LoginRequest(
            itt=self.itt, isid=self.isid, tsih=0, cid=self.cid, cmdsn=self.cmdsn,
            expstatsn=self._exp_statsn, transit=transit, cont=cont, csg=self._stage,
            nsg=self._nsg if transit else 0, version_max=ISCSI_VERSION,
            version_min=ISCSI_VERSION, data_length=len(chunk))
        return request, chunk
