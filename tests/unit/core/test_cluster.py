"""Pure parts of the cluster model: error codes recorded by one node map back to their domain
error on another (``error_class``), and ``LeaseLost`` is an internal error to clients."""

from __future__ import annotations

from keyturn.core.errors import (
    AccountCannotLogin,
    DomainError,
    InternalError,
    LeaseLost,
    VerificationFailed,
    error_class,
)


def test_error_codes_map_back_to_their_classes() -> None:
    assert error_class("VerificationFailed") is VerificationFailed
    assert error_class("AccountCannotLogin") is AccountCannotLogin
    assert error_class("DomainError") is DomainError
    assert error_class("NoSuchCode") is None
    assert error_class(None) is None


def test_a_lost_lease_is_an_internal_error() -> None:
    assert issubclass(LeaseLost, InternalError) and error_class("LeaseLost") is LeaseLost
