"""/v1/transform is served ahead of FastAPI's router (app/hot_route.py): the answers, the error
shape, the request id and the metrics are those of any route, and other methods still reach the router."""
from __future__ import annotations


def test_the_hot_route_answers_like_any_route(client_for, sqlite_settings):
    c, _ = client_for(sqlite_settings)
    r = c.post("/v1/transform", json={"model": "nope", "input": [[0.1]]}, headers={"x-request-id": "hot-1"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found" and r.headers["x-request-id"] == "hot-1"
    bad = c.post("/v1/transform", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "error" in bad.json()
    metrics = c.get("/metrics").text
    assert 'cube_http_requests_total{method="POST",route="/v1/transform",status="404"} 1.0' in metrics
    assert 'route="/v1/transform",status="400"' in metrics


def test_other_methods_on_the_path_reach_the_router(client_for, sqlite_settings):
    c, _ = client_for(sqlite_settings)
    r = c.get("/v1/transform")
    assert r.status_code == 405 and "error" in r.json()
