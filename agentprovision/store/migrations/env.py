"""Alembic environment: migrations run on the engine the caller hands over, never from a URL in a file."""

from alembic import context

from agentprovision.store.registry import Base

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
