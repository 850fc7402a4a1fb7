"""Who may do what: API-key authentication, roles, permissions and scopes for the HTTP API.

Roles (from the key):

* admin - everything.
* manager - alerts (read, acknowledge, false alarm), clips, approvals, reports, cameras,
  metrics, for the key's sites.
* trainer - alerts and their clips, read only (training material); no approvals, no
  reports, no reviews.
* security - guard clauses only (ids starting `d11.`): their alerts, clips, reviews and
  reports.

Every key is scoped to sites (`*` = all) and optionally to cameras. The scope is handed
to the store, which applies it inside its queries: out-of-scope alerts are filtered out
of lists and answer 404 by id, exactly like alerts that do not exist, so a key cannot
even learn that another site's alert #17 exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.keys import ALL_SITES, authenticate
from service.store import ApiKey, Scope


class Permission(str, Enum):
    ALERTS_READ = "alerts:read"
    ALERTS_REVIEW = "alerts:review"  # acknowledge, false alarm
    CLIPS_READ = "clips:read"  # snapshots and clips
    APPROVALS_READ = "approvals:read"
    APPROVALS_WRITE = "approvals:write"
    REPORTS_READ = "reports:read"
    CAMERAS_READ = "cameras:read"
    CLAUSES_READ = "clauses:read"
    METRICS_READ = "metrics:read"


P = Permission
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "manager": frozenset(
        {
            P.ALERTS_READ,
            P.ALERTS_REVIEW,
            P.CLIPS_READ,
            P.APPROVALS_READ,
            P.APPROVALS_WRITE,
            P.REPORTS_READ,
            P.CAMERAS_READ,
            P.CLAUSES_READ,
            P.METRICS_READ,
        }
    ),
    "trainer": frozenset({P.ALERTS_READ, P.CLIPS_READ, P.CAMERAS_READ, P.CLAUSES_READ}),
    "security": frozenset(
        {P.ALERTS_READ, P.ALERTS_REVIEW, P.CLIPS_READ, P.REPORTS_READ, P.CAMERAS_READ, P.CLAUSES_READ}
    ),
}
# Roles that only see some clauses: security guards see the guard code (D11) only.
ROLE_CLAUSE_PREFIXES: dict[str, tuple[str, ...]] = {"security": ("d11.",)}


@dataclass(frozen=True)
class Principal:
    """The caller of a request, as its key says."""

    key_id: str
    name: str
    role: str
    sites: tuple[str, ...]
    cameras: tuple[str, ...] | None

    @classmethod
    def from_key(cls, key: ApiKey) -> Principal:
        return cls(key.key_id, key.name or key.key_id, key.role, key.sites, key.cameras)

    @property
    def all_sites(self) -> bool:
        return ALL_SITES in self.sites

    @property
    def scope(self) -> Scope:
        return Scope(
            sites=None if self.all_sites else frozenset(self.sites),
            cameras=frozenset(self.cameras) if self.cameras is not None else None,
            clause_prefixes=ROLE_CLAUSE_PREFIXES.get(self.role),
        )

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS.get(self.role, frozenset())


_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <key>`")


def current_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_header)],
) -> Principal:
    """The key's principal; 401 without a key or with an unknown, wrong or revoked one."""
    presented = bearer.credentials if bearer is not None else header
    if not presented:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = authenticate(request.app.state.store, presented)
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return Principal.from_key(key)


def require(permission: Permission):  # noqa: ANN201 - a FastAPI dependency
    """A dependency that returns the caller when their role grants `permission`, else 403."""

    def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.can(permission):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"role {principal.role!r} lacks permission {permission.value!r}"
            )
        return principal

    return dependency
