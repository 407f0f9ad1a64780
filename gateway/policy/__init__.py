"""The statement policy: facts about each statement, ordered rules, and the session hook that applies them
(docs/policy.md)."""
