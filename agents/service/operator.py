"""What a front office and an operator ask of an agency's service besides the messages: checking
an application's outgoing agency before anything is committed, withdrawing an application, and
resolving a discrepancy.

Functions of an `AgencyService` (its `apply` calls `check_counterpart`), kept here so
that the unit of work in `agents.service.agency` stays about messages.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from agents.domain.case import CancelRequested, Case, ResolveRequested, case_from_data, decide
from agents.service.refusals import ApplicationRefused, CaseNotFound, OperationRefused
from schemas.errors import ContractError
from schemas.registry import known_versions, negotiate_version

if TYPE_CHECKING:
    from agents.service.agency import AgencyService

__all__ = ["cancel", "check_counterpart", "resolve"]


def check_counterpart(service: AgencyService, from_region: str) -> None:
    """Refuse an outgoing agency that is this one, is not in the directory, or declares no
    version of the contact letter both ends speak (`ApplicationRefused`).

    ``check_counterparts=False`` (a test world where an unlisted agency speaks every version)
    checks only the first."""
    if from_region == service.code:
        raise ApplicationRefused(
            f"the outgoing region {from_region} is this agency itself: name the agency the "
            "person transfers out of"
        )
    if not service.check_counterparts:
        return
    if from_region not in service.directory:
        raise ApplicationRefused(
            f"the outgoing region {from_region} is not in the agency directory: check the code, "
            "or add the agency's entry to the directory file"
        )
    theirs = service.directory.get(from_region).supported_versions.get("contact_letter", (1,))
    ours = known_versions("contact_letter")
    if service.code in service.directory:
        ours = service.directory.get(service.code).supported_versions.get("contact_letter", (1,))
    try:
        negotiate_version("contact_letter", [v for v in theirs if v in ours])
    except ContractError:
        raise ApplicationRefused(
            f"agency {from_region} declares contact_letter versions {list(theirs)}, none of which "
            f"this agency sends ({list(ours)}): one of the two directory entries must change first"
        ) from None


async def cancel(service: AgencyService, case_id: uuid.UUID, reason: str) -> Case:
    """Withdraw an application (receiving end, nothing released yet): the case ends
    ``cancelled`` and the outgoing agency is sent a rejection ``withdrawn``. Raises
    `CaseNotFound` or `OperationRefused` (with the reason), committing nothing."""
    async with service.store.transaction() as tx:
        record = await tx.get_case(case_id)
        if record is None:
            raise CaseNotFound(f"no case {case_id} at agency {service.code}: check the id and --agency")
        case = case_from_data(record.data)
        decision = decide(case, CancelRequested(reason=reason), service._context())
        if decision.case is None:
            why = next((n.detail.get("why") for n in decision.notes if "why" in n.detail), None)
            raise OperationRefused(f"case {case_id} cannot be cancelled: {why or 'refused'}")
        saved = await service._commit(tx, record, decision)
    service._committed(decision)
    assert saved is not None
    return saved


async def resolve(service: AgencyService, case_id: uuid.UUID, decision: str, reason: str) -> Case:
    """Move a case out of ``discrepancy`` (see `agents.domain.case.operator`): commit the
    resolution, then run its ledger command (a Credit, idempotent per case) and commit the result,
    which sends the completion (and its copy to the reconciler) like a normal crediting. Raises
    `CaseNotFound` or `OperationRefused`, committing nothing. Returns the case as it ends here."""
    async with service.store.transaction() as tx:
        record = await tx.get_case(case_id)
        if record is None:
            raise CaseNotFound(f"no case {case_id} at agency {service.code}: check the id and --agency")
        case = case_from_data(record.data)
        decided = decide(case, ResolveRequested(decision=decision, reason=reason), service._context())
        if decided.case is None:
            why = next((n.detail.get("why") for n in decided.notes if "why" in n.detail), None)
            raise OperationRefused(f"case {case_id} cannot be resolved: {why or 'refused'}")
        saved = await service._save(tx, record, decided)
    service._committed(decided)
    assert saved is not None
    if saved[0].pending_commands:
        await service._drive_commands(case_id, saved)
    current = await service.store.get_case(case_id)
    assert current is not None
    return case_from_data(current.data)
