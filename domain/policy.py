"""A region's policy: programmes, their standards over time, and the settings standards derive from.

Guarantees:
- `parse_policy` either returns a complete, consistent `Policy` or raises `PolicyRejected` listing every
  problem with its TOML key path (unknown base, cycle of bases, two standards from the same date, a
  derivation that disagrees with the document's stated figure, unknown cadence or unit). Nothing partial.
- A derived standard is computed from its base *on the day asked*, so when the base changes the derived
  standard follows from the same effective date (联动, DESIGN.md; 000_a883bdda05437b65.txt 一.3: 特困
  "按不低于当地低保标准的1.3倍确定").
- Amounts come out as exact fen: a programme's standard per month is a `Fraction` of fen (an annual
  standard is A/12 per month), and the payable month amount is rounded once, stated where it happens.

The policy document itself is data (a dict shaped like the TOML file); `policy_document` turns the
parsed policy back into that shape so the ledger can record exactly what was loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from domain.errors import BadAmount, FileRejected, RuleBroken
from domain.money import format_yuan, parse_ratio, parse_yuan, part_fen, round_half_up_fen
from domain.periods import CADENCES, Month, Period
from domain.regions import is_region_code

UNITS = ("household", "person")
PERS = ("month", "year")
ROUNDINGS = ("yuan", "fen")
DUE_DAY_MAX = 28
PROGRAMMES_MAX = 200
STANDARDS_MAX = 500

# --- bounds on every figure a policy or a roster states (docs/policy.md, "Bounds") ------------------------
# A figure outside these is refused at `policy load` (or roster import) naming the key and the bound, so a
# typing error never reaches the month-end: an uplift of "50" instead of "0.05", a standard with ten
# digits too many (issue 13: 5.05 × 10^18 元 written to a bank file, then every write failing).

# 001_… and 004_…: 增发 is 5–10 % of the standard per special member; 0.2 leaves room for a region that
# decides more, and refuses a percentage typed as a number ("5", "50").
SPECIAL_MEMBER_UPLIFT_MAX = Fraction(1, 5)
# The highest standard per person and month a policy may state or derive. The highest the seeds state is
# 2 300 元 a month (003_…: Ordos 2021, centralised orphans); 20 000 元 leaves eight times that for raises
# and richer regions, while keeping the largest payment a bounded policy can produce (20 members × 20 000 ×
# 1.2 × 12 months) below domain.money.PAYMENT_FEN_MAX. An annual standard may be twelve times this.
STANDARD_MONTH_FEN_MAX = 2_000_000  # 20 000.00 元 per person and month
STANDARD_YEAR_FEN_MAX = 12 * STANDARD_MONTH_FEN_MAX
# Derived standards: the seeds' factors are 0.25–1.3 (000_… 一.3, 一.4); ten times a base is no rule
# any document states.
FACTOR_MAX = Fraction(10)
# A setting that a standard derives from (the monthly minimum wage, 000_… 一.3): at most 1 000 000 元.
SETTING_AMOUNT_FEN_MAX = 100_000_000
# Age tiers (003_… 二: 75, 80, 100 周岁): ages in completed years, a handful of tiers.
AGE_MAX = 150
AGE_TIERS_MAX = 20
# A household (roster `members`, `special_members`): DESIGN.md, 按户施保. Twenty people is beyond any
# household a dibao office registers; a larger figure is a typing error, and members multiply the standard.
HOUSEHOLD_MEMBERS_MAX = 20
# A household's monthly income (roster `monthly_income`): above 20 × the highest standard no household
# programme pays anything, so 1 000 000 元 is far beyond any real figure, and refuses a misplaced point.
MONTHLY_INCOME_FEN_MAX = 100_000_000
# Working days before the due date the bank needs the file (`bank_lead_days`).
BANK_LEAD_DAYS_MAX = 30
# Dates a policy states (`from`, the calendar): the programmes date from the 1990s; 2199 is far enough.
POLICY_YEAR_MIN = 1950
POLICY_YEAR_MAX = 2199
CALENDAR_DAYS_MAX = 10_000  # holidays and workdays listed in [calendar]
# One-off payments (docs/entitlement.md, "One-off payments"). 临时救助: 001_d1b0155c81b44253.txt 九.13 gives
# "每户给予200—30000元"; 004_f2a082fc87a827a6.txt 二.6 lets a region raise it case by case (一事一议适度提高), so
# the bound on a grant is ten times the seed's highest figure. A holiday payment (002_cbb0aaa0548496ba.txt
# 一: "按每人(户)500元标准") is bounded like a monthly standard; per person it multiplies by the members.
TEMPORARY_AID = "temporary_aid"  # the key of `[programmes.temporary_aid]`, and of its payments
AID_FEN_MAX = 30_000_000  # 300 000.00 元 per grant
AID_DUE_DAYS_MAX = 90
ONEOFFS_MAX = 200
ONEOFF_PERS = ("person", "household")
# Months between two reviews of a household (`review_months`): the seeds say 6 or 12 (004_… 二.7); five
# years is beyond any review cycle a document states.
REVIEW_MONTHS_MAX = 60
# The keys a `[programmes.KEY]` table may carry (docs/policy.md). `policy load` refuses any other (a misspelt
# `age_mni` must not silently switch a guard off); a policy stored by an earlier release opens regardless.
# `min`, `max`, `approval_above`, `due_days`: [programmes.temporary_aid] (one-off aid, issue 14 item 5);
# `starts`, `stops`: which months an enrolment is active (issue 14 item 1).
PROGRAMME_KEYS = frozenset(
    {
        "name",
        "unit",
        "cadence",
        "due_day",
        "excludes",
        "standards",
        "age_min",
        "age_max",
        "requires",
        "income_test",
        "review_months",
        "starts",
        "stops",
        "min",
        "max",
        "approval_above",
        "due_days",
    }
)
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class PolicyRejected(FileRejected):
    """A policy file broke one or more rules; `errors` lists each with its key path."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        super().__init__(errors, "\n".join(f"{source}: {e}" for e in errors) + "\nnothing loaded")


