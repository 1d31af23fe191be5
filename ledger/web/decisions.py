"""决定: find a person by ID number and record a decision (暂停/恢复/终止/渐退/变更家庭情况/更换账户) or
one-off aid (临时救助), each previewed before it is recorded (examples/web.md).

URLs: /persons, /aid."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
