"""Inbound wire protocols, one package per vendor. Sans-I/O: a ``WireRequest`` goes in, a
``WireResponse`` comes out; dialects import ``core`` and ``service`` only, never adapters."""