class UnknownProgramme(RuleBroken):
    """A programme key that the loaded policy does not define."""


class NoStandardInForce(RuleBroken):
    """A programme has no standard in force on the day asked (its first standard starts later)."""


@dataclass(frozen=True, slots=True)
class StandardRule:
    """One entry of a programme's `standards` list: in force from `effective_from` until the next."""

    effective_from: date
    per: str  # "month" | "year"
    amount_fen: int | None = None  # a fixed figure
    base: str | None = None  # a programme key or a setting name
    factor: Fraction = Fraction(1)
    add_fen: int = 0
    rounding: str = "fen"  # "yuan" | "fen"
    expect_fen: int | None = None
    by_age: tuple[tuple[int, int], ...] = ()  # (minimum age, amount_fen), ascending
    index: int = field(default=0, compare=False)  # position in the file's list, for error messages


@dataclass(frozen=True, slots=True)
class Programme:
    key: str
    name: str
    unit: str  # "household" | "person"
    cadence: str
    due_day: int
    excludes: tuple[str, ...]
    standards: tuple[StandardRule, ...]  # ascending by effective_from
    # Eligibility guards (docs/entitlement.md, "Eligibility guards"); each is off when its key is absent.
    age_min: int | None = None  # whole years on the enrolment's effective date, from the ID number
    age_max: int | None = None
    requires: tuple[str, ...] = ()  # at least one of these held, active on the effective date
    income_test: bool = False  # household: per-capita income at or above the standard is refused
    # Which months a start and a stop pay (docs/entitlement.md, "Months"): a start effective in month m
    # pays from m ("same_month") or m+1 ("next_month", 次月起); a stop whose first day not active is D
    # pays the month of the last active day ("next_month") or not D's month either ("same_month").
    starts: str = "same_month"
    stops: str = "next_month"
    # Months between two reviews (复核, 004_… 二.7): `report reviews` lists enrolments due; None: not listed.
    review_months: int | None = None


@dataclass(frozen=True, slots=True)
class TemporaryAid:
    """`[programmes.temporary_aid]`: 临时救助 grants, not a cadence programme (nothing accrues by itself).

    - `min_fen` ≤ a grant ≤ `max_fen` (001_… 九.13: 200–30000 元 per household);
    - a grant above `approval_above_fen` is payable only once a second account approved it (002_… 一:
      "分级审批"; 004_… 二.6: small sums are paid first, 小金额先行救助);
    - a grant is due `due_days` calendar days after its date (`--on`).
    """

    name: str
    min_fen: int
    max_fen: int
    approval_above_fen: int
    due_days: int
    key: str = TEMPORARY_AID

    def needs_approval(self, amount_fen: int) -> bool:
        return amount_fen > self.approval_above_fen


@dataclass(frozen=True, slots=True)
class OneOff:
    """`[oneoffs.KEY]`: a holiday payment (002_… 一: "“两节”期间…按每人(户)500元标准发放生活补贴") paid once, in
    `month`, to every payee with an enrolment in one of `programmes` active that month."""

    key: str
    name: str
    month: Month
    amount_fen: int
    per: str  # "person" | "household"
    programmes: tuple[str, ...]
    due_day: int = 10


@dataclass(frozen=True, slots=True)
class Standard:
    """A programme's standard on one day: either a flat figure or age tiers, per month or per year."""

    per: str
    amount_fen: int = 0
    by_age: tuple[tuple[int, int], ...] = ()

    def for_age(self, age: int) -> int:
        """The tier amount for someone of `age`: the highest tier whose minimum age they reached."""
        amount = 0
        for minimum_age, tier_fen in self.by_age:
            if age >= minimum_age:
                amount = tier_fen
        return amount


@dataclass(frozen=True, slots=True)
class Policy:
    region_code: str
    region_name: str
    settings: Mapping[str, str]
    programmes: Mapping[str, Programme]
    special_member_uplift: Fraction = Fraction(0)
    bank_lead_days: int = 2
    calendar_holidays: tuple[date, ...] = ()
    calendar_workdays: tuple[date, ...] = ()
    calendar_years: tuple[int, ...] = ()
    document: Mapping[str, Any] = field(default_factory=dict, compare=False)
    # One-off payments (docs/entitlement.md): neither is in `programmes`, so nothing that walks the
    # cadence programmes (the month-end's accrual, anomalies, reports) meets them.
    temporary_aid: TemporaryAid | None = None
    oneoffs: Mapping[str, OneOff] = field(default_factory=dict)

    def payment_name(self, key: str) -> str:
        """The name a payment of `key` carries: a programme's, temporary aid's or a holiday payment's."""
        if key in self.programmes:
            return self.programmes[key].name
        if self.temporary_aid is not None and key == TEMPORARY_AID:
            return self.temporary_aid.name
        if key in self.oneoffs:
            return self.oneoffs[key].name
        return key

    def oneoff_keys(self) -> frozenset[str]:
        """Payment programme keys that are one-off payments, not enrolments: never judged against one."""
        return frozenset({TEMPORARY_AID, *self.oneoffs})

    def programme(self, key: str) -> Programme:
        try:
            return self.programmes[key]
        except KeyError:
            raise UnknownProgramme(f"unknown programme {key!r}") from None

    def excluded_pairs(self) -> frozenset[frozenset[str]]:
        """Exclusion is symmetric: `excludes` on either programme forbids holding both at once."""
        pairs = set()
        for programme in self.programmes.values():
            for other in programme.excludes:
                pairs.add(frozenset((programme.key, other)))
        return frozenset(pairs)

    def standard_on(self, key: str, day: date) -> Standard:
        """The standard of programme `key` in force on `day`; derived ones follow their base (联动)."""
        return _standard_on(self, key, day, ())

    def monthly_standard_fen(self, key: str, day: date) -> Fraction:
        """The flat standard per month, exactly: an annual figure is A/12 (walkthrough: 3906 → 325.50)."""
        standard = self.standard_on(key, day)
        return Fraction(standard.amount_fen, 12 if standard.per == "year" else 1)


