"""Text codec, key table and negotiation rules (RFC 7143 §6.1-6.2, §13)."""

from __future__ import annotations

import pytest

from pyiscsi.proto.errors import RemoteProtocolError
from pyiscsi.proto.keys import (
    DEFAULTS,
    IRRELEVANT,
    KEYS,
    NOT_UNDERSTOOD,
    REJECT,
    Kind,
    Negotiation,
    NegotiationError,
    Result,
    Scope,
    SessionParams,
    TextFormatError,
    Use,
    encode_text,
    parse_number,
    parse_text,
    select,
)
from pyiscsi.proto.wire import LoginStage, LoginStatus

# ---------------------------------------------------------------- parse_text / encode_text


def test_parse_pairs_in_order() -> None:
    assert parse_text(b"A=1\0B=two\0") == [("A", "1"), ("B", "two")]


def test_trailing_nul_optional_and_padding_ignored() -> None:
    assert parse_text(b"A=1\0B=2") == [("A", "1"), ("B", "2")]
    assert parse_text(b"A=1\0\0\0\0") == [("A", "1")]
    assert parse_text(b"") == []
    assert parse_text(b"\0\0\0\0") == []


def test_value_may_contain_equals_and_be_empty() -> None:
    assert parse_text(b"A=b=c\0SendTargets=\0") == [("A", "b=c"), ("SendTargets", "")]


@pytest.mark.parametrize("data", [
    b"NoEquals\0",
    b"=value\0",
    b"A=1\0\0B=2\0",          # an empty pair in the middle is not padding
    b"A=\xff\xfe\0",          # not UTF-8
    b"Bad Key=1\0",           # space is not a key character
    b"K" * 64 + b"=1\0",      # key names are at most 63 bytes
    b"A=" + b"v" * 256 + b"\0",
    b"CHAP_C=" + b"f" * 8193 + b"\0",
])
def test_malformed_text_is_text_format_error(data: bytes) -> None:
    with pytest.raises(TextFormatError) as info:
        parse_text(data)
    assert info.value.status is LoginStatus.INITIATOR_ERROR
    assert isinstance(info.value, RemoteProtocolError)


def test_limits_are_inclusive() -> None:
    assert parse_text(b"K" * 63 + b"=1") == [("K" * 63, "1")]
    assert parse_text(b"A=" + b"v" * 255) == [("A", "v" * 255)]
    assert parse_text(b"CHAP_C=" + b"f" * 8192)[0][1] == "f" * 8192


def test_duplicate_key_is_an_error_unless_repeatable() -> None:
    with pytest.raises(TextFormatError):
        parse_text(b"MaxBurstLength=512\0MaxBurstLength=1024\0")
    assert len(parse_text(b"TargetAddress=a\0TargetAddress=b\0")) == 2
    assert len(parse_text(b"TargetName=a\0TargetName=b\0", unique=False)) == 2


def test_encode_text_nul_terminates_each_pair() -> None:
    assert encode_text([("A", "1"), ("Bb", "")]) == b"A=1\0Bb=\0"
    assert encode_text([]) == b""


