"""Webhook events are recorded in the transaction that makes them true (the outbox pattern): a job's
end, a new version or an alias move notes itself on the session, and just before that session
commits the notes become one `webhook_deliveries` row per endpoint that wants the event. So an event
is never sent for something that was rolled back, and never lost for something that committed; the
workers send the rows later (app/webhooks/delivery.py), and the API never waits on an endpoint.

The payload is built at commit, from the rows as the transaction leaves them (a job's payload then
has the version registered in the same transaction)."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import event, or_, select
from sqlalchemy.orm import Session

from app.ids import new_id
from app.models import ApiKey, ModelAlias, ModelVersion, RegisteredModel, TrainingJob, Webhook, WebhookDelivery

JOB_EVENTS = ("job.succeeded", "job.failed", "job.cancelled")
EVENT_TYPES = (*JOB_EVENTS, "model.version.created", "model.alias.moved")
_NOTES = "webhook_notes"


def job_ended(session: Session, job_id: str) -> None:
    """The job reached succeeded, failed or cancelled in this transaction."""
    session.info.setdefault(_NOTES, []).append(("job", (job_id,)))


def version_created(session: Session, version_id: str) -> None:
    session.info.setdefault(_NOTES, []).append(("version", (version_id,)))


def alias_moved(session: Session, model: str, alias: str) -> None:
    session.info.setdefault(_NOTES, []).append(("alias", (model, alias)))


def _job(session: Session, job_id: str) -> tuple[str, str | None, dict[str, Any]] | None:
    job = session.execute(select(TrainingJob).where(TrainingJob.id == job_id).execution_options(populate_existing=True)).scalar()
    if job is None:
        return None
    data = {"id": job.id, "object": "training_job", "status": job.status, "model": job.model_name,
            "dataset_id": job.dataset_id, "model_version_id": job.model_version_id, "attempt": job.attempt,
            "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None}
    return f"job.{job.status}", job.owner_key_id, data


def _version(session: Session, version_id: str) -> tuple[str, str | None, dict[str, Any]] | None:
    version = session.get(ModelVersion, version_id)
    if version is None:
        return None
    owner = session.scalar(select(RegisteredModel.owner_key_id).where(RegisteredModel.name == version.model_name))
    data = {"id": version.id, "object": "model.version", "model": version.model_name, "version": version.version,
            "source_job_id": version.source_job_id, "arch": version.arch}
    return "model.version.created", owner, data


def _alias(session: Session, model: str, alias: str) -> tuple[str, str | None, dict[str, Any]] | None:
    row = session.get(ModelAlias, (model, alias))
    version = session.get(ModelVersion, row.version_id) if row else None
    if version is None:
        return None
    owner = session.scalar(select(RegisteredModel.owner_key_id).where(RegisteredModel.name == model))
    data = {"object": "model.alias", "model": model, "alias": alias, "version": version.version,
            "model_version_id": version.id}
    return "model.alias.moved", owner, data


_BUILDERS = {"job": _job, "version": _version, "alias": _alias}


def _listeners(session: Session, owner_key_id: str | None, event_type: str) -> list[Webhook]:
    """Endpoints that may see a resource of `owner_key_id` and want `event_type` (keys not revoked)."""
    live_key = or_(Webhook.owner_key_id.is_(None),
                   Webhook.owner_key_id.in_(select(ApiKey.id).where(ApiKey.revoked_at.is_(None))))
    sees = or_(Webhook.sees_all.is_(True), Webhook.owner_key_id == owner_key_id) if owner_key_id else Webhook.sees_all.is_(True)
    return [hook for hook in session.scalars(select(Webhook).where(live_key, sees).order_by(Webhook.id))
            if event_type in hook.events]


@event.listens_for(Session, "before_commit")
def _write_deliveries(session: Session) -> None:
    notes = session.info.pop(_NOTES, None)
    if not notes:
        return
    now = time.time()
    stamp = datetime.fromtimestamp(now, timezone.utc).isoformat().replace("+00:00", "Z")
    for kind, key in notes:
        built = _BUILDERS[kind](session, *key)
        if built is None:
            continue
        event_type, owner, data = built
        for hook in _listeners(session, owner, event_type):
            session.add(WebhookDelivery(id=new_id("webhook_delivery"), webhook_id=hook.id, type=event_type,
                                        payload={"type": event_type, "timestamp": stamp, "data": data},
                                        status="pending", attempts=0, next_attempt_at=now, created_at=now))


@event.listens_for(Session, "after_soft_rollback")
def _forget_notes(session: Session, _previous_transaction) -> None:
    session.info.pop(_NOTES, None)
