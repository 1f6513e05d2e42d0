"""The Kubernetes target: manifests for a deployment (``manifests``), where they go (``sinks``:
a cluster or a folder), server-side apply (``apply``) and the ``Target`` itself (``target``)."""
