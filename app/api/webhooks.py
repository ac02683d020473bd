"""/v1/webhooks: endpoints told when jobs end and models change (app/webhooks; docs/service.md)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.api.auth import TRAIN
from app.api.deps import SessionDep, SettingsDep
from app.api.owners import AccessDep
from app.models import Webhook
from app.schemas import ListOf, WebhookCreate, WebhookDeliveryOut, WebhookOut
from app.webhooks import endpoints

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=[TRAIN])


def valid_webhook(webhook_id: str, session: SessionDep, access: AccessDep) -> Webhook:
    return endpoints.get(session, webhook_id, access)


WebhookDep = Annotated[Webhook, Depends(valid_webhook)]


@router.post("", status_code=201, response_model=WebhookOut)
def create_webhook(body: WebhookCreate, session: SessionDep, settings: SettingsDep, access: AccessDep) -> WebhookOut:
    """Register an endpoint. The response holds its signing secret, once: keep it to verify deliveries."""
    hook, secret = endpoints.create(session, settings, access, body.url, body.events, body.description)
    return WebhookOut.of(hook, secret)


@router.get("", response_model=ListOf[WebhookOut])
def list_webhooks(session: SessionDep, access: AccessDep) -> ListOf[WebhookOut]:
    """The caller's endpoints."""
    return ListOf[WebhookOut](data=[WebhookOut.of(h) for h in endpoints.list_for(session, access)])


@router.get("/{webhook_id}", response_model=WebhookOut)
def get_webhook(hook: WebhookDep) -> WebhookOut:
    return WebhookOut.of(hook)


@router.delete("/{webhook_id}")
def delete_webhook(hook: WebhookDep, session: SessionDep) -> dict:
    """Remove the endpoint; its pending deliveries are dropped."""
    endpoints.delete(session, hook)
    return {"id": hook.id, "object": "webhook", "deleted": True}


@router.get("/{webhook_id}/deliveries", response_model=ListOf[WebhookDeliveryOut])
def list_deliveries(hook: WebhookDep, session: SessionDep,
                    limit: Annotated[int, Query(ge=1, le=100)] = 20) -> ListOf[WebhookDeliveryOut]:
    """The newest deliveries, each with every try (status code or error, duration)."""
    return ListOf[WebhookDeliveryOut](data=[WebhookDeliveryOut.of(d, t) for d, t in endpoints.deliveries(session, hook, limit)])
