"""Errors answered in Klaviyo's shape: `{"errors": [{id, status, code, title, detail, source, ...}]}`."""

from __future__ import annotations

import uuid


class ApiError(Exception):
    """An error answered in Klaviyo's shape."""

    def __init__(
        self, status: int, code: str, title: str, detail: str, source: dict | None = None, headers=None
    ):
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.source = source or {}
        self.headers = headers or {}

    def body(self) -> dict:
        return {
            "errors": [
                {
                    "id": str(uuid.uuid4()),
                    "status": self.status,
                    "code": self.code,
                    "title": self.title,
                    "detail": self.detail,
                    "source": self.source,
                    "links": {},
                    "meta": {},
                }
            ]
        }


def invalid(detail: str, parameter: str | None = None, pointer: str | None = None) -> ApiError:
    """A 400: a query parameter (`parameter`) or a part of the body (`pointer`) the API refuses."""
    source = {"parameter": parameter} if parameter else {"pointer": pointer or "/data/"}
    return ApiError(400, "invalid", "Invalid input.", detail, source)


def not_found(detail: str) -> ApiError:
    return ApiError(404, "not_found", "Not found.", detail)


def throttled(seconds: int) -> ApiError:
    """A 429 with Klaviyo's body and its `Retry-After` (whole seconds)."""
    return ApiError(
        429,
        "throttled",
        "Request was throttled.",
        f"Request was throttled. Expected available in {seconds} seconds.",
        {"pointer": "/data/"},
        {"Retry-After": str(seconds)},
    )


def permission_denied(detail: str) -> ApiError:
    return ApiError(
        403,
        "permission_denied",
        "You do not have permission to perform this action.",
        detail,
        {"pointer": "/data/"},
    )


def authentication_failed() -> ApiError:
    return ApiError(
        401,
        "authentication_failed",
        "Incorrect authentication credentials.",
        "Missing or invalid private key.",
        {"pointer": "/data/"},
    )
