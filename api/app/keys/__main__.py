"""`python -m app.keys create NAME [--admin] | list | revoke NAME`: manage API keys from a
shell next to the database (in compose: `docker compose exec api python -m app.keys ...`)."""

from __future__ import annotations

import argparse
import sys

from app.config import load_settings
from app.db import make_engine, make_session_factory, session_scope
from app.errors import AppError
from app.keys import service
from app.webhooks.urls import checked_callback_url


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings()
    engine = make_engine(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            if args.command == "create":
                url = args.callback_url
                if url is not None:
                    checked_callback_url(url, settings)
                key, raw = service.create(session, args.name, admin=args.admin, callback_url=url)
                role = "admin key" if key.admin else "key"
                print(f"Created {role} {key.name!r}. It is shown this once; keep it safe:")
                print(raw)
            elif args.command == "revoke":
                key = service.revoke(session, args.name)
                print(f"Revoked {key.name!r}.")
            else:
                for key in service.listed(session):
                    state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                    role = "admin" if key.admin else "user"
                    print(f"{key.name}\t{key.prefix}…\t{role}\t{state}")
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it (once)")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="may manage keys, sees all jobs")
    create.add_argument(
        "--callback-url", help="default webhook URL for its uploads (needs WEBHOOK_SECRET)"
    )
    commands.add_parser("list", help="list keys (names and prefixes, never the keys)")
    revoke = commands.add_parser("revoke", help="revoke a key by name or id")
    revoke.add_argument("name")
    return parser


if __name__ == "__main__":
    sys.exit(main())
