"""Session-wide PostgreSQL: started once, one migrated database with the sample data."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rates_platform.app import create_app
from rates_platform.devdb import EmbeddedPostgres
from rates_platform.settings import Settings
from tests.support import ExternalPostgres, PreparedDatabase, prepare_database, start_server

_copies = itertools.count(1)
_OWN_BASETEMP = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Each session's temporary files in a directory of its own.

    pytest resets its shared root (/tmp/pytest-of-USER) to 0700 whenever a session
    starts; the embedded PostgreSQL runs as another system user and must traverse to
    its data, so a second session started beside this one would lock this one's
    servers out. Removed at the end, unless the caller chose --basetemp.
    """
    if config.option.basetemp is None:
        config.option.basetemp = config.stash[_OWN_BASETEMP] = tempfile.mkdtemp(
            prefix="rates-pytest-"
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_BASETEMP, None)
    if own:
        shutil.rmtree(own, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """The embedded server, or TEST_DATABASE_URL's when set (as in the GitHub pipeline)."""
    external = os.environ.get("TEST_DATABASE_URL")
    server = (
        ExternalPostgres(external)
        if external
        else start_server(tmp_path_factory.mktemp("postgres"))
    )
    yield server  # type: ignore[misc]
    server.stop()


@pytest.fixture(scope="session")
def template_db(pg_server: EmbeddedPostgres) -> PreparedDatabase:
    """Migrated once and loaded once; never connected to, so it can be copied."""
    return prepare_database(pg_server, "rates_template")


@pytest.fixture(scope="session")
def sample_db(pg_server: EmbeddedPostgres, template_db: PreparedDatabase) -> PreparedDatabase:
    """Shared and read-only by convention: tests that write use ``fresh_db``."""
    return prepare_database(pg_server, "rates_sample", template=template_db.name)


@pytest.fixture
def fresh_db(pg_server: EmbeddedPostgres, template_db: PreparedDatabase) -> PreparedDatabase:
    """A private copy of the sample database (a template copy takes milliseconds)."""
    return prepare_database(pg_server, f"rates_copy_{next(_copies)}", template=template_db.name)


def settings_for(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {"database_url": database_url, "pool_timeout": 2.0, **overrides}
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def app(sample_db: PreparedDatabase) -> Flask:
    return create_app(settings_for(sample_db.app))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
