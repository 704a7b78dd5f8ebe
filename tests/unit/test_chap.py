"""CHAP, RFC 7143 §12.1.3 / RFC 1994: the target authenticator and our initiator's side."""

from __future__ import annotations

import hashlib

import pytest

from pyiscsi.proto.chap import (
    ALGORITHMS,
    AuthConfig,
    ChapSecret,
    ChapState,
    InitiatorChap,
    IssuedChallenges,
    TargetChap,
    as_auth_config,
    decode_binary,
    encode_binary,
)
from pyiscsi.proto.errors import LoginFailed, RemoteProtocolError
from pyiscsi.proto.wire import LoginStatus

INI = ChapSecret("user", b"secretsecret12")
TGT = ChapSecret("target", b"targetsecret34")
ONE_WAY = AuthConfig(INI)
MUTUAL = AuthConfig(INI, TGT)
NAME = "iqn.2026-11.org.example:host"


def status(exc: pytest.ExceptionInfo[LoginFailed]) -> int:
    return int(exc.value.status)


def challenge(target: TargetChap, algorithms: str = "5") -> tuple[int, int, bytes]:
    reply, done = target.step(NAME, {"CHAP_A": algorithms})
    keys = dict(reply)
    assert not done and set(keys) == {"CHAP_A", "CHAP_I", "CHAP_C"}
    c = decode_binary(keys["CHAP_C"])
    assert c is not None
    return int(keys["CHAP_A"]), int(keys["CHAP_I"]), c


def test_rfc1994_response_is_hash_of_id_secret_challenge() -> None:
    md5 = ALGORITHMS[5].response(7, b"secretsecret12", bytes(range(16)))
    assert md5 == hashlib.md5(b"\x07secretsecret12" + bytes(range(16))).digest()
    assert md5.hex() == "d2ad9b553183668fa064205c85779b04"
    sha = ALGORITHMS[7].response(7, b"secretsecret12", bytes(range(32)))
    assert sha.hex() == "d5e2e083cdfb7e9395d0216733d83f9974f9e5a33282da1169b0cd11f050b80d"


def test_binary_encodings() -> None:
    assert encode_binary(b"\x01\xab") == "0x01ab"
    assert decode_binary("0x01AB") == b"\x01\xab" == decode_binary("0X1ab")  # odd: leading 0
    assert decode_binary("0bAav/") == b"\x01\xab\xff"
    for bad in ("01ab", "0x", "0xzz", "0b!!", ""):
        assert decode_binary(bad) is None


def test_one_way_md5_success() -> None:
    target = TargetChap(ONE_WAY)
    assert target.step(NAME, {}) == ([], False)            # the AuthMethod round
    a, i, c = challenge(target, "5")
    assert a == 5 and len(c) == 16
    r = hashlib.md5(bytes([i]) + INI.secret + c).digest()
    assert target.step(NAME, {"CHAP_N": "user", "CHAP_R": encode_binary(r)}) == ([], True)
    with pytest.raises(LoginFailed) as exc:                # nothing more after success
        target.step(NAME, {"CHAP_A": "5"})
    assert status(exc) == LoginStatus.INITIATOR_ERROR


def test_base64_response_accepted() -> None:
    import base64

    target = TargetChap(ONE_WAY)
    _, i, c = challenge(target)
    r = hashlib.md5(bytes([i]) + INI.secret + c).digest()
    assert target.step(NAME, {"CHAP_N": "user",
                              "CHAP_R": "0b" + base64.b64encode(r).decode()})[1]


@pytest.mark.parametrize("name,secret", [("user", b"wrongwrongwrong"), ("other", INI.secret)])
def test_wrong_secret_or_name_is_0201(name: str, secret: bytes) -> None:
    target = TargetChap(ONE_WAY)
    _, i, c = challenge(target)
    r = hashlib.md5(bytes([i]) + secret + c).digest()
    with pytest.raises(LoginFailed) as exc:
        target.step(NAME, {"CHAP_N": name, "CHAP_R": encode_binary(r)})
    assert status(exc) == LoginStatus.AUTHENTICATION_FAILURE
    assert b"secret" not in str(exc.value).encode() and "wrong" not in str(exc.value)


def test_sha256_chosen_in_the_initiators_order() -> None:
    a, _, c = challenge(TargetChap(ONE_WAY), "7,5")
    assert a == 7 and len(c) == 32
    assert challenge(TargetChap(ONE_WAY), "5,7")[0] == 5
    assert challenge(TargetChap(ONE_WAY), "0x8,0x5")[0] == 8      # SHA3-256, hex number
    assert challenge(TargetChap(AuthConfig(INI, algorithms=(5,))), "7,5")[0] == 5


def test_no_acceptable_algorithm_is_0201() -> None:
    with pytest.raises(LoginFailed) as exc:
        TargetChap(ONE_WAY).step(NAME, {"CHAP_A": "6,128"})
    assert status(exc) == LoginStatus.AUTHENTICATION_FAILURE


@pytest.mark.parametrize("keys", [
    {"CHAP_N": "user", "CHAP_R": "0x00"},          # response before CHAP_A
    {"CHAP_A": "5", "CHAP_N": "user"},
])
def test_out_of_order_start_is_0200(keys: dict[str, str]) -> None:
    with pytest.raises(LoginFailed) as exc:
        TargetChap(ONE_WAY).step(NAME, keys)
    assert status(exc) == LoginStatus.INITIATOR_ERROR


@pytest.mark.parametrize("keys", [{"CHAP_N": "user"}, {"CHAP_R": "0x00"},
                                  {"CHAP_N": "user", "CHAP_R": "nothex"}])
