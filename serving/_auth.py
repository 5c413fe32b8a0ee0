"""Bearer credentials, shared by the admin API (one token) and the OpenAI API (API keys)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from pydantic import SecretStr


def bearer_matches(authorization: str | None, secrets: Iterable[SecretStr]) -> bool:
    """True when ``authorization`` is ``Bearer <s>`` for one of ``secrets``.

    Every secret is compared, each in constant time, so the time taken says neither how
    much of a key matched nor which key it was.
    """
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    presented = given.strip().encode()
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(presented, secret.get_secret_value().encode())
    return found and bool(presented)
