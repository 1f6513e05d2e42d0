"""Serving tests use the digits fixtures of tests/conftest.py."""