def _standard_on(policy: Policy, key: str, day: date, seen: tuple[str, ...]) -> Standard:
    programme = policy.programme(key)
    rule = _rule_on(programme, day)
    if rule.by_age:
        return Standard(per=rule.per, by_age=rule.by_age)
    if rule.amount_fen is not None:
        return Standard(per=rule.per, amount_fen=rule.amount_fen)
    assert rule.base is not None, "parse_policy guarantees a fixed, tiered or derived standard"
    return Standard(per=rule.per, amount_fen=_derive(policy, rule, day, (*seen, key)))


def _rule_on(programme: Programme, day: date) -> StandardRule:
    in_force = None
    for rule in programme.standards:
        if rule.effective_from <= day:
            in_force = rule
    if in_force is None:
        raise NoStandardInForce(f"{programme.key} has no standard in force on {day.isoformat()}")
    return in_force


def _derive(policy: Policy, rule: StandardRule, day: date, seen: tuple[str, ...]) -> int:
    """base × factor + add, in the rule's own unit (`per`), rounded as the rule says."""
    assert rule.base is not None
    if rule.base in policy.programmes:
        base = _standard_on(policy, rule.base, day, seen)
        if base.by_age:
            raise RuleBroken(f"{rule.base} has age tiers and cannot be a base")
        base_fen = Fraction(base.amount_fen)
        if base.per != rule.per:
            base_fen = base_fen * 12 if rule.per == "year" else base_fen / 12
    else:
        base_fen = Fraction(parse_yuan(policy.settings[rule.base]))
    exact = base_fen * rule.factor + rule.add_fen
    if rule.rounding == "yuan":
        return round_half_up_fen(exact / 100) * 100
    return round_half_up_fen(exact)


# --- parsing -------------------------------------------------------------------------------------


def parse_policy(doc: Mapping[str, Any], source: str = "policy", *, strict: bool = False) -> Policy:
    """Validate a policy document (the TOML file as a dict). Collects every error before raising.

    `strict` (`policy load`): a key of a `[programmes.KEY]` table outside PROGRAMME_KEYS is an error naming
    the key and the programme. A policy already stored is read without it, so one an earlier release
    stored (when unknown programme keys were ignored) still opens."""
    errors: list[str] = []
    region = _table(doc, "region", errors)
    code = str(region.get("code", ""))
    if not is_region_code(code):
        errors.append(f"region.code: {code!r} is not a six-digit division code")
    name = str(region.get("name", "")).strip()
    if not name:
        errors.append("region.name: missing")

    settings_raw = _table(doc, "settings", errors)
    settings = {k: str(v) for k, v in settings_raw.items()}
    uplift = _setting_ratio(settings, "special_member_uplift", errors)
    if uplift > SPECIAL_MEMBER_UPLIFT_MAX:
        errors.append(
            f"settings.special_member_uplift: {settings['special_member_uplift']!r} is above "
            f'{_decimal(SPECIAL_MEMBER_UPLIFT_MAX)}: a share of the standard, e.g. "0.05" for 5 % (001_…, 004_…)'
        )
        uplift = Fraction(0)
    lead_days = settings_raw.get("bank_lead_days", 2)
    if not isinstance(lead_days, int) or isinstance(lead_days, bool) or not 0 <= lead_days <= BANK_LEAD_DAYS_MAX:
        errors.append(f"settings.bank_lead_days: {lead_days!r} is not a whole number of days 0-{BANK_LEAD_DAYS_MAX}")
        lead_days = 2

    programmes_raw = _table(doc, "programmes", errors)
    if len(programmes_raw) > PROGRAMMES_MAX:
        errors.append(f"programmes: more than {PROGRAMMES_MAX} programmes")
    programmes: dict[str, Programme] = {}
    aid = None
    for key, raw in programmes_raw.items():
        if key == TEMPORARY_AID:
            aid = _parse_temporary_aid(raw, errors)
            continue
        if strict and isinstance(raw, Mapping):
            for extra in sorted(set(raw) - PROGRAMME_KEYS):
                errors.append(
                    f"programmes.{key}.{extra}: unknown key {extra!r} in programme {key} "
                    f"(known: {', '.join(sorted(PROGRAMME_KEYS))})"
                )
        programme = _parse_programme(key, raw, errors)
        if programme is not None:
            programmes[key] = programme

    holidays, workdays, years = _parse_calendar(doc.get("calendar", {}), errors)
    oneoffs = _parse_oneoffs(doc.get("oneoffs", {}), programmes_raw, errors)
    policy = Policy(
        region_code=code,
        region_name=name,
        settings=settings,
        programmes=programmes,
        special_member_uplift=uplift,
        bank_lead_days=lead_days,
        calendar_holidays=holidays,
        calendar_workdays=workdays,
        calendar_years=years,
        document=doc,
        temporary_aid=aid,
        oneoffs=oneoffs,
    )
    # References are checked over whatever parsed, so one bad cadence does not hide an unknown base.
    reference_errors: list[str] = []
    _check_references(policy, reference_errors)
    errors.extend(reference_errors)
    if not errors:
        _check_derived_bounds(policy, errors)
    if not errors:
        _check_expectations(policy, errors)
    if errors:
        raise PolicyRejected(source, errors)
    return policy


