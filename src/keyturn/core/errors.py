"""The one domain error tree, with stable codes that every dialect maps to its vendor's codes.

Each class carries a stable ``code`` and uses its docstring as the default message, so the
documentation and the error cannot disagree. Errors never carry secrets: messages are built from
ids and rule names only. Dialects render these errors (vendor code, HTTP status, envelope) in one
table each; engines and stores translate foreign exceptions into them at their boundary::

    DomainError
    ├── RequestError                 the caller sent something wrong
    │   ├── MalformedRequest         body or envelope cannot be parsed
    │   ├── RequestTooLarge
    │   ├── UnknownAction
    │   ├── UnsupportedVersion
    │   ├── MissingParameter
    │   ├── InvalidParameter         wrong type or shape
    │   ├── InvalidParameterValue    right type, unacceptable value
    │   ├── PasswordEmpty
    │   ├── PasswordPolicyViolation
    │   │   ├── PasswordLengthViolation
    │   │   ├── PasswordCharsetViolation      a character outside every allowed class
    │   │   └── PasswordCompositionViolation  missing classes or a forbidden prefix
    │   ├── PasswordReused           the new password is the current one
    │   ├── OldPasswordMismatch      a change's old password is not the current one
    │   ├── InvalidAccountName
    │   ├── PasswordFreeDenied
    │   └── UnsupportedFeature
    │       └── AccountsUnsupported  the engine has no named accounts (Redis < 6)
    ├── AuthError                    authentication failed
    │   ├── MissingAuthorization
    │   ├── UnknownAccessKey
    │   ├── SignatureInvalid
    │   ├── SignatureExpired
    │   ├── TimestampMalformed       the request's time cannot be read
    │   ├── NonceReused              a replayed request
    │   ├── HostNotServed            signed for a host name this deployment does not serve
    │   ├── TenantMismatch           the request names another tenant than its key's
    │   └── AccessDenied             a policy does not allow the action on the resource
    ├── NotFound
    │   ├── InstanceNotFound
    │   ├── AccountNotFound
    │   ├── TaskNotFound
    │   ├── SecretNotFound           no managed secret of that name (in this tenant)
    │   ├── SecretVersionNotFound    no version with that id or stage
    │   └── RotationFlowNotFound     no rotation flow with that id
    ├── Conflict
    │   ├── OperationInProgress
    │   ├── AccountExists
    │   ├── SecretExists             a managed secret of that name already exists
    │   ├── PasswordChangeLocked     too many wrong old passwords; changes wait
    │   ├── AccountCannotLogin       NOLOGIN, or its validity has expired
    │   ├── AccountLocked            locked by the engine (MySQL ACCOUNT LOCK)
    │   ├── AccountShadowed          a more specific account row takes its logins
    │   └── ProtectedAccount         keyturn's own admin login or a superuser (opt-in only)
    ├── EngineError                  the database engine refused or could not be reached
    │   ├── EngineUnavailable
    │   ├── EngineRejected
    │   │   └── AccountPermissionDenied  keyturn's admin may not change this account
    │   ├── VerificationFailed
    │   └── OperationTimedOut        a synchronous API's deadline passed; the task goes on
    ├── RequestThrottled             over the rate limit of the tenant and action
    └── InternalError
        ├── LeaseLost                this node no longer holds the task's lease
        └── StoreUnavailable         the store database cannot be reached (within its timeout)
"""

from __future__ import annotations


class DomainError(Exception):
    """An operation failed."""

    code = "DomainError"

    def __init__(self, message: str | None = None) -> None:
        text = message if message is not None else (type(self).__doc__ or self.code).strip()
        super().__init__(text)
        self.message = text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class RequestError(DomainError):
    """The request is not acceptable."""

    code = "RequestError"


class MalformedRequest(RequestError):
    """The request body could not be parsed."""

    code = "MalformedRequest"


class RequestTooLarge(RequestError):
    """The request body is larger than the server accepts."""

    code = "RequestTooLarge"


class UnknownAction(RequestError):
    """The requested action does not exist."""

    code = "UnknownAction"


class UnsupportedVersion(RequestError):
    """The requested API version does not exist for this action."""

    code = "UnsupportedVersion"


class MissingParameter(RequestError):
    """A required parameter is missing."""

    code = "MissingParameter"


class InvalidParameter(RequestError):
    """A parameter has the wrong type or shape."""

    code = "InvalidParameter"


class InvalidParameterValue(RequestError):
    """A parameter value is not acceptable."""

    code = "InvalidParameterValue"


class PasswordEmpty(InvalidParameterValue):
    """A password is required unless password-free mode is requested."""

    code = "PasswordEmpty"


class PasswordPolicyViolation(InvalidParameterValue):
    """The password does not meet the password rules."""

    code = "PasswordPolicyViolation"


class PasswordLengthViolation(PasswordPolicyViolation):
    """The password is too short or too long."""

    code = "PasswordLengthViolation"


class PasswordCharsetViolation(PasswordPolicyViolation):
    """The password contains a character that is not allowed."""

    code = "PasswordCharsetViolation"


class PasswordCompositionViolation(PasswordPolicyViolation):
    """The password lacks required kinds of characters or starts with a forbidden prefix."""

    code = "PasswordCompositionViolation"


class PasswordReused(InvalidParameterValue):
    """The new password must differ from the current one."""

    code = "PasswordReused"


class OldPasswordMismatch(InvalidParameterValue):
    """The old password is not the account's current password."""

    code = "OldPasswordMismatch"


