"""Who is calling: bearer JWTs verified at the edge, the `sub` claim naming the user.

Without a key configured, every caller is one local user (the server then refuses to listen
beyond loopback unless told otherwise; see config). The owner is stored with every run and
template and checked in every query either way.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jwt

from sluice.engine.errors import SluiceError

LOCAL_USER = "local"
MAX_SUBJECT = 200
# RFC 7518, section 3.2: an HS256 key must be at least as long as the hash output (256 bits);
# a shorter secret can be brute-forced from any one token it signed.
MIN_HS256_SECRET_BYTES = 32

_caller: contextvars.ContextVar[str] = contextvars.ContextVar("sluice_caller", default=LOCAL_USER)


class Unauthenticated(SluiceError):
    """No valid credentials. The message never repeats the token."""


def check_hs256_secret(secret: str) -> None:
    """Refuse a secret too short to sign HS256 tokens safely. The message never shows it."""
    # Imported here: config's own checks call this function, so a module-level import either
    # way round would be circular.
    from sluice.config import ConfigError

    length = len(secret.encode("utf-8"))
    if length < MIN_HS256_SECRET_BYTES:
        unit = "byte" if length == 1 else "bytes"
        raise ConfigError(
            f"the HS256 secret (SLUICE_AUTH_JWT_SECRET) is {length} {unit} long; it must be at "
            f"least {MIN_HS256_SECRET_BYTES} bytes (RFC 7518, section 3.2). Make one with: "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


def current_user() -> str:
    """The user of the call being served (set by the guard before the servicer runs)."""
    return _caller.get()


def set_current_user(user: str) -> contextvars.Token[str]:
    return _caller.set(user)


@dataclass(frozen=True, slots=True)
class JwtVerifier:
    """Checks `authorization: Bearer <JWT>`: signature, expiry, and audience/issuer if set."""

    key: str | bytes
    algorithms: Sequence[str]
    audience: str | None = None
    issuer: str | None = None
    leeway_seconds: float = 30.0

    @classmethod
    def from_settings(
        cls,
        *,
        secret: str,
        public_key_file: str,
        algorithms: Sequence[str],
        audience: str,
        issuer: str,
    ) -> JwtVerifier | None:
        if secret and public_key_file:
            raise ValueError("set either a JWT secret or a public key file, not both")
        if secret:
            return cls(secret, list(algorithms) or ["HS256"], audience or None, issuer or None)
        if public_key_file:
            key = Path(public_key_file).read_bytes()
            return cls(
                key, list(algorithms) or ["RS256", "ES256"], audience or None, issuer or None
            )
        return None

    def user(self, authorization: str | None) -> str:
        if not authorization:
            raise Unauthenticated(
                "missing bearer token: send metadata 'authorization: Bearer <JWT>'"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the authorization metadata must be 'Bearer <JWT>'")
        try:
            claims = jwt.decode(
                token.strip(),
                self.key,
                algorithms=list(self.algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            # PyJWT's messages describe the claim or check, never the token itself.
            raise Unauthenticated(f"invalid token: {exc}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT:
            raise Unauthenticated(
                f"invalid token: 'sub' must be a string of 1-{MAX_SUBJECT} characters"
            )
        return subject
