"""Who is calling: bearer JWTs verified at the edge, the `sub` claim naming the user.

Without a key configured, every caller is one local user (the server then refuses to listen
beyond loopback unless told otherwise; see config). The owner is stored with every run and
template and checked in every query either way.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization

from sluice.config import ConfigError, Settings, read_file
from sluice.engine.errors import SluiceError

LOCAL_USER = "local"
MAX_SUBJECT = 200

_caller: contextvars.ContextVar[str] = contextvars.ContextVar("sluice_caller", default=LOCAL_USER)


class Unauthenticated(SluiceError):
    """No valid credentials. The message never repeats the token."""


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
    # Seconds a token is still accepted past its `exp` (before its `nbf`): clocks disagree.
    leeway_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier | None:
        """The verifier the settings ask for (None: authentication is off). ConfigError when
        the public key file cannot be read or holds no PEM public key."""
        audience = settings.auth_jwt_audience or None
        issuer = settings.auth_jwt_issuer or None
        leeway = settings.auth_jwt_leeway.total_seconds()
        algorithms = list(settings.auth_jwt_algorithms)
        if settings.auth_jwt_secret:
            return cls(settings.auth_jwt_secret, algorithms or ["HS256"], audience, issuer, leeway)
        if settings.auth_jwt_public_key_file:
            path = settings.auth_jwt_public_key_file
            key = read_file("SLUICE_AUTH_JWT_PUBLIC_KEY_FILE", path)
            try:
                serialization.load_pem_public_key(key)
            except (ValueError, TypeError):
                raise ConfigError(
                    f"SLUICE_AUTH_JWT_PUBLIC_KEY_FILE {path} holds no PEM public key"
                ) from None
            return cls(key, algorithms or ["RS256", "ES256"], audience, issuer, leeway)
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
