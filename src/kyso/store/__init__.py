"""Storage: SQLAlchemy Core tables, versioned migrations, transactions (SQLite or PostgreSQL)."""

from kyso.store.engine import Store, open_store
from kyso.store.schema import metadata

__all__ = ["Store", "metadata", "open_store"]
