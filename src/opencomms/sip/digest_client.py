"""Client side of SIP Digest: :class:`DigestClient` answers challenges (e.g. a trunk's 401/407), picking the topmost
usable one (RFC 8760) and counting nc per nonce in bounded memory.

Must not: send anything or know about SIP transactions; the gateway puts the returned header on its retry.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable, Sequence

from opencomms.sip.digest import (
    AuthError,
    AuthFailure,
    base_algorithm,
    canonical_algorithm,
    compute_ha1,
    compute_response,
    digest_hex,
)
from opencomms.sip.digest_headers import DigestChallenge, DigestCredentials, quote_string, select_challenge

__all__ = ["DigestClient"]


class DigestClient:
    """Answers challenges (e.g. a trunk's 401/407). Counts nc per (realm, nonce), remembering ``max_nonces``."""

    def __init__(self, *, cnonce: Callable[[], str] | None = None, max_nonces: int = 64) -> None:
        if max_nonces < 1:
            raise ValueError("max_nonces must be positive")
        self._cnonce = cnonce or (lambda: secrets.token_hex(16))
        self._max = max_nonces
        self._nc: OrderedDict[tuple[str, str], int] = OrderedDict()

    def credentials(
        self,
        challenge: str | DigestChallenge | Sequence[str | DigestChallenge],
        method: str,
        uri: str,
        username: str,
        password: str,
        body: bytes = b"",
    ) -> DigestCredentials:
        """The credentials answering ``challenge`` (a header value, a parsed challenge, or several: topmost usable).

        qop ``auth`` is preferred over ``auth-int``; the request body only matters for ``auth-int``.
        """
        if isinstance(challenge, str | DigestChallenge):
            chosen = select_challenge([challenge])
        else:
            chosen = select_challenge(challenge)
        algorithm = canonical_algorithm(chosen.algorithm)
        qop: str | None = None
        nc: str | None = None
        cnonce: str | None = None
        if chosen.qop:
            qop = "auth" if "auth" in chosen.qop else "auth-int"
        if qop is not None or algorithm.endswith("-sess"):
            cnonce = self._cnonce()
            quote_string(cnonce)
        if qop is not None:
            nc = f"{self._next_nc(chosen.realm, chosen.nonce):08x}"
        ha1 = compute_ha1(username, chosen.realm, password, algorithm)
        response = compute_response(
            ha1=ha1,
            algorithm=algorithm,
            nonce=chosen.nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            body=body,
        )
        sent_username = username
        if chosen.userhash:
            sent_username = digest_hex(base_algorithm(algorithm), f"{username}:{chosen.realm}")
        return DigestCredentials(
            username=sent_username,
            realm=chosen.realm,
            nonce=chosen.nonce,
            uri=uri,
            response=response,
            algorithm=algorithm,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            opaque=chosen.opaque,
            userhash=chosen.userhash,
        )

    def authorize(
        self,
        challenge: str | DigestChallenge | Sequence[str | DigestChallenge],
        method: str,
        uri: str,
        username: str,
        password: str,
        body: bytes = b"",
    ) -> str:
        """The ``Authorization`` / ``Proxy-Authorization`` value answering ``challenge``."""
        return self.credentials(challenge, method, uri, username, password, body).to_header()

    def _next_nc(self, realm: str, nonce: str) -> int:
        key = (realm, nonce)
        count = self._nc.pop(key, 0) + 1
        if count > 0xFFFFFFFF:
            raise AuthError(AuthFailure.UNSUPPORTED, "nc exhausted for this nonce")
        self._nc[key] = count
        while len(self._nc) > self._max:
            self._nc.popitem(last=False)
        return count
