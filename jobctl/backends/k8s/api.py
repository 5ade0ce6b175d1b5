"""Talking to the Kubernetes API: the client from the kubeconfig, the default namespace, and every call bounded in
time, retried when the failure is transient, and turned into one readable BackendError when it is not.

Transient, and retried with exponential back-off (at most ``retries`` attempts): 429 from API Priority and
Fairness (after its ``Retry-After``; the request was rejected before it ran, so a create is retried too), 5xx and
dropped or timed-out connections (for idempotent calls only, and only once the server has answered before: a
first call that cannot connect is a configuration error, reported at once).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from jobctl.backends.base import BackendError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

T = TypeVar("T")
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
RETRIED_STATUS = (429, 500, 502, 503, 504)
REQUEST_TIMEOUT = (10.0, 60.0)  # (connect, read) seconds: a half-open connection fails instead of hanging
MAX_RETRY_AFTER = 60.0


class ApiError(BackendError):
    """An error answer of the API server (``status``: its HTTP code)."""

    def __init__(self, message: str, status: int, exit_code: int) -> None:
        super().__init__(message, exit_code=exit_code)
        self.status = status


def api_client(context: str | None) -> ApiClient:
    """A client from the kubeconfig (``--context`` or its current context), else the in-cluster service account."""
    from kubernetes import client, config

    try:
        # The client reads $KUBECONFIG once, at import; read it now so a changed environment counts.
        return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"), context=context)
    except (config.ConfigException, FileNotFoundError, OSError) as exc:
        if context is not None:
            raise BackendError(f"--context {context}: cannot load it from the kubeconfig: {exc}", exit_code=2) from None
        try:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            raise BackendError(
                f"no Kubernetes cluster configured: {exc}. Set KUBECONFIG or --context, or use --backend local",
                exit_code=2,
            ) from None
        return client.ApiClient(configuration)


def default_namespace(context: str | None, fallback: str) -> str:
    """``-n``'s default, as kubectl's: the kubeconfig context's namespace, else (in a pod) the service account's."""
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG"))
    except (config.ConfigException, OSError, TypeError, ValueError):
        with contextlib.suppress(OSError):
            namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
            if namespace:
                return namespace
        return fallback
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or fallback)


class Caller:
    """Runs API calls with a request timeout and bounded retries; errors name what failed and why."""

    def __init__(self, host: str, *, retries: int = 5, backoff: float = 0.5, timeout: Any = REQUEST_TIMEOUT) -> None:
        self.host = host
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.sleep: Callable[[float], None] = time.sleep
        self.reached = False  # the server answered once: later connection failures are transient

    def __call__(
        self, what: str, fn: Callable[..., T], *args: Any, not_found_ok: bool, idempotent: bool = True, **kwargs: Any
    ) -> T | None:
        from kubernetes.client.exceptions import ApiException
        from pydantic import ValidationError
        from urllib3.exceptions import HTTPError

        kwargs.setdefault("_request_timeout", self.timeout)
        for attempt in range(1, self.retries + 1):
            last = attempt == self.retries
            try:
                result = fn(*args, **kwargs)
                self.reached = True
                return result
            except ValidationError as exc:
                raise validation_error(what, exc) from None
            except ApiException as exc:
                self.reached = True
                if exc.status == 404 and not_found_ok:
                    return None
                retried = exc.status == 429 or (idempotent and exc.status in RETRIED_STATUS)
                if last or not retried:
                    raise api_error(what, exc) from None
                delay = self.retry_after(exc) if exc.status == 429 else None
            except HTTPError as exc:
                if last or not (idempotent and self.reached):
                    raise BackendError(f"{what}: cannot reach the Kubernetes API at {self.host}: {exc}") from None
                delay = None
            self.sleep(delay if delay is not None else self.backoff_delay(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def backoff_delay(self, attempt: int) -> float:
        base = min(self.backoff * 2 ** (attempt - 1), 30.0)
        return base * random.uniform(0.5, 1.0)  # jitter: many clients do not retry in lockstep

    def retry_after(self, exc: Any) -> float | None:
        """The server's Retry-After (seconds), capped."""
        value = str((exc.headers or {}).get("Retry-After") or "")
        with contextlib.suppress(ValueError):  # seconds; the HTTP-date form is not used by kube-apiserver
            return min(max(float(value), 0.0), MAX_RETRY_AFTER)
        return None


def api_error(what: str, exc: Any) -> ApiError:
    """The server's answer as one paragraph, with a hint where the fix is known."""
    message = exc.reason
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        message = json.loads(exc.body or "{}").get("message", message)
    hint = ""
    if exc.status == 401:
        hint = (
            " (the cluster rejected jobctl's credentials: the kubeconfig's token or certificate is expired or "
            "wrong; log in again, or for the ServiceAccount in k8s/rbac.yaml `kubectl create token jobctl -n NS`)"
        )
    elif exc.status == 403:
        hint = " (the Role in k8s/rbac.yaml grants what jobctl needs)"
    code = 2 if exc.status in (400, 401, 403, 409, 422) else 1
    return ApiError(f"{what}: HTTP {exc.status} {message}{hint}", status=exc.status, exit_code=code)


def validation_error(what: str, exc: Any) -> BackendError:
    """The client's pydantic checks: on jobctl's arguments (titled "<Api>.<method>") or on the server's answer."""
    if "Api." in str(getattr(exc, "title", "")):
        return BackendError(f"{what}: the Kubernetes client rejected jobctl's arguments (a jobctl bug): {exc}")
    return BackendError(f"{what}: the API server's answer is not what the client expects: {exc}")
