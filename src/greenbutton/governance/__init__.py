"""Governance: who may do what (permissions), tokens, transition requests with approval,
and the tamper-evident audit log."""
