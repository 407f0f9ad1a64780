"""PostgreSQL frontend/backend protocol v3: pure codecs (no I/O) and the upstream password-auth client.

``messages`` frames and builds typed messages, ``startup`` reads the untyped first packet, ``scram`` answers
the upstream server's authentication requests (SCRAM-SHA-256[-PLUS], md5, cleartext).
"""
