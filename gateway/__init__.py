"""The data path: pure protocol codecs, sessions that own the sockets, identity, policy hooks, the audit
publisher and recording. Never imports ``evidence`` internals, ``textual`` or ``weasyprint``."""
