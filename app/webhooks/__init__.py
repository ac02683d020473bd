"""Webhooks: endpoints registered per API key are told when jobs end and models change.

    endpoints.py   register, list, show, delete (the API's side)
    addresses.py   which URLs may be called (no loopback or private networks unless allowed)
    outbox.py      events recorded in the transaction that makes them true
    delivery.py    a worker signs (Standard Webhooks) and sends them, with retries and backoff
"""
