"""One strict settings object, read from the environment once at start.

Bad values stop the process with a one-line message naming the variable, so a
misconfigured deployment fails at boot rather than on the first request.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from psycopg.conninfo import make_conninfo

from rates_platform.apikeys.domain import check_limits

T = TypeVar("T")

# libpq reads these itself; we only need to know whether any is set.
LIBPQ_VARIABLES = (
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGSERVICE",
    "PGSSLMODE",
    "PGPASSFILE",
)


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def _read(env: Mapping[str, str], name: str) -> str | None:
    """Return NAME, or the contents of the file named by NAME_FILE (for secrets)."""
    file_name = env.get(f"{name}_FILE")
    if file_name:
        if name in env:
            raise SettingsError(f"{name} and {name}_FILE are both set; set only one")
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE: cannot read {file_name}: {exc.strerror}") from None
    return env.get(name)


def _parse(
    env: Mapping[str, str],
    name: str,
    *,
    default: T,
    convert: Callable[[str], T],
    check: Callable[[T], bool],
    expected: str,
) -> T:
    raw = _read(env, name)
    if raw is None or raw == "":
        return default
    try:
        value = convert(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not valid: expected {expected}") from None
    if not check(value):
        raise SettingsError(f"{name}={raw!r} is not valid: expected {expected}")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    return _parse(
        env,
        name,
        default=default,
        convert=int,
        check=lambda v: 1 <= v <= maximum,
        expected=f"a whole number from 1 to {maximum}",
    )


def _seconds(env: Mapping[str, str], name: str, default: float, maximum: float) -> float:
    return _parse(
        env,
        name,
        default=default,
        convert=float,
        check=lambda v: 0 < v <= maximum,
        expected=f"seconds, more than 0 and at most {maximum:g}",
    )


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    return _parse(
        env,
        name,
        default=default,
        convert=int,
        check=lambda v: 1 <= v <= 65535,
        expected="a TCP port (1-65535)",
    )


def _log_level(env: Mapping[str, str]) -> str:
    levels = ("DEBUG", "INFO", "WARNING", "ERROR")
    return _parse(
        env,
        "LOG_LEVEL",
        default="INFO",
        convert=str.upper,
        check=lambda v: v in levels,
        expected="one of " + ", ".join(levels),
    )


def _secret_store(env: Mapping[str, str]) -> str:
    spec = env.get("DB_SECRET_STORE", "")
    kind, _, where = spec.partition(":")
    if spec and not (
        (kind == "file" and where) or (kind == "keyvault" and where.startswith("https://"))
    ):
        raise SettingsError(
            f"DB_SECRET_STORE={spec!r} is not valid: expected file:PATH or keyvault:https://VAULT"
        )
    return spec


def _rate_limit(env: Mapping[str, str], name: str = "RATE_LIMIT") -> str:
    spec = (env.get(name) or "").strip()
    if spec:
        try:
            check_limits(spec)
        except ValueError:
            raise SettingsError(
                f"{name}={spec!r} is not valid: expected limits like 100/second;3000/minute"
                " (quotas from 1 to 10^9, windows up to a year)"
            ) from None
    return spec


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(env: Mapping[str, str], name: str) -> tuple[Network, ...]:
    parts = [p.strip() for p in (env.get(name) or "").split(",") if p.strip()]
    try:
        return tuple(ipaddress.ip_network(p, strict=False) for p in parts)
    except ValueError:
        raise SettingsError(
            f"{name}={env.get(name)!r} is not valid: expected comma-separated addresses or CIDRs"
        ) from None


AUTH_MODES = ("public", "api-key", "entra")


def _auth(env: Mapping[str, str]) -> tuple[str, str, str, str]:
    """AUTH_MODE and, for entra, where tokens come from and whom they are for."""
    mode = env.get("AUTH_MODE") or "public"
    if mode not in AUTH_MODES:
        raise SettingsError(
            f"AUTH_MODE={mode!r} is not valid: expected one of {', '.join(AUTH_MODES)}"
        )
    tenant = env.get("ENTRA_TENANT_ID") or ""
    values = {
        "auth_mode": mode,
        "entra_audience": env.get("ENTRA_AUDIENCE") or "",
        "entra_issuer": env.get("ENTRA_ISSUER")
        or (f"https://login.microsoftonline.com/{tenant}/v2.0" if tenant else ""),
        "entra_jwks_url": env.get("ENTRA_JWKS_URL")
        or (f"https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys" if tenant else ""),
    }
    if mode == "entra":
        for key in ("entra_audience", "entra_issuer", "entra_jwks_url"):
            if not values[key]:
                raise SettingsError(
                    f"AUTH_MODE=entra needs {key.upper()} (or ENTRA_TENANT_ID for issuer and keys)"
                )
        url = urlsplit(values["entra_jwks_url"])
        if url.scheme != "https" and url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SettingsError(
                f"ENTRA_JWKS_URL={values['entra_jwks_url']!r} is not valid: expected https://"
            )
    return (
        mode,
        values["entra_audience"],
        values["entra_issuer"],
        values["entra_jwks_url"],
    )


def check_rotation_grace(env: Mapping[str, str]) -> None:
    """A retired login must have no pooled connection left and no cached credential:
    the rotation's grace must outlast the pool's connection lifetime plus the cache."""
    if not env.get("ROTATION_GRACE_SECONDS"):
        return
    grace = _seconds(env, "ROTATION_GRACE_SECONDS", 3600.0, 86400.0 * 365)
    pool = _seconds(env, "DB_POOL_MAX_LIFETIME", 1800.0, 86400)
    ttl = _seconds(env, "DB_CREDENTIAL_TTL", 2.0, 300)
    if grace <= pool + ttl:
        raise SettingsError(
            f"ROTATION_GRACE_SECONDS={grace:g} is not valid: expected more than "
            f"DB_POOL_MAX_LIFETIME + DB_CREDENTIAL_TTL ({pool + ttl:g} s), or a retired "
            "login would still be in use"
        )


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    # A libpq connection string or URI; empty means "use the PG* variables".
    database_url: str = field(default="", repr=False)
    host: str = "127.0.0.1"
    port: int = 3000
    workers: int = 2
    threads: int = 2
    max_range_days: int = 366
    pool_min_size: int = 1
    pool_max_size: int = 4
    pool_timeout: float = 3.0
    pool_max_lifetime: float = 1800.0
    statement_timeout: float = 5.0
    ready_timeout: float = 2.0
    log_level: str = "INFO"
    # Where the rotated login lives (file:PATH or keyvault:https://...); empty: the
    # credentials in DATABASE_URL / PG* are used as they are.
    secret_store: str = ""
    secret_name: str = "rates-db-app"  # noqa: S105 - a name, not a secret
    credential_ttl: float = 2.0
    # Per-client limits (limits' syntax, e.g. "100/second;3000/minute"); empty: none.
    rate_limit: str = ""
    # Peers whose X-Forwarded-For is believed (the gateway, the platform's ingress).
    trusted_proxies: tuple[Network, ...] = ()
    auth_mode: str = "public"
    entra_audience: str = ""
    entra_issuer: str = ""
    entra_jwks_url: str = ""
    # Front Door's id: requests without it in X-Azure-FDID get a 403 (empty: not checked).
    front_door_id: str = ""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        database_url = _read(env, "DATABASE_URL") or ""
        if env.get("PGPASSWORD_FILE"):  # libpq has no such variable; containers want one
            password = _read(env, "PGPASSWORD") or ""
            database_url = make_conninfo(database_url, password=password)
        if not database_url and not any(name in env for name in LIBPQ_VARIABLES):
            raise SettingsError(
                "no database configured: set DATABASE_URL (or DATABASE_URL_FILE) "
                "or the libpq variables PGHOST, PGUSER, PGDATABASE, PGPASSWORD"
            )
        check_rotation_grace(env)
        pool_min = _positive_int(env, "DB_POOL_MIN_SIZE", cls.pool_min_size, 100)
        pool_max = _positive_int(env, "DB_POOL_MAX_SIZE", max(cls.pool_max_size, pool_min), 100)
        if pool_max < pool_min:
            raise SettingsError(
                f"DB_POOL_MAX_SIZE={pool_max} is smaller than DB_POOL_MIN_SIZE={pool_min}"
            )
        auth_mode, entra_audience, entra_issuer, entra_jwks_url = _auth(env)
        return cls(
            database_url=database_url,
            host=env.get("HOST") or cls.host,
            port=_port(env, "PORT", cls.port),
            workers=_positive_int(env, "WEB_WORKERS", cls.workers, 64),
            threads=_positive_int(env, "WEB_THREADS", cls.threads, 64),
            max_range_days=_positive_int(env, "RATES_MAX_RANGE_DAYS", cls.max_range_days, 36600),
            pool_min_size=pool_min,
            pool_max_size=pool_max,
            pool_timeout=_seconds(env, "DB_POOL_TIMEOUT", cls.pool_timeout, 300),
            pool_max_lifetime=_seconds(env, "DB_POOL_MAX_LIFETIME", cls.pool_max_lifetime, 86400),
            statement_timeout=_seconds(env, "DB_STATEMENT_TIMEOUT", cls.statement_timeout, 600),
            ready_timeout=_seconds(env, "READY_TIMEOUT", cls.ready_timeout, 60),
            log_level=_log_level(env),
            secret_store=_secret_store(env),
            secret_name=env.get("DB_SECRET_NAME") or cls.secret_name,
            credential_ttl=_seconds(env, "DB_CREDENTIAL_TTL", cls.credential_ttl, 300),
            rate_limit=_rate_limit(env),
            trusted_proxies=_networks(env, "TRUSTED_PROXIES"),
            front_door_id=env.get("FRONT_DOOR_ID") or "",
            metrics_host=env.get("METRICS_HOST") or cls.metrics_host,
            metrics_port=_port(env, "METRICS_PORT", cls.metrics_port),
            auth_mode=auth_mode,
            entra_audience=entra_audience,
            entra_issuer=entra_issuer,
            entra_jwks_url=entra_jwks_url,
        )