@pytest.mark.parametrize("pair", [("", "x"), ("a b", "x"), ("A", "v" * 256), ("A", "a\0b")])
def test_encode_text_refuses_bad_pairs(pair: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        encode_text([pair])


def test_parse_number_decimal_and_hex() -> None:
    assert parse_number("8192") == 8192
    assert parse_number("0x2000") == 8192
    assert parse_number("") is None
    assert parse_number("-1") is None
    assert parse_number("12ab") is None
    assert parse_number("1" * 30) is None


# ---------------------------------------------------------------- the table

SECTION_13_KEYS = {
    "HeaderDigest", "DataDigest", "MaxConnections", "SendTargets", "TargetName",
    "InitiatorName", "TargetAlias", "InitiatorAlias", "TargetAddress", "TargetPortalGroupTag",
    "InitialR2T", "ImmediateData", "MaxRecvDataSegmentLength", "MaxBurstLength",
    "FirstBurstLength", "DefaultTime2Wait", "DefaultTime2Retain", "MaxOutstandingR2T",
    "DataPDUInOrder", "DataSequenceInOrder", "ErrorRecoveryLevel", "SessionType", "AuthMethod",
    "TaskReporting", "iSCSIProtocolLevel", "OFMarker", "IFMarker", "OFMarkInt", "IFMarkInt",
}


def test_table_holds_every_key() -> None:
    assert set(KEYS) == SECTION_13_KEYS


@pytest.mark.parametrize(("name", "result", "use", "default", "low", "high"), [
    ("MaxConnections", Result.MIN, Use.LO, "1", 1, 65535),
    ("MaxRecvDataSegmentLength", Result.DECLARATIVE, Use.ALL, "8192", 512, 16777215),
    ("MaxBurstLength", Result.MIN, Use.LO, "262144", 512, 16777215),
    ("FirstBurstLength", Result.MIN, Use.LO, "65536", 512, 16777215),
    ("DefaultTime2Wait", Result.MAX, Use.LO, "2", 0, 3600),
    ("DefaultTime2Retain", Result.MIN, Use.LO, "20", 0, 3600),
    ("MaxOutstandingR2T", Result.MIN, Use.LO, "1", 1, 65535),
    ("ErrorRecoveryLevel", Result.MIN, Use.LO, "0", 0, 2),
    ("iSCSIProtocolLevel", Result.MIN, Use.IO, "0", 0, 31),
])
def test_numeric_rows(name: str, result: Result, use: Use, default: str, low: int,
                      high: int) -> None:
    spec = KEYS[name]
    assert (spec.kind, spec.result, spec.use, spec.default, spec.low, spec.high) == (
        Kind.NUMBER, result, use, default, low, high)


@pytest.mark.parametrize(("name", "result", "default"), [
    ("InitialR2T", Result.OR, "Yes"),
    ("ImmediateData", Result.AND, "Yes"),
    ("DataPDUInOrder", Result.OR, "Yes"),
    ("DataSequenceInOrder", Result.OR, "Yes"),
])
def test_boolean_rows(name: str, result: Result, default: str) -> None:
    assert (KEYS[name].kind, KEYS[name].result, KEYS[name].default) == (
        Kind.BOOLEAN, result, default)


def test_list_rows_and_scopes() -> None:
    assert KEYS["HeaderDigest"].values == ("CRC32C", "None")
    assert KEYS["HeaderDigest"].scope is Scope.CONNECTION
    assert KEYS["MaxRecvDataSegmentLength"].scope is Scope.CONNECTION
    assert KEYS["MaxBurstLength"].scope is Scope.SESSION
    assert "CHAP" in KEYS["AuthMethod"].values and KEYS["AuthMethod"].use is Use.SECURITY
    assert KEYS["TaskReporting"].values == ("RFC3720", "ResponseFence", "FastAbort")
    assert KEYS["SessionType"].values == ("Discovery", "Normal")
    assert KEYS["SendTargets"].use is Use.FFPO
    assert DEFAULTS["SessionType"] == "Normal"


# ---------------------------------------------------------------- result functions


@pytest.mark.parametrize(("key", "offered", "ours", "expected"), [
    ("MaxBurstLength", "65536", "1048576", "65536"),
    ("MaxBurstLength", "0x100000", "65536", "65536"),
    ("DefaultTime2Wait", "2", "5", "5"),
    ("DefaultTime2Wait", "7", "5", "7"),
    ("InitialR2T", "No", "No", "No"),
    ("InitialR2T", "Yes", "No", "Yes"),
    ("InitialR2T", "No", "Yes", "Yes"),
    ("ImmediateData", "Yes", "Yes", "Yes"),
    ("ImmediateData", "Yes", "No", "No"),
    ("ImmediateData", "No", "Yes", "No"),
    ("HeaderDigest", "CRC32C,None", "CRC32C,None", "CRC32C"),
    ("HeaderDigest", "None,CRC32C", "CRC32C,None", "None"),
    ("HeaderDigest", "CRC32C", "None", REJECT),
    ("AuthMethod", "CHAP,None", "None", "None"),
    ("AuthMethod", "Foo,CHAP", "CHAP", "CHAP"),
])
def test_select(key: str, offered: str, ours: str, expected: str) -> None:
    assert select(KEYS[key], offered, ours) == expected


def test_select_without_preference_accepts_the_offer() -> None:
    assert select(KEYS["MaxBurstLength"], "4096", None) == "4096"
    assert select(KEYS["HeaderDigest"], "Foo,CRC32C", None) == "CRC32C"


# ---------------------------------------------------------------- responder


def answers(pairs: list[tuple[str, str]], local: dict[str, str] | None = None,
            stage: LoginStage = LoginStage.OPERATIONAL) -> dict[str, str]:
    return dict(Negotiation(local).receive(pairs, stage=stage))


def test_unknown_and_extension_keys_not_understood() -> None:
    got = answers([("Bogus", "1"), ("X-com.example.foo", "1"), ("X#bar", "y")])
    assert got == {"Bogus": NOT_UNDERSTOOD, "X-com.example.foo": NOT_UNDERSTOOD,
                   "X#bar": NOT_UNDERSTOOD}


@pytest.mark.parametrize(("key", "value"), [
    ("MaxBurstLength", "511"),
    ("MaxBurstLength", "16777216"),
    ("MaxBurstLength", "lots"),
    ("ErrorRecoveryLevel", "3"),
    ("DefaultTime2Wait", "3601"),
    ("InitialR2T", "yes"),
    ("HeaderDigest", "MD5"),
    ("HeaderDigest", "CRC32C,,None"),
])
def test_out_of_range_or_unknown_values_rejected(key: str, value: str) -> None:
    n = Negotiation({"HeaderDigest": "CRC32C,None"})
    assert n.receive([(key, value)]) == [(key, REJECT)]
    assert key in n.rejected and key not in n.agreed


def test_removed_marker_keys_answer_reject() -> None:
    got = answers([("OFMarker", "No"), ("IFMarker", "No"), ("OFMarkInt", "2048~65535"),
                   ("IFMarkInt", "2048~65535")])
    assert got == dict.fromkeys(("OFMarker", "IFMarker", "OFMarkInt", "IFMarkInt"), REJECT)


@pytest.mark.parametrize("order", [0, 1])
def test_first_burst_irrelevant_when_r2t_yes_and_no_immediate_data(order: int) -> None:
    pairs = [("InitialR2T", "Yes"), ("ImmediateData", "No")]
    pairs.insert(order * 2, ("FirstBurstLength", "65536"))
    got = answers(pairs, {"InitialR2T": "No", "ImmediateData": "Yes"})
    assert got == {"InitialR2T": "Yes", "ImmediateData": "No", "FirstBurstLength": IRRELEVANT}


def test_first_burst_relevant_with_immediate_data() -> None:
    got = answers([("InitialR2T", "Yes"), ("ImmediateData", "Yes"),
                   ("FirstBurstLength", "65536")], {"FirstBurstLength": "16384"})
    assert got["FirstBurstLength"] == "16384"


def test_first_burst_clamped_to_max_burst() -> None:
    n = Negotiation({"MaxBurstLength": "1048576", "FirstBurstLength": "1048576"})
    got = dict(n.receive([("FirstBurstLength", "262144"), ("MaxBurstLength", "131072")]))
    assert got == {"FirstBurstLength": "131072", "MaxBurstLength": "131072"}
    assert n.params().first_burst_length == 131072


def test_discovery_session_makes_data_keys_irrelevant() -> None:
    got = answers([("MaxBurstLength", "65536"), ("InitialR2T", "No"),
                   ("HeaderDigest", "CRC32C,None"), ("SessionType", "Discovery"),
                   ("TaskReporting", "RFC3720")], {"HeaderDigest": "CRC32C,None"})
    assert got == {"MaxBurstLength": IRRELEVANT, "InitialR2T": IRRELEVANT,
                   "HeaderDigest": "CRC32C", "TaskReporting": IRRELEVANT}


def test_declarative_keys_recorded_not_answered() -> None:
    n = Negotiation()
    reply = n.receive([("InitiatorName", "iqn.x"), ("MaxRecvDataSegmentLength", "65536"),
                       ("InitiatorAlias", "host")])
    assert reply == []
    params = n.params()
    assert params.initiator_name == "iqn.x"
    assert params.initiator_alias == "host"
    assert params.max_send_data_segment_length == 65536
    assert params.max_recv_data_segment_length == 8192


def test_declarative_out_of_range_is_rejected() -> None:
    n = Negotiation()
    assert n.receive([("MaxRecvDataSegmentLength", "100")]) == [
        ("MaxRecvDataSegmentLength", REJECT)]
    assert n.params().max_send_data_segment_length == 8192


def test_answers_keep_request_order() -> None:
    reply = Negotiation().receive([("MaxBurstLength", "4096"), ("Zed", "1"),
                                   ("FirstBurstLength", "4096"), ("HeaderDigest", "None")])
    assert [k for k, _ in reply] == ["MaxBurstLength", "Zed", "FirstBurstLength",
                                     "HeaderDigest"]


def test_key_repeated_across_pdus_is_negotiation_error() -> None:
    n = Negotiation()
    n.receive([("MaxBurstLength", "4096")])
    with pytest.raises(NegotiationError) as info:
        n.receive([("MaxBurstLength", "8192")])
    assert info.value.status is LoginStatus.INITIATOR_ERROR


def test_stage_rules() -> None:
    assert answers([("SendTargets", "All")]) == {"SendTargets": IRRELEVANT}
    assert answers([("SendTargets", "All")], stage=LoginStage.FULL_FEATURE) == {}
    assert answers([("MaxBurstLength", "512")], stage=LoginStage.FULL_FEATURE) == {
        "MaxBurstLength": REJECT}
    assert answers([("AuthMethod", "None")], stage=LoginStage.SECURITY) == {
        "AuthMethod": "None"}
    with pytest.raises(NegotiationError):
        answers([("AuthMethod", "None")], stage=LoginStage.OPERATIONAL)
    # lenient: an operational key in the security stage is negotiated
    assert answers([("MaxBurstLength", "512")], stage=LoginStage.SECURITY) == {
        "MaxBurstLength": "512"}


def test_special_values_offered_get_no_answer() -> None:
    assert answers([("MaxBurstLength", REJECT)]) == {}


# ---------------------------------------------------------------- originator


def offered(key: str, value: str) -> Negotiation:
    n = Negotiation()
    n.offer(key, value)
    assert n.pending
    return n


@pytest.mark.parametrize(("key", "offer", "answer"), [
    ("MaxBurstLength", "65536", "65537"),
    ("DefaultTime2Wait", "5", "4"),
    ("InitialR2T", "Yes", "No"),
    ("ImmediateData", "No", "Yes"),
    ("HeaderDigest", "None", "CRC32C"),
    ("MaxBurstLength", "65536", "zero"),
])
def test_impossible_answers_are_negotiation_errors(key: str, offer: str, answer: str) -> None:
    n = offered(key, offer)
    with pytest.raises(NegotiationError):
        n.receive([(key, answer)])


@pytest.mark.parametrize(("key", "offer", "answer"), [
    ("MaxBurstLength", "65536", "8192"),
    ("DefaultTime2Wait", "5", "10"),
    ("InitialR2T", "No", "Yes"),
    ("ImmediateData", "Yes", "No"),
    ("HeaderDigest", "CRC32C,None", "None"),
])
def test_possible_answers_are_agreed(key: str, offer: str, answer: str) -> None:
    n = offered(key, offer)
    assert n.receive([(key, answer)]) == []
    assert n.agreed[key] == answer and not n.pending


def test_reject_answer_keeps_default() -> None:
    n = offered("MaxBurstLength", "65536")
    n.receive([("MaxBurstLength", REJECT)])
    assert n.rejected == {"MaxBurstLength": REJECT}
    assert n.params().max_burst_length == 262144


def test_default_params() -> None:
    assert Negotiation().params() == SessionParams()
    assert SessionParams().discovery is False
