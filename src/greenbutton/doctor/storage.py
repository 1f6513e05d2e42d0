"""``greenbutton doctor``: what an artifact-store error means, in words (S3 above all)."""

from __future__ import annotations

import os


def explain_storage_error(error: BaseException) -> str:
    """Name the usual S3 mistakes (endpoint, credentials, bucket) instead of a stack trace."""
    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL", "AWS (MLFLOW_S3_ENDPOINT_URL unset)")
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for item in chain:
        name = type(item).__name__
        code = str(getattr(item, "response", {}).get("Error", {}).get("Code", ""))
        if name == "NoCredentialsError":
            return "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
            return f"cannot reach the S3 endpoint {endpoint}"
        if code in ("NoSuchBucket",):
            return f"the bucket does not exist on {endpoint}: create it"
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
            return f"{endpoint} refused the credentials ({code}): check AWS_ACCESS_KEY_ID, " \
                   "AWS_SECRET_ACCESS_KEY and the bucket policy"
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
