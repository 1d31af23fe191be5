"""One-card batch files and return files, laid out by bank profiles (DESIGN.md, Bank files)."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from domain.money import format_yuan
from exporters.onecard import (
    PROFILES_DIR,
    Profile,
    load_profile,
    profile_names,
    read_return_file,
    render_onecard,
    render_return_file,
)
from exporters.rows import BatchHeader, ExportRefused, PaymentRow, ResultFileRejected
from tests.helpers.exporters import header_for

SHIPPED = ("generic", "bank-p", "bank-date")
# 17:30 UTC on 4 January is 01:30 on 5 January in Beijing: the files are dated the 5th.
CREATED_AT = datetime(2017, 1, 4, 17, 30, tzinfo=UTC)


def payment_id(serial: int) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"yikatong:test:{serial}").hex


def make_rows(count: int, *, names: dict[int, str] | None = None, amount_fen: int | None = None) -> list[PaymentRow]:
    names = names or {}
    return [
        PaymentRow(
            serial=i,
            payment_id=payment_id(i),
            id_number=f"150902{19400101 + i % 28:08d}{i % 1000:03d}X",
            name=names.get(i, f"王{'小大'[i % 2]}{'明华芳'[i % 3]}"),
            account=f"62170{i:014d}",
            bank_code="103191000015",
            amount_fen=amount_fen if amount_fen is not None else 55500 + i * 37 % 1000 + 1,
            region="150902",
            persons=1 + i % 4,
            remark="城镇低保 2017-01",
        )
        for i in range(1, count + 1)
    ]


def make_header(rows: list[PaymentRow]) -> BatchHeader:
    return header_for(rows, created_at=CREATED_AT, message_id="YKT-0f0f0f0f-2017-01")


def text_lines(data: bytes, profile: Profile) -> list[str]:
    text = data.decode(profile.encoding)
    assert text.endswith(profile.line_ending)
    return text[: -len(profile.line_ending)].split(profile.line_ending)


def shipped_text(name: str) -> str:
    return (PROFILES_DIR / f"{name}.toml").read_text(encoding="utf-8")


def profile_from_text(tmp_path: Path, text: str, name: str = "custom") -> Profile:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return load_profile(str(path))


# --------------------------------------------------------------------------------------------------
# Profiles


def test_the_three_profiles_are_shipped() -> None:
    assert set(SHIPPED) <= set(profile_names())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert "{payment_id}" in profile.detail and "{payment_id}" in profile.returns.detail


def test_bank_p_profile_is_p_header_pipe_terminated_gb18030_crlf() -> None:
    profile = load_profile("bank-p")
    assert (profile.header, profile.trailer) == ("P|{count}|{total_yuan}|", "########")
    assert profile.detail.endswith("|")
    assert (profile.encoding, profile.line_ending) == ("gb18030", "\r\n")


def test_a_profile_can_be_loaded_from_a_path(tmp_path: Path) -> None:
    profile = profile_from_text(tmp_path, shipped_text("bank-p"), "my-branch")
    assert profile.name == "my-branch" and profile.header == "P|{count}|{total_yuan}|"


def test_an_unknown_profile_name_is_refused() -> None:
    with pytest.raises(ExportRefused) as e:
        load_profile("bank-nowhere")
    assert e.value.rule == "ProfileUnknown" and "bank-nowhere" in str(e.value)


def test_a_profile_missing_a_key_is_refused_naming_the_key(tmp_path: Path) -> None:
    text = shipped_text("bank-p").replace('encoding = "gb18030"\n', "")
    with pytest.raises(ExportRefused) as e:
        profile_from_text(tmp_path, text, "broken")
    assert e.value.rule == "ProfileInvalid"
    assert "broken.toml: encoding: missing" in str(e.value)


def test_a_template_naming_an_unknown_placeholder_is_refused_naming_key_and_placeholder(tmp_path: Path) -> None:
    text = shipped_text("bank-p").replace("{serial}|{account}|{name}|{amount_yuan}|{payment_id}|\"",
                                          "{serial}|{acount}|{name}|{amount_yuan}|{payment_id}|\"")  # fmt: skip
    with pytest.raises(ExportRefused) as e:
        profile_from_text(tmp_path, text, "typo")
    assert e.value.rule == "ProfileInvalid"
    assert "typo.toml: batch_file.detail: unknown placeholder {acount}" in str(e.value)


def test_an_unknown_encoding_is_refused(tmp_path: Path) -> None:
    text = shipped_text("bank-p").replace('encoding = "gb18030"', 'encoding = "big5"')
    with pytest.raises(ExportRefused) as e:
        profile_from_text(tmp_path, text, "big5")
    assert "big5.toml: encoding: unknown encoding 'big5'" in str(e.value)


def test_an_unknown_key_is_refused(tmp_path: Path) -> None:
    text = shipped_text("bank-p").replace("[batch_file]\n", '[batch_file]\ncolour = "blue"\n')
    with pytest.raises(ExportRefused) as e:
        profile_from_text(tmp_path, text, "extra")
    assert "extra.toml: batch_file.colour: unknown key" in str(e.value)


def test_a_return_layout_without_the_payment_id_is_refused(tmp_path: Path) -> None:
    text = shipped_text("bank-p").replace("{amount_yuan}|{payment_id}|{status}", "{amount_yuan}|{remark}|{status}")
    with pytest.raises(ExportRefused) as e:
        profile_from_text(tmp_path, text, "noid")
    assert "noid.toml: return_file.detail: must contain {payment_id}" in str(e.value)


def test_every_problem_in_a_profile_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        shipped_text("bank-p")
        .replace('encoding = "gb18030"', 'encoding = "ebcdic-klingon"')
        .replace("rows_max = 5000", "rows_max = 0")
        .replace('trailer = "########"', 'trailer = "{count:%Y}"', 1)
    )
    with pytest.raises(ExportRefused) as e:
        profile_from_text(tmp_path, text, "many")
    message = str(e.value)
    assert "many.toml: encoding:" in message
    assert "many.toml: rows_max:" in message
    assert "many.toml: batch_file.trailer: a format spec does not fit" in message


def test_a_return_template_with_adjacent_placeholders_is_refused(tmp_path: Path) -> None:
    text = shipped_text("bank-p").replace("{status}|{reason}|{reason_text}|", "{status}{reason}|{reason_text}|")
    with pytest.raises(ExportRefused) as e:
        profile_from_text(tmp_path, text, "adjacent")
    assert "return_file.detail: {reason} follows another placeholder" in str(e.value)


# --------------------------------------------------------------------------------------------------
# Batch files


@pytest.mark.parametrize("name", SHIPPED)
def test_the_header_states_the_rows_count_and_total(name: str) -> None:
    profile = load_profile(name)
    rows = make_rows(7)
    total_fen = sum(r.amount_fen for r in rows)
    [(_, data)] = render_onecard(make_header(rows), rows, profile)
    lines = text_lines(data, profile)
    expected_header = {
        "bank-p": f"P|7|{format_yuan(total_fen)}|",
        "bank-date": f"20170105|7|{total_fen}|",
        "generic": f"H|{'0f' * 16}|20170105|150901234567890123|乌兰察布市民政局|7|{format_yuan(total_fen)}|1|1|",
    }[name]
    assert lines[0] == expected_header
    detail_count = len(lines) - 1 - (1 if profile.trailer else 0)
    assert detail_count == 7
    for row, line in zip(rows, lines[1:], strict=False):
        assert row.payment_id in line and row.account in line and row.name in line


def test_bank_p_file_is_crlf_gb18030_with_pipe_terminated_details_and_hash_trailer() -> None:
    profile = load_profile("bank-p")
    rows = make_rows(2)
    [(name, data)] = render_onecard(make_header(rows), rows, profile)
    assert name == "103191000015_20170105_0f0f0f0f_1.txt"
    assert data.endswith(b"########\r\n") and b"\n" not in data.replace(b"\r\n", b"")
    first = rows[0]
    expected = f"1|{first.account}|{first.name}|{format_yuan(first.amount_fen)}|{first.payment_id}|"
    assert data.split(b"\r\n")[1] == expected.encode("gb18030")


def test_bank_date_file_carries_the_id_number_and_fen_amounts_in_gbk() -> None:
    profile = load_profile("bank-date")
    rows = make_rows(1)
    [(name, data)] = render_onecard(make_header(rows), rows, profile)
    assert name == "DF10319100001520170105" + "0f0f0f0f" + "01.txt"
    row = rows[0]
    detail = f"1|{row.account}|{row.name}|{row.id_number}|{row.amount_fen}|城镇低保 2017-01#{row.payment_id}|"
    assert data == f"20170105|1|{row.amount_fen}|\n{detail}\n".encode("gbk")


def test_the_file_total_is_the_sum_of_the_rows_to_the_fen() -> None:
    # A third of a yuan three times: any float arithmetic would show here.
    rows = [replace(r, amount_fen=33) for r in make_rows(3)] + [replace(make_rows(4)[3], amount_fen=1)]
    [(_, data)] = render_onecard(make_header(rows), rows, load_profile("bank-p"))
    assert data.startswith(b"P|4|1.00|\r\n")


def test_a_batch_is_split_at_rows_max_each_file_with_its_own_count_and_total() -> None:
    profile = load_profile("bank-date")  # rows_max = 2000
    rows = make_rows(4500)
    files = render_onecard(make_header(rows), rows, profile)
    assert [name[-6:] for name, _ in files] == ["01.txt", "02.txt", "03.txt"]
    counts = []
    totals = 0
    for (_, data), chunk in zip(files, (rows[:2000], rows[2000:4000], rows[4000:]), strict=True):
        lines = text_lines(data, profile)
        date_text, count, total_fen, _ = lines[0].split("|")
        assert (date_text, int(count), int(total_fen)) == ("20170105", len(chunk), sum(r.amount_fen for r in chunk))
        assert len(lines) - 1 == len(chunk)
        counts.append(int(count))
        totals += int(total_fen)
    assert counts == [2000, 2000, 500]
    assert totals == sum(r.amount_fen for r in rows)


def test_split_files_keep_the_batch_serials() -> None:
    profile = replace(load_profile("bank-p"), rows_max=2)
    rows = make_rows(3)
    files = render_onecard(make_header(rows), rows, profile)
    assert len(files) == 2
    assert text_lines(files[1][1], profile)[1].startswith("3|")


@pytest.mark.parametrize("name", SHIPPED)
def test_the_same_batch_gives_identical_bytes(name: str) -> None:
    profile = load_profile(name)
    rows = make_rows(50)
    assert render_onecard(make_header(rows), rows, profile) == render_onecard(make_header(rows), rows, profile)


def test_the_file_date_is_the_batch_creation_date_in_beijing_not_the_clock() -> None:
    rows = make_rows(1)
    header = replace(make_header(rows), created_at=datetime(2030, 6, 30, 16, 0, tzinfo=UTC))
    [(name, data)] = render_onecard(header, rows, load_profile("bank-date"))
    assert "20300701" in name and data.startswith(b"20300701|")


def test_a_name_gb18030_cannot_encode_is_refused_naming_the_row() -> None:
    rows = make_rows(5, names={3: "张\ud800"})
    with pytest.raises(ExportRefused) as e:
        render_onecard(make_header(rows), rows, load_profile("bank-p"))
    assert e.value.rule == "NameNotEncodable"
    assert f"row 3 (payment {rows[2].payment_id})" in str(e.value)
    assert "U+D800" in str(e.value) and "GB18030" in str(e.value)


def test_a_rare_character_outside_gbk_is_refused_by_a_gbk_profile_and_written_by_gb18030() -> None:
    rows = make_rows(3, names={2: "李𠀀"})
    with pytest.raises(ExportRefused) as e:
        render_onecard(make_header(rows), rows, load_profile("bank-date"))
    assert e.value.rule == "NameNotEncodable"
    assert "row 2 (payment" in str(e.value) and "U+20000" in str(e.value) and "GBK" in str(e.value)
    [(_, data)] = render_onecard(make_header(rows), rows, load_profile("bank-p"))
    assert "李𠀀" in data.decode("gb18030")


def test_every_bad_row_is_named_in_one_refusal() -> None:
    rows = make_rows(20, names={4: "赵\ud800", 17: "钱|孙"})
    with pytest.raises(ExportRefused) as e:
        render_onecard(make_header(rows), rows, load_profile("bank-p"))
    message = str(e.value)
    assert e.value.rule == "NameNotEncodable"  # the first bad row's rule
    assert "row 4 (payment" in message and "row 17 (payment" in message
    assert "FieldContainsDelimiter: row 17" in message


def test_a_delimiter_in_a_name_is_refused() -> None:
    rows = make_rows(3, names={1: "张|三"})
    with pytest.raises(ExportRefused) as e:
        render_onecard(make_header(rows), rows, load_profile("bank-p"))
    assert e.value.rule == "FieldContainsDelimiter"
    assert f"row 1 (payment {rows[0].payment_id}): name" in str(e.value)


def test_a_line_break_in_a_remark_is_refused() -> None:
    rows = [replace(r, remark="城镇低保\r\n2017-01") if r.serial == 2 else r for r in make_rows(3)]
    with pytest.raises(ExportRefused) as e:
        render_onecard(make_header(rows), rows, load_profile("generic"))
    assert e.value.rule == "FieldContainsDelimiter" and "row 2 (payment" in str(e.value)


def test_a_header_whose_totals_disagree_with_the_rows_is_refused() -> None:
    rows = make_rows(3)
    header = replace(make_header(rows), total_fen=make_header(rows).total_fen + 1)
    with pytest.raises(ExportRefused) as e:
        render_onecard(header, rows, load_profile("bank-p"))
    assert e.value.rule == "BatchTotalsDisagree"


# --------------------------------------------------------------------------------------------------
# Return files


def outcomes_for(rows: list[PaymentRow]) -> dict[str, tuple[str, str]]:
    return {
        rows[1].payment_id: ("returned", "AC04"),
        rows[4].payment_id: ("returned", "BE01"),
        rows[5].payment_id: ("returned", ""),
        rows[0].payment_id: ("paid", ""),
    }


@pytest.mark.parametrize("name", SHIPPED)
def test_a_return_file_reads_back_as_the_outcomes_it_was_made_from(name: str) -> None:
    profile = load_profile(name)
    rows = make_rows(8)
    outcomes = outcomes_for(rows)
    data = render_return_file(make_header(rows), rows, outcomes, profile)
    results = read_return_file(data, "back.txt", profile)
    assert [r.payment_id for r in results] == [r.payment_id for r in rows]
    for row, result in zip(rows, results, strict=True):
        status, reason = outcomes.get(row.payment_id, ("paid", ""))
        assert result.status == status
        assert result.reason_code == ("" if status == "paid" else reason or "MS03")
        assert result.amount_fen == row.amount_fen
        assert result.source == f"back.txt line {row.serial + 1}"


def test_the_banks_own_reason_codes_are_mapped_to_iso_20022() -> None:
    profile = load_profile("bank-p")
    rows = make_rows(8)
    data = render_return_file(make_header(rows), rows, outcomes_for(rows), profile)
    lines = text_lines(data, profile)
    assert lines[2].endswith("|1|E01|账户已销户|")  # the bank writes its own code for AC04
    results = read_return_file(data, "back.txt", profile)
    assert results[1].reason_code == "AC04" and results[4].reason_code == "BE01"


def test_a_reason_code_the_profile_does_not_map_is_kept_as_the_bank_wrote_it() -> None:
    profile = load_profile("bank-p")
    rows = make_rows(2)
    data = render_return_file(make_header(rows), rows, {}, profile).decode("gb18030")
    data = data.replace(f"{rows[0].payment_id}|0|||", f"{rows[0].payment_id}|1|X77|柜面退回|")
    results = read_return_file(data.encode("gb18030"), "back.txt", profile)
    assert (results[0].status, results[0].reason_code) == ("returned", "X77")


def test_the_return_file_header_names_the_batch_and_settlement_date() -> None:
    profile = load_profile("generic")
    rows = make_rows(2)
    data = render_return_file(make_header(rows), rows, {}, profile, settled_on=date(2017, 1, 6))
    results = read_return_file(data, "back.txt", profile)
    assert {(r.batch_hint, r.settled_on) for r in results} == {("0f" * 16, date(2017, 1, 6))}


def test_a_return_file_missing_its_last_detail_line_and_trailer_is_refused_naming_the_lines() -> None:
    profile = load_profile("bank-p")
    rows = make_rows(5)
    lines = render_return_file(make_header(rows), rows, {}, profile).split(b"\r\n")
    truncated = b"\r\n".join(lines[:5])  # header and four of five detail lines: cut mid-transfer
    with pytest.raises(ResultFileRejected) as e:
        read_return_file(truncated, "cut.txt", profile)
    errors = e.value.errors
    assert "cut.txt line 1: header says 5 payments, the file has 4 detail lines (truncated or padded?)" in errors
    assert any(err.startswith("cut.txt line 5: missing trailer '########'") for err in errors)


def test_a_return_file_missing_only_its_trailer_is_refused() -> None:
    profile = load_profile("bank-p")
    rows = make_rows(3)
    data = render_return_file(make_header(rows), rows, {}, profile).replace(b"########\r\n", b"")
    with pytest.raises(ResultFileRejected) as e:
        read_return_file(data, "notrailer.txt", profile)
    assert any("notrailer.txt line 4: missing trailer" in err for err in e.value.errors)


def test_a_mis_encoded_return_file_is_refused_naming_the_file_and_line() -> None:
    profile = load_profile("bank-p")
    rows = make_rows(4)
    data = render_return_file(make_header(rows), rows, {}, profile)
    broken = data.replace(rows[2].name.encode("gb18030"), b"\xff\xfe", 1)
    with pytest.raises(ResultFileRejected) as e:
        read_return_file(broken, "garbled.txt", profile)
    assert e.value.errors[0].startswith("garbled.txt line 4: not valid GB18030")
    assert "nothing applied" in str(e.value)


def test_a_utf8_return_file_may_start_with_a_bom(tmp_path: Path) -> None:
    profile = profile_from_text(tmp_path, shipped_text("bank-p").replace('"gb18030"', '"utf-8"'), "utf8")
    rows = make_rows(3)
    data = render_return_file(make_header(rows), rows, {}, profile)
    assert len(read_return_file(b"\xef\xbb\xbf" + data, "bom.txt", profile)) == 3


def test_an_unknown_status_and_a_duplicated_line_are_each_named() -> None:
    profile = load_profile("bank-p")
    rows = make_rows(3)
    lines = render_return_file(make_header(rows), rows, {}, profile).decode("gb18030").split("\r\n")
    lines[1] = lines[1].replace("|0|||", "|9|||")
    lines[3] = lines[2]  # the third payment's line replaced by a copy of the second's
    with pytest.raises(ResultFileRejected) as e:
        read_return_file("\r\n".join(lines).encode("gb18030"), "odd.txt", profile)
    errors = e.value.errors
    assert any(err.startswith("odd.txt line 2: status 9 is neither paid (0) nor returned (1)") for err in errors)
    assert any(
        err.startswith(f"odd.txt line 4: payment {rows[1].payment_id} again (first on line 3)") for err in errors
    )


def test_a_line_that_does_not_fit_the_layout_is_named() -> None:
    profile = load_profile("bank-date")
    rows = make_rows(3)
    data = render_return_file(make_header(rows), rows, {}, profile).replace(b"#" + rows[1].payment_id.encode(), b"")
    with pytest.raises(ResultFileRejected) as e:
        read_return_file(data, "nopid.txt", profile)
    assert any(re.match(r"nopid\.txt line 3: .* does not match the detail layout", err) for err in e.value.errors)


def test_an_empty_return_file_is_refused() -> None:
    with pytest.raises(ResultFileRejected) as e:
        read_return_file(b"", "empty.txt", load_profile("bank-p"))
    assert e.value.errors == ("empty.txt: empty file",)


def test_a_remark_containing_the_id_separator_still_reads_back() -> None:
    profile = load_profile("bank-date")  # 摘要 column is "{remark}#{payment_id}"
    rows = [replace(r, remark="城镇低保#补发 2017-01") for r in make_rows(3)]
    data = render_return_file(make_header(rows), rows, {rows[2].payment_id: ("returned", "AC01")}, profile)
    results = read_return_file(data, "back.txt", profile)
    assert [(r.payment_id, r.status, r.reason_code) for r in results] == [
        (rows[0].payment_id, "paid", ""),
        (rows[1].payment_id, "paid", ""),
        (rows[2].payment_id, "returned", "AC01"),
    ]
