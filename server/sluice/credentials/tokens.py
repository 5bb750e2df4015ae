"""Development tokens: HS256 JWTs for a user, signed with the secret the server is configured with.

The secret, audience and issuer are read from the environment exactly as the server reads them
(`config.environment_value`), so a token minted in the server's environment is one it accepts.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import jwt

from sluice.api.auth import MAX_SUBJECT
from sluice.config import ConfigError, check_hmac_secret, environment_value

# A dev token outliving a year is a credential someone forgot about.
MAX_TTL = dt.timedelta(days=365)
_TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class TokenIssuer:
    """What a token must carry for the server to accept it."""

    secret: str = field(repr=False)
    audience: str | None = None
    issuer: str | None = None

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> TokenIssuer:
        secret = _setting("SLUICE_AUTH_JWT_SECRET", env)
        if not secret:
            if _setting("SLUICE_AUTH_JWT_PUBLIC_KEY_FILE", env):
                raise ConfigError(
                    "the server checks tokens with a public key (SLUICE_AUTH_JWT_PUBLIC_KEY_FILE): "
                    "sign them with its private key; this command signs HS256 tokens with "
                    "SLUICE_AUTH_JWT_SECRET"
                )
            raise ConfigError(
                "set SLUICE_AUTH_JWT_SECRET (or SLUICE_AUTH_JWT_SECRET_FILE) to the server's secret"
            )
        check_hmac_secret(secret)
        algorithms = _setting("SLUICE_AUTH_JWT_ALGORITHMS", env) or "HS256"
        if "HS256" not in (part.strip() for part in algorithms.split(",")):
            raise ConfigError(
                f"SLUICE_AUTH_JWT_ALGORITHMS is {algorithms!r}: the server would refuse an "
                "HS256 token; add HS256 to it"
            )
        return cls(
            secret,
            _setting("SLUICE_AUTH_JWT_AUDIENCE", env) or None,
            _setting("SLUICE_AUTH_JWT_ISSUER", env) or None,
        )

    def mint(self, user: str, ttl: dt.timedelta, *, now: dt.datetime | None = None) -> str:
        """A token naming `user` (the `sub` claim), valid from `now` for `ttl`."""
        if not 1 <= len(user) <= MAX_SUBJECT:
            raise ConfigError(f"--user must be 1-{MAX_SUBJECT} characters")
        issued = now or dt.datetime.now(dt.UTC)
        claims: dict[str, object] = {"sub": user, "iat": issued, "exp": issued + ttl}
        if self.audience:
            claims["aud"] = self.audience
        if self.issuer:
            claims["iss"] = self.issuer
        return jwt.encode(claims, self.secret, algorithm="HS256")


def _setting(name: str, env: Mapping[str, str]) -> str | None:
    try:
        return environment_value(name, env)
    except OSError as error:
        raise ConfigError(f"cannot read {name}_FILE {error.filename}: {error.strerror}") from None


def parse_ttl(text: str) -> dt.timedelta:
    """'90s', '30m', '1h', '7d' or plain seconds; positive and at most a year."""
    match = _TTL.match(text)
    if match is None:
        raise ConfigError(f"--ttl {text!r}: give a number with s, m, h or d, e.g. 30m or 1h")
    ttl = dt.timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    if not dt.timedelta(0) < ttl <= MAX_TTL:
        raise ConfigError(f"--ttl {text!r}: must be more than 0 and at most 365d")
    return ttl