def _table(doc: Mapping[str, Any], key: str, errors: list[str]) -> Mapping[str, Any]:
    value = doc.get(key)
    if not isinstance(value, Mapping):
        errors.append(f"{key}: missing table [{key}]")
        return {}
    return value


def _setting_ratio(settings: Mapping[str, str], key: str, errors: list[str]) -> Fraction:
    if key not in settings:
        return Fraction(0)
    try:
        return parse_ratio(settings[key])
    except BadAmount as e:
        errors.append(f"settings.{key}: {e}")
        return Fraction(0)


def _parse_programme(key: str, raw: Any, errors: list[str]) -> Programme | None:
    path = f"programmes.{key}"
    if not _KEY.match(key):
        errors.append(f"{path}: key must be lower-case ASCII letters, digits and _")
    if not isinstance(raw, Mapping):
        errors.append(f"{path}: must be a table")
        return None
    unit = raw.get("unit", "person")
    if unit not in UNITS:
        errors.append(f"{path}.unit: {unit!r} is not one of {', '.join(UNITS)}")
    cadence = raw.get("cadence", "monthly")
    if cadence not in CADENCES:
        errors.append(f"{path}.cadence: {cadence!r} is not one of {', '.join(CADENCES)}")
    due_day = raw.get("due_day", 10)
    if not isinstance(due_day, int) or isinstance(due_day, bool) or not 1 <= due_day <= DUE_DAY_MAX:
        errors.append(f"{path}.due_day: {due_day!r} is not a day 1-{DUE_DAY_MAX}")
        due_day = 10
    excludes = raw.get("excludes", [])
    if not isinstance(excludes, list) or not all(isinstance(x, str) for x in excludes):
        errors.append(f"{path}.excludes: must be a list of programme keys")
        excludes = []
    age_min, age_max = _parse_age_bounds(path, raw, errors)
    requires = raw.get("requires", [])
    if not isinstance(requires, list) or not all(isinstance(x, str) for x in requires):
        errors.append(f"{path}.requires: must be a list of programme keys")
        requires = []
    income_test = raw.get("income_test", False)
    if not isinstance(income_test, bool):
        errors.append(f"{path}.income_test: {income_test!r} is not true or false")
        income_test = False
    elif income_test and unit == "person":
        errors.append(f"{path}.income_test: only a household programme has an income test (unit is {unit!r})")
        income_test = False
    review_months = raw.get("review_months")
    if review_months is not None and (
        not isinstance(review_months, int)
        or isinstance(review_months, bool)
        or not 1 <= review_months <= REVIEW_MONTHS_MAX
    ):
        errors.append(f"{path}.review_months: {review_months!r} is not a whole number of months 1-{REVIEW_MONTHS_MAX}")
        review_months = None
    standards_raw = raw.get("standards", [])
    # An empty list is allowed: the programme exists (exclusions may name it) but nothing accrues
    # until a standard is loaded (seed 000 gives no figure for several programmes).
    if not isinstance(standards_raw, list):
        errors.append(f"{path}.standards: must be a list of standards")
        standards_raw = []
    if len(standards_raw) > STANDARDS_MAX:
        errors.append(f"{path}.standards: more than {STANDARDS_MAX} entries")
    rules = []
    for i, entry in enumerate(standards_raw):
        rule = _parse_rule(f"{path}.standards[{i}]", entry, errors, i)
        if rule is not None:
            rules.append(rule)
    seen: dict[date, int] = {}
    for rule in rules:
        if rule.effective_from in seen:
            errors.append(
                f"{path}.standards[{rule.index}].from: {rule.effective_from.isoformat()} overlaps "
                f"standards[{seen[rule.effective_from]}], which starts the same day"
            )
        seen[rule.effective_from] = rule.index
    return Programme(
        key=key,
        name=str(raw.get("name", key)),
        unit=str(unit),
        cadence=str(cadence),
        due_day=int(due_day),
        excludes=tuple(excludes),
        standards=tuple(sorted(rules, key=lambda r: r.effective_from)),
        age_min=age_min,
        age_max=age_max,
        requires=tuple(requires),
        income_test=income_test,
        starts=_parse_month_rule(path, raw, "starts", STARTS, errors),
        stops=_parse_month_rule(path, raw, "stops", STOPS, errors),
        review_months=review_months,
    )


STARTS = ("same_month", "next_month")  # the first is the default
STOPS = ("next_month", "same_month")


def _parse_month_rule(path: str, raw: Mapping[str, Any], key: str, allowed: tuple[str, ...], errors: list[str]) -> str:
    value = raw.get(key, allowed[0])
    if value not in allowed:
        errors.append(f"{path}.{key}: {value!r} is not one of {', '.join(repr(a) for a in allowed)}")
        return allowed[0]
    return str(value)
