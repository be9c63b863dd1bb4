"""The admin API: JSON over HTTP under ``/admin/v1/``, for operators' automation and the web
console, authenticated with admin tokens (``Authorization: Bearer kt_...``).

``keyturn.api.spec`` declares every route once (method, path, parameters, body and answer
schemas); the OpenAPI 3.1 document served at ``/admin/v1/openapi.json`` is generated from those
declarations, and requests are validated against the very same schemas
(``keyturn.api.validation``), so the document cannot drift from what the server accepts.
Handlers (``keyturn.api.handlers``) are thin: they call ``keyturn.service.operator`` and turn its
values into JSON (``keyturn.api.views``). Errors are RFC 9457 problem documents with the domain
error's stable ``code`` (``keyturn.api.problems``). The HTTP layer mounts ``AdminApi``: it asks
it to authenticate the request before reading any body, then reads the body within its bounds.
"""

from __future__ import annotations

from keyturn.api.app import PREFIX, AdminApi, ApiRequest, ApiResponse

__all__ = ["PREFIX", "AdminApi", "ApiRequest", "ApiResponse"]
