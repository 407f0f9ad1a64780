"""The Textual approver console. Reads the ledger only through ``evidence``'s read API and talks to the
gateway only through NATS."""