def _parse_temporary_aid(raw: Any, errors: list[str]) -> TemporaryAid | None:
    """`[programmes.temporary_aid]`: bounds per grant and the approval threshold, in yuan; no cadence."""
    path = f"programmes.{TEMPORARY_AID}"
    if not isinstance(raw, Mapping):
        errors.append(f"{path}: must be a table")
        return None
    known = {"name", "min", "max", "approval_above", "due_days"}
    for extra in sorted(set(raw) - known):
        hint = " (temporary aid is granted one by one, not a cadence programme)" if extra != "name" else ""
        errors.append(f"{path}.{extra}: unknown key{hint}")
    figures: dict[str, int | None] = {}
    for key in ("min", "max", "approval_above"):
        if key not in raw:
            if key != "approval_above":
                errors.append(f"{path}.{key}: missing (yuan per grant)")
            figures[key] = None
            continue
        figures[key] = _yuan(raw, key, path, errors, AID_FEN_MAX)
    low, high, threshold = figures["min"], figures["max"], figures["approval_above"]
    if low is not None and low <= 0:
        errors.append(f"{path}.min: {raw['min']!r} must be above 0")
    if low is not None and high is not None and low > high:
        errors.append(f"{path}.min: {raw['min']!r} is above max {raw['max']!r}")
    if threshold is not None and threshold < 0:
        errors.append(f"{path}.approval_above: {raw['approval_above']!r} must not be negative")
    due_days = raw.get("due_days", 10)
    if not isinstance(due_days, int) or isinstance(due_days, bool) or not 0 <= due_days <= AID_DUE_DAYS_MAX:
        errors.append(f"{path}.due_days: {due_days!r} is not a whole number of days 0-{AID_DUE_DAYS_MAX}")
        due_days = 10
    if low is None or high is None or low <= 0 or low > high or (threshold is not None and threshold < 0):
        return None
    return TemporaryAid(
        name=str(raw.get("name", "临时救助")),
        min_fen=low,
        max_fen=high,
        # Absent: every grant needs a second account (maker-checker unless the policy says otherwise).
        approval_above_fen=threshold if threshold is not None else 0,
        due_days=due_days,
    )


def _parse_oneoffs(raw: Any, programmes_raw: Mapping[str, Any], errors: list[str]) -> dict[str, OneOff]:
    """`[oneoffs.KEY]` holiday payments. A KEY is a payment's programme key, so it never equals a programme's."""
    if not isinstance(raw, Mapping):
        errors.append("oneoffs: must be a table of [oneoffs.KEY] tables")
        return {}
    if len(raw) > ONEOFFS_MAX:
        errors.append(f"oneoffs: more than {ONEOFFS_MAX} one-off payments")
        return {}
    found = {}
    for key, entry in raw.items():
        path = f"oneoffs.{key}"
        if not _KEY.match(key):
            errors.append(f"{path}: key must be lower-case ASCII letters, digits and _")
            continue
        if key in programmes_raw:
            errors.append(f"{path}: {key!r} is a programme's key; a one-off payment needs a key of its own")
            continue
        if not isinstance(entry, Mapping):
            errors.append(f"{path}: must be a table")
            continue
        problems: list[str] = []
        known = {"name", "month", "amount", "per", "programmes", "due_day"}
        problems.extend(f"{path}.{extra}: unknown key" for extra in sorted(set(entry) - known))
        month = None
        try:
            month = Month.parse(str(entry.get("month", "")))
            if not POLICY_YEAR_MIN <= month.year <= POLICY_YEAR_MAX:
                problems.append(f"{path}.month: {month} is outside the years {POLICY_YEAR_MIN}-{POLICY_YEAR_MAX}")
        except RuleBroken as e:
            problems.append(f"{path}.month: {e}")
        if "amount" not in entry:
            problems.append(f"{path}.amount: missing (yuan per person or household)")
        amount = _yuan(entry, "amount", path, problems, STANDARD_MONTH_FEN_MAX)
        if amount is not None and amount <= 0:
            problems.append(f"{path}.amount: {entry['amount']!r} must be above 0")
        per = entry.get("per", "household")
        if per not in ONEOFF_PERS:
            problems.append(f"{path}.per: {per!r} is not one of {', '.join(ONEOFF_PERS)}")
        listed = entry.get("programmes")
        if not isinstance(listed, list) or not listed or not all(isinstance(x, str) for x in listed):
            problems.append(f"{path}.programmes: must be a non-empty list of programme keys")
            listed = []
        for other in listed:
            if other not in programmes_raw or other == TEMPORARY_AID:
                problems.append(f"{path}.programmes: unknown programme {other!r}")
        due_day = entry.get("due_day", 10)
        if not isinstance(due_day, int) or isinstance(due_day, bool) or not 1 <= due_day <= DUE_DAY_MAX:
            problems.append(f"{path}.due_day: {due_day!r} is not a day 1-{DUE_DAY_MAX}")
        errors.extend(problems)
        if problems or month is None or amount is None:
            continue
        found[key] = OneOff(
            key=key,
            name=str(entry.get("name", key)),
            month=month,
            amount_fen=amount,
            per=str(per),
            programmes=tuple(dict.fromkeys(listed)),
            due_day=int(due_day),
        )
    return found


