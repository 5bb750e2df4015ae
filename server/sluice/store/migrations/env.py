"""Alembic environment. Sluice runs migrations itself (`sluice db upgrade`, or on start with
--migrate) over a connection it passes in `config.attributes["connection"]`."""

from __future__ import annotations

from alembic import context

from sluice.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `sluice db upgrade`, which supplies the connection")

# render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the table.
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
