"""Webhooks: registration, the outbox written with the change, signed delivery to a real HTTP
receiver, retries recorded per try, order per endpoint, who hears what, refused addresses.
Deliveries are sent here by calling the workers' delivery round directly (a worker process sends
them in tests/e2e/test_service_e2e.py)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook as Verifier

from app.db import session_scope
from app.models import WebhookDelivery
from app.services import keys
from app.services.access import Access
from app.webhooks import endpoints
from app.webhooks.delivery import deliver_due
from tests.conftest import make_version


class Receiver:
    """A real HTTP endpoint on loopback: records every request, answers 500 to the first `fail_first`."""

    def __init__(self, fail_first: int = 0):
        self.requests: list[tuple[dict, bytes, int]] = []
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                code = 500 if len(outer.requests) < outer.fail_first else 204
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body, code))
                self.send_response(code)
                self.end_headers()

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> list[tuple[dict, bytes]]:
        return [(h, b) for h, b, code in self.requests if code < 300]


@pytest.fixture
def hooked(settings, client_for):
    """(settings allowing loopback endpoints and retrying at once, client, receiver factory)"""
    s = settings.model_copy(update={"webhook_allow_private": True, "webhook_retry_after_seconds": [0.0]})
    c, _ = client_for(s)
    receivers = []

    def receiver(fail_first: int = 0) -> Receiver:
        receivers.append(Receiver(fail_first))
        return receivers[-1]

    yield s, c, receiver
    for r in receivers:
        r.server.shutdown()


def deliver_all(settings, rounds: int = 20) -> None:
    for _ in range(rounds):
        if not deliver_due(settings):
            return
    raise AssertionError("deliveries still due after 20 rounds")


def queued_job(c, pairs_npz) -> str:
    ds = c.post("/v1/datasets", files={"file": ("pairs.npz", pairs_npz.read_bytes())},
                data={"kind": "embedding_pairs", "name": "hooks"}).json()["id"]
    r = c.post("/v1/training-jobs", json={"dataset_id": ds, "model": "hooked", "architecture": {"kind": "linear"}})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_a_cancelled_job_reaches_the_endpoint_signed_and_verifiable(hooked, pairs_npz):
    settings, c, receiver = hooked
    rx = receiver()
    r = c.post("/v1/webhooks", json={"url": rx.url, "description": "ci"})
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["secret"].startswith("whsec_") and hook["events"][0] == "job.succeeded"
    assert c.get(f"/v1/webhooks/{hook['id']}").json()["secret"] is None  # shown once
    job_id = queued_job(c, pairs_npz)
    assert c.post(f"/v1/training-jobs/{job_id}/cancel").status_code == 200
    assert rx.requests == []  # the API only wrote the outbox row; a worker sends it
    deliver_all(settings)
    [(headers, body)] = rx.accepted()
    payload = Verifier(hook["secret"]).verify(body, headers)  # raises if the signature does not match
    assert payload["type"] == "job.cancelled" and payload["data"]["id"] == job_id and payload["data"]["status"] == "cancelled"
    with pytest.raises(Exception):
        Verifier(hook["secret"]).verify(body.replace(b"cancelled", b"succeeded"), headers)
    [delivery] = c.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
    assert delivery["id"] == headers["webhook-id"] and delivery["status"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [204]


def test_an_endpoint_failing_twice_gets_the_event_once_by_id_after_three_recorded_tries(hooked, pairs_npz):
    settings, c, receiver = hooked
    rx = receiver(fail_first=2)
    hook = c.post("/v1/webhooks", json={"url": rx.url, "events": ["job.cancelled"]}).json()
    c.post(f"/v1/training-jobs/{queued_job(c, pairs_npz)}/cancel")
    deliver_all(settings)
    ids = [h["webhook-id"] for h, _, _ in rx.requests]
    assert len(ids) == 3 and len(set(ids)) == 1  # the same id on every retry
    assert len({h["webhook-id"] for h, _ in rx.accepted()}) == 1
    [delivery] = c.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"]
    assert [(a["number"], a["status_code"]) for a in delivery["attempts"]] == [(1, 500), (2, 500), (3, 204)]
    assert delivery["attempts"][0]["error"] == "the endpoint answered 500" and delivery["status"] == "delivered"


def test_events_reach_an_endpoint_in_the_order_they_happened_even_across_retries(hooked, pairs_npz):
    settings, c, receiver = hooked
    rx = receiver(fail_first=1)
    c.post("/v1/webhooks", json={"url": rx.url})
    jobs = [queued_job(c, pairs_npz) for _ in range(3)]
    for job_id in jobs:
        c.post(f"/v1/training-jobs/{job_id}/cancel")
    ds = c.get("/v1/datasets").json()["data"][0]["id"]
    version, _ = make_version(c, settings, ds, model="hooked", architecture={"kind": "linear"})
    assert c.put("/v1/models/hooked/aliases/prod", json={"version": 1}).status_code == 200
    deliver_all(settings)
    got = [json.loads(b) for _, b in rx.accepted()]
    assert [(p["type"], p["data"].get("id")) for p in got[:3]] == [("job.cancelled", j) for j in jobs]
    assert got[3]["type"] == "model.version.created" and got[3]["data"]["id"] == version["id"]
    # `default` moves too when the version passes its promotion gate; the hand move to prod comes last.
    assert [(p["type"], p["data"]["alias"]) for p in got[4:-1]] in ([], [("model.alias.moved", "default")])
    assert got[-1]["type"] == "model.alias.moved" and got[-1]["data"] == {
        "object": "model.alias", "model": "hooked", "alias": "prod", "version": 1, "model_version_id": version["id"]}


def test_a_key_hears_about_its_own_resources_and_an_admin_key_about_all(settings, client, pairs_npz):
    from app.webhooks.outbox import _listeners

    s = settings.model_copy(update={"webhook_allow_private": True})
    with session_scope(s.database) as session:
        a, _ = keys.create_key(session, "train", "a")
        b, _ = keys.create_key(session, "train", "b")
        admin, _ = keys.create_key(session, "admin", "root")
    with session_scope(s.database) as session:
        hook_a, _ = endpoints.create(session, s, Access(a.id, False), "http://127.0.0.1:9/a", None, None)
        hook_admin, _ = endpoints.create(session, s, Access(admin.id, True), "http://127.0.0.1:9/x", ["job.failed"], None)
        assert [h.id for h in _listeners(session, a.id, "job.failed")] == [hook_a.id, hook_admin.id]
        assert [h.id for h in _listeners(session, b.id, "job.failed")] == [hook_admin.id]
        assert [h.id for h in _listeners(session, b.id, "job.cancelled")] == []
        keys.revoke_key(session, a.id)
    with session_scope(s.database) as session:
        assert [h.id for h in _listeners(session, a.id, "job.failed")] == [hook_admin.id]  # a revoked key hears nothing


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:8000/hook", "internal address"),
    ("http://10.1.2.3/hook", "internal address"),
    ("http://[::1]/hook", "internal address"),
    ("http://169.254.169.254/latest/meta-data", "internal address"),
    ("ftp://example.com/hook", "http:// or https://"),
    ("http://user:pw@example.com/hook", "credentials"),
    ("not a url", "http:// or https://"),
])
def test_internal_or_malformed_urls_are_refused_naming_the_url(client, url, why):
    c, _ = client
    r = c.post("/v1/webhooks", json={"url": url})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "url" and why in r.json()["error"]["message"]


def test_unknown_event_types_and_foreign_ids_are_clear_errors(hooked):
    _, c, _ = hooked
    r = c.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h", "events": ["job.exploded"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "events" and "job.exploded" in r.json()["error"]["message"]
    assert c.get("/v1/webhooks/wh_0000000000000000000").status_code == 404
    assert c.delete("/v1/webhooks/nope").status_code == 404


def test_nothing_is_recorded_for_a_change_that_rolls_back(hooked, pairs_npz):
    settings, c, receiver = hooked
    c.post("/v1/webhooks", json={"url": receiver().url})
    job_id = queued_job(c, pairs_npz)
    from app.jobs import lifecycle, states

    with pytest.raises(RuntimeError):
        with session_scope(settings.database) as session:
            assert lifecycle.move(session, job_id, states.CANCELLED)
            raise RuntimeError("the transaction fails after the move")
    with session_scope(settings.database) as session:
        assert session.query(WebhookDelivery).count() == 0