def _parse_age_bounds(path: str, raw: Mapping[str, Any], errors: list[str]) -> tuple[int | None, int | None]:
    """`age_min` / `age_max`: whole years 0-AGE_MAX, optional, and the minimum not above the maximum."""
    bounds: dict[str, int | None] = {}
    for key in ("age_min", "age_max"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= AGE_MAX):
            errors.append(f"{path}.{key}: {value!r} is not a whole number of years 0-{AGE_MAX}")
            value = None
        bounds[key] = value
    age_min, age_max = bounds["age_min"], bounds["age_max"]
    if age_min is not None and age_max is not None and age_min > age_max:
        errors.append(f"{path}.age_min: {age_min} is above age_max {age_max}")
        return None, None
    return age_min, age_max


def _parse_rule(path: str, entry: Any, errors: list[str], index: int) -> StandardRule | None:
    if not isinstance(entry, Mapping):
        errors.append(f"{path}: must be a table")
        return None
    known = {"from", "amount", "per", "base", "factor", "add", "round", "expect", "by_age"}
    for extra in sorted(set(entry) - known):
        errors.append(f"{path}.{extra}: unknown key")
    effective_from = _parse_date(entry.get("from"), f"{path}.from", errors)
    per = entry.get("per", "month")
    if per not in PERS:
        errors.append(f"{path}.per: {per!r} is not one of {', '.join(PERS)}")
    kinds = [k for k in ("amount", "base", "by_age") if k in entry]
    if len(kinds) != 1:
        errors.append(f"{path}: give exactly one of amount, base or by_age (found {kinds or 'none'})")
        return None
    for derivation_key in ("factor", "add", "round"):
        if derivation_key in entry and "base" not in entry:
            errors.append(f"{path}.{derivation_key}: only a derived standard (with `base`) takes {derivation_key}")
    fen_max = STANDARD_YEAR_FEN_MAX if per == "year" else STANDARD_MONTH_FEN_MAX
    amount = _yuan(entry, "amount", path, errors, fen_max)
    add = _yuan(entry, "add", path, errors, fen_max) or 0
    expect = _yuan(entry, "expect", path, errors, fen_max)
    factor = Fraction(1)
    if "factor" in entry:
        try:
            factor = parse_ratio(str(entry["factor"]))
        except BadAmount as e:
            errors.append(f"{path}.factor: {e}")
        if factor > FACTOR_MAX:
            errors.append(f"{path}.factor: {entry['factor']!r} is above {_decimal(FACTOR_MAX)}")
            factor = Fraction(1)
    rounding = entry.get("round", "fen")
    if rounding not in ROUNDINGS:
        errors.append(f"{path}.round: {rounding!r} is not one of {', '.join(ROUNDINGS)}")
    by_age = _parse_tiers(entry.get("by_age"), f"{path}.by_age", errors, fen_max) if "by_age" in entry else ()
    base = entry.get("base")
    if base is not None and not isinstance(base, str):
        errors.append(f"{path}.base: must be a programme key or setting name")
        base = None
    if effective_from is None:
        return None
    return StandardRule(
        effective_from=effective_from,
        per=str(per),
        amount_fen=amount,
        base=base,
        factor=factor,
        add_fen=add,
        rounding=str(rounding),
        expect_fen=expect,
        by_age=by_age,
        index=index,
    )


def _yuan(entry: Mapping[str, Any], key: str, path: str, errors: list[str], fen_max: int) -> int | None:
    """A yuan figure of a standard, within ±`fen_max` (only `add` may be negative)."""
    if key not in entry:
        return None
    try:
        fen = parse_yuan(str(entry[key]), allow_negative=(key == "add"))
    except BadAmount as e:
        errors.append(f"{path}.{key}: {e}")
        return None
    if abs(fen) > fen_max:
        errors.append(f"{path}.{key}: {entry[key]!r} is beyond {_bound_text(fen_max)}")
        return None
    return fen


def _bound_text(fen_max: int) -> str:
    """How a standard's bound reads in a message: the figure and what it bounds."""
    if fen_max == STANDARD_YEAR_FEN_MAX:
        return f"{format_yuan(fen_max)} 元 a year, the highest standard a policy may state (docs/policy.md, Bounds)"
    if fen_max == STANDARD_MONTH_FEN_MAX:
        return f"{format_yuan(fen_max)} 元 a month, the highest standard a policy may state (docs/policy.md, Bounds)"
    return f"{format_yuan(fen_max)} 元 (docs/policy.md, Bounds)"


def _decimal(value: Fraction) -> str:
    """A bound such as 1/5 as the decimal a policy file writes (0.2)."""
    return str(Decimal(value.numerator) / Decimal(value.denominator))


def _parse_date(value: Any, path: str, errors: list[str]) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    else:
        try:
            day = date.fromisoformat(str(value))
        except (TypeError, ValueError):
            errors.append(f"{path}: {value!r} is not a date (YYYY-MM-DD)")
            return None
    if not POLICY_YEAR_MIN <= day.year <= POLICY_YEAR_MAX:
        errors.append(f"{path}: {day.isoformat()} is outside the years {POLICY_YEAR_MIN}-{POLICY_YEAR_MAX}")
        return None
    return day


