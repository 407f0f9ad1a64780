"""Just-in-time approval of single statements: the request record in KV and the rules of a decision."""
