"""The evidence service: stream consumer, append-only ledger store, RFC 9162 Merkle tree, signed
checkpoints, proofs, PCI DSS mapping, verification and the read API that ``tui`` and ``reports`` use."""