def _parse_tiers(value: Any, path: str, errors: list[str], fen_max: int) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list) or not value:
        errors.append(f"{path}: must be a list of [minimum age, amount] pairs")
        return ()
    if len(value) > AGE_TIERS_MAX:
        errors.append(f"{path}: more than {AGE_TIERS_MAX} tiers")
        return ()
    tiers = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], int)) or isinstance(pair[0], bool):
            errors.append(f'{path}[{i}]: must be [minimum age, "amount"]')
            continue
        if not 0 <= pair[0] <= AGE_MAX:
            errors.append(f"{path}[{i}]: minimum age {pair[0]} is outside 0-{AGE_MAX}")
            continue
        try:
            tier_fen = parse_yuan(str(pair[1]))
        except BadAmount as e:
            errors.append(f"{path}[{i}]: {e}")
            continue
        if tier_fen > fen_max:
            errors.append(f"{path}[{i}]: {pair[1]!r} is beyond {_bound_text(fen_max)}")
            continue
        tiers.append((int(pair[0]), tier_fen))
    ages = [age for age, _ in tiers]
    if ages != sorted(set(ages)):
        errors.append(f"{path}: minimum ages must be strictly ascending")
    return tuple(tiers)


def _parse_calendar(raw: Any, errors: list[str]) -> tuple[tuple[date, ...], tuple[date, ...], tuple[int, ...]]:
    """Official holidays and make-up workdays (调休) for years the calendar package does not know yet."""
    if not isinstance(raw, Mapping):
        errors.append("calendar: must be a table")
        return (), (), ()
    days: dict[str, tuple[date, ...]] = {}
    for key in ("holidays", "workdays"):
        listed = raw.get(key, [])
        if not isinstance(listed, list):
            errors.append(f"calendar.{key}: must be a list of dates")
            listed = []
        if len(listed) > CALENDAR_DAYS_MAX:
            errors.append(f"calendar.{key}: more than {CALENDAR_DAYS_MAX} dates")
            listed = []
        days[key] = tuple(d for i, v in enumerate(listed) if (d := _parse_date(v, f"calendar.{key}[{i}]", errors)))
    holidays, workdays = days["holidays"], days["workdays"]

    years_raw = raw.get("years", [])
    if not isinstance(years_raw, list) or not all(isinstance(y, int) and not isinstance(y, bool) for y in years_raw):
        errors.append("calendar.years: must be a list of years")
        years_raw = []
    for i, year in enumerate(years_raw):
        if not POLICY_YEAR_MIN <= year <= POLICY_YEAR_MAX:
            errors.append(f"calendar.years[{i}]: {year} is outside the years {POLICY_YEAR_MIN}-{POLICY_YEAR_MAX}")
            years_raw = []
            break
    return holidays, workdays, tuple(years_raw)


def _check_references(policy: Policy, errors: list[str]) -> None:
    """Every base resolves to a programme or a setting, bases form no cycle, excludes name programmes."""
    for programme in policy.programmes.values():
        for other in programme.excludes:
            if other not in policy.programmes:
                errors.append(f"programmes.{programme.key}.excludes: unknown programme {other!r}")
        for other in programme.requires:
            if other not in policy.programmes:
                errors.append(f"programmes.{programme.key}.requires: unknown programme {other!r}")
            elif other == programme.key:
                errors.append(f"programmes.{programme.key}.requires: a programme cannot require itself")
        for rule in programme.standards:
            if rule.base is None:
                continue
            path = f"programmes.{programme.key}.standards[{rule.index}].base"
            if rule.base not in policy.programmes and rule.base not in policy.settings:
                errors.append(f"{path}: unknown base {rule.base!r} (neither a programme nor a setting)")
            elif rule.base not in policy.programmes:
                try:
                    setting_fen = parse_yuan(policy.settings[rule.base])
                except BadAmount as e:
                    errors.append(f"settings.{rule.base}: {e}")
                    continue
                if setting_fen > SETTING_AMOUNT_FEN_MAX:
                    errors.append(
                        f"settings.{rule.base}: {policy.settings[rule.base]!r} is beyond "
                        f"{_bound_text(SETTING_AMOUNT_FEN_MAX)}"
                    )
    reported: set[frozenset[str]] = set()
    for key in policy.programmes:
        cycle = _find_cycle(policy, key, ())
        if cycle and frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            errors.append(f"programmes.{key}.standards: bases form a cycle: {' → '.join(cycle)}")


def _find_cycle(policy: Policy, key: str, path: tuple[str, ...]) -> tuple[str, ...]:
    if key in path:
        return (*path[path.index(key) :], key)
    for rule in policy.programmes[key].standards:
        if rule.base in policy.programmes:
            cycle = _find_cycle(policy, rule.base, (*path, key))
            if cycle:
                return cycle
    return ()


def _check_derived_bounds(policy: Policy, errors: list[str]) -> None:
    """A derived standard stays within 0 and the bound on every date its value can change: its own
    entries' dates and every date a programme it derives from changes (联动 follows the base)."""
    dates = sorted({rule.effective_from for p in policy.programmes.values() for rule in p.standards})
    for programme in policy.programmes.values():
        derived = [rule for rule in programme.standards if rule.base is not None]
        if not derived:
            continue
        for day in dates:
            rule = _rule_in_force(programme, day)
            if rule is None or rule.base is None:
                continue
            try:
                got = policy.standard_on(programme.key, day).amount_fen
            except RuleBroken:
                continue  # a base with no standard yet, or with age tiers: reported where it matters
            fen_max = STANDARD_YEAR_FEN_MAX if rule.per == "year" else STANDARD_MONTH_FEN_MAX
            if not 0 <= got <= fen_max:
                path = f"programmes.{programme.key}.standards[{rule.index}]"
                errors.append(
                    f"{path}: derivation gives {format_yuan(got)} on {day.isoformat()}, outside 0 and "
                    f"{_bound_text(fen_max)}"
                )
                break


def _rule_in_force(programme: Programme, day: date) -> StandardRule | None:
    try:
        return _rule_on(programme, day)
    except NoStandardInForce:
        return None


