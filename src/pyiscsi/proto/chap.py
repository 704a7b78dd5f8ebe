"""CHAP for the SecurityNegotiation stage, RFC 7143 §12.1.3 on top of RFC 1994 (sans-IO).

The exchange (RFC 7143 §12.1.3), I = initiator, T = target::

    I: CHAP_A=<A1,A2,...>                       algorithms in order of preference
    T: CHAP_A=<A> CHAP_I=<I> CHAP_C=<C>         (or a Login reject 0x0201)
    I: CHAP_N=<N> CHAP_R=<R> [CHAP_I=<I> CHAP_C=<C>]   bracket: mutual (target auth)
    T: [CHAP_N=<N> CHAP_R=<R>]                  (or a Login reject 0x0201)

R = H(I as one octet || secret || C) (RFC 1994 §4.1). :class:`TargetChap` is the target's
:class:`~pyiscsi.proto.login.Authenticator`; :class:`InitiatorChap` is driven by
:class:`~pyiscsi.proto.login.InitiatorLogin`. Secrets never appear in messages or reprs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from .errors import LoginFailed, RemoteProtocolError
from .keys import parse_number
from .wire import LoginStatus

METHOD = "CHAP"
KEYS = ("CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R")


@dataclass(frozen=True, slots=True)
class ChapAlgorithm:
    """One CHAP_A value: IANA "PPP Authentication Algorithms" number and its hash."""

    number: int
    hash_name: str
    challenge_length: int
    """Bytes of challenge we send (the digest size)."""

    def response(self, identifier: int, secret: bytes, challenge: bytes) -> bytes:
        """RFC 1994 §4.1: H(Identifier || secret || Challenge)."""
        return hashlib.new(self.hash_name, bytes([identifier]) + secret + challenge).digest()


ALGORITHMS: dict[int, ChapAlgorithm] = {
    5: ChapAlgorithm(5, "md5", 16),             # RFC 1994, the only one RFC 7143 names
    7: ChapAlgorithm(7, "sha256", 32),          # IANA PPP auth algorithms; Linux LIO, EDK2
    8: ChapAlgorithm(8, "sha3_256", 32),        # IANA PPP auth algorithms; Linux LIO
}
"""Algorithms we implement (SHA-1 = 6 is left out on purpose)."""
DEFAULT_ALGORITHMS = (7, 8, 5)
"""Our order of preference (initiator offer; target acceptance)."""
MIN_CHALLENGE = 16
"""Shortest challenge we answer with our mutual secret (bytes)."""
MAX_CHALLENGE = 1024


def _auth_failed(message: str = "CHAP authentication failed") -> LoginFailed:
    return LoginFailed(LoginStatus.AUTHENTICATION_FAILURE, message)


def _initiator_error(message: str) -> LoginFailed:
    return LoginFailed(LoginStatus.INITIATOR_ERROR, message)


# ---------------------------------------------------------------- credentials


@dataclass(frozen=True, slots=True)
class ChapSecret:
    """A CHAP name and its secret (the secret is kept out of ``repr``)."""

    name: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.name or not self.secret:
            raise ValueError("CHAP name and secret must not be empty")

    @classmethod
    def parse(cls, text: str) -> ChapSecret:
        """``USER:SECRET``, split at the first ``:``. Errors never quote the secret."""
        name, sep, secret = text.partition(":")
        if not sep or not name or not secret:
            raise ValueError("expected USER:SECRET with a non-empty user and secret")
        return cls(name, secret.encode())


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """What CHAP uses: ``chap`` authenticates the initiator to the target; ``mutual``, when
    set, the target to the initiator. The two secrets must differ (RFC 7143 §12.1.3: a
    secret for one direction is not used for the other)."""

    chap: ChapSecret
    mutual: ChapSecret | None = None
    algorithms: tuple[int, ...] = DEFAULT_ALGORITHMS

    def __post_init__(self) -> None:
        if self.mutual is not None and hmac.compare_digest(self.mutual.secret,
                                                           self.chap.secret):
            raise ValueError("the mutual CHAP secret must differ from the CHAP secret")
        unknown = [a for a in self.algorithms if a not in ALGORITHMS]
        if unknown or not self.algorithms:
            raise ValueError(f"unsupported CHAP algorithms {unknown or '(none)'}")


def as_auth_config(credentials: object | None) -> AuthConfig | None:
    """The initiator's ``credentials`` slot: None, an :class:`AuthConfig`, a
    :class:`ChapSecret` or a ``(user, secret)`` pair (one-way CHAP)."""
    if credentials is None or isinstance(credentials, AuthConfig):
        return credentials
    if isinstance(credentials, ChapSecret):
        return AuthConfig(credentials)
    if isinstance(credentials, tuple) and len(credentials) == 2:
        user, secret = credentials
        if isinstance(user, str) and isinstance(secret, str | bytes) and user and secret:
            return AuthConfig(ChapSecret(user, secret.encode() if isinstance(secret, str)
                                         else secret))
        raise ValueError("CHAP credentials need a user and a secret")
    raise TypeError(f"unsupported credentials type {type(credentials).__name__}")


# ---------------------------------------------------------------- value encodings


def encode_binary(value: bytes) -> str:
    """Hex binary value, RFC 7143 §6.1 / §5.1 (``0x...``)."""
    return "0x" + value.hex()


def decode_binary(text: str) -> bytes | None:
    """``0x`` hex or ``0b`` base64 binary value (RFC 7143 §5.1), None if malformed."""
    prefix, body = text[:2].lower(), text[2:]
    try:
        if prefix == "0x" and body:
            return bytes.fromhex(body if len(body) % 2 == 0 else "0" + body)
        if prefix == "0b" and body:
            return base64.b64decode(body, validate=True)
    except (ValueError, binascii.Error):
        return None
    return None


def _identifier(text: str | None) -> int | None:
    n = parse_number(text) if text is not None else None
    return n if n is not None and 0 <= n <= 255 else None


def _challenge(text: str | None) -> bytes | None:
    value = decode_binary(text) if text is not None else None
    return value if value is not None and MIN_CHALLENGE <= len(value) <= MAX_CHALLENGE else None


def _pick(offered: str, acceptable: tuple[int, ...]) -> ChapAlgorithm | None:
    """First algorithm of the offerer's list that we accept (RFC 7143 §6.2.1 list rule)."""
    for item in offered.split(","):
        n = parse_number(item.strip())
        if n is not None and n in acceptable:
            return ALGORITHMS[n]
    return None


