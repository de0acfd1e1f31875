"""Request bodies of the API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tether.cloud.api.access import HEX16, INVITATION_TTL


# -- request bodies (the OpenAPI document is generated from these) ---------------------------------
class VehicleRegistration(BaseModel):
    """A car declares itself: its key, its name, how phones reach it, and who its owners are."""

    public_key: str = Field(description="the car's identity key, SEC1 uncompressed, base64url")
    name: str = Field(max_length=128)
    address: str = Field("", max_length=256, description="tcp://HOST:PORT where phones reach it")
    owners: list[str] = Field(max_length=16, description="owner endpoint public keys, base64url")


class InvitationIn(BaseModel):
    label: str = Field("", max_length=64, description="who the invitation is for")
    ttl: int = Field(INVITATION_TTL, ge=60, le=30 * 86_400)


class KeyRequestIn(BaseModel):
    public_key: str = Field(description="the friend's new key for this car, base64url")
    label: str = Field("", max_length=64)


class GrantIn(BaseModel):
    bundle: str = Field(description="a grant bundle (phone.sharing) signed by an owner, base64url")


class RevocationIn(BaseModel):
    revocation: str = Field(description="an owner-signed revocation (COSE_Sign1), base64url")


class CommandIn(BaseModel):
    envelope: str = Field(description="a phone-signed remote command envelope, base64url")


class AuditIn(BaseModel):
    entries: list[dict[str, Any]] = Field(max_length=1000)


class FleetIn(BaseModel):
    public_key: str = Field(description="the operator's fleet key, base64url")
    name: str = Field(max_length=128)


class FleetVehicleIn(BaseModel):
    vehicle_id: str = Field(pattern=HEX16)


class BulkGrantsIn(BaseModel):
    bundles: list[str] = Field(max_length=1000)


class BulkRevocationsIn(BaseModel):
    revocations: list[str] = Field(max_length=1000)
