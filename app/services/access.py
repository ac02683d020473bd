"""Who owns what: every dataset, training job and model records the API key that created it
(`owner_key_id`); a key sees and acts on its own, an `admin` key on everything. Services take an
`Access` and filter with it; the API builds it from the caller's key (app/api/owners.py).

Another key's resource answers 404, never 403, so a key cannot learn what others have. With auth off
(the embedded quickstart) there are no keys: nothing is recorded and everyone sees everything.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import true
from sqlalchemy.sql.elements import ColumnElement


@dataclass(frozen=True)
class Access:
    key_id: str | None = None  # recorded as owner_key_id on what this caller creates
    sees_all: bool = True      # admin keys, and everyone while auth is off

    def can_see(self, owner_key_id: str | None) -> bool:
        return self.sees_all or owner_key_id == self.key_id

    def where(self, owner_column) -> ColumnElement[bool]:
        """A WHERE clause keeping only rows this caller may see."""
        return true() if self.sees_all else owner_column == self.key_id


EVERYONE = Access()  # internal callers (workers, the CLI) and auth off
