"""What every export format can carry (exporters.limits): the door refuses exactly what an export would.

Given a payee's name, when the combined rule of every shipped format checks it, then it finds a problem
exactly when some format's export of a row with that name is refused; encoding gaps (GBK) are warnings.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from exporters import onecard, pain001, xlsx
from exporters.limits import export_field_limits, export_field_rules
from exporters.rows import ExportRefused, FieldLimit, PaymentRow
from tests.helpers.exporters import header_for

CREATED = datetime(2017, 1, 5, 9, 30, tzinfo=UTC)


def _row(name: str) -> PaymentRow:
    return PaymentRow(
        serial=1,
        payment_id="0" * 31 + "1",
        id_number="152601198001011239",
        name=name,
        account="6228480045001122337",
        bank_code="103191000012",
        amount_fen=55500,
        region="150902",
        persons=1,
        remark="城镇低保 2017-01",
    )


def _refusals(name: str) -> list[str]:
    """The formats whose export of a row named `name` is refused (only GB18030/UTF-8 profiles: GBK's gaps
    are the encoding warnings, tested below)."""
    rows = [_row(name)]
    header = header_for(rows, created_at=CREATED)
    renders = {
        "pain001": lambda: pain001.render_pain001(header, rows),
        "xlsx": lambda: xlsx.render_roster(header, rows),
        "notice": lambda: xlsx.render_notice(header, rows),
    }
    for profile_name in onecard.profile_names():
        profile = onecard.load_profile(profile_name)
        if profile.encoding != "gbk":
            renders[f"onecard:{profile_name}"] = lambda p=profile: onecard.render_onecard(header, rows, p)
    refused = []
    for fmt, render in renders.items():
        try:
            render()
        except ExportRefused:
            refused.append(fmt)
    return refused


def test_every_exporter_declares_its_limits_and_the_name_is_bounded_by_pain001s_140() -> None:
    limits = export_field_limits()
    assert {limit.fmt for limit in limits} >= {"pain001", "xlsx", *(f"onecard:{p}" for p in onecard.profile_names())}
    assert export_field_rules()["name"].chars_max == pain001.NAME_CHARS_MAX == 140
    assert {limit.fmt for limit in limits if limit.field == "name" and "|" in limit.forbidden} == {
        f"onecard:{p}" for p in onecard.profile_names()
    }


def test_a_new_profiles_delimiter_applies_without_touching_the_roster() -> None:
    generic = onecard.load_profile("generic")
    semicolon = onecard.Profile(**{**generic.__dict__, "name": "semi", "delimiter": ";"})
    rules = export_field_rules(export_field_limits([generic, semicolon]))
    assert rules["name"].problems("李;建华") == [
        "name 李;建华: contains ';' (U+003B), which onecard:semi cannot carry (it would break the file's columns or "
        "lines)"
    ]
    assert export_field_rules()["name"].problems("李;建华") == []


def test_a_limit_names_its_format_and_place() -> None:
    rule = export_field_rules([FieldLimit("pain001", "name", "Cdtr/Nm", 3)])["name"]
    assert rule.problems("王小二子") == ["name 王小二子: 4 characters, more than the 3 that pain001 Cdtr/Nm can carry"]


def test_a_rare_character_gbk_lacks_is_a_warning_naming_the_gbk_profile() -> None:
    rule = export_field_rules()["name"]
    assert rule.problems("王䶮") == []
    assert rule.warnings("王䶮") == [
        "name 王䶮: '䶮' (U+4DAE) cannot be written in GBK, so onecard:bank-date cannot export it (a GB18030 "
        "profile can)"
    ]
    assert rule.warnings("李建华") == []


NAME_CHARACTERS = st.sampled_from(["王", "李", "a", " ", "·", "|", "\n", "\t", "\x07", ",", "\u2028", "䶮"])


@settings(max_examples=150, deadline=None)
@given(st.lists(NAME_CHARACTERS, min_size=1, max_size=150).map("".join).filter(lambda n: n.strip() == n != ""))
def test_the_door_refuses_a_name_exactly_when_some_export_would(name: str) -> None:
    assert bool(export_field_rules()["name"].problems(name)) == bool(_refusals(name)), _refusals(name)
