"""Alembic environment: the URL comes from the caller's config, else from the app's settings."""

from alembic import context
from sqlalchemy import create_engine, pool

from app.config import Settings
from app.db import Base
from app.jobs import models  # noqa: F401  (registers the tables on Base.metadata)
from app.keys import models as key_models  # noqa: F401
from app.models import models as model_models  # noqa: F401
from app.webhooks import models as webhook_models  # noqa: F401

url = context.config.get_main_option("sqlalchemy.url") or Settings().database_url
with create_engine(url, poolclass=pool.NullPool).connect() as connection:
    # render_as_batch lets the same migrations alter tables on SQLite (dev mode).
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
