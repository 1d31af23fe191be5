"""The use cases a user performs, as one service over both applications: what the CLI, the demo, the
reliability harness and (next) the web server call, so none of them types a use case out again.

Every use case that appends to the log ends sealed (`sealed` below, `LedgerService.seal`): no window
exists in which an event is recorded and not yet covered by a seal (DESIGN.md, "Identity, roles and
integrity"; docs/audit.md). A use case added later that appends ends with `self.seal()`, or carries
`@sealed`.

`LedgerService.month_end` is the month-end as `yikatong run` has always done it: read the registry,
accrue and write every payment due (ledger.disbursement), seal both logs (ledger.audit: from here on,
any edit to what the month-end read or wrote is detected), and catch the read models up before it
returns (docs/projections.md). Methods take plain arguments and the acting identity, and return plain
result objects; rendering them is the caller's business.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from domain.accounts import Identity, normalised_reason
from domain.bank_profiles import ProfileVersion
from domain.charter import Charter
from domain.disbursement import Batch
from domain.eligibility import ChangeOutcome, Person, UnknownEnrolment
from domain.errors import RuleBroken
from domain.oneoffs import GrantRecord, aid_payment_id
from domain.periods import Month
from domain.policy import Policy, PolicyRejected, repriced_periods
from domain.regions import region_contains
from ledger import accounts, exports, recoveries, sessions
from ledger import profiles as profile_book
from ledger.access import Access, OperationsPage, operations, record_access
from ledger.accounts import AccountView
from ledger.anchors import Anchor, SigningKeyStatus, init_signing_key, read_anchor, verify_against, write_anchor
from ledger.anomalies import find_anomalies
from ledger.apps import ImportSummary, NoPolicy, Registry, RegistrySnapshot, parse_policy_text
from ledger.audit import AuditReport, audit_verify, record_checkpoint
from ledger.deadlines import deadline_rows
from ledger.disbursement import BatchReturns, Disbursement, PaymentView, RunSummary
from ledger.exports import BankPreview, ExportedFile, ImportOutcome
from ledger.history import batch_keys, person_history
from ledger.oneoffs import GrantOutcome, approve_aid, grant_aid, grants, preview_grant
from ledger.persons import (
    AccountPreview,
    DecisionPreview,
    PersonView,
    checked_account,
    person_view,
    preview_account,
    preview_decision,
)
from ledger.persons import FieldRefused as FieldRefused  # re-exported: raised by set_account
from ledger.previews import RosterPreview, roster_preview
from ledger.profiles import ProfileChange, read_profile_file
from ledger.roster import name_problems, read_roster
from ledger.storage import Database, existing_originators

if TYPE_CHECKING:
    from ledger.reports import ServedReads

Advance = Callable[[int], None]
Progress = Callable[[str, int | None], AbstractContextManager[Advance]]
UseCase = TypeVar("UseCase", bound=Callable[..., Any])


def sealed(use_case: UseCase) -> UseCase:
    """The rule, in one place: a use case that appends to the log ends with both logs sealed.

    A refused use case appends nothing, and nothing is sealed for it (a refusal leaves the ledger as it
    was). One that fails part-way after recording something (a roster or a month-end is written in
    chunks) has what it recorded sealed before the failure goes on; should sealing fail as well, the
    failure says so in a note.
    """

    @functools.wraps(use_case)
    def ends_sealed(self: LedgerService, *args: Any, **kwargs: Any) -> Any:
        ends = self._log_ends()
        try:
            result = use_case(self, *args, **kwargs)
        except Exception as failure:
            try:
                if self._log_ends() != ends:
                    self.seal()
            except Exception as also:
                failure.add_note(f"and the log could not be sealed after it: {type(also).__name__}: {also}")
            raise
        self.seal()
        return result

    return cast(UseCase, ends_sealed)


class RegionOutsidePolicy(RuleBroken):
    """A month-end's --region must lie inside the region the ledger's policy serves."""


class NameRefused(RuleBroken):
    """A name some configured export format cannot carry, or empty, or with control characters."""


class NothingAccrued(RuleBroken):
    """A chart needs a year with payments; none has been accrued yet."""


@contextmanager
def no_progress(_label: str, _total: int | None) -> Iterator[Advance]:
    yield lambda _n: None


@dataclass(frozen=True, slots=True)
class RenameResult:
    renamed: bool  # the person's name changed (False: it already was this name)
    batches_corrected: int  # batches not yet approved whose next export carries the new name


@dataclass(frozen=True, slots=True)
class PolicyLoaded:
    policy: Policy
    repriced: dict[str, list[str]]  # programme → periods already accrued whose standard this policy changes


@dataclass(frozen=True, slots=True)
class MonthEndResult:
    """What a month-end did (`run --json` prints `as_json()`), with the time of each phase."""

    summary: RunSummary
    month_end_s: float  # read the registry, accrue, write every payment
    seal_s: float  # seal both logs
    projections_s: float  # catch the read models up

    def as_json(self) -> dict[str, Any]:
        s = self.summary
        return {
            "month": s.run_month,
            "scope": s.scope,
            "payments": s.payments,
            "total_fen": s.total_fen,
            "late": s.late,
            "batches": len(s.batches),
            "already_accrued": s.already_accrued,
            "reissued": s.reissued,
            "awaiting_account": s.awaiting_account,
            "adjustments": s.adjustments,
            "adjusted_fen": s.adjusted_fen,
            "recoveries": s.recoveries,
            "recovery_due_fen": s.recovery_due_fen,
            "offsets": s.offsets,
            "offset_fen": s.offset_fen,
            "month_end_s": round(self.month_end_s, 3),
            "seal_s": round(self.seal_s, 3),
            "projections_s": round(self.projections_s, 3),
        }


class LedgerService:
    """Both applications of one ledger and the database they live in."""

    def __init__(self, db: Database, registry: Registry, disbursement: Disbursement) -> None:
        self.db = db
        self.registry = registry
        self.disbursement = disbursement
        # A server's reports (ledger.reports.ServedReads): bounded catch-up, rows kept per position. None:
        # a command's, caught up to the end of the log first.
        self.served: ServedReads | None = None

    @sealed
    def month_end(
        self,
        month: Month,
        *,
        actor: str,
        region: str | None = None,
        progress: Progress = no_progress,
        snapshot: RegistrySnapshot | None = None,
    ) -> MonthEndResult:
        """Accrue everything payable in `month` for `region` (default: the policy's whole region), seal,
        and catch the read models up. Running it again accrues nothing new. `snapshot`, when given, is
        the registry as already read (two processes released at the same moment read it first)."""
        started = time.perf_counter()
        if snapshot is None:
            with progress("reading registry", None) as advance:
                snapshot = self.registry.read_registry(advance)
        scope = region or snapshot.policy.region_code
        if not region_contains(snapshot.policy.region_code, scope):
            raise RegionOutsidePolicy(f"region {scope} is outside the policy's region {snapshot.policy.region_code}")
        with progress(f"month-end {month}", len(snapshot.persons)) as advance:  # persons gone through
            summary = self.disbursement.run_month_end(snapshot, month, scope=scope, actor=actor, advance=advance)
        accrued_at = time.perf_counter()
        self.seal()
        sealed_at = time.perf_counter()
        # SQLAlchemy and the read models load here, not when the CLI starts (read-only commands skip them).
        from ledger.reports import catch_up

        catch_up(self.db)
        return MonthEndResult(summary, accrued_at - started, sealed_at - accrued_at, time.perf_counter() - sealed_at)

    # --- the registry -----------------------------------------------------------------------------------

    @sealed
    def load_policy(self, toml_text: str, source: str, *, actor: str) -> PolicyLoaded:
        """Load a policy (all or nothing) and say which standards it changes for periods already accrued:
        those payments keep their amounts (they are not re-priced)."""
        try:
            before: Policy | None = self.registry.policy()
        except (NoPolicy, PolicyRejected):
            # PolicyRejected: a policy loaded by an earlier release that the bounds now refuse (docs/policy.md,
            # Bounds); loading a corrected one must stay possible, with nothing to compare it against.
            before = None
        problems = exports.policy_field_problems(parse_policy_text(toml_text, source, strict=True))
        if problems:
            raise PolicyRejected(source, problems)
        loaded = self.registry.load_policy(toml_text, source, actor)
        repriced = repriced_periods(before, loaded, batch_keys(self.disbursement)) if before is not None else {}
        return PolicyLoaded(loaded, repriced)

    @sealed
    def import_roster(self, path: Path, *, actor: str, progress: Progress = no_progress) -> ImportSummary:
        """A roster (CSV or xlsx), read whole and checked against the policy and the ledger before anything
        is recorded, then sealed."""
        policy = self.registry.policy()
        rows = read_roster(path, region=policy.region_code, programmes=policy.programmes.keys())
        with progress("importing roster", len(rows)) as advance:
            return self.registry.import_roster(rows, path.name, actor, advance)

    def preview_roster(self, path: Path, *, month: Month) -> RosterPreview:
        """A roster (CSV or xlsx) read and checked as `import_roster` would, recording nothing: the import's
        counts and 应发 a month per programme at `month`'s standards (ledger.previews); RosterRejected with
        every problem otherwise."""
        policy = self.registry.policy()
        rows = read_roster(path, region=policy.region_code, programmes=policy.programmes.keys())
        summary = self.registry.check_roster(rows, path.name)
        return roster_preview(policy, rows, summary, path, month)

    @sealed
    def decide(
        self, *, kind: str, id_number: str, programme: str, on: date, actor: str, reason: str, amount_fen: int | None
    ) -> Person:
        return self.registry.decide(
            kind=kind,
            id_number=id_number,
            programme=programme,
            on=on,
            actor=actor,
            reason=normalised_reason(reason),
            amount_fen=amount_fen,
        )

    @sealed
    def change_household(
        self,
        *,
        id_number: str,
        programme: str,
        on: date,
        actor: str,
        reason: str,
        members: int | None = None,
        monthly_income_fen: int | None = None,
        special_members: int | None = None,
    ) -> ChangeOutcome:
        """`decide change`: new household facts from D's month, and the phase-out it starts by itself when
        per-capita income reaches the standard (domain.eligibility.Person.change_household)."""
        return self.registry.change_household(
            id_number=id_number,
            programme=programme,
            on=on,
            actor=actor,
            reason=normalised_reason(reason),
            members=members,
            monthly_income_fen=monthly_income_fen,
            special_members=special_members,
        )

    def reviews(self, due_by: date) -> list[dict[str, Any]]:
        """`report reviews`: enrolments whose 复核 is due by `due_by` (ledger.reviews)."""
        from ledger.reviews import review_rows

        return review_rows(self.registry.read_registry(), due_by)

    @sealed
    def rename(self, *, id_number: str, name: str, reason: str, actor: str, on: date) -> RenameResult:
        """Correct a payee's name (`decide rename`): checked by the roster's name rules against every
        configured export format, recorded on the person as a new event with actor and reason, then sealed.
        Payments accrued from now on, re-issues included, carry the new name, and so do the next exports
        of batches not yet approved that hold a payment to them (`Batch.NamesCorrected`); the old name stays
        in the history. Nothing is recorded when the name is already this one everywhere."""
        name = name.strip()
        reason = normalised_reason(reason)
        problems = name_problems(name)
        if problems:
            raise NameRefused("; ".join(problems))
        renamed = self.registry.rename(id_number=id_number, name=name, on=on, reason=reason, actor=actor)
        batches = exports.correct_payee_names(self.disbursement, id_number, name, reason=reason, actor=actor)
        return RenameResult(renamed, batches)

    @sealed
    def set_account(self, *, id_number: str, bank_code: str, account: str, reason: str, actor: str) -> bool:
        """`account set`: the bank code and account checked as a roster row's are (ledger.persons
        `checked_account`: digits, 12-19 digits, what every export format can carry), then recorded."""
        bank_code, account, _warnings = checked_account(bank_code, account)
        return self.registry.set_account(
            id_number=id_number, bank_code=bank_code, account=account, reason=normalised_reason(reason), actor=actor
        )

    # --- one person, and decisions previewed (ledger.persons: the web's 决定 pages) ------------------------

    def person_view(self, id_number: str, day: date) -> PersonView:
        """A person's enrolments (state on `day`), payments with their bank results, and decisions."""
        return person_view(self.registry, self.disbursement, id_number, day)

    def preview_decision(
        self,
        *,
        kind: str,
        id_number: str,
        programme: str,
        on: date,
        actor: str,
        reason: str,
        amount_fen: int | None = None,
        members: int | None = None,
        monthly_income_fen: int | None = None,
        special_members: int | None = None,
    ) -> DecisionPreview:
        """What `decide` (kind "change": `change_household`) would record and change; records nothing."""
        return preview_decision(
            self.registry,
            self.disbursement,
            kind=kind,
            id_number=id_number,
            programme=programme,
            on=on,
            actor=actor,
            reason=reason,
            amount_fen=amount_fen,
            members=members,
            monthly_income_fen=monthly_income_fen,
            special_members=special_members,
        )

    def preview_account(self, *, id_number: str, bank_code: str, account: str, reason: str) -> AccountPreview:
        """What `set_account` would record (the fields checked as `account set` checks them); records nothing."""
        return preview_account(self.registry, id_number=id_number, bank_code=bank_code, account=account, reason=reason)

    # --- one-off payments (ledger.oneoffs): 临时救助 grants; the month-end pays them -----------------------

    @sealed
    def grant_aid(
        self,
        *,
        id_number: str,
        amount_fen: int,
        reason: str,
        on: date,
        kind: str,
        decision_ref: str | None,
        stage: int,
        region: str | None,
        actor: str,
    ) -> GrantOutcome:
        """`aid grant`: one grant within the policy's bounds; the same grant again records nothing."""
        return grant_aid(
            self.registry,
            id_number=id_number,
            amount_fen=amount_fen,
            reason=reason,
            on=on,
            kind=kind,
            decision_ref=decision_ref,
            stage=stage,
            region=region,
            actor=actor,
        )

    def preview_aid(
        self,
        *,
        id_number: str,
        amount_fen: int,
        reason: str,
        on: date,
        kind: str,
        decision_ref: str | None,
        stage: int,
        region: str | None,
        actor: str,
    ) -> GrantOutcome:
        """What `grant_aid` would record (`recorded` False: the same grant is there already); records nothing."""
        return preview_grant(
            self.registry,
            id_number=id_number,
            amount_fen=amount_fen,
            reason=reason,
            on=on,
            kind=kind,
            decision_ref=decision_ref,
            stage=stage,
            region=region,
            actor=actor,
        )

    @sealed
    def approve_aid(self, grant_ref: str, *, actor: str) -> GrantRecord:
        """`aid approve`: a grant above the policy's threshold, approved by another account than its granter."""
        return approve_aid(self.registry, grant_ref, actor=actor)

    def grants(self) -> list[dict[str, Any]]:
        """Every 临时救助 grant (`aid list`) with its state (payable, awaiting approval) and whether a
        month-end has accrued its payment."""
        found = grants(self.registry)
        accrued = existing_originators(self.disbursement.recorder, (aid_payment_id(g.grant_id) for g in found))
        return [{**g.as_json(), "accrued": aid_payment_id(g.grant_id) in accrued} for g in found]

    # --- accounts (ledger.accounts): who may act, proved by a password --------------------------------
    # Each write checks the acting identity itself (the web calls these directly) and ends sealed.

    def has_accounts(self) -> bool:
        return accounts.accounts_exist(self.registry)

    def authenticate(self, name: str, password: str) -> Identity:
        return accounts.authenticate(self.registry, name, password)

    def accounts(self) -> list[AccountView]:
        return [accounts.view(a) for a in accounts.all_accounts(self.registry)]

    @sealed
    def create_first_admin(self, name: str, password: str, *, actor: str) -> AccountView:
        """The first admin: from here on the ledger authenticates who acts. `actor` is who ran it (on a
        ledger of an earlier release, the name typed with --as)."""
        position = self.disbursement.recorder.max_notification_id() or 0
        added = accounts.add_first_admin(self.registry, name, password, actor=actor, disbursement_position=position)
        return accounts.view(added)

    @sealed
    def add_account(self, name: str, role: str, password: str, *, actor: Identity) -> AccountView:
        added = accounts.add_account(self.registry, name, role, password, actor=actor)
        return accounts.view(added)

    @sealed
    def change_role(self, name: str, role: str, *, actor: Identity) -> tuple[AccountView, bool]:
        changed, done = accounts.change_role(self.registry, name, role, actor=actor)
        return accounts.view(changed), done

    @sealed
    def change_password(self, name: str, password: str, *, actor: Identity) -> AccountView:
        changed = accounts.change_password(self.registry, name, password, actor=actor)
        return accounts.view(changed)

    @sealed
    def disable_account(self, name: str, *, actor: Identity) -> tuple[AccountView, bool]:
        changed, done = accounts.disable_account(self.registry, name, actor=actor)
        return accounts.view(changed), done

    @sealed
    def enable_account(self, name: str, *, actor: Identity) -> tuple[AccountView, bool]:
        changed, done = accounts.enable_account(self.registry, name, actor=actor)
        return accounts.view(changed), done

    def open_session(self, name: str, password: str, *, seconds: int) -> tuple[Identity, str, int]:
        """Authenticate and issue a session token (ledger.sessions) valid for `seconds`: the identity,
        the token and its expiry in Unix seconds. Nothing is recorded in the ledger."""
        if not accounts.accounts_exist(self.registry):
            raise accounts.NoAccountsYet(
                "this ledger has no accounts yet: create the first admin with `yikatong init --admin NAME`"
            )
        identity = accounts.authenticate(self.registry, name, password)
        version = accounts.account(self.registry, identity.name).version
        expires_at = int(time.time()) + seconds
        session = sessions.Session(identity.name, version, expires_at)
        token = sessions.issue_token(sessions.session_secret(self.db), sessions.ledger_ref(self.db), session)
        return identity, token, expires_at

    # --- access and the actions log (ledger.access) ------------------------------------------------------

    def record_access(self, access: Access) -> None:
        """Record a login, logout, failed login or refused request in the registry log, sealed there.
        Only the registry log changes (no account event: a session names its account's version), so only
        it is sealed: a month-end writing the disbursement log meanwhile seals its own events itself."""
        record_access(self.registry, access)

    def operations(
        self,
        *,
        before: dict[str, int] | None = None,
        limit: int = 100,
        actor: str | None = None,
        access_only: bool = False,
    ) -> OperationsPage:
        """操作日志: who did what when, newest first, read from both logs (ledger.access.operations)."""
        apps = {"registry": self.registry, "disbursement": self.disbursement}
        return operations(apps, before=before, limit=limit, actor=actor, access_only=access_only)

    def log_positions(self) -> dict[str, int]:
        """Each log's last position now (what a report read; printed in its header)."""
        registry, disbursement = self._log_ends()
        return {"registry_events": registry, "disbursement_events": disbursement}

    # --- batches and the bank -----------------------------------------------------------------------------

    @sealed
    def export_batch(
        self,
        batch_ref: str,
        *,
        fmt: str,
        out: Path,
        actor: str,
        profile: str = "generic",
        version: str = "001.001.09",
        force: bool = False,
    ) -> tuple[Batch, list[ExportedFile]]:
        """Write a batch's file and record the export with its SHA-256 (and its profile's), then seal
        (ledger.exports). A file of the same name with other bytes refuses it unless `force`, which an
        approved batch refuses."""
        return exports.export_batch(
            self.disbursement,
            self.registry.policy(),
            batch_ref,
            fmt=fmt,
            out=out,
            profile=profile,
            version=version,
            actor=actor,
            force=force,
        )

    @sealed
    def approve_batch(self, batch_ref: str, *, actor: str) -> Batch:
        return exports.approve_batch(self.disbursement, batch_ref, actor)

    @sealed
    def submit_batch(self, batch_ref: str, *, actor: str) -> Batch:
        return exports.submit_batch(self.disbursement, batch_ref, actor)

    @sealed
    def import_bank_file(self, path: Path, *, actor: str, profile: str = "generic") -> ImportOutcome:
        """A bank's result file, applied whole or not at all, then sealed (ledger.exports)."""
        return exports.import_bank_file(self.disbursement, path, actor=actor, profile=profile)

    def preview_bank_file(self, path: Path, *, actor: str, profile: str = "generic") -> BankPreview:
        """A bank result file read and matched as `import_bank_file` would, recording nothing: which
        payments become paid and which returned (with the bank's reason), batch by batch."""
        return exports.preview_bank_file(self.disbursement, path, actor=actor, profile=profile)

    # --- recoveries (ledger.recoveries: 多发追回 not offset, collected or written off) ------------------

    def recoveries(self, *, open_only: bool = True) -> list[recoveries.RecoveryView]:
        return recoveries.recovery_views(self.disbursement, open_only=open_only)

    @sealed
    def collect_recovery(self, ref: str, *, amount_fen: int, reason: str, actor: str) -> recoveries.RecoveryView:
        return recoveries.collect(
            self.disbursement, ref, amount_fen=amount_fen, reason=normalised_reason(reason), actor=actor
        )

    @sealed
    def write_off_recovery(self, ref: str, *, reason: str, actor: str) -> recoveries.RecoveryView:
        return recoveries.write_off(self.disbursement, ref, reason=normalised_reason(reason), actor=actor)

    # --- bank profiles (ledger.profiles: in the disbursement log, under maker-checker) ------------------

    @sealed
    def add_profile(self, path: Path, *, actor: str) -> ProfileChange:
        """Record a profile file's text as a version awaiting a second person's approval, then seal."""
        changed = profile_book.add_profile(self.disbursement, read_profile_file(path), str(path), actor=actor)
        return changed

    @sealed
    def approve_profile(self, name: str, *, actor: str, sha256: str = "") -> ProfileChange:
        """Approve the version of a profile awaiting approval, by anyone but who added it, then seal."""
        changed = profile_book.approve_profile(self.disbursement, name, actor=actor, sha256=sha256)
        return changed

    def profiles(self) -> list[dict[str, Any]]:
        """Every profile: the recorded ones' version in force and its state, and the shipped ones."""
        return profile_book.profile_rows(self.disbursement)

    def profile_text(self, name: str, sha256: str = "") -> tuple[ProfileVersion, str]:
        """A profile's recorded text (the version in force, or the one named by a SHA-256 prefix)."""
        return profile_book.profile_text(self.disbursement, name, sha256)

    # --- reading and auditing --------------------------------------------------------------------------
    # The report functions (ledger.reports) load SQLAlchemy and the read models; imported where used, so a
    # command that needs none of them starts without them.

    def policy(self) -> Policy:
        return self.registry.policy()

    def charter(self) -> Charter | None:
        """What the ledger was created as (its id, plain text on purpose or not, its id scheme), or None
        for a ledger written before charters existed (domain.charter)."""
        return self.registry.charter()

    def batches(self, run_month: str | None = None) -> list[Batch]:
        """Every batch ever drafted (only those of `run_month` when given), in the order they were drafted."""
        return [b for b in self.disbursement.batches() if not run_month or b.run_month == run_month]

    def batch(self, batch_ref: str) -> Batch:
        """One batch by its id or a unique prefix of it (`UnknownBatch` otherwise)."""
        return self.disbursement.batch(batch_ref)

    def batch_returns(self, batch_ref: str) -> BatchReturns:
        """Where a batch's returned payments stand: re-issued, corrected (the next month-end re-issues
        them: a month-end run again for a month already run accrues nothing twice) or awaiting a corrected
        account (ledger.disbursement `Disbursement.batch_returns`)."""

        def holder(id_number: str) -> Person | None:
            try:
                return self.registry.person(id_number)
            except UnknownEnrolment:
                return None

        return self.disbursement.batch_returns(self.disbursement.batch(batch_ref), holder)

    def months_run(self, region: str | None = None) -> list[str]:
        """The months whose month-end completed for `region` (default: the policy's whole region)."""
        return self.disbursement.months_run(region or self.registry.policy().region_code)

    def batch_payments(
        self, batch_ref: str, *, offset: int = 0, limit: int | None = None
    ) -> tuple[Batch, list[PaymentView]]:
        """A batch and its payments as stored (those from `offset`, at most `limit`), in the batch's order,
        each under the name its next export carries (a `decide rename` before approval: `Batch.payee_name`)."""
        found = self.disbursement.batch(batch_ref)
        ids = found.payment_ids[offset : None if limit is None else offset + limit]
        views = self.disbursement.payment_views(ids)
        shown = [views[pid] for pid in ids if pid in views]
        return found, [replace(v, name=found.payee_name(v.payment_id, v.name)) for v in shown]

    def balances(
        self,
        *,
        month: str | None = None,
        year: str | None = None,
        programme: str | None = None,
        region: str | None = None,
        as_of: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """`report balances` rows; with `as_of`, folded from the events recorded up to that moment."""
        from ledger.reports import balances_rows

        return balances_rows(
            self.db,
            month=month,
            year=year,
            programme=programme,
            region=region,
            as_of=as_of,
            disbursement=self.disbursement,
            served=self.served,
        )

    def summary(self, year: int, through: Month | None = None) -> list[dict[str, Any]]:
        """Standard, households, persons and amount paid per programme, as offices publish it."""
        from ledger.reports import summary_rows

        return summary_rows(self.db, self.registry.policy(), year, through)

    def on_time(self, year: int, today: date | None = None) -> list[dict[str, Any]]:
        """按时发放率 by programme, region and month, and year to date."""
        from ledger.reports import on_time_rows

        return on_time_rows(self.db, year, today=today, served=self.served)

    def chart(self, path: Path, year: int | None = None) -> int:
        """A PNG of monthly disbursement and the on-time rate for `year` (default: the latest with
        payments); returns the year charted."""
        from ledger.reports import latest_year, write_chart

        chosen = year or latest_year(self.db)
        if chosen is None:
            raise NothingAccrued("nothing accrued yet: run a month-end first")
        write_chart(self.db, self.registry.policy(), chosen, path)
        return chosen

    def deadlines(self, today: date) -> list[dict[str, Any]]:
        """Each batch with its due date, the last safe day to hand the file to the bank, and its state."""
        return deadline_rows(self.registry.policy(), self.disbursement.batches(), today)

    def verify(self, exports_dir: Path | None = None, anchors: Sequence[Path] = ()) -> AuditReport:
        """The logs intact, the read models equal to a rebuild, every export regenerating (ledger.audit);
        with `anchors`, each anchor file's signature checked and the log shown to extend it (ledger.anchors).
        Reads only: an auditor's SELECT-only role runs it."""
        if not anchors:
            return audit_verify(self.db, self.registry, self.disbursement, exports_dir)
        loaded = [read_anchor(path) for path in anchors]
        logs, results = verify_against(self.registry, self.disbursement, loaded)
        return audit_verify(self.db, self.registry, self.disbursement, exports_dir, logs=logs, anchors=results)

    # --- anchors (ledger.anchors) -------------------------------------------------------------------------

    @sealed
    def init_signing_key(self, *, actor: str) -> SigningKeyStatus:
        """`yikatong init`: the ledger's Ed25519 signing key, created beside the data key when absent, its
        public half recorded in the log when not yet recorded (a ledger of an earlier release gains it)."""
        return init_signing_key(self.db, self.registry, actor)

    def anchor(self, out: Path, *, actor: str) -> Anchor:
        """Seal both logs, verify them, and write a signed anchor of where they end to `out` (never
        overwritten). Refused when the log does not verify: an anchor never vouches for a changed log."""
        self.seal()
        return write_anchor(out, self.db, self.registry, self.disbursement, actor)

    def history(self, id_number: str) -> list[dict[str, Any]]:
        """Every event touching one person, in order of recording (ledger.history)."""
        return person_history(self.registry, self.disbursement, id_number)

    def anomalies(self) -> list[dict[str, Any]]:
        """The findings the seeds name (ledger.anomalies)."""
        return find_anomalies(self.registry, self.disbursement)

    def _log_ends(self) -> tuple[int, int]:
        return (
            self.registry.recorder.max_notification_id() or 0,
            self.disbursement.recorder.max_notification_id() or 0,
        )

    def seal(self) -> None:
        """Seal both logs up to their ends (ledger.audit), the disbursement log first as a month-end does.
        Records nothing when nothing but the last seal is new. Every use case that appends ends here."""
        record_checkpoint(self.disbursement, reseal=False)
        record_checkpoint(self.registry, reseal=False)
