"""Alembic scripts of the job database (jobs/models.py); `urnn db upgrade` runs them."""
