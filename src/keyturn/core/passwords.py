"""Password policies as data, one preset per vendor product, and their validation.

A policy is checked in the service layer before anything is queued, so a bad password is
refused with the vendor's documented code and nothing is half-applied. Messages name the broken
rule, never the password.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from keyturn.core.errors import (
    PasswordCharsetViolation,
    PasswordCompositionViolation,
    PasswordLengthViolation,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CharClass:
    """A named set of characters, e.g. upper-case letters."""

    name: str
    chars: frozenset[str]

    @classmethod
    def of(cls, name: str, chars: str) -> CharClass:
        return cls(name=name, chars=frozenset(chars))


LOWER = CharClass.of("lower-case letters", string.ascii_lowercase)
UPPER = CharClass.of("upper-case letters", string.ascii_uppercase)
DIGITS = CharClass.of("digits", string.digits)


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordPolicy:
    """Length bounds, required character classes and forbidden prefixes.

    Every character must belong to one of ``classes``; ``min_classes`` of them must be present.
    """

    name: str
    min_length: int
    max_length: int
    classes: tuple[CharClass, ...]
    min_classes: int
    forbidden_prefixes: tuple[str, ...] = ()

    def describe(self) -> str:
        names = ", ".join(c.name for c in self.classes)
        rule = f"{self.min_length}-{self.max_length} characters, "
        rule += f"at least {self.min_classes} of: {names}"
        if self.forbidden_prefixes:
            rule += "; must not start with " + " or ".join(repr(p) for p in self.forbidden_prefixes)
        return rule

    def check(self, password: str) -> None:
        """Raise a ``PasswordPolicyViolation`` subclass naming the first rule it breaks."""
        if not self.min_length <= len(password) <= self.max_length:
            raise PasswordLengthViolation(
                f"password must be {self.min_length}-{self.max_length} characters long"
            )
        for prefix in self.forbidden_prefixes:
            if password.startswith(prefix):
                raise PasswordCompositionViolation(f"password must not start with {prefix!r}")
        allowed = frozenset().union(*(c.chars for c in self.classes))
        if any(ch not in allowed for ch in password):
            raise PasswordCharsetViolation("password contains a character that is not allowed")
        present = sum(1 for c in self.classes if any(ch in c.chars for ch in password))
        if present < self.min_classes:
            raise PasswordCompositionViolation(
                f"password must contain at least {self.min_classes} of: "
                + ", ".join(c.name for c in self.classes)
            )


#: TencentDB for Redis ResetPassword, as the SDK documents it.
TENCENT_REDIS = PasswordPolicy(
    name="tencent-redis",
    min_length=8,
    max_length=32,
    classes=(LOWER, UPPER, DIGITS, CharClass.of("symbols", "()~!@#$%^&*-+=_|{}[]:;<>,.?/")),
    min_classes=2,
    forbidden_prefixes=("/",),
)

#: TencentDB for PostgreSQL ResetAccountPassword: all four kinds of characters are required.
TENCENT_POSTGRES = PasswordPolicy(
    name="tencent-postgres",
    min_length=8,
    max_length=32,
    classes=(LOWER, UPPER, DIGITS, CharClass.of("symbols", "()`~!@#$%^&*-+=_|{}[]:;'<>,.?/")),
    min_classes=4,
    forbidden_prefixes=("/",),
)

#: TDSQL MySQL ResetUserPassword / ResetUsersPassword: 8-32 characters, at least two of
#: letters, digits and symbols.
TENCENT_TDMYSQL = PasswordPolicy(
    name="tencent-tdmysql",
    min_length=8,
    max_length=32,
    classes=(
        CharClass.of("letters", string.ascii_letters),
        DIGITS,
        CharClass.of("symbols", string.punctuation),
    ),
    min_classes=2,
)

#: Alibaba Cloud Tair / Redis accounts (R-kvstore 2015-01-01): 8-32 characters, at least three
#: of upper-case, lower-case, digits and ``!@#$%^&*()_+-=``.
ALIBABA_KVSTORE = PasswordPolicy(
    name="alibaba-kvstore",
    min_length=8,
    max_length=32,
    classes=(UPPER, LOWER, DIGITS, CharClass.of("special characters", "!@#$%^&*()_+-=")),
    min_classes=3,
)

#: Huawei Cloud DCS for Redis (v2): 8-64 characters, at least three of lower-case, upper-case,
#: digits and the specials `` `~!@#$^&*()-_=+\|{},<.>/? ``.
HUAWEI_DCS = PasswordPolicy(
    name="huawei-dcs",
    min_length=8,
    max_length=64,
    classes=(
        LOWER,
        UPPER,
        DIGITS,
        CharClass.of("special characters", r"`~!@#$^&*()-_=+\|{},<.>/?"),
    ),
    min_classes=3,
)


#: Length of a generated password, within each policy's bounds.
GENERATED_LENGTH = 24


def generate_password(policy: PasswordPolicy, length: int = GENERATED_LENGTH) -> str:
    """A random password that ``policy`` accepts: ``length`` characters (clamped to the
    policy's bounds) with one of every character class, drawn with ``secrets``."""
    size = max(policy.min_length, min(length, policy.max_length), len(policy.classes))
    pools = [sorted(c.chars) for c in policy.classes]
    alphabet = sorted(frozenset().union(*(c.chars for c in policy.classes)))
    while True:
        chars = [secrets.choice(pool) for pool in pools]
        chars += [secrets.choice(alphabet) for _ in range(size - len(chars))]
        # Fisher-Yates with a CSPRNG, so the required classes are not always first.
        for i in range(len(chars) - 1, 0, -1):
            j = secrets.randbelow(i + 1)
            chars[i], chars[j] = chars[j], chars[i]
        candidate = "".join(chars)
        if not any(candidate.startswith(p) for p in policy.forbidden_prefixes):
            policy.check(candidate)
            return candidate