def test_missing_or_malformed_response_is_0200(keys: dict[str, str]) -> None:
    target = TargetChap(ONE_WAY)
    challenge(target)
    with pytest.raises(LoginFailed) as exc:
        target.step(NAME, keys)
    assert status(exc) == LoginStatus.INITIATOR_ERROR


def test_challenges_are_random_and_differ_between_connections() -> None:
    seen = {challenge(TargetChap(ONE_WAY))[2] for _ in range(200)}
    assert len(seen) == 200


def mutual_keys(target: TargetChap, my_challenge: bytes | None = None
                ) -> tuple[dict[str, str], bytes]:
    _, i, c = challenge(target)
    r = hashlib.md5(bytes([i]) + INI.secret + c).digest()
    mine = c if my_challenge is None else my_challenge
    return {"CHAP_N": "user", "CHAP_R": encode_binary(r), "CHAP_I": "9",
            "CHAP_C": encode_binary(mine)}, mine


def test_mutual_target_answers_with_its_own_secret() -> None:
    target = TargetChap(MUTUAL)
    keys, mine = mutual_keys(target, bytes(range(100, 132)))
    reply, done = target.step(NAME, keys)
    assert done
    answer = dict(reply)
    assert answer["CHAP_N"] == "target"
    assert answer["CHAP_R"] == encode_binary(hashlib.md5(b"\x09" + TGT.secret + mine).digest())


def test_reflected_challenge_is_refused() -> None:
    target = TargetChap(MUTUAL)
    keys, _ = mutual_keys(target)                 # the initiator echoes our own CHAP_C
    with pytest.raises(LoginFailed) as exc:
        target.step(NAME, keys)
    assert status(exc) == LoginStatus.AUTHENTICATION_FAILURE


def test_challenge_issued_on_another_connection_is_refused() -> None:
    issued = IssuedChallenges()  # one server's record, shared by its connections
    other = challenge(TargetChap(MUTUAL, issued=issued))[2]
    target = TargetChap(MUTUAL, issued=issued)
    keys, _ = mutual_keys(target, other.ljust(16, b"\0"))
    with pytest.raises(LoginFailed) as exc:
        target.step(NAME, keys)
    assert status(exc) == LoginStatus.AUTHENTICATION_FAILURE


def test_mutual_without_target_secret_is_0201_and_short_challenge_0200() -> None:
    keys, _ = mutual_keys(one := TargetChap(ONE_WAY), bytes(range(16, 48)))
    with pytest.raises(LoginFailed) as exc:
        one.step(NAME, keys)
    assert status(exc) == LoginStatus.AUTHENTICATION_FAILURE
    keys, _ = mutual_keys(two := TargetChap(MUTUAL), b"short")
    with pytest.raises(LoginFailed) as exc:
        two.step(NAME, keys)
    assert status(exc) == LoginStatus.INITIATOR_ERROR


def test_initiator_and_target_mutual_sha256() -> None:
    initiator, target = InitiatorChap(MUTUAL), TargetChap(MUTUAL)
    offer = dict(initiator.start())
    assert offer == {"CHAP_A": "7,8,5"}
    reply, _ = target.step(NAME, offer)
    response = initiator.step(dict(reply))
    assert {k for k, _ in response} == {"CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"}
    assert not initiator.done
    reply, done = target.step(NAME, dict(response))
    assert done and initiator.step(dict(reply)) == [] and initiator.done
    assert target.algorithm is not None and target.algorithm.number == 7


def test_initiator_detects_an_impostor_target() -> None:
    initiator = InitiatorChap(MUTUAL)
    impostor = TargetChap(AuthConfig(INI, ChapSecret("target", b"notthesecret99")))
    reply, _ = impostor.step(NAME, dict(initiator.start()))
    reply, _ = impostor.step(NAME, dict(initiator.step(dict(reply))))
    with pytest.raises(LoginFailed) as exc:
        initiator.step(dict(reply))
    assert status(exc) == LoginStatus.AUTHENTICATION_FAILURE
    silent, target = InitiatorChap(MUTUAL), TargetChap(MUTUAL)
    reply, _ = target.step(NAME, dict(silent.start()))
    silent.step(dict(reply))
    assert silent.state is ChapState.RESPONDED
    with pytest.raises(LoginFailed):
        silent.step({"CHAP_N": "target"})            # no CHAP_R


def test_initiator_refuses_bad_target_challenge() -> None:
    initiator = InitiatorChap(ONE_WAY)
    initiator.start()
    with pytest.raises(RemoteProtocolError):
        initiator.step({"CHAP_A": "6", "CHAP_I": "1", "CHAP_C": "0x00"})


def test_secrets_stay_out_of_reprs_and_config_rules() -> None:
    assert "secretsecret12" not in repr(MUTUAL) and "targetsecret34" not in repr(MUTUAL)
    with pytest.raises(ValueError, match="differ"):
        AuthConfig(INI, ChapSecret("target", INI.secret))
    with pytest.raises(ValueError):
        AuthConfig(INI, algorithms=(6,))
    with pytest.raises(ValueError) as exc:
        ChapSecret.parse("justasecretvalue")
    assert "justasecretvalue" not in str(exc.value)
    assert ChapSecret.parse("u:a:b") == ChapSecret("u", b"a:b")   # split at the first ':'


def test_credentials_slot_conversions() -> None:
    assert as_auth_config(None) is None
    assert as_auth_config(MUTUAL) is MUTUAL
    assert as_auth_config(("user", "secretsecret12")) == ONE_WAY
    assert as_auth_config(INI) == ONE_WAY
    with pytest.raises(ValueError):
        as_auth_config(("user", None))
    with pytest.raises(TypeError):
        as_auth_config(42)
