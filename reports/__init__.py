"""PDF evidence packs (jinja2 + weasyprint) that carry their own proofs, and their offline verification.
Reads the ledger only through ``evidence``'s read API."""
