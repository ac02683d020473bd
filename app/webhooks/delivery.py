"""Sending webhook deliveries, from the workers (a thread of each worker's main process).

Each endpoint gets its deliveries one at a time, oldest first, so the events of a job arrive in the
order they happened; a delivery is retried with backoff until the endpoint answers 2xx or
`webhook_max_attempts` tries have failed (waiting `webhook_retry_after_seconds` between tries), and every try is recorded. Several workers share the
work: a delivery is claimed with one conditional UPDATE, so only one of them sends each try.

Signed per Standard Webhooks: headers `webhook-id` (the delivery id, the same on every retry, for the
receiver to drop repeats), `webhook-timestamp` and `webhook-signature` (HMAC-SHA256 over
"id.timestamp.body" with the endpoint's secret), made by the `standardwebhooks` package.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone

import httpx
from sqlalchemy import func, select, update
from standardwebhooks import Webhook as Signer

from app.db import session_scope
from app.models import Webhook, WebhookAttempt, WebhookDelivery
from app.settings import Settings
from app.webhooks.addresses import AddressRefused, check_reachable

log = logging.getLogger("cube.webhooks")

CLAIM_SECONDS = 120.0  # a try in flight keeps other workers off its delivery this long (then it is retried)


def _due(settings: Settings, limit: int) -> list[str]:
    """Per endpoint its oldest pending delivery, where that one is due."""
    now = time.time()
    with session_scope(settings.database) as session:
        oldest = (select(func.min(WebhookDelivery.id)).where(WebhookDelivery.status == "pending")
                  .group_by(WebhookDelivery.webhook_id))
        return list(session.scalars(select(WebhookDelivery.id).where(WebhookDelivery.id.in_(oldest),
                                                                    WebhookDelivery.next_attempt_at <= now)
                                    .order_by(WebhookDelivery.id).limit(limit)))


def _claim(settings: Settings, delivery_id: str) -> bool:
    now = time.time()
    with session_scope(settings.database) as session:
        result = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending",
                   WebhookDelivery.next_attempt_at <= now)
            .values(next_attempt_at=now + CLAIM_SECONDS, attempts=WebhookDelivery.attempts + 1)
            .execution_options(synchronize_session=False))
        return result.rowcount == 1


def _post(settings: Settings, url: str, secret: str, delivery_id: str, body: str) -> tuple[int | None, str | None]:
    """(status code, None) or (None, why it could not be sent)."""
    try:
        check_reachable(url, settings.webhook_allow_private)
    except AddressRefused as exc:
        return None, str(exc)
    sent_at = datetime.now(timezone.utc)
    headers = {"content-type": "application/json", "user-agent": "cube-service-webhooks",
               "webhook-id": delivery_id, "webhook-timestamp": str(int(sent_at.timestamp())),
               "webhook-signature": Signer(secret).sign(delivery_id, sent_at, body)}
    try:
        response = httpx.post(url, content=body.encode(), headers=headers, timeout=settings.webhook_timeout_seconds,
                              follow_redirects=False)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    return response.status_code, None


def send(settings: Settings, delivery_id: str) -> str | None:
    """One try at a claimed delivery; returns its status after the try (None if it vanished)."""
    with session_scope(settings.database) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        hook = session.get(Webhook, delivery.webhook_id) if delivery else None
        if hook is None:
            return None
        url, secret, number = hook.url, hook.secret, delivery.attempts
        body = json.dumps(delivery.payload, separators=(",", ":"))
    started = time.perf_counter()
    code, error = _post(settings, url, secret, delivery_id, body)
    elapsed_ms = (time.perf_counter() - started) * 1000
    ok = code is not None and 200 <= code < 300
    if not ok and error is None:
        error = f"the endpoint answered {code}"
    with session_scope(settings.database) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return None
        session.add(WebhookAttempt(delivery_id=delivery_id, number=number, status_code=code,
                                   error=None if ok else error, duration_ms=elapsed_ms, at=time.time()))
        if ok:
            delivery.status, delivery.finished_at = "delivered", time.time()
        elif number >= settings.webhook_max_attempts:
            delivery.status, delivery.finished_at = "failed", time.time()
            log.warning("webhook %s to %s failed after %d tries: %s", delivery_id, url, number, error)
        else:
            waits = settings.webhook_retry_after_seconds or [0.0]
            delivery.next_attempt_at = time.time() + waits[min(number, len(waits)) - 1]
        return delivery.status


def deliver_due(settings: Settings, limit: int = 50) -> int:
    """Send every due delivery this worker can claim; the number of tries made."""
    tries = 0
    for delivery_id in _due(settings, limit):
        if _claim(settings, delivery_id):
            send(settings, delivery_id)
            tries += 1
    return tries
