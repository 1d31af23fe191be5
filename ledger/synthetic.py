"""A synthetic city for the demo, tests and benchmarks: valid resident IDs, plausible households.

Deterministic for a given seed. Birth-place codes follow history: Ulanqab was 乌兰察布盟 (1526xx) until
2003 and 乌兰察布市 (1509xx) after, so IDs of people born before 2004 carry the old codes, as real ones
do, and python-stdnum knows every code for its year.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta

from ledger.roster import RosterRow

# Current county → the league-era code for the same place (python-stdnum knows both in their years).
COUNTIES = {
    "150902": "152601",  # 集宁区 ← 集宁市
    "150921": "152624",  # 卓资县
    "150922": "152625",  # 化德县
    "150923": "152626",  # 商都县
    "150924": "152627",  # 兴和县
    "150925": "152628",  # 凉城县
    "150981": "152602",  # 丰镇市
}
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎"
GIVEN = "建华桂英秀兰玉梅志强国平海燕丽娟金凤永军文明淑珍春花德福宝山红霞敏慧"
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)

# (programme, share of rows, ages in the start year, household?) — a mix like a city's caseload. Ages, not
# birth years, so every row passes the shipped policy's age guards (特困 from 16, children under 18) for
# any start date; at the default start (2017) they are the birth years 1940-1985, 1935-1985, … as before.
MIX = (
    ("urban_dibao", 30, (32, 77), True),
    ("rural_dibao", 35, (32, 82), True),
    ("tekun_rural_dispersed", 8, (57, 87), False),
    ("orphan_dispersed", 3, (1, 12), False),
    ("children_in_difficulty", 4, (1, 12), False),
    ("sanmin", 5, (57, 82), False),
    ("youfu_topup", 5, (62, 87), False),
    ("tekun_care_partial", 5, (67, 87), False),
    ("jingjian_tuizhi", 5, (67, 87), False),
)
# A care subsidy is paid on top of a basic 特困 form (policy `requires`): its person gets that row first.
REQUIRED_FIRST = {"tekun_care_partial": "tekun_rural_dispersed"}
# Household income per person stays below the lowest household standard (rural 3906 元 a year = 325.50 a
# month): a household at or above the line is refused (policy `income_test`).
INCOME_PER_MEMBER_FEN_MAX = 30_000


def check_digit(first17: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def synthetic_rows(count: int, *, seed: int = 2017, start: date = date(2017, 1, 1)) -> Iterator[RosterRow]:
    """`count` enrolment rows, one person each (a care subsidy's person two: basic 特困 first), every row
    valid for the shipped Ulanqab policy, its guards included."""
    rng = random.Random(seed)
    programmes = [m for m in MIX for _ in range(m[1])]
    counties = list(COUNTIES)
    seen: set[str] = set()
    n = 0
    while n < count:
        programme, _, (age_lo, age_hi), household = programmes[rng.randrange(len(programmes))]
        year_lo, year_hi = start.year - age_hi, start.year - age_lo
        county = counties[rng.randrange(len(counties))]
        birth = date(rng.randint(year_lo, year_hi), 1, 1) + timedelta(days=rng.randrange(365))
        place = COUNTIES[county] if birth.year < 2004 else county
        serial = n % 1000
        body = f"{place}{birth:%Y%m%d}{serial:03d}"
        while body in seen:  # one person per row: move to the next free serial
            serial = (serial + 1) % 1000
            body = f"{place}{birth:%Y%m%d}{serial:03d}"
        seen.add(body)
        id_number = body + check_digit(body)
        members = rng.randint(1, 5) if household else 1
        income_fen = min(rng.randrange(0, 60_000, 100), members * INCOME_PER_MEMBER_FEN_MAX) if household else 0
        special = rng.randint(0, min(members, 2)) if household else 0
        first = REQUIRED_FIRST.get(programme)
        row = RosterRow(
            line=n + 2,
            id_number=id_number,
            birth_date=birth,
            name=SURNAMES[rng.randrange(len(SURNAMES))] + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2))),
            region=county,
            programme=programme,
            effective_from=start,
            members=members,
            monthly_income_fen=income_fen,
            special_members=special,
            bank_code="103191000012",
            account=luhn_complete(f"622848{rng.randrange(10**12):012d}"),
            decision_ref=f"集民发〔{start.year}〕{rng.randint(1, 200)}号",
            warnings=(),
        )
        if first is not None:
            yield replace(row, programme=first)
            n += 1
            if n == count:
                return
            row = replace(row, line=n + 2)
        yield row
        n += 1
