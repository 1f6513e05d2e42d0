"""Keeps deployments in line with the lifecycle: reconcile loop, routes, deploy targets."""
