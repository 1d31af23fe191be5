"""`yikatong serve`: the web application (ledger.web) under uvicorn, on the same `--db` as every command.

FastAPI and uvicorn are imported when the command runs, not at start-up: the other commands never load them.
"""

from __future__ import annotations

from pathlib import Path

import click

from domain.errors import RuleBroken
from ledger.bootstrap import open_service
from ledger.cli.context import Context, pass_context
from ledger.sessions import parse_duration


class WebNeedsAccounts(RuleBroken):
    """The web application acts only as accounts: a ledger without any needs its first admin first."""


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--session", "session", default="8h", show_default=True, help="how long a login lasts: 30m, 8h, 2d")
@click.option(
    "--exports",
    "exports_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="keep every file downloaded from the batch pages in this folder (else only sent)",
)
@click.option("--certfile", type=click.Path(dir_okay=False, exists=True), help="TLS certificate (PEM): serve https")
@click.option("--keyfile", type=click.Path(dir_okay=False, exists=True), help="TLS private key (PEM)")
@pass_context
def serve(
    c: Context, host: str, port: int, session: str, exports_dir: Path | None, certfile: str | None, keyfile: str | None
) -> None:
    """The web application: zh-CN pages and the JSON API under /api/ (open http://HOST:PORT/login)."""
    import uvicorn

    from ledger.web.app import create_app

    db = c.db
    seconds = parse_duration(session)
    service = open_service(db, read_only=True)
    try:
        if not service.has_accounts():
            raise WebNeedsAccounts(
                "this ledger has no accounts: create the first admin with `yikatong init --admin NAME`"
            )
    finally:
        service.registry.close()
        service.disbursement.close()
    if exports_dir is not None:
        exports_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(db, session_seconds=seconds, exports_dir=exports_dir)
    scheme = "https" if certfile else "http"
    click.echo(f"yikatong web: {scheme}://{host}:{port}/login (Ctrl-C stops it)", err=True)
    uvicorn.run(app, host=host, port=port, ssl_certfile=certfile, ssl_keyfile=keyfile, log_level="info")
