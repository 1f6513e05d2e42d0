"""Alembic migrations of greenbutton's store, run by :func:`greenbutton.store.migrate.upgrade`."""
