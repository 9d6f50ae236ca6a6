"""Rejection v2 adds the reason ``withdrawn``; an agency on v1 receives it as ``other``."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from schemas.notices import RejectionReason, RejectionV1, RejectionV2
from schemas.registry import downcast, encode_envelope, envelope_for, parse, upcast


def test_withdrawn_reaches_a_v1_agency_as_other_with_its_words() -> None:
    withdrawn = RejectionV2(reason_code=RejectionReason.WITHDRAWN, text="转入地已撤回申请 (withdrawn)")
    envelope = envelope_for(withdrawn, sender="360400", recipient="540100", case_id=uuid.uuid4(), version=1)
    assert envelope.version == 1
    assert envelope.payload["reason_code"] == "other"
    received = parse(encode_envelope(envelope))
    assert isinstance(received.document, RejectionV2)  # upcast on arrival, as every message
    assert received.document.reason_code is RejectionReason.OTHER
    assert "withdrawn" in received.document.text


def test_v1_refuses_withdrawn_and_upcasts_the_rest_unchanged() -> None:
    with pytest.raises(ValidationError):
        RejectionV1(reason_code=RejectionReason.WITHDRAWN, text="x")
    old = RejectionV1(reason_code=RejectionReason.ARREARS, text="欠费")
    new = upcast(old)
    assert isinstance(new, RejectionV2) and isinstance(new, RejectionV1)
    assert new.reason_code is RejectionReason.ARREARS
    assert downcast(new, 1) == old
