"""keyturn: a self-hosted control plane that serves cloud vendors' password-reset APIs.

The package is layered; dependencies point inward (see ``.importlinter``)::

    cli -> bootstrap -> http -> dialects -> service | engines | store -> core
"""

__version__ = "0.1.0"