class InvalidAccountName(InvalidParameterValue):
    """The account name is not valid."""

    code = "InvalidAccountName"


class PasswordFreeDenied(InvalidParameterValue):
    """Password-free mode is not allowed for this instance."""

    code = "PasswordFreeDenied"


class UnsupportedFeature(RequestError):
    """The instance or server does not support this operation."""

    code = "UnsupportedFeature"


class AccountsUnsupported(UnsupportedFeature):
    """The engine has no named accounts (Redis before 6 has no ACL users)."""

    code = "AccountsUnsupported"


class AuthError(DomainError):
    """Authentication failed."""

    code = "AuthError"


class MissingAuthorization(AuthError):
    """The request carries no valid authorization."""

    code = "MissingAuthorization"


class UnknownAccessKey(AuthError):
    """The access key does not exist or is disabled."""

    code = "UnknownAccessKey"


class SignatureInvalid(AuthError):
    """The request signature does not match."""

    code = "SignatureInvalid"


class SignatureExpired(AuthError):
    """The request timestamp is outside the accepted clock window."""

    code = "SignatureExpired"


class TimestampMalformed(AuthError):
    """The request's timestamp is not in the expected format."""

    code = "TimestampMalformed"


class NonceReused(AuthError):
    """The request's nonce was already used: the request is a replay."""

    code = "NonceReused"


class HostNotServed(AuthError):
    """The request was signed for a host name this deployment does not serve."""

    code = "HostNotServed"


class TenantMismatch(AuthError):
    """The request names a tenant (project or account) other than its access key's."""

    code = "TenantMismatch"


class AccessDenied(AuthError):
    """The access key's policies do not allow this action on this resource."""

    code = "AccessDenied"


class NotFound(DomainError):
    """The resource does not exist."""

    code = "NotFound"


class InstanceNotFound(NotFound):
    """The instance does not exist."""

    code = "InstanceNotFound"


class AccountNotFound(NotFound):
    """The account does not exist on the instance."""

    code = "AccountNotFound"


class TaskNotFound(NotFound):
    """The task does not exist."""

    code = "TaskNotFound"


class SecretNotFound(NotFound):
    """The secret does not exist."""

    code = "SecretNotFound"


class SecretVersionNotFound(NotFound):
    """The secret has no version with that id or stage."""

    code = "SecretVersionNotFound"


class RotationFlowNotFound(NotFound):
    """The rotation request does not exist."""

    code = "RotationFlowNotFound"


class Conflict(DomainError):
    """The resource is in a state that does not allow this operation."""

    code = "Conflict"


class OperationInProgress(Conflict):
    """Another task on the same instance account is still running."""

    code = "OperationInProgress"


class AccountExists(Conflict):
    """The account already exists on the instance."""

    code = "AccountExists"


class SecretExists(Conflict):
    """A secret with that name already exists."""

    code = "SecretExists"


class PasswordChangeLocked(Conflict):
    """Password changes on this account are locked after too many wrong old passwords."""

    code = "PasswordChangeLocked"


class AccountCannotLogin(Conflict):
    """The account cannot log in (it has no login right or its validity has expired), so a new
    password could not be verified."""

    code = "AccountCannotLogin"


class AccountLocked(Conflict):
    """The account is locked on the engine; a new password would not let it log in, so the
    reset is refused (unlock it first) rather than silently applied."""

    code = "AccountLocked"


class AccountShadowed(Conflict):
    """Another account row for the same user with a more specific host matches the same
    clients (MySQL ``'app'@'127.0.0.1'`` before ``'app'@'%'``), so a new password on this row
    would not be the one those clients log in with."""

    code = "AccountShadowed"


class ProtectedAccount(Conflict):
    """The account is one keyturn logs in with, or a superuser: the vendor APIs may reset it
    only on an instance that opts in (``allow_admin_reset = true``)."""

    code = "ProtectedAccount"


class EngineError(DomainError):
    """The database engine failed."""

    code = "EngineError"


class EngineUnavailable(EngineError):
    """The instance's nodes are not reachable or not healthy."""

    code = "EngineUnavailable"


class EngineRejected(EngineError):
    """The database engine refused the operation."""

    code = "EngineRejected"


class AccountPermissionDenied(EngineRejected):
    """The administrator account keyturn logs in with may not change this account (for example
    a superuser account while the administrator is not a superuser)."""

    code = "AccountPermissionDenied"


class VerificationFailed(EngineError):
    """A login with the new credential did not succeed."""

    code = "VerificationFailed"


class OperationTimedOut(EngineError):
    """The operation did not finish before the deadline; it goes on as a task."""

    code = "OperationTimedOut"


class RequestThrottled(DomainError):
    """Too many requests of this action for the tenant; retry later."""

    code = "RequestThrottled"


class InternalError(DomainError):
    """An internal error occurred."""

    code = "InternalError"


class LeaseLost(InternalError):
    """This node no longer holds the task's lease (another node claimed it, or this node could
    not renew it in time): it must stop changing the task and its engine, which the lease's
    holder carries on."""

    code = "LeaseLost"


class StoreUnavailable(InternalError):
    """The service is temporarily unavailable; retry later."""

    code = "StoreUnavailable"


def error_class(code: str | None) -> type[DomainError] | None:
    """The ``DomainError`` class whose ``code`` is ``code`` (a failure recorded in the store by
    another node), or None."""
    if code is None:
        return None
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        if cls.code == code:
            return cls
        pending.extend(cls.__subclasses__())
    return None
