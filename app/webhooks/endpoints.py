"""Webhook endpoints as the API manages them: register (the signing secret is shown once), list,
show with recent deliveries, delete. An endpoint belongs to the key that registered it and hears
about what that key may see (app/services/access.py)."""
from __future__ import annotations

import base64
import os
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidRequest, NotFound
from app.ids import is_id, new_id
from app.models import Webhook, WebhookAttempt, WebhookDelivery
from app.services.access import Access
from app.settings import Settings
from app.webhooks.addresses import AddressRefused, check_reachable
from app.webhooks.outbox import EVENT_TYPES

MAX_PER_KEY = 20


def create(session: Session, settings: Settings, access: Access, url: str, events: list[str] | None,
           description: str | None) -> tuple[Webhook, str]:
    """The new endpoint and its secret (`whsec_` + base64 of 24 random bytes, as Standard Webhooks has it)."""
    try:
        check_reachable(url, settings.webhook_allow_private)
    except AddressRefused as exc:
        raise InvalidRequest(str(exc), param="url", code="webhook_url_refused") from None
    wanted = list(EVENT_TYPES) if events is None else events
    unknown = [e for e in wanted if e not in EVENT_TYPES]
    if unknown or not wanted:
        raise InvalidRequest(f"events must be a non-empty list of {', '.join(EVENT_TYPES)}; got {unknown or wanted!r}",
                             param="events")
    if len(list_for(session, access)) >= MAX_PER_KEY:
        raise InvalidRequest(f"at most {MAX_PER_KEY} webhooks per key; delete one first", param="url",
                             code="too_many_webhooks")
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    hook = Webhook(id=new_id("webhook"), url=url, secret=secret, events=sorted(set(wanted), key=EVENT_TYPES.index),
                   description=description, owner_key_id=access.key_id, sees_all=access.sees_all, created_at=time.time())
    session.add(hook)
    session.commit()
    return hook, secret


def get(session: Session, webhook_id: str, access: Access) -> Webhook:
    hook = session.get(Webhook, webhook_id) if is_id(webhook_id, "webhook") else None
    if hook is None or hook.owner_key_id != access.key_id:
        raise NotFound(f"no webhook {webhook_id!r}", param="webhook_id")
    return hook


def list_for(session: Session, access: Access) -> list[Webhook]:
    """The caller's own endpoints (an admin key's too: they are its own, not everyone's)."""
    return list(session.scalars(select(Webhook).where(Webhook.owner_key_id == access.key_id
                                                      if access.key_id else Webhook.owner_key_id.is_(None))
                                .order_by(Webhook.id)))


def delete(session: Session, hook: Webhook) -> None:
    session.delete(hook)
    session.commit()


def deliveries(session: Session, hook: Webhook, limit: int) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """The newest deliveries, each with its tries."""
    rows = list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)
                                .order_by(WebhookDelivery.id.desc()).limit(limit)))
    tries: dict[str, list[WebhookAttempt]] = {r.id: [] for r in rows}
    for attempt in session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(tries)))
                                   .order_by(WebhookAttempt.id)):
        tries[attempt.delivery_id].append(attempt)
    return [(r, tries[r.id]) for r in rows]
