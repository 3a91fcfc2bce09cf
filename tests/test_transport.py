"""TLS to PostgreSQL: sslmode=verify-full and its certificate settings in the URL reach libpq unchanged."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from agentprovision.settings import load_settings
from agentprovision.store.db import make_engine

TLS_URL = (
    "postgresql://app@127.0.0.1:5432/postgres?sslmode=verify-full&sslrootcert={ca}"
    "&sslcert=/etc/agentprovision/client.crt&sslkey=/etc/agentprovision/client.key"
)


def test_tls_settings_in_the_database_url_reach_psycopg(tmp_path: Path) -> None:
    ca = tmp_path / "db-ca.pem"
    settings = load_settings({"AGENTPROVISION_DATABASE_URL": TLS_URL.format(ca=ca), "AGENTPROVISION_STATE_DIR": "/x"})
    engine = make_engine(settings.database_url)
    assert engine.dialect.driver == "psycopg"
    _, params = engine.dialect.create_connect_args(engine.url)
    assert params["sslmode"] == "verify-full" and params["sslrootcert"] == str(ca)
    assert (
        params["sslcert"] == "/etc/agentprovision/client.crt" and params["sslkey"] == "/etc/agentprovision/client.key"
    )
    # What libpq is finally handed: the same settings, in its own conninfo form.
    libpq = {k: v for k, v in params.items() if v is not None and k != "context"}  # context: a psycopg adapter
    conninfo = psycopg.conninfo.make_conninfo(**libpq)
    assert psycopg.conninfo.conninfo_to_dict(conninfo)["sslmode"] == "verify-full"


@pytest.mark.postgres
def test_verify_full_refuses_a_server_it_cannot_verify(postgres_admin_dsn: str, tmp_path: Path) -> None:
    """Against the real (non-TLS, or unverifiable) server the connection fails on TLS, never falls back to plain."""
    engine = make_engine(TLS_URL.format(ca=tmp_path / "missing-ca.pem").replace("app@", "postgres@"))
    with pytest.raises(OperationalError) as failure:
        engine.connect()
    message = str(failure.value).lower()
    assert "ssl" in message or "root certificate" in message
    engine.dispose()
