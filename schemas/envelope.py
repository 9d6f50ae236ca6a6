"""The envelope every message travels in. Field names here are the wire contract."""

from __future__ import annotations

from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = ["AgencyCodeStr", "Envelope"]

AgencyCodeStr = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]


class Envelope(BaseModel):
    """A signed, versioned message between two agencies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: UUID
    case_id: UUID
    causation_id: UUID | None = None
    type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]*$", max_length=64)]
    version: Annotated[int, Field(ge=1)]
    sender: AgencyCodeStr
    recipient: AgencyCodeStr
    sent_at: AwareDatetime
    payload: dict[str, Any]
    signature: str | None = Field(
        default=None, description="Base64 Ed25519 signature over the RFC 8785 form without it"
    )

    @model_validator(mode="after")
    def _sender_is_not_recipient(self) -> Self:
        if self.sender == self.recipient:
            raise ValueError("recipient must differ from sender")
        return self
