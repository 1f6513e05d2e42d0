"""Deployment artefacts for targets other than local processes: Kubernetes manifests and
Docker build contexts. Nothing here needs a cluster or a Docker engine to be generated."""
