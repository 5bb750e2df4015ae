"""Safe defaults: no listening beyond loopback without authentication, unless told to."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sluice import config
from sluice.server import SluiceServer
from tests.support.crypto import make_pki


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051", "example.com:1"]
)
def test_no_auth_refuses_non_loopback_addresses(listen: str) -> None:
    with pytest.raises(config.ConfigError, match="refusing to listen"):
        config.parse(["--listen", listen], env={})


def test_the_web_view_follows_the_same_rule() -> None:
    with pytest.raises(config.ConfigError, match=r"refusing to listen on SLUICE_HTTP_LISTEN 0\.0"):
        config.parse(["--http-listen", "0.0.0.0:8080"], env={})
    assert config.parse(["--http-listen", "127.0.0.1:8080"], env={}).http_listen.endswith("8080")
    env = {"SLUICE_AUTH_JWT_SECRET": "s" * 32, "SLUICE_HTTP_LISTEN": "0.0.0.0:8080"}
    assert config.parse([], env=env).http_listen == "0.0.0.0:8080"


@pytest.mark.parametrize("listen", ["127.0.0.1:50051", "localhost:1", "[::1]:2", "127.0.0.1:0"])
def test_loopback_is_fine_without_auth(listen: str) -> None:
    assert config.parse(["--listen", listen], env={}).listen == listen


def test_auth_or_an_explicit_flag_allows_any_address() -> None:
    with_auth = config.parse(["--listen", "0.0.0.0:1"], env={"SLUICE_AUTH_JWT_SECRET": "s" * 32})
    assert with_auth.auth_enabled
    assert config.parse(
        ["--listen", "0.0.0.0:1", "--insecure-listen-any"], env={}
    ).insecure_listen_any


def test_the_secret_comes_from_the_environment_or_a_file_and_is_not_printed(
    tmp_path: object,
) -> None:

    secret_file = Path(str(tmp_path)) / "secret"
    secret_file.write_text("from-a-file-from-a-file-from-a-file\n")
    settings = config.parse([], env={"SLUICE_AUTH_JWT_SECRET_FILE": str(secret_file)})
    assert settings.auth_jwt_secret == "from-a-file-from-a-file-from-a-file"
    assert "from-a-file" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLUICE_TLS_CERT_FILE": "c.pem"}, "needs both"),
        ({"SLUICE_TLS_CLIENT_CA_FILE": "ca.pem"}, "needs TLS"),
        ({"SLUICE_AUTH_JWT_SECRET": "s" * 32, "SLUICE_AUTH_JWT_PUBLIC_KEY_FILE": "k"}, "not both"),
        ({"SLUICE_MAX_WATCHERS_PER_RUN": "0"}, "not a valid value"),
    ],
)
def test_inconsistent_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.parse([], env=env)


def test_the_gc_threshold_is_a_setting() -> None:
    assert config.parse([], env={}).gc_threshold == 50_000
    assert config.parse(["--gc-threshold", "0"], env={}).gc_threshold == 0
    assert config.parse([], env={"SLUICE_GC_THRESHOLD": "700"}).gc_threshold == 700


def test_a_negative_gc_threshold_is_refused() -> None:
    with pytest.raises(config.ConfigError, match="SLUICE_GC_THRESHOLD"):
        config.parse(["--gc-threshold", "-1"], env={})


def test_outgoing_http_settings() -> None:
    defaults = config.parse([], env={})
    # As many connections as steps may run at once, unless set.
    assert defaults.http_connections == defaults.max_concurrent_steps == 256
    assert defaults.http_timeout == timedelta(seconds=5)
    assert defaults.http_max_response_bytes == 65536
    assert config.parse(["--max-concurrent-steps", "40"], env={}).http_connections == 40
    env = {
        "SLUICE_HTTP_MAX_CONNECTIONS": "12",
        "SLUICE_HTTP_TIMEOUT_SECONDS": "2.5",
        "SLUICE_HTTP_MAX_RESPONSE_BYTES": "1000",
    }
    settings = config.parse([], env=env)
    assert settings.http_connections == 12
    assert settings.http_timeout == timedelta(seconds=2.5)
    assert settings.http_max_response_bytes == 1000
    assert config.parse(["--http-max-connections", "3"], env=env).http_connections == 3


@pytest.mark.parametrize(
    "env",
    [
        {"SLUICE_HTTP_MAX_CONNECTIONS": "0"},
        {"SLUICE_HTTP_TIMEOUT_SECONDS": "0"},
        {"SLUICE_HTTP_MAX_RESPONSE_BYTES": "-1"},
    ],
)
def test_bad_outgoing_http_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(config.ConfigError, match=next(iter(env))):
        config.parse([], env=env)


@pytest.mark.parametrize(("algorithm", "needed"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_hmac_secrets_shorter_than_the_hash_are_refused(algorithm: str, needed: int) -> None:
    env = {"SLUICE_AUTH_JWT_SECRET": "s" * (needed - 1), "SLUICE_AUTH_JWT_ALGORITHMS": algorithm}
    with pytest.raises(config.ConfigError, match=f"{needed - 1} bytes; {algorithm} needs at least"):
        config.parse([], env=env)
    env["SLUICE_AUTH_JWT_SECRET"] = "s" * needed
    assert config.parse([], env=env).auth_enabled


def test_the_expiry_leeway_is_a_setting() -> None:
    assert config.parse([], env={}).auth_jwt_leeway == timedelta(seconds=30)
    env = {"SLUICE_AUTH_JWT_LEEWAY_SECONDS": "0"}
    assert config.parse([], env=env).auth_jwt_leeway == timedelta(0)
    with pytest.raises(config.ConfigError, match="SLUICE_AUTH_JWT_LEEWAY_SECONDS"):
        config.parse(["--auth-jwt-leeway", "-1"], env={})


def test_tls_and_key_files_are_checked_at_start(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    missing = str(tmp_path / "missing.pem")
    cases = {
        "cannot read SLUICE_TLS_KEY_FILE": {"tls_key_file": missing},
        "SLUICE_TLS_CERT_FILE .* holds no PEM certificate": {"tls_cert_file": str(pki.server_key)},
        "is not an unencrypted PEM private key": {"tls_key_file": str(pki.server_cert)},
        "is not the key of the first certificate": {"tls_key_file": str(pki.client_key)},
        "SLUICE_TLS_CLIENT_CA_FILE .* holds no PEM certificate": {
            "tls_client_ca_file": str(pki.server_key)
        },
        "cannot read SLUICE_AUTH_JWT_PUBLIC_KEY_FILE": {"auth_jwt_public_key_file": missing},
        "SLUICE_AUTH_JWT_PUBLIC_KEY_FILE .* holds no PEM public key": {
            "auth_jwt_public_key_file": str(pki.ca)
        },
        "SLUICE_WEBHOOK_ALLOW": {"webhook_allow": "http://hooks.example/x"},
    }
    good = {"tls_cert_file": str(pki.server_cert), "tls_key_file": str(pki.server_key)}
    for problem, settings in cases.items():
        with pytest.raises(config.ConfigError, match=problem):
            SluiceServer(config.Settings(**{**good, **settings}))  # type: ignore[arg-type]
    SluiceServer(config.Settings(**good))  # type: ignore[arg-type]
