"""The ops store: SQLAlchemy models, engine setup, migrations and the audit trail."""
