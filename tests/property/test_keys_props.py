"""Property tests of the text codec and negotiation (RFC 7143 §6.1-6.2, §13)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from pyiscsi.proto.keys import (
    ANSWER_CHECKS,
    KEYS,
    REJECT,
    KeySpec,
    Kind,
    Negotiation,
    NegotiationError,
    Result,
    SessionParams,
    TextFormatError,
    encode_text,
    parse_text,
    select,
)
from pyiscsi.proto.login import (
    InitiatorLogin,
    InitiatorLoginConfig,
    LoginDone,
    TargetLogin,
    TargetLoginConfig,
)
from pyiscsi.proto.pdu import LoginRequest, LoginResponse, decode_bhs
from pyiscsi.proto.wire import LoginStage

key_names = st.from_regex(r"[A-Za-z0-9.\-+@_#]{1,63}", fullmatch=True)
values = st.text(st.characters(exclude_characters="\0", exclude_categories=["Cs"]),
                 max_size=60)
pair_lists = st.lists(st.tuples(key_names, values), max_size=20, unique_by=lambda p: p[0])


@given(pair_lists, st.integers(0, 3))
def test_encode_parse_round_trip(pairs: list[tuple[str, str]], padding: int) -> None:
    assert parse_text(encode_text(pairs) + b"\0" * padding) == pairs


@given(st.binary(max_size=600))
def test_parse_never_crashes(data: bytes) -> None:
    try:
        pairs = parse_text(data)
    except TextFormatError:
        return
    assert parse_text(encode_text(pairs)) == pairs


NUMERIC = [s for s in KEYS.values() if s.kind is Kind.NUMBER and s.result in (Result.MIN,
                                                                               Result.MAX)]
BOOLEAN = [s for s in KEYS.values() if s.kind is Kind.BOOLEAN]
LISTS = [s for s in KEYS.values() if s.kind is Kind.LIST]


@st.composite
def numeric_case(draw: st.DrawFn) -> tuple[str, str, str]:
    spec = draw(st.sampled_from(NUMERIC))
    a = draw(st.integers(spec.low, spec.high))
    b = draw(st.integers(spec.low, spec.high))
    return spec.name, str(a), draw(st.sampled_from([str(b), hex(b)]))


@given(numeric_case())
def test_min_max_commute_and_satisfy_the_originator(case: tuple[str, str, str]) -> None:
    name, a, b = case
    spec = KEYS[name]
    assert int(select(spec, a, b), 0) == int(select(spec, b, a), 0)
    assert ANSWER_CHECKS[spec.result](a, select(spec, a, b))


@given(st.sampled_from(BOOLEAN), st.sampled_from(["Yes", "No"]), st.sampled_from(["Yes", "No"]))
def test_booleans_commute_and_satisfy_the_originator(spec: KeySpec, a: str, b: str) -> None:
    assert select(spec, a, b) == select(spec, b, a)
    assert ANSWER_CHECKS[spec.result](a, select(spec, a, b))


@given(st.sampled_from(LISTS), st.data())
def test_list_pick_is_first_common_value(s: KeySpec, data: st.DataObject) -> None:
    pool = [*s.values, "Bogus"]
    offered = data.draw(st.lists(st.sampled_from(pool), min_size=1, unique=True))
    ours = data.draw(st.lists(st.sampled_from(s.values), min_size=1, unique=True))
    got = select(s, ",".join(offered), ",".join(ours))
    common = [v for v in offered if v in ours]
    assert got == (common[0] if common else REJECT)
    if got != REJECT:
        assert ANSWER_CHECKS[s.result](",".join(offered), got)


interesting_values = st.one_of(values, st.sampled_from(
    ["Yes", "No", "0", "512", "65536", "0x10", "CRC32C,None", "None", "Reject", "Discovery",
     "Normal", "", "Irrelevant", "99999999999"]))
any_pairs = st.lists(st.tuples(st.one_of(st.sampled_from(sorted(KEYS)), key_names),
                               interesting_values), max_size=25)


@settings(max_examples=300)
@given(any_pairs, st.sampled_from(list(LoginStage)), st.booleans())
def test_negotiation_only_raises_negotiation_error(pairs: list[tuple[str, str]],
                                                   stage: LoginStage, offer: bool) -> None:
    n = Negotiation(TargetLoginConfig().local_keys())
    if offer:
        n.offer("MaxBurstLength", "65536")
        n.offer("HeaderDigest", "None")
    try:
        reply = n.receive(pairs, stage=stage)
    except NegotiationError:
        return
    assert {k for k, _ in reply} <= {k for k, _ in pairs}
    encode_text(reply)
    p = n.params()
    assert 512 <= p.first_burst_length <= p.max_burst_length


def _drive(initiator: InitiatorLogin, target: TargetLogin
           ) -> tuple[LoginDone, SessionParams]:
    out: tuple[LoginRequest, bytes] | LoginDone = initiator.start()
    for _ in range(10):
        if isinstance(out, LoginDone):
            break
        request, data = out
        req = decode_bhs(request.encode())
        assert isinstance(req, LoginRequest)
        step = target.receive(req, data)
        assert not step.failed
        rsp = decode_bhs(step.response.encode())
        assert isinstance(rsp, LoginResponse)
        out = initiator.receive(rsp, step.data)
    assert isinstance(out, LoginDone) and target.params is not None
    return out, target.params


sizes = st.integers(512, (1 << 24) - 1)


@settings(max_examples=150)
@given(sizes, sizes, sizes, sizes, st.integers(1, 65535), st.integers(1, 65535),
       st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.integers(0, 2),
       st.integers(0, 3600), st.integers(0, 3600), sizes, sizes)
def test_login_agrees_on_both_sides(tmb: int, tfb: int, imb: int, ifb: int, tr2t: int,
                                    ir2t: int, t_r2t: bool, i_r2t: bool, t_imm: bool,
                                    i_imm: bool, erl: int, wait: int, retain: int,
                                    t_mrdsl: int, i_mrdsl: int) -> None:
    target_cfg = TargetLoginConfig(
        lookup_target=lambda name: True, max_burst_length=tmb, first_burst_length=tfb,
        max_outstanding_r2t=tr2t, initial_r2t=t_r2t, immediate_data=t_imm,
        max_recv_data_segment_length=t_mrdsl)
    initiator_cfg = InitiatorLoginConfig(
        max_burst_length=imb, first_burst_length=ifb, max_outstanding_r2t=ir2t,
        initial_r2t=i_r2t, immediate_data=i_imm, error_recovery_level=erl,
        default_time2wait=wait, default_time2retain=retain,
        max_recv_data_segment_length=i_mrdsl)
    done, tparams = _drive(InitiatorLogin("iqn.i", "iqn.t", 1, config=initiator_cfg),
                           TargetLogin(target_cfg))
    ip = done.params
    assert replace(ip, max_recv_data_segment_length=0, max_send_data_segment_length=0) == \
        replace(tparams, max_recv_data_segment_length=0, max_send_data_segment_length=0)
    assert ip.max_recv_data_segment_length == i_mrdsl == tparams.max_send_data_segment_length
    assert ip.max_send_data_segment_length == t_mrdsl
    assert ip.max_burst_length == min(tmb, imb)
    assert ip.first_burst_length <= ip.max_burst_length
    assert ip.max_outstanding_r2t == min(tr2t, ir2t)
    assert ip.initial_r2t == (t_r2t or i_r2t)
    assert ip.immediate_data == (t_imm and i_imm)
    assert ip.error_recovery_level == 0
    assert ip.default_time2wait == max(wait, 2)
    assert ip.default_time2retain == min(retain, 20)
