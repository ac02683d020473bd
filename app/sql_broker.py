"""The embedded broker: kombu's SQLAlchemy transport with a configurable polling interval.

kombu's `sqla+` transport hands every transport option to `create_engine`, which refuses
`polling_interval`, so its idle workers poll once a second. This subclass takes the option out
first; `app.queue` registers it as the `cubesqla+` scheme and maps `sqla+` URLs onto it.
"""
from __future__ import annotations

from kombu.transport import sqlalchemy as kombu_sqla

POLLING_KEYS = ("polling_interval",)


class Channel(kombu_sqla.Channel):
    def _engine_from_config(self):
        conninfo = self.connection.client
        options = {k: v for k, v in conninfo.transport_options.items() if k not in POLLING_KEYS}
        saved = conninfo.transport_options
        conninfo.transport_options = options
        try:
            return super()._engine_from_config()
        finally:
            conninfo.transport_options = saved


class Transport(kombu_sqla.Transport):
    Channel = Channel
