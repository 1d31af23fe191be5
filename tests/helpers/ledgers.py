"""Shared builders for ledger tests: a ledger with the shipped policy and roster rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ledger.apps import Registry
from ledger.bootstrap import open_apps
from ledger.disbursement import Disbursement
from ledger.roster import read_roster
from ledger.storage import Database

HEADER = (
    "id_number,name,region,programme,effective_from,members,monthly_income,special_members,"
    "bank_code,account,decision_ref\n"
)
LI = "152601198001011239,李建华,150902,urban_dibao,2017-01-01,2,300.00,0,103191000012,6228480045001122337,集民发〔2017〕2号\n"  # noqa: E501
WANG = "152621197505052342,王桂英,150921,rural_dibao,2017-01-01,3,200.00,1,402191000034,6217002050123456789,卓民发〔2017〕5号\n"  # noqa: E501


def check_digit(first17: str) -> str:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


def resident_id(region: str, birth: str, serial: int) -> str:
    body = f"{region}{birth}{serial:03d}"
    return body + check_digit(body)


def ledger(db: Database, policy_text: str) -> tuple[Registry, Disbursement]:
    registry, disbursement = open_apps(db)
    registry.load_policy(policy_text, "ulanqab-2017.toml", "clerk")
    return registry, disbursement


def import_rows(registry: Registry, tmp: Path, *rows: str, name: str = "r.csv") -> None:
    path = tmp / name
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    policy = registry.policy()
    registry.import_roster(read_roster(path, region=policy.region_code, programmes=policy.programmes), name, "clerk")


def row(
    id_number: str,
    programme: str,
    *,
    region: str = "150902",
    start: str = "2017-01-01",
    members: int = 1,
    income: str = "0.00",
    special: int = 0,
    name: str = "张三",
) -> str:
    return (
        f"{id_number},{name},{region},{programme},{start},{members},{income},{special},"
        f"103191000012,6228480045001122337,集民发〔2017〕9号\n"
    )


def yikatong(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger", "--db", db, "--as", "clerk", *args],
        capture_output=True,
        text=True,
        check=False,
    )
