"""``keyturn tls dev-cert``: make a local CA and a server certificate for development, and say
how to serve with them and how each official SDK is given the CA.

The x509 work is in ``keyturn.cli.devcert``; this module only parses options and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keyturn.cli.devcert import DEFAULT_HOSTS, SERVER_DAYS, DevCerts, make_dev_certs
from keyturn.config import DEFAULT_DATA_DIR

tls = typer.Typer(help="TLS helpers for serving the API over HTTPS.", no_args_is_help=True)


@tls.command("dev-cert")
def dev_cert(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the PEM files.")] = Path(
        DEFAULT_DATA_DIR
    )
    / "tls",
    host: Annotated[
        list[str] | None,
        typer.Option(help="IP address or DNS name the certificate is for (repeatable)."),
    ] = None,
    days: Annotated[int, typer.Option(help="Validity of the server certificate.")] = SERVER_DAYS,
    new_ca: Annotated[
        bool, typer.Option("--new-ca", help="Replace the CA instead of reusing the one there.")
    ] = False,
) -> None:
    """Create a development CA (reused if present) and a server certificate signed by it."""
    hosts = list(host or DEFAULT_HOSTS)
    try:
        files = make_dev_certs(directory, hosts, days=days, new_ca=new_ca)
    except (OSError, ValueError) as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(_usage(files, hosts))


def _usage(files: DevCerts, hosts: list[str]) -> str:
    ca = files.ca_cert
    made = "created" if files.ca_created else "reused"
    return f"""\
keyturn: development TLS files (for development only)
  CA certificate      {ca}  ({made}; give this to clients)
  CA key              {files.ca_key}  (0600; keep it private)
  server certificate  {files.cert}  (for {", ".join(hosts)})
  server key          {files.key}  (0600)

Serve over HTTPS:
  keyturn serve --tls-cert {files.cert} --tls-key {files.key}
  (or KEYTURN_TLS_CERT / KEYTURN_TLS_KEY, or tls_cert / tls_key in [server])

Clients, given the CA:
  Tencent SDK   HttpProfile(protocol="https", endpoint="{hosts[0]}:9000", certification="{ca}")
  tccli         REQUESTS_CA_BUNDLE={ca} tccli ... --endpoint https://{hosts[0]}:9000
  Alibaba Tea   Config(protocol="https", endpoint="{hosts[0]}:9000", ca="{ca}")
  Alibaba core  AcsClient(..., verify="{ca}") and request.set_protocol_type("https")
  Huawei SDK    HttpConfig.get_default_config() with ssl_ca_cert="{ca}",
                .with_endpoints(["https://{hosts[0]}:9000"])
  curl          curl --cacert {ca} https://{hosts[0]}:9000/healthz"""