class IssuedChallenges:
    """Recently issued challenges of this process: a fresh one is never a repeat."""

    def __init__(self, size: int = 4096) -> None:
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._size = size

    def fresh(self, length: int) -> bytes:
        while True:
            challenge = secrets.token_bytes(length)
            if challenge not in self._seen:
                break
        self._seen[challenge] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return challenge

    def __contains__(self, challenge: object) -> bool:
        return challenge in self._seen




class ChapState(Enum):
    START = "start"
    CHALLENGED = "challenged"
    RESPONDED = "responded"
    DONE = "done"


# ---------------------------------------------------------------- target


class TargetChap:
    """The target's CHAP authenticator for one connection (RFC 7143 §12.1.3).

    Implements the ``Authenticator`` protocol of :mod:`pyiscsi.proto.login`: :meth:`step`
    takes the ``CHAP_*`` keys of one request and returns the keys to answer and whether the
    initiator is now authenticated. Failures raise :class:`LoginFailed` (0x0201 for a failed
    authentication, 0x0200 for a malformed exchange).
    """

    method = METHOD

    def __init__(self, config: AuthConfig, *, issued: IssuedChallenges | None = None) -> None:
        self.config = config
        self.state = ChapState.START
        self.algorithm: ChapAlgorithm | None = None
        self._identifier = 0
        self._challenge = b""
        self._issued = issued if issued is not None else IssuedChallenges()

    def step(self, initiator_name: str, keys: Mapping[str, str]
             ) -> tuple[list[tuple[str, str]], bool]:
        if self.state is ChapState.START:
            return self._select(keys)
        if self.state is ChapState.CHALLENGED:
            return self._verify(keys)
        if keys:
            raise _initiator_error("CHAP keys after authentication completed")
        return [], True

    def _select(self, keys: Mapping[str, str]) -> tuple[list[tuple[str, str]], bool]:
        if not keys:
            return [], False  # the AuthMethod round: wait for CHAP_A
        if set(keys) != {"CHAP_A"}:
            raise _initiator_error("CHAP exchange must start with CHAP_A alone")
        algorithm = _pick(keys["CHAP_A"], self.config.algorithms)
        if algorithm is None:
            raise _auth_failed("no acceptable CHAP algorithm")
        self.algorithm = algorithm
        self._identifier = secrets.randbelow(256)
        self._challenge = self._issued.fresh(algorithm.challenge_length)
        self.state = ChapState.CHALLENGED
        return [("CHAP_A", str(algorithm.number)), ("CHAP_I", str(self._identifier)),
                ("CHAP_C", encode_binary(self._challenge))], False

    def _verify(self, keys: Mapping[str, str]) -> tuple[list[tuple[str, str]], bool]:
        algorithm = self.algorithm
        assert algorithm is not None
        name, response = keys.get("CHAP_N"), keys.get("CHAP_R")
        unexpected = set(keys) - {"CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"}
        if name is None or response is None or unexpected:
            raise _initiator_error("expected CHAP_N and CHAP_R")
        got = decode_binary(response)
        if got is None:
            raise _initiator_error("malformed CHAP_R")
        expected = algorithm.response(self._identifier, self.config.chap.secret,
                                      self._challenge)
        name_ok = hmac.compare_digest(name.encode(), self.config.chap.name.encode())
        if not (hmac.compare_digest(got, expected) and name_ok):
            raise _auth_failed()
        self.state = ChapState.DONE
        if "CHAP_I" not in keys and "CHAP_C" not in keys:
            return [], True
        return self._answer_mutual(algorithm, keys), True

    def _answer_mutual(self, algorithm: ChapAlgorithm, keys: Mapping[str, str]
                       ) -> list[tuple[str, str]]:
        """The initiator authenticates us (mutual CHAP, RFC 7143 §12.1.3)."""
        identifier, challenge = _identifier(keys.get("CHAP_I")), _challenge(keys.get("CHAP_C"))
        if identifier is None or challenge is None:
            raise _initiator_error("malformed CHAP_I/CHAP_C for mutual CHAP")
        mutual = self.config.mutual
        if mutual is None:
            raise _auth_failed("mutual CHAP requested but not configured")
        if hmac.compare_digest(challenge, self._challenge) or challenge in self._issued:
            raise _auth_failed("reflected CHAP challenge")
        answer = algorithm.response(identifier, mutual.secret, challenge)
        return [("CHAP_N", mutual.name), ("CHAP_R", encode_binary(answer))]


