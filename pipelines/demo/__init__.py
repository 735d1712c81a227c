"""Demo data: realistic customer bases with planted personas, in the contract's tables.

`customers` writes a B2B SaaS base of customers (``personas demo``); `accounts` a base of
accounts and the people in them, with roles (``personas demo --b2b``).
"""

from pipelines.demo.accounts import write_b2b_demo
from pipelines.demo.customers import DEMO_END, PERSONAS, TABLES, make_demo, write_demo

__all__ = ["DEMO_END", "PERSONAS", "TABLES", "make_demo", "write_b2b_demo", "write_demo"]