def _check_expectations(policy: Policy, errors: list[str]) -> None:
    """Loading must reproduce every figure the document states (`expect`), to the fen."""
    for programme in policy.programmes.values():
        for rule in programme.standards:
            if rule.expect_fen is None:
                continue
            path = f"programmes.{programme.key}.standards[{rule.index}].expect"
            try:
                got = policy.standard_on(programme.key, rule.effective_from).amount_fen
            except RuleBroken as e:
                errors.append(f"{path}: cannot derive: {e}")
                continue
            if got != rule.expect_fen:
                errors.append(
                    f"{path}: derivation gives {format_yuan(got)}, the document states {format_yuan(rule.expect_fen)}"
                )


# --- what one month pays ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HouseholdFacts:
    """What a household programme's amount depends on (001_… and 004_…: 补差 and 增发)."""

    members: int
    monthly_income_fen: int
    special_members: int


@dataclass(frozen=True, slots=True)
class MonthRate:
    """A programme's standard for one month, reduced to integers so a million enrolments cost little.

    - household: the monthly standard is `num / den` fen exactly (an annual standard has den 12);
      `uplift_num / uplift_den` is `special_member_uplift`.
    - person, flat: `flat_fen` is the month's amount (an annual standard already split 12 ways).
    - person, by age: `tiers` are (minimum age, this month's amount in fen).
    """

    household: bool
    num: int = 0
    den: int = 1
    uplift_num: int = 0
    uplift_den: int = 1
    flat_fen: int = 0
    tiers: tuple[tuple[int, int], ...] = ()

    def amount_for(self, age: int, household: HouseholdFacts) -> int:
        if self.household:
            # max(0, members × std − income) + uplift × std × special, rounded half-up once (walkthrough).
            top_up = max(0, household.members * self.num - household.monthly_income_fen * self.den)
            num = top_up * self.uplift_den + self.uplift_num * self.num * household.special_members
            den = self.den * self.uplift_den
            return (2 * num + den) // (2 * den)
        if self.tiers:
            amount = 0
            for minimum_age, tier_fen in self.tiers:
                if age >= minimum_age:
                    amount = tier_fen
            return amount
        return self.flat_fen


def month_rate(policy: Policy, programme: Programme, month: Month) -> MonthRate:
    """The standard in force on the month's first day, as a `MonthRate` (raises NoStandardInForce)."""
    day = month.first_day
    standard = policy.standard_on(programme.key, day)
    if programme.unit == "household":
        per_month = policy.monthly_standard_fen(programme.key, day)
        uplift = policy.special_member_uplift
        return MonthRate(
            household=True,
            num=per_month.numerator,
            den=per_month.denominator,
            uplift_num=uplift.numerator,
            uplift_den=uplift.denominator,
        )

    def monthly(amount_fen: int) -> int:
        # An annual standard pays part k = ⌊A·k/12⌋ − ⌊A·(k−1)/12⌋ in month k: the months sum to the year.
        return part_fen(amount_fen, 12, month.month) if standard.per == "year" else amount_fen

    if standard.by_age:
        return MonthRate(household=False, tiers=tuple((age, monthly(f)) for age, f in standard.by_age))
    return MonthRate(household=False, flat_fen=monthly(standard.amount_fen))


def month_amount_fen(
    policy: Policy,
    programme: Programme,
    month: Month,
    *,
    age: int,
    household: HouseholdFacts,
    override_fen: int | None,
) -> int:
    """What one enrolment is owed for one month, in whole fen.

    - An adjusted enrolment (`decide adjust --amount`) is owed the approved monthly amount.
    - A household programme pays members × standard − income, floored at 0, plus
      `special_member_uplift` × standard per special member, rounded half-up to the fen once
      (walkthrough.md: 3 × 325.50 − 200 + 0.05 × 325.50 = 792.775 → 792.78; seeds 001 and 004).
    - A person programme pays its monthly standard; an annual one is split 12 ways so the months sum
      exactly to the year; age tiers use the age on the month's first day (003_… 二: 高龄津贴 by age).
    """
    if override_fen is not None:
        return override_fen
    return month_rate(policy, programme, month).amount_for(age, household)


def repriced_periods(old: Policy, new: Policy, accrued: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Programme → the already-accrued periods (names) whose standard differs between `old` and `new`.

    A policy loaded later may change a standard from a date in the past (提标 announced after the
    months it covers). Payments already accrued keep their amounts: the month-end never pays a period
    twice, and re-pricing with adjustment payments is not built (docs/month-end.md). This names what
    the new policy would have priced otherwise, so the clerk is told on `policy load` instead of the
    difference going unnoticed (seed 000 三: 擅自升降发放标准 is an audit finding either way). A period
    compares month by month through `month_rate`, so household uplift and age tiers count too; a
    programme the new policy drops, or a standard one side has and the other not, counts as a change.
    """
    changed: dict[str, set[str]] = {}
    for key, period_name in accrued:
        period = Period.parse(period_name)
        for month in period.month_list():
            if _rate_or_none(old, key, month) != _rate_or_none(new, key, month):
                changed.setdefault(key, set()).add(period.name)
                break
    return {key: sorted(periods) for key, periods in sorted(changed.items())}


def _rate_or_none(policy: Policy, key: str, month: Month) -> MonthRate | None:
    programme = policy.programmes.get(key)
    if programme is None:
        return None
    try:
        return month_rate(policy, programme, month)
    except NoStandardInForce:
        return None
