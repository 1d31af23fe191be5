"""The vendored assets are the files VENDORED.md names (offices have no internet: nothing from a CDN)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from fastapi.testclient import TestClient

from ledger.web import app as web_app

STATIC = Path(web_app.__file__).resolve().parent / "static"
TEMPLATES = STATIC.parent / "templates"


def test_each_vendored_file_has_the_sha256_vendored_md_records() -> None:
    table = (STATIC / "VENDORED.md").read_text(encoding="utf-8")
    recorded = dict(re.findall(r"^\| (\S+\.js) \|.*\| ([0-9a-f]{64}) \|$", table, re.M))
    assert set(recorded) == {"htmx.min.js", "echarts.min.js"}
    for name, digest in recorded.items():
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name
    assert 't.version="5.6.0"' in (STATIC / "echarts.min.js").read_text(encoding="utf-8")  # ECharts 5
    assert 'version:"2.0.10"' in (STATIC / "htmx.min.js").read_text(encoding="utf-8")


def test_pages_load_nothing_from_another_host() -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert not re.search(r'(src|href)="(https?:)?//', text), template.name


def test_the_server_serves_its_assets(tmp_path: Path) -> None:
    from ledger.bootstrap import database_from_url
    from tests.helpers.ledgers import new_ledger

    url = f"sqlite:///{tmp_path / 'static.db'}"
    new_ledger(url)
    client = TestClient(web_app.create_app(database_from_url(url)))
    for name in ("htmx.min.js", "echarts.min.js", "app.css", "app.js"):
        assert client.get(f"/static/{name}").status_code == 200, name
