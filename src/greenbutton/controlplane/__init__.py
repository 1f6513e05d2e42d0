"""The control plane: its HTTP API (``api*``), the stable endpoint URLs (``gateway``), the
dashboard, and ``create_control_plane`` that puts them in one app with the controller."""
