"""Stored topics pinned: every class that stored events name by an older topic, registered under it.

A stored event names its class by topic (`module:Class.Event`). When a class moves, the events written
before the move keep the old topic; eventsourcing's `register_topic` maps it to the class where it lives
now (and resolves `Old.Event` through the class), so every ledger written by an earlier release reads the
same (tests/fixtures/ holds such ledgers and checks it). Add a line here whenever a stored class moves.
Imported by the applications' modules, so it is in force wherever events are read.
"""

from __future__ import annotations

from eventsourcing.utils import register_topic

from domain.disbursement import BatchRegister
from domain.policy_log import PolicyLog

MOVED: dict[str, type] = {
    "ledger.apps:PolicyLog": PolicyLog,  # until release 88ba6cb
    "ledger.disbursement:BatchRegister": BatchRegister,  # until release 88ba6cb
}

for _topic, _cls in MOVED.items():
    register_topic(_topic, _cls)
