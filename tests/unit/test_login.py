"""Login state machines, both roles, RFC 7143 §6.3 and §11.12-11.13.

Every PDU crosses a "wire": it is encoded to its 48-byte BHS and decoded again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import pytest

from pyiscsi.proto.errors import LocalProtocolError, LoginFailed, RemoteProtocolError
from pyiscsi.proto.keys import NOT_UNDERSTOOD, encode_text, parse_text
from pyiscsi.proto.login import (
    InitiatorLogin,
    InitiatorLoginConfig,
    LoginDone,
    LoginState,
    LoginStep,
    TargetLogin,
    TargetLoginConfig,
)
from pyiscsi.proto.pdu import LoginRequest, LoginResponse, decode_bhs
from pyiscsi.proto.wire import LoginStage, LoginStatus

TARGET = "iqn.2024-01.org.pyiscsi:disk0"
INITIATOR = "iqn.2024-01.org.example:host1"
ISID = 0x23D000000001


def wire_req(request: LoginRequest) -> LoginRequest:
    pdu = decode_bhs(request.encode())
    assert isinstance(pdu, LoginRequest)
    return pdu


def wire_rsp(response: LoginResponse) -> LoginResponse:
    pdu = decode_bhs(response.encode())
    assert isinstance(pdu, LoginResponse)
    return pdu


def config(**kw: object) -> TargetLoginConfig:
    base: dict[str, object] = {"lookup_target": lambda name: name == TARGET,
                               "target_alias": "disk zero", "portal_group_tag": 7}
    base.update(kw)
    return TargetLoginConfig(**base)  # type: ignore[arg-type]


@dataclass
class Run:
    done: LoginDone
    steps: list[LoginStep] = field(default_factory=list)
    requests: list[tuple[LoginRequest, bytes]] = field(default_factory=list)


def run(initiator: InitiatorLogin, target: TargetLogin) -> Run:
    """Drive both machines in memory until the initiator reaches full feature phase."""
    steps: list[LoginStep] = []
    requests: list[tuple[LoginRequest, bytes]] = []
    out: tuple[LoginRequest, bytes] | LoginDone = initiator.start()
    while not isinstance(out, LoginDone):
        request, data = out
        requests.append((request, data))
        step = target.receive(wire_req(request), data)
        steps.append(step)
        assert not step.failed, step.status
        out = initiator.receive(wire_rsp(step.response), step.data)
        assert len(steps) < 20
    return Run(out, steps, requests)


def request(*pairs: tuple[str, str], csg: int = 1, nsg: int = 3, transit: bool = True,
            cont: bool = False, version_min: int = 0, version_max: int = 0, tsih: int = 0,
            cmdsn: int = 5, itt: int = 9) -> tuple[LoginRequest, bytes]:
    data = encode_text(pairs)
    return LoginRequest(itt=itt, isid=ISID, tsih=tsih, cmdsn=cmdsn, transit=transit, cont=cont,
                        csg=csg, nsg=nsg if transit else 0, version_max=version_max,
                        version_min=version_min, data_length=len(data)), data


IDENTITY = (("InitiatorName", INITIATOR), ("TargetName", TARGET))


def send(target: TargetLogin, req: tuple[LoginRequest, bytes]) -> LoginStep:
    return target.receive(wire_req(req[0]), req[1])


def status_bytes(step: LoginStep) -> bytes:
    """Status-Class and Status-Detail as on the wire (BHS bytes 36-37, RFC 7143 §11.13)."""
    return step.response.encode()[36:38]


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("security_stage", [False, True])
def test_initiator_and_target_reach_full_feature(security_stage: bool) -> None:
    target = TargetLogin(config(), statsn=1000)
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID, itt=3, cmdsn=40,
                               config=InitiatorLoginConfig(security_stage=security_stage,
                                                           max_outstanding_r2t=16,
                                                           initiator_alias="h1"))
    result = run(initiator, target)
    final = result.steps[-1]
    assert final.complete and final.params is not None
    assert target.state is LoginState.FULL_FEATURE
    assert initiator.state is LoginState.FULL_FEATURE
    assert len(result.steps) == (2 if security_stage else 1)
    # first request: CSG as chosen, T=1 towards the next stage
    first = result.requests[0][0]
    assert (first.csg, first.nsg, first.transit) == ((0, 1, True) if security_stage
                                                     else (1, 3, True))
    t, i = final.params, result.done.params
    assert t.max_recv_data_segment_length == 262144 == i.max_send_data_segment_length
    assert i.max_recv_data_segment_length == 262144 == t.max_send_data_segment_length
    assert replace(t, max_recv_data_segment_length=0, max_send_data_segment_length=0) == \
        replace(i, max_recv_data_segment_length=0, max_send_data_segment_length=0)
    assert (t.initial_r2t, t.immediate_data) == (False, True)
    assert t.max_burst_length == 1048576
    assert t.first_burst_length == 65536          # target limit (initiator offered 262144)
    assert t.max_outstanding_r2t == 8             # MIN(16, 8)
    assert (t.header_digest, t.data_digest) == (False, False)  # initiator prefers None
    assert (t.target_name, t.initiator_name, t.initiator_alias) == (TARGET, INITIATOR, "h1")
    assert (t.target_alias, t.target_portal_group_tag) == ("disk zero", 7)
    assert t.session_type == "Normal"
    # TSIH, sequence numbers
    assert final.response.tsih == result.done.tsih != 0
    assert [s.response.statsn for s in result.steps] == list(range(1000, 1000 + len(
        result.steps)))
    assert target.next_statsn == result.done.exp_statsn == 1000 + len(result.steps)
    assert final.response.expcmdsn == 40 == result.done.expcmdsn
    assert final.response.maxcmdsn == 40 + 31 == result.done.maxcmdsn
    assert all(r.cmdsn == 40 and r.itt == 3 and r.isid == ISID for r, _ in result.requests)
    assert final.response.nsg == LoginStage.FULL_FEATURE and final.response.transit


def test_first_response_declares_tpgt_alias_and_mrdsl() -> None:
    step = send(TargetLogin(config()), request(*IDENTITY))
    pairs = dict(parse_text(step.data))
    assert pairs["TargetPortalGroupTag"] == "7"
    assert pairs["TargetAlias"] == "disk zero"
    assert pairs["MaxRecvDataSegmentLength"] == "262144"


def test_security_stage_response_has_no_operational_declaration() -> None:
    target = TargetLogin(config())
    step = send(target, request(*IDENTITY, ("AuthMethod", "None"), csg=0, nsg=1))
    assert dict(parse_text(step.data)) == {"TargetPortalGroupTag": "7",
                                           "TargetAlias": "disk zero", "AuthMethod": "None"}
    r = step.response
    assert (r.transit, r.csg, r.nsg, r.tsih) == (True, 0, 1, 0)
    assert target.state is LoginState.OPERATIONAL


def test_security_straight_to_full_feature() -> None:
    target = TargetLogin(config())
    step = send(target, request(*IDENTITY, ("AuthMethod", "None"), csg=0, nsg=3))
    assert step.complete and step.response.nsg == 3 and step.response.tsih != 0
    assert step.params is not None and step.params.max_recv_data_segment_length == 8192


def test_digests_negotiated_when_offered_first() -> None:
    cfg = InitiatorLoginConfig(header_digest=("CRC32C", "None"), data_digest=("CRC32C",))
    result = run(InitiatorLogin(INITIATOR, TARGET, ISID, config=cfg), TargetLogin(config()))
    assert (result.done.params.header_digest, result.done.params.data_digest) == (True, True)
    # a target that does not allow digests answers None / Reject
    target = TargetLogin(config(digests_allowed=False))
    result = run(InitiatorLogin(INITIATOR, TARGET, ISID, config=cfg), target)
    assert (result.done.params.header_digest, result.done.params.data_digest) == (False, False)
    assert dict(parse_text(result.steps[0].data))["DataDigest"] == "Reject"


def test_initiator_forces_initial_r2t_and_no_immediate_data() -> None:
    cfg = InitiatorLoginConfig(initial_r2t=True, immediate_data=False)
    result = run(InitiatorLogin(INITIATOR, TARGET, ISID, config=cfg), TargetLogin(config()))
    p = result.done.params
    assert (p.initial_r2t, p.immediate_data) == (True, False)
    assert dict(parse_text(result.steps[0].data))["FirstBurstLength"] == "Irrelevant"


def test_discovery_session() -> None:
    target = TargetLogin(config())
    result = run(InitiatorLogin(INITIATOR, None, ISID), target)
    p = result.done.params
    assert p.session_type == "Discovery" and p.discovery
    assert p.target_portal_group_tag is None and p.target_name is None
    pairs = dict(parse_text(result.steps[0].data))
    assert "TargetPortalGroupTag" not in pairs and "MaxBurstLength" not in pairs
    assert result.done.tsih != 0


def test_discovery_disabled_is_0209() -> None:
    step = send(TargetLogin(config(allow_discovery=False)),
                request(("InitiatorName", INITIATOR), ("SessionType", "Discovery")))
    assert status_bytes(step) == b"\x02\x09" and step.failed


def test_unknown_session_type_is_0209() -> None:
    step = send(TargetLogin(config()), request(*IDENTITY, ("SessionType", "Weird")))
    assert status_bytes(step) == b"\x02\x09"


def test_libiscsi_style_login_with_extension_and_marker_keys() -> None:
    step = send(TargetLogin(config()), request(*IDENTITY, ("X-com.example.k", "1"),
                                               ("OFMarker", "No"), ("SendTargets", "All")))
    assert step.complete
    pairs = dict(parse_text(step.data))
    assert pairs["X-com.example.k"] == NOT_UNDERSTOOD
    assert pairs["OFMarker"] == "Reject"
    assert pairs["SendTargets"] == "Irrelevant"


# ---------------------------------------------------------------- refusals with exact status


def assert_refused(step: LoginStep, status: LoginStatus, wire: bytes) -> None:
    assert step.failed and not step.complete
    assert step.status is status
    assert status_bytes(step) == wire
    assert step.data == b"" and not step.response.transit


@pytest.mark.parametrize(("pairs", "status", "wire"), [
    ((("InitiatorName", INITIATOR), ("TargetName", "iqn.nope")),
     LoginStatus.NOT_FOUND, b"\x02\x03"),
    ((("TargetName", TARGET),), LoginStatus.MISSING_PARAMETER, b"\x02\x07"),
    ((("InitiatorName", INITIATOR),), LoginStatus.MISSING_PARAMETER, b"\x02\x07"),
    ((("InitiatorName", ""), ("TargetName", TARGET)), LoginStatus.MISSING_PARAMETER,
     b"\x02\x07"),
])
def test_identity_refusals(pairs: tuple[tuple[str, str], ...], status: LoginStatus,
                           wire: bytes) -> None:
    target = TargetLogin(config())
    assert_refused(send(target, request(*pairs)), status, wire)
    assert target.state is LoginState.FAILED


def test_unsupported_version_is_0205() -> None:
    step = send(TargetLogin(config()), request(*IDENTITY, version_min=1, version_max=2))
    assert_refused(step, LoginStatus.UNSUPPORTED_VERSION, b"\x02\x05")


def test_version_range_containing_zero_is_fine() -> None:
    assert send(TargetLogin(config()), request(*IDENTITY, version_max=2)).complete


def test_acl_denied_is_0202() -> None:
    seen: list[tuple[str, str]] = []

    def authorize(initiator: str, target: str) -> bool:
        seen.append((initiator, target))
        return False

    step = send(TargetLogin(config(authorize=authorize)), request(*IDENTITY))
    assert_refused(step, LoginStatus.AUTHORIZATION_FAILURE, b"\x02\x02")
    assert seen == [(INITIATOR, TARGET)]


def test_callback_may_raise_login_failed() -> None:
    def busy(isid: int, name: str) -> int:
        raise LoginFailed(LoginStatus.OUT_OF_RESOURCES)

    step = send(TargetLogin(config(assign_tsih=busy)), request(*IDENTITY))
    assert_refused(step, LoginStatus.OUT_OF_RESOURCES, b"\x03\x02")


def test_connection_joining_a_session_keeps_its_tsih() -> None:
    target = TargetLogin(config())
    step = send(target, request(*IDENTITY, ("MaxBurstLength", "4096"),
                                ("HeaderDigest", "CRC32C"), tsih=5))
    assert step.complete and step.response.tsih == 5 and not target.leading
    pairs = dict(parse_text(step.data))
    assert pairs["MaxBurstLength"] == "Irrelevant"     # LO key on a non-leading connection
    assert pairs["HeaderDigest"] == "CRC32C"           # connection-only keys negotiate
    assert step.params is not None and step.params.header_digest


@pytest.mark.parametrize("req", [
    request(*IDENTITY, transit=True, cont=True),                   # T and C together
    request(*IDENTITY, csg=1, nsg=1),                              # 1 -> 1
    request(*IDENTITY, csg=1, nsg=0),                              # backwards
    request(*IDENTITY, csg=3, nsg=3),                              # starts in FFP
    request(*IDENTITY, csg=2, nsg=3),                              # reserved stage
    request(*IDENTITY, ("MaxBurstLength", "512"), ("MaxBurstLength", "1024")),
    request(*IDENTITY, ("AuthMethod", "None")),                    # security key in stage 1
    (request(*IDENTITY)[0], b"NoEquals\0"),
    (replace(request()[0], data_length=8200), b"".join(
        b"X-k%05d=v\0" % i for i in range(820))),                    # over 8192 bytes
])
def test_initiator_errors_are_0200(req: tuple[LoginRequest, bytes]) -> None:
    assert_refused(send(TargetLogin(config()), req), LoginStatus.INITIATOR_ERROR, b"\x02\x00")


def test_only_chap_without_chap_configured_is_0201() -> None:
    step = send(TargetLogin(config()), request(*IDENTITY, ("AuthMethod", "CHAP"), csg=0,
                                               nsg=1))
    assert_refused(step, LoginStatus.AUTHENTICATION_FAILURE, b"\x02\x01")


def test_chap_or_none_answers_none() -> None:
    step = send(TargetLogin(config()), request(*IDENTITY, ("AuthMethod", "CHAP,None"), csg=0,
                                               nsg=1))
    assert dict(parse_text(step.data))["AuthMethod"] == "None"
    assert step.response.transit


def test_dead_after_failure_and_after_completion() -> None:
    target = TargetLogin(config())
    send(target, request(("TargetName", TARGET)))
    with pytest.raises(LocalProtocolError):
        send(target, request(*IDENTITY))
    target = TargetLogin(config())
    assert send(target, request(*IDENTITY)).complete
    with pytest.raises(LocalProtocolError):
        send(target, request(*IDENTITY))


def test_failure_response_echoes_itt_isid_and_counts_statsn() -> None:
    target = TargetLogin(config(), statsn=0xFFFFFFFF)
    step = send(target, request(("TargetName", TARGET), itt=0x1234))
    r = wire_rsp(step.response)
    assert (r.itt, r.isid, r.tsih, r.statsn) == (0x1234, ISID, 0, 0xFFFFFFFF)
    assert target.next_statsn == 0  # serial wrap


# ---------------------------------------------------------------- multi-PDU text (C bit)


def test_continued_request_text_is_reassembled() -> None:
    target = TargetLogin(config())
    data = encode_text([*IDENTITY, ("MaxBurstLength", "65536")])
    head, tail = data[:20], data[20:]      # split inside a pair
    first = LoginRequest(itt=1, isid=ISID, cont=True, csg=1, data_length=len(head))
    step = target.receive(wire_req(first), head)
    r = step.response
    assert (step.data, r.cont, r.transit, r.data_length) == (b"", False, False, 0)
    assert not step.complete and not step.failed
    last = LoginRequest(itt=1, isid=ISID, transit=True, csg=1, nsg=3, data_length=len(tail))
    step = target.receive(wire_req(last), tail)
    assert step.complete
    assert dict(parse_text(step.data))["MaxBurstLength"] == "65536"


def test_long_response_is_continued_with_c_bit() -> None:
    target = TargetLogin(config())
    extensions = [(f"X-org.example.key{i:04d}", "v") for i in range(300)]
    step1 = send(target, request(*IDENTITY, *extensions))
    assert step1.response.cont and not step1.response.transit and not step1.complete
    assert len(step1.data) == 8192
    empty = LoginRequest(itt=9, isid=ISID, transit=True, csg=1, nsg=3)
    step2 = target.receive(wire_req(empty), b"")
    assert not step2.response.cont and step2.response.transit and step2.complete
    pairs = dict(parse_text(step1.data + step2.data))
    assert all(pairs[k] == NOT_UNDERSTOOD for k, _ in extensions)


def test_text_while_response_continues_is_0200() -> None:
    target = TargetLogin(config())
    extensions = [(f"X-org.example.key{i:04d}", "v") for i in range(300)]
    assert send(target, request(*IDENTITY, *extensions)).response.cont
    step = send(target, request(("MaxBurstLength", "512")))
    assert status_bytes(step) == b"\x02\x00"


def test_initiator_pulls_continued_response() -> None:
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID)
    initiator.start()
    text = encode_text([("TargetPortalGroupTag", "1"), ("MaxBurstLength", "65536")])
    part = LoginResponse(itt=0, isid=ISID, cont=True, csg=1, statsn=10,
                         data_length=len(text[:10]))
    out = initiator.receive(wire_rsp(part), text[:10])
    assert isinstance(out, tuple)
    req, data = out
    assert data == b"" and not req.cont and req.csg == 1 and req.expstatsn == 11
    final = LoginResponse(itt=0, isid=ISID, tsih=3, transit=True, csg=1, nsg=3, statsn=11,
                          data_length=len(text) - 10)
    done = initiator.receive(wire_rsp(final), text[10:])
    assert isinstance(done, LoginDone)
    assert done.params.max_burst_length == 65536 and done.params.target_portal_group_tag == 1


# ---------------------------------------------------------------- initiator refusals


@pytest.mark.parametrize(("pairs", "status"), [
    ((("TargetName", "iqn.other"),), LoginStatus.NOT_FOUND),
    ((), LoginStatus.AUTHORIZATION_FAILURE),
])
def test_initiator_raises_login_failed(pairs: tuple[tuple[str, str], ...],
                                       status: LoginStatus) -> None:
    name = pairs[0][1] if pairs else TARGET
    initiator = InitiatorLogin(INITIATOR, name, ISID)
    target = TargetLogin(config(authorize=lambda i, t: False))
    req, data = initiator.start()
    step = target.receive(wire_req(req), data)
    with pytest.raises(LoginFailed) as info:
        initiator.receive(wire_rsp(step.response), step.data)
    assert info.value.status is status
    assert initiator.state is LoginState.FAILED
    with pytest.raises(LocalProtocolError):
        initiator.receive(wire_rsp(step.response), step.data)


def test_initiator_redirect_and_unknown_status() -> None:
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID)
    initiator.start()
    text = encode_text([("TargetAddress", "10.0.0.2:3260,1")])
    moved = LoginResponse(itt=0, isid=ISID, status_class=1, status_detail=1,
                          data_length=len(text))
    with pytest.raises(LoginFailed) as info:
        initiator.receive(wire_rsp(moved), text)
    assert info.value.status is LoginStatus.TARGET_MOVED_TEMPORARILY
    assert "10.0.0.2:3260,1" in str(info.value)
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID)
    initiator.start()
    odd = LoginResponse(itt=0, isid=ISID, status_class=2, status_detail=0x7F)
    with pytest.raises(LoginFailed) as info:
        initiator.receive(wire_rsp(odd))
    assert info.value.status is LoginStatus.INITIATOR_ERROR


@pytest.mark.parametrize(("text", "fields"), [
    (b"MaxBurstLength=2000000\0", {}),                       # above our MIN offer
    (b"InitialR2T=Maybe\0", {}),
    (b"", {"nsg": 1}),                                       # transit we did not ask for
    (b"", {"itt": 99}),
    (b"", {"csg": 0}),
])
def test_initiator_rejects_protocol_violations(text: bytes, fields: dict[str, int]) -> None:
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID)
    initiator.start()
    base = {"itt": 0, "isid": ISID, "transit": True, "csg": 1, "nsg": 3,
            "data_length": len(text)}
    base.update(fields)
    with pytest.raises(RemoteProtocolError):
        initiator.receive(wire_rsp(LoginResponse(**base)), text)  # type: ignore[arg-type]
    assert initiator.state is LoginState.FAILED


def test_initiator_api_misuse() -> None:
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID)
    with pytest.raises(LocalProtocolError):
        initiator.receive(LoginResponse(itt=0, isid=ISID))
    initiator.start()
    with pytest.raises(LocalProtocolError):
        initiator.start()


def test_initiator_answers_target_offers_and_keeps_asking_to_transit() -> None:
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID)
    initiator.start()
    text = encode_text([("DefaultTime2Retain", "0")])
    out = initiator.receive(wire_rsp(LoginResponse(itt=0, isid=ISID, csg=1,
                                                   data_length=len(text))), text)
    assert isinstance(out, tuple)
    req, data = out
    assert req.transit and req.nsg == 3
    # DefaultTime2Retain was offered by the initiator too: taken as the answer (MIN 20 -> 0)
    assert data == b""
    assert initiator.negotiation.agreed["DefaultTime2Retain"] == "0"


def test_initiator_answers_a_key_only_the_target_offered() -> None:
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID)
    initiator.start()
    text = encode_text([("TaskReporting", "ResponseFence,RFC3720"), ("X-vendor", "1")])
    out = initiator.receive(wire_rsp(LoginResponse(itt=0, isid=ISID, csg=1,
                                                   data_length=len(text))), text)
    assert isinstance(out, tuple)
    assert parse_text(out[1]) == [("TaskReporting", "RFC3720"),
                                  ("X-vendor", NOT_UNDERSTOOD)]


def test_initiator_gives_up_after_many_rounds() -> None:
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID)
    initiator.start()
    with pytest.raises(RemoteProtocolError):
        for _ in range(100):
            initiator.receive(wire_rsp(LoginResponse(itt=0, isid=ISID, csg=1)))


# ---------------------------------------------------------------- authenticator hook


@dataclass
class FakeChap:
    method: str = "CHAP"
    calls: list[dict[str, str]] = field(default_factory=list)

    def step(self, initiator_name: str, keys: Mapping[str, str]
             ) -> tuple[list[tuple[str, str]], bool]:
        self.calls.append(dict(keys))
        if "CHAP_R" in keys:
            if keys["CHAP_R"] != "0xgood":
                raise LoginFailed(LoginStatus.AUTHENTICATION_FAILURE)
            return [], True
        if "CHAP_A" in keys:
            return [("CHAP_A", "5"), ("CHAP_I", "1"), ("CHAP_C", "0xabcd")], False
        return [], False


def test_authenticator_hook_gates_the_security_stage() -> None:
    chap = FakeChap()
    target = TargetLogin(config(authenticator=chap))
    step = send(target, request(*IDENTITY, ("AuthMethod", "CHAP,None"), csg=0, nsg=1))
    assert dict(parse_text(step.data))["AuthMethod"] == "CHAP"
    assert not step.response.transit                    # not authenticated yet
    step = send(target, request(("CHAP_A", "5"), csg=0, nsg=1))
    assert dict(parse_text(step.data))["CHAP_C"] == "0xabcd" and not step.response.transit
    step = send(target, request(("CHAP_N", "user"), ("CHAP_R", "0xgood"), csg=0, nsg=1))
    assert step.response.transit and step.response.nsg == 1
    assert chap.calls[-1] == {"CHAP_N": "user", "CHAP_R": "0xgood"}
    assert send(target, request(csg=1, nsg=3)).complete


def test_authenticator_refusal_and_required_auth() -> None:
    target = TargetLogin(config(authenticator=FakeChap()))
    send(target, request(*IDENTITY, ("AuthMethod", "CHAP"), csg=0, nsg=1))
    step = send(target, request(("CHAP_N", "user"), ("CHAP_R", "0xbad"), csg=0, nsg=1))
    assert status_bytes(step) == b"\x02\x01"
    # skipping the security stage when authentication is required
    step = send(TargetLogin(config(authenticator=FakeChap())), request(*IDENTITY))
    assert status_bytes(step) == b"\x02\x01"
    # offering only None when CHAP is required
    step = send(TargetLogin(config(authenticator=FakeChap())),
                request(*IDENTITY, ("AuthMethod", "None"), csg=0, nsg=1))
    assert status_bytes(step) == b"\x02\x01"


def test_target_does_not_transit_while_its_own_offer_is_unanswered() -> None:
    target = TargetLogin(config())
    target.negotiation.offer("DefaultTime2Retain", "0")   # the target originates a key
    step = send(target, request(*IDENTITY))
    assert dict(parse_text(step.data))["DefaultTime2Retain"] == "0"
    assert not step.response.transit and not step.complete
    step = send(target, request(("DefaultTime2Retain", "0")))
    assert "DefaultTime2Retain" not in dict(parse_text(step.data))
    assert step.complete and step.params is not None
    assert step.params.default_time2retain == 0


# ---------------------------------------------------------------- CHAP (RFC 7143 §12.1.3)

from pyiscsi.proto.chap import AuthConfig, ChapSecret, TargetChap  # noqa: E402

CHAP_INI = ChapSecret("user", b"secretsecret12")
CHAP_TGT = ChapSecret("target", b"targetsecret34")


def chap_target(auth: AuthConfig | None = None) -> TargetLogin:
    return TargetLogin(config(authenticator=TargetChap(auth or AuthConfig(CHAP_INI, CHAP_TGT))))


def sent_keys(result: Run) -> list[dict[str, str]]:
    return [dict(parse_text(data)) for _, data in result.requests]


def test_one_way_chap_login_reaches_full_feature() -> None:
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID, credentials=("user", "secretsecret12"))
    result = run(initiator, chap_target())
    keys = sent_keys(result)
    assert keys[0]["AuthMethod"] == "CHAP,None"
    assert keys[1] == {"CHAP_A": "7,8,5"}
    assert set(keys[2]) == {"CHAP_N", "CHAP_R"}
    # the target stays in the security stage until CHAP_R checked out
    assert [s.response.transit for s in result.steps[:3]] == [False, False, True]
    assert result.steps[2].response.csg == 0 and result.steps[2].response.nsg == 1
    assert result.steps[-1].complete and result.done.tsih


def test_mutual_chap_login_reaches_full_feature() -> None:
    auth = AuthConfig(CHAP_INI, CHAP_TGT)
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID, credentials=auth)
    result = run(initiator, chap_target(auth))
    assert sent_keys(result)[0]["AuthMethod"] == "CHAP"        # no downgrade to None
    assert {"CHAP_I", "CHAP_C"} <= set(sent_keys(result)[2])
    assert set(dict(parse_text(result.steps[2].data))) == {"CHAP_N", "CHAP_R"}
    assert initiator.chap is not None and initiator.chap.done


def test_chap_discovery_session() -> None:
    initiator = InitiatorLogin(INITIATOR, None, ISID, credentials=AuthConfig(CHAP_INI))
    assert run(initiator, chap_target()).done.params.discovery


def drive_until_failure(initiator: InitiatorLogin, target: TargetLogin) -> LoginStep:
    out = initiator.start()
    for _ in range(10):
        assert not isinstance(out, LoginDone)
        step = target.receive(wire_req(out[0]), out[1])
        if step.failed:
            with pytest.raises(LoginFailed) as exc:
                initiator.receive(wire_rsp(step.response), step.data)
            assert exc.value.status == step.status
            return step
        out = initiator.receive(wire_rsp(step.response), step.data)
    raise AssertionError("login did not fail")


def test_wrong_chap_secret_is_0201_on_both_sides() -> None:
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID, credentials=("user", "wrongwrongwrong"))
    step = drive_until_failure(initiator, chap_target())
    assert status_bytes(step) == b"\x02\x01"


def test_no_credentials_against_chap_target_is_0201() -> None:
    for cfg in (InitiatorLoginConfig(), InitiatorLoginConfig(security_stage=True)):
        initiator = InitiatorLogin(INITIATOR, TARGET, ISID, config=cfg)
        assert status_bytes(drive_until_failure(initiator, chap_target())) == b"\x02\x01"


def test_mutual_requested_from_target_without_mutual_secret_is_0201() -> None:
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID,
                               credentials=AuthConfig(CHAP_INI, CHAP_TGT))
    step = drive_until_failure(initiator, chap_target(AuthConfig(CHAP_INI)))
    assert status_bytes(step) == b"\x02\x01"


def test_chap_keys_without_auth_method_are_refused() -> None:
    step = send(chap_target(), request(*IDENTITY, ("CHAP_A", "5"), csg=0, nsg=1))
    assert status_bytes(step) == b"\x02\x01"


def test_one_way_initiator_accepts_a_target_without_chap() -> None:
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID, credentials=("user", "secretsecret12"))
    result = run(initiator, TargetLogin(config()))
    assert result.done.tsih and initiator.negotiation.agreed.get("AuthMethod") == "None"


def test_mutual_initiator_refuses_a_target_that_skips_chap() -> None:
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID,
                               credentials=AuthConfig(CHAP_INI, CHAP_TGT))
    initiator.start()
    text = encode_text([("AuthMethod", "Reject")])
    response = LoginResponse(itt=0, isid=ISID, transit=True, csg=0, nsg=1,
                             data_length=len(text))
    with pytest.raises(LoginFailed) as exc:
        initiator.receive(wire_rsp(response), text)
    assert exc.value.status is LoginStatus.AUTHENTICATION_FAILURE
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID,
                               credentials=AuthConfig(CHAP_INI, CHAP_TGT))
    initiator.start()
    text = encode_text([("AuthMethod", "None")])     # not among what we offered
    with pytest.raises(RemoteProtocolError):
        initiator.receive(wire_rsp(replace(response, data_length=len(text))), text)


def test_initiator_refuses_transit_before_mutual_answer() -> None:
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID,
                               credentials=AuthConfig(CHAP_INI, CHAP_TGT))
    target = chap_target()
    out = initiator.start()
    for _ in range(2):                               # AuthMethod, then CHAP_A
        assert not isinstance(out, LoginDone)
        step = target.receive(wire_req(out[0]), out[1])
        out = initiator.receive(wire_rsp(step.response), step.data)
    assert not isinstance(out, LoginDone)
    step = target.receive(wire_req(out[0]), out[1])
    assert step.response.transit
    with pytest.raises(LoginFailed) as exc:          # the target's CHAP_N/CHAP_R dropped
        initiator.receive(wire_rsp(replace(step.response, data_length=0)), b"")
    assert exc.value.status is LoginStatus.AUTHENTICATION_FAILURE


# ---------------------------------------------------------------- a config per target

OTHER = "iqn.2024-01.org.pyiscsi:disk1"


def per_target(calls: list[tuple[str, str | None]] | None = None) -> TargetLoginConfig:
    """TARGET needs CHAP and offers MaxBurstLength=65536; OTHER keeps the base config."""
    def resolve(session_type: str, name: str | None) -> TargetLoginConfig | None:
        if calls is not None:
            calls.append((session_type, name))
        if name == TARGET:
            return config(authenticator=TargetChap(AuthConfig(CHAP_INI)),
                          max_burst_length=65536)
        return None

    return config(lookup_target=lambda name: name in (TARGET, OTHER), resolve=resolve)


def test_resolve_picks_the_targets_credentials_once_it_is_named() -> None:
    calls: list[tuple[str, str | None]] = []
    initiator = InitiatorLogin(INITIATOR, TARGET, ISID, credentials=("user", "secretsecret12"))
    result = run(initiator, TargetLogin(per_target(calls)))
    assert calls == [("Normal", TARGET)]  # once, at the first text
    assert result.done.params.max_burst_length == 65536
    assert sent_keys(result)[1] == {"CHAP_A": "7,8,5"}


def test_resolve_refuses_a_login_without_the_targets_credentials() -> None:
    # straight to the operational stage (libiscsi without CHAP): refused once named
    step = send(TargetLogin(per_target()), request(*IDENTITY))
    assert status_bytes(step) == b"\x02\x01"
    # the security stage offering only None
    step = send(TargetLogin(per_target()),
                request(*IDENTITY, ("AuthMethod", "None"), csg=0, nsg=1))
    assert status_bytes(step) == b"\x02\x01"


def test_resolve_none_keeps_the_base_config_and_its_offers() -> None:
    calls: list[tuple[str, str | None]] = []
    target = TargetLogin(per_target(calls))
    target.negotiation.offer("DefaultTime2Retain", "0")
    step = send(target, request(("InitiatorName", INITIATOR), ("TargetName", OTHER)))
    assert dict(parse_text(step.data))["DefaultTime2Retain"] == "0"
    assert send(target, request(("DefaultTime2Retain", "0"))).complete
    initiator = InitiatorLogin(INITIATOR, None, ISID)
    assert run(initiator, TargetLogin(per_target(calls))).done.params.discovery
    assert calls == [("Normal", OTHER), ("Discovery", None)]
