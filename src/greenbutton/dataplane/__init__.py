"""The serving runtime: one ASGI app per model, protocols over a shared data plane."""
