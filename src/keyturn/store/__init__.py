"""The persistence adapter: tenants, access keys, instances and durable tasks in SQL.

``keyturn.store.sql.SqlStore`` implements the ``keyturn.core.store_ports.Store`` protocol with
SQLAlchemy Core over an asyncio engine (embedded SQLite by default; PostgreSQL through the same
code); ``keyturn.store.schema`` describes the tables, ``keyturn.store.migrate`` applies the
Alembic migrations and ``keyturn.store.sealing`` encrypts secrets at rest. The store imports
only ``keyturn.core``, SQLAlchemy, Alembic, cryptography and the standard library.
"""
