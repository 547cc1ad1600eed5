"""The one exception hierarchy. Every failure a client can see is one of these.

    HedgewayError                      500 api_error
    ├── InvalidRequest                 400 invalid_request_error
    │   └── UnsupportedOperation       400 (e.g. embeddings on a chat-only model)
    ├── AuthenticationFailed           401 authentication_error
    ├── PermissionDenied               403 permission_error
    ├── NotFound                       404 not_found_error (unknown model, unknown route)
    ├── MethodNotAllowed               405
    ├── PayloadTooLarge                413
    ├── RateLimited                    429 rate_limit_error (our own limits; Retry-After)
    │   └── BudgetExceeded             429 code budget_exceeded (names the budget and its reset)
    ├── LimitsUnavailable              503 the limits backend is down and fail-closed is configured
    ├── UpstreamError                  502 upstream_error      fallback_eligible
    │   ├── UpstreamTimeout            504 timeout_error       fallback_eligible
    │   ├── UpstreamRateLimited        429 from upstream       fallback_eligible
    │   ├── DeploymentBusy             503 no slot free within queue_timeout (Hedgeway's queue; Retry-After)
    │   │   └── QueueFull              429 the deployment's queue is full (max_queue)
    │   └── UpstreamRejected           4xx from upstream (the request itself is bad): not eligible
    └── AllDeploymentsFailed           502; 504 if every attempt timed out, 429 if every one was rate
                                       limited or queue-full, 503 if every one was busy (Retry-After);
                                       carries every failure

`ConfigError` is separate: it is raised before serving starts, never rendered to a client.

Foreign exceptions (socket errors, JSON errors, provider payloads) are translated into this tree at one
boundary each (the HTTP adapter for inbound, `providers/*` and `upstream.py` for outbound), so the rest of
the code only ever catches `HedgewayError`. Messages never contain keys or upstream credentials.
"""

from __future__ import annotations

import orjson


class ConfigError(Exception):
    """Invalid configuration; `path` names the offending field (e.g. models.gpt-4o.deployments[1].api_base)."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class HedgewayError(Exception):
    status_code = 500
    type = "api_error"
    code: str | None = None
    fallback_eligible = False
    attempts = 0  # upstream attempts made before this error (set by the fallback loop)

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def to_body(self) -> bytes:
        """The OpenAI error envelope."""
        return orjson.dumps({"error": {"message": self.message, "type": self.type,
                                       "param": self.param, "code": self.code}})


class InvalidRequest(HedgewayError):
    status_code = 400
    type = "invalid_request_error"


class UnsupportedOperation(InvalidRequest):
    code = "unsupported_operation"


class AuthenticationFailed(HedgewayError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(HedgewayError):
    status_code = 403
    type = "permission_error"


class NotFound(HedgewayError):
    status_code = 404
    type = "not_found_error"


class MethodNotAllowed(HedgewayError):
    status_code = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(HedgewayError):
    status_code = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class RateLimited(HedgewayError):
    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExceeded(RateLimited):
    code = "budget_exceeded"


class LimitsUnavailable(HedgewayError):
    status_code = 503
    type = "service_unavailable"
    code = "limits_unavailable"


class UpstreamError(HedgewayError):
    """The deployment failed in a way another deployment might not: connection, 5xx, bad payload."""

    status_code = 502
    type = "upstream_error"
    code = "upstream_failed"
    fallback_eligible = True

    def __init__(self, message: str, *, deployment: str = "", upstream_status: int | None = None,
                 retry_after: float | None = None, **kw):
        super().__init__(message, **kw)
        self.deployment = deployment
        self.upstream_status = upstream_status
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    status_code = 504
    type = "timeout_error"
    code = "upstream_timeout"


class UpstreamRateLimited(UpstreamError):
    status_code = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"


class DeploymentBusy(UpstreamError):
    """Every slot of the deployment (`max_concurrency`) stayed in use for `queue_timeout`: it is busy, not
    broken — the fallback loop moves on without a retry and without counting it against its health."""

    status_code = 503
    type = "service_unavailable"
    code = "queue_timeout"


class QueueFull(DeploymentBusy):
    status_code = 429
    type = "rate_limit_error"
    code = "queue_full"


class UpstreamRejected(UpstreamError):
    """The upstream said the request itself is invalid (4xx): another deployment would say the same."""

    type = "invalid_request_error"
    code = "upstream_rejected"
    fallback_eligible = False

    def __init__(self, message: str, *, status_code: int = 400, **kw):
        super().__init__(message, **kw)
        self.status_code = status_code


class AllDeploymentsFailed(HedgewayError):
    """Every attempt of the plan failed; `failures` keeps each one, in order, for the ledger and logs."""

    code = "all_deployments_failed"

    def __init__(self, failures: list[UpstreamError]):
        self.failures = failures
        for kind in (UpstreamTimeout, QueueFull, UpstreamRateLimited, DeploymentBusy):  # all failed alike
            if failures and all(isinstance(f, kind) for f in failures):
                self.status_code, self.type = kind.status_code, kind.type
                break
        else:
            self.status_code, self.type = 502, "upstream_error"
        headers = None
        if failures and all(isinstance(f, DeploymentBusy) for f in failures):  # every deployment busy
            self.code = failures[0].code if len({f.code for f in failures}) == 1 else "deployments_busy"
            headers = {"retry-after": str(max(1, round(min(f.retry_after or 1 for f in failures))))}
        tried = "; ".join(f"{f.deployment}: {f.message}" for f in failures)
        super().__init__(f"all {len(failures)} attempt(s) failed: {tried}", headers=headers)