# ---------------------------------------------------------------- initiator


class InitiatorChap:
    """Our initiator's side of CHAP (RFC 7143 §12.1.3): one-way, or mutual when
    ``config.mutual`` is set (then the target's answer is verified before the login goes on).

    :meth:`start` gives the CHAP_A offer; :meth:`step` takes the target's ``CHAP_*`` keys and
    returns ours. A target breaking the exchange raises :class:`RemoteProtocolError`; a target
    failing mutual authentication raises :class:`LoginFailed` (0x0201).
    """

    method = METHOD

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self.state = ChapState.START
        self.algorithm: ChapAlgorithm | None = None
        self._identifier = 0
        self._challenge = b""

    @property
    def mutual(self) -> bool:
        return self.config.mutual is not None

    @property
    def done(self) -> bool:
        return self.state is ChapState.DONE

    def start(self) -> list[tuple[str, str]]:
        if self.state is not ChapState.START:
            raise RemoteProtocolError("CHAP already started")
        self.state = ChapState.CHALLENGED
        return [("CHAP_A", ",".join(str(a) for a in self.config.algorithms))]

    def step(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        if self.state is ChapState.CHALLENGED:
            return self._respond(keys)
        if self.state is ChapState.RESPONDED:
            return self._verify(keys)
        raise RemoteProtocolError("unexpected CHAP keys from the target")

    def _respond(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        number = parse_number(keys.get("CHAP_A", ""))
        identifier = _identifier(keys.get("CHAP_I"))
        challenge = decode_binary(keys.get("CHAP_C", ""))
        if number not in self.config.algorithms or identifier is None or not challenge:
            raise RemoteProtocolError("target sent a bad CHAP_A/CHAP_I/CHAP_C")
        algorithm = ALGORITHMS[number]
        self.algorithm = algorithm
        chap = self.config.chap
        out = [("CHAP_N", chap.name),
               ("CHAP_R", encode_binary(algorithm.response(identifier, chap.secret, challenge)))]
        if self.config.mutual is None:
            self.state = ChapState.DONE
            return out
        self._identifier = secrets.randbelow(256)
        self._challenge = challenge
        while self._challenge == challenge:
            self._challenge = secrets.token_bytes(algorithm.challenge_length)
        self.state = ChapState.RESPONDED
        return [*out, ("CHAP_I", str(self._identifier)),
                ("CHAP_C", encode_binary(self._challenge))]

    def _verify(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        mutual, algorithm = self.config.mutual, self.algorithm
        assert mutual is not None and algorithm is not None
        name, response = keys.get("CHAP_N"), decode_binary(keys.get("CHAP_R", ""))
        if name is None or response is None:
            raise _auth_failed("target did not answer the mutual CHAP challenge")
        expected = algorithm.response(self._identifier, mutual.secret, self._challenge)
        name_ok = hmac.compare_digest(name.encode(), mutual.name.encode())
        if not (hmac.compare_digest(response, expected) and name_ok):
            raise _auth_failed("target failed mutual CHAP authentication")
        self.state = ChapState.DONE
        return []
