"""`python -m app.bootstrap`: migrate the database and lay out the shared volume, once,
before the API starts (compose and `make dev` run it)."""

import logging
import shutil

from alembic import command
from alembic.config import Config

from app.config import load_settings
from app.logs import configure_logging
from app.storage import SharedStorage

log = logging.getLogger("app.bootstrap")


def migrate(database_url: str) -> None:
    config = Config()
    config.set_main_option("script_location", "app:migrations")
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, "head")


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    storage = SharedStorage(settings.shared_data_dir)
    storage.prepare()
    migrate(settings.database_url)
    log.info("bootstrap.migrated")
    if settings.detect_script_source is not None:
        # Inference containers run the detection script from the shared volume.
        target = storage.root / "scripts" / "detect.py"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(settings.detect_script_source, target)
        target.chmod(0o644)
        log.info("bootstrap.script_installed", extra={"path": "scripts/detect.py"})


if __name__ == "__main__":
    main()
