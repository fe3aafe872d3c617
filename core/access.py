"""Who may do what: the permissions c360 knows, the roles it ships with, and the principal a
request acts as (a signed-in user or an API token).

Every route declares the one permission it needs (`opt={"permission": ...}`) or that it is
public (`opt={"public": True}`); a guard compares it with the principal's permissions. Roles
live in `governance.roles`, so a deployment can add its own; the built-in ones below are
kept in step with that table by `c360.accounts` and cannot be deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Every permission, with what it allows. A route needs exactly one of them.
PERMISSIONS: dict[str, str] = {
    "dashboards:read": "see the overview, trends and pipeline health",
    "profiles:read": "open customer pages and read profiles through the API",
    "pii:read": "see personal data unmasked where the access policies allow the role",
    "segments:read": "see segments, their counts and members",
    "segments:write": "create, change, delete and share segments",
    "analytics:read": "see RFM, cohorts, lifetime value and trends through the API",
    "exports:create": "download tables as CSV and reports as PDF",
    "reports:read": "see saved reports and their schedules",
    "reports:write": "save, schedule and share reports",
    "identity:write": "undo merges and decide identity reviews",
    "pipeline:read": "see stage lag and the dead-letter queue",
    "pipeline:write": "replay dead-lettered events",
    "governance:read": "see attribute definitions, tracking plans, lineage and F0 runs",
    "governance:write": "change attribute definitions, tracking plans and access policies; run F0",
    "sources:write": "create, rotate and revoke write keys",
    "audit:read": "read the audit log and the compliance report (downloads need exports:create)",
    "users:write": "manage users, roles and API tokens",
    "knowledge:read": "search the marketing knowledge (products, prices, places, promotions)",
    "knowledge:write": "load, change and delete marketing knowledge",
    "agents:read": "see agents' personas, conversations and the escalation queue",
    "agents:write": "change agents' personas, behaviour rules and intent examples",
    "agents:operate": "take escalated conversations and answer customers as an operator",
    "notifications:read": "see notification rules, templates, sends and their outcomes",
    "notifications:write": "change notification rules and templates; send test notifications",
}

_READ_ALL = tuple(name for name in PERMISSIONS if name.endswith(":read"))

#: The roles every deployment has. `admin` holds every permission.
BUILT_IN_ROLES: dict[str, tuple[str, ...]] = {
    "admin": tuple(PERMISSIONS),
    "analyst": (
        "dashboards:read",
        "profiles:read",
        "pii:read",
        "segments:read",
        "segments:write",
        "analytics:read",
        "exports:create",
        "reports:read",
        "reports:write",
        "identity:write",
        "pipeline:read",
        "governance:read",
        "knowledge:read",
        "agents:read",
        "notifications:read",
    ),
    "marketer": (
        "dashboards:read",
        "profiles:read",
        "segments:read",
        "segments:write",
        "analytics:read",
        "exports:create",
        "reports:read",
        "reports:write",
        "knowledge:read",
        "knowledge:write",
        "agents:read",
        "agents:write",
        "agents:operate",
        "notifications:read",
        "notifications:write",
    ),
    "viewer": ("dashboards:read", "analytics:read", "segments:read", "reports:read"),
}

#: What a token from C360_API_TOKENS may do: what the F5 API always allowed it, reading
#: everything (personal data included) and the identity actions.
SETTINGS_TOKEN_PERMISSIONS: tuple[str, ...] = (*_READ_ALL, "identity:write")


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a user signed in through the UI, or an API token."""

    kind: str  # "user" or "token"
    name: str  # the user's login name or the token's label; what the audit log records
    role: str
    permissions: frozenset[str] = field(default_factory=frozenset)
    user_id: int | None = None
    session_id: str | None = None
    csrf_token: str | None = None

    def can(self, permission: str) -> bool:
        """Whether this principal holds `permission`."""
        return permission in self.permissions

    @property
    def actor(self) -> str:
        """How the audit log names this principal: `user:lan` or `token:reporting`."""
        return f"{self.kind}:{self.name}"


def unknown_permissions(permissions: list[str] | tuple[str, ...]) -> list[str]:
    """The names in `permissions` that c360 does not know (a typo in a custom role)."""
    return [name for name in permissions if name not in PERMISSIONS]
