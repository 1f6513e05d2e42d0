"""Promotion gates ("model unit tests"): one module per gate, run out of process by
:mod:`greenbutton.gates.worker` so the control plane never unpickles a model."""
