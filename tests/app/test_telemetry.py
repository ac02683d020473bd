"""Request ids and Prometheus metrics, on a minimal app (the service's /metrics is tested with the API)."""
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.telemetry import Telemetry, TelemetryMiddleware


def make_app():
    telemetry = Telemetry()
    app = FastAPI()
    app.add_middleware(TelemetryMiddleware, telemetry=telemetry)

    @app.get("/items/{item_id}")
    def item(item_id: int):
        return {"id": item_id}

    return app, telemetry


def test_request_id_is_returned_and_propagated():
    app, _ = make_app()
    client = TestClient(app)
    made = client.get("/items/1").headers["x-request-id"]
    assert len(made) == 32
    assert client.get("/items/1", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert client.get("/items/1", headers={"x-request-id": "x" * 500}).headers["x-request-id"] != "x" * 500


def test_requests_are_counted_by_route_template_and_status():
    app, telemetry = make_app()
    client = TestClient(app)
    for i in range(3):
        client.get(f"/items/{i}")
    client.get("/items/not-a-number")
    client.get("/nowhere")
    text = telemetry.render().decode()
    assert 'cube_http_requests_total{method="GET",route="/items/{item_id}",status="200"} 3.0' in text
    assert 'cube_http_requests_total{method="GET",route="/items/{item_id}",status="422"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert 'cube_http_request_duration_seconds_count{method="GET",route="/items/{item_id}"} 4.0' in text
