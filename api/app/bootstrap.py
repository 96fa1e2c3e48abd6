"""`python -m app.bootstrap`: migrate the database and lay out the shared volume, once,
before the API starts (compose and `make dev` run it)."""

import logging
import shutil
import sys

from alembic import command
from alembic.config import Config

from app.config import Refusal, Settings, load_settings
from app.db import make_engine, make_session_factory, session_scope
from app.dbwait import wait_for_database
from app.keys import service as keys
from app.logs import configure_logging
from app.startup import check_model, check_orchestrator
from app.storage import SharedStorage

log = logging.getLogger("app.bootstrap")


def migrate(database_url: str) -> None:
    config = Config()
    config.set_main_option("script_location", "app:migrations")
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, "head")


def add_admin_key(settings: Settings) -> None:
    """The first key comes from .env (ADMIN_API_KEY); stored as its hash, once."""
    engine = make_engine(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            raw = settings.admin_api_key.get_secret_value() if settings.admin_api_key else ""
            if raw and keys.ensure(session, "admin", raw):
                log.info("bootstrap.admin_key_stored", extra={"key_name": "admin"})
    finally:
        engine.dispose()


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    # Refuse before changing anything: compose starts nothing else when this step fails.
    check_orchestrator(settings)
    check_model(settings)
    wait_for_database(settings)
    storage = SharedStorage(settings.shared_data_dir)
    storage.prepare()
    migrate(settings.database_url)
    log.info("bootstrap.migrated")
    if settings.admin_api_key is not None:
        add_admin_key(settings)
    if settings.detect_script_source is not None:
        # Inference containers run the detection script from the shared volume.
        target = storage.root / "scripts" / "detect.py"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(settings.detect_script_source, target)
        target.chmod(0o644)
        log.info("bootstrap.script_installed", extra={"path": "scripts/detect.py"})


if __name__ == "__main__":
    try:
        main()
    except Refusal as exc:
        sys.exit(str(exc))  # the one line on stderr, exit status 1
