"""TLS for MySQL/MariaDB connections, from the node URL's options (``ssl-mode``, ``ssl-ca``,
``ssl-cert``, ``ssl-key``; underscores accepted), with MySQL's meaning of the modes: DISABLED
and PREFERRED connect in clear, REQUIRED encrypts without checking the certificate, VERIFY_CA
checks it against the CA, VERIFY_IDENTITY also checks the host name. Contexts are built once per
distinct settings. It imports only ``keyturn.core`` and the standard library.
"""

from __future__ import annotations

import ssl

from keyturn.core.errors import EngineRejected
from keyturn.core.model import NodeAddress


class TlsContexts:
    def __init__(self) -> None:
        self._contexts: dict[tuple[str, str, str, str], ssl.SSLContext] = {}

    def context(self, address: NodeAddress) -> ssl.SSLContext | None:
        """The TLS context the node URL asks for (None: plain TCP)."""
        options = {k.replace("_", "-").lower(): v for k, v in address.options.items()}
        mode = options.get("ssl-mode", "").upper().replace("-", "_")
        if mode in ("", "DISABLED", "PREFERRED"):
            return None
        if mode not in ("REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"):
            raise EngineRejected(f"the node URL for {address.endpoint} has an unknown ssl-mode")
        ca = options.get("ssl-ca", "")
        # A client certificate for servers that require one (REQUIRE X509).
        cert, cert_key = options.get("ssl-cert", ""), options.get("ssl-key", "")
        key = (mode, ca, cert, cert_key)
        context = self._contexts.get(key)
        if context is None:
            try:
                context = ssl.create_default_context(cafile=ca or None)
                if cert:
                    context.load_cert_chain(cert, cert_key or None)
            except (OSError, ValueError, ssl.SSLError):
                raise EngineRejected(
                    f"the TLS files named by the node URL for {address.endpoint} do not load"
                ) from None
            if mode != "VERIFY_IDENTITY":
                context.check_hostname = False
            if mode == "REQUIRED":
                context.verify_mode = ssl.CERT_NONE
            self._contexts[key] = context
        return context
