"""The ``rates`` command: migrate, load the sample data, serve, or run it all locally."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from tqdm import tqdm

from rates_platform import devrun, schema, synthetic
from rates_platform.access.service import LOCAL_SERVER_SETTINGS, configure_local_server
from rates_platform.apikeys import cli as keys_cli
from rates_platform.dbaccess.bootstrap import ROTATOR_LOGIN, bootstrap
from rates_platform.dbaccess.cli import connection_from_env
from rates_platform.dbaccess.rotation import RotationPolicy
from rates_platform.dbaccess.secrets import write_private
from rates_platform.dbaccess.stores import open_store
from rates_platform.devdb import EmbeddedPostgres
from rates_platform.settings import LIBPQ_VARIABLES, Settings, SettingsError
from rates_platform.synthetic import Shape

DEFAULT_SAMPLE = Path("db/rates.sql")
DEV_DATABASE = "rates"
# What `rates serve` runs, and what `rates dev` supervises: the production HTTP server.
SERVE_COMMAND = [sys.executable, "-m", "rates_platform.serving"]


def _database_url() -> str:
    """Where admin commands connect: DATABASE_URL, plus the login kept in the secret
    store under DBACCESS_LOGIN if set (how the Azure migration job logs in)."""
    if os.environ.get("DB_SECRET_STORE") and os.environ.get("DBACCESS_LOGIN"):
        return connection_from_env(os.environ, open_store(os.environ["DB_SECRET_STORE"]))
    return Settings.from_env().database_url


def _prepare_embedded(server: EmbeddedPostgres, data_dir: Path) -> tuple[str, dict[str, str]]:
    """Start (creating on first run) the local server with rotated access for the API.

    Returns the superuser's conninfo and the environment that points the API, and
    `dbaccess`, at it: no password in either, they come from the local store.
    """
    port = server.port
    if not server.running:
        server.start(LOCAL_SERVER_SETTINGS)
    with psycopg.connect(server.superuser_conninfo(), autocommit=True) as conn:
        if not conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DEV_DATABASE,)
        ).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEV_DATABASE)))
    admin = server.superuser_conninfo(DEV_DATABASE)
    schema.migrate(admin)
    store_spec = f"file:{(data_dir / 'secrets.enc').resolve()}"
    tcp = make_conninfo(host="127.0.0.1", port=port, dbname=DEV_DATABASE)
    bootstrap(admin, open_store(store_spec), tcp, RotationPolicy())
    for change in configure_local_server(admin, Path("access-policy.toml")):
        print(f"access policy: {change}", file=sys.stderr)
    env = {
        "DATABASE_URL": tcp,
        "DB_SECRET_STORE": store_spec,
        "DBACCESS_LOGIN": ROTATOR_LOGIN,
        "ACCESS_SERVER_LOG": str(server.log_file),  # for `dbaccess access activity`
    }
    lines = "".join(f"{key}='{value}'\n" for key, value in env.items())
    write_private(data_dir / "dbaccess.env", lines.encode())
    return admin, env


def dev(args: argparse.Namespace) -> int:
    """Serve the API on a local database, creating and filling it on first run; see
    devrun for the supervision (single instance, PostgreSQL restarted, clean stop)."""
    data_dir = Path(args.data_dir)
    env = dict(os.environ)
    external = env.get("DATABASE_URL") or any(name in env for name in LIBPQ_VARIABLES)
    server = None if external else EmbeddedPostgres(data_dir / "postgres", args.pg_port)

    def prepare() -> dict[str, str]:
        if server is None:
            admin = _database_url()
            schema.migrate(admin)
        else:
            admin, local = _prepare_embedded(server, data_dir)
            env.update(local)
            env.pop("DBACCESS_LOGIN")  # the API logs in with its own rotated credential
        if not schema.has_prices(admin):
            counts = schema.load_sample(admin, args.sample)
            print(f"loaded sample data: {counts}", file=sys.stderr)
        Settings.from_env(env)  # fail here, with the one-line message, not in every worker
        return env

    return devrun.run(data_dir, server, prepare, SERVE_COMMAND, LOCAL_SERVER_SETTINGS)


def generate_with_progress(conninfo: str, shape: Shape) -> dict[str, float]:
    with (
        psycopg.connect(conninfo) as conn,
        tqdm(total=shape.prices, unit="rows", unit_scale=True, desc="COPY prices") as bar,
    ):
        summary = synthetic.generate(conn, shape, bar.update)
    schema.vacuum_daily_totals(conninfo)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rates", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply pending schema migrations")
    load = commands.add_parser("load-sample", help="replace the data with a pg_dump's rows")
    load.add_argument("--file", type=Path, default=DEFAULT_SAMPLE)
    load.add_argument("--if-empty", action="store_true", help="do nothing if prices exist")
    gen = commands.add_parser("generate", help="replace the data with a synthetic data set")
    gen.add_argument("--prices", type=int, default=Shape.prices)
    gen.add_argument("--days", type=int, default=Shape.days)
    gen.add_argument("--ports", type=int, default=Shape.ports)
    gen.add_argument("--regions", type=int, default=Shape.regions)
    gen.add_argument("--lanes", type=int, default=Shape.lanes)
    gen.add_argument("--seed", type=int, default=Shape.seed)
    commands.add_parser("serve", help="serve the API with granian (production settings)")
    run_dev = commands.add_parser("dev", help="serve on a local embedded PostgreSQL")
    run_dev.add_argument("--data-dir", default=".data")
    run_dev.add_argument("--pg-port", type=int, default=int(os.environ.get("DEV_PG_PORT", "54329")))
    run_dev.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE)
    keys_cli.add_parser(commands)
    args = parser.parse_args(argv)
    try:
        if args.command == "migrate":
            applied = schema.migrate(_database_url())
            print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
        elif args.command == "load-sample":
            url = _database_url()
            if args.if_empty and schema.has_prices(url):
                print("prices already loaded; nothing to do")
            else:
                print(f"loaded: {schema.load_sample(url, args.file)}")
        elif args.command == "generate":
            shape = Shape(
                prices=args.prices,
                days=args.days,
                ports=args.ports,
                regions=args.regions,
                lanes=args.lanes,
                seed=args.seed,
            )
            print(f"generated: {generate_with_progress(_database_url(), shape)}")
        elif args.command == "keys":
            return keys_cli.run(args, _database_url())
        elif args.command == "serve":
            Settings.from_env()
            os.execv(sys.executable, SERVE_COMMAND)  # noqa: S606
        else:
            return dev(args)
    except SettingsError as exc:
        print(f"rates: configuration error: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(f"rates: cannot reach the database: {type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
