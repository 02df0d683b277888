"""A generated schema and workload with planted missing indexes and planted traps.

Tables (rows): ``customers`` (100 000), ``orders`` (200 000, foreign key to customers),
``products`` (100 000, already indexed on ``sku``), ``events`` (100 000) and the tiny
``countries`` (20). Selectivities are realistic: e-mail addresses unique, 200 stores x 500
products, 4 order statuses, 5 countries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asyncperf.db._sql import quote_ident

CUSTOMERS = 100_000
ORDERS = 200_000
PRODUCTS = 100_000
EVENTS = 100_000


@dataclass(frozen=True)
class Statement:
    """A workload statement: its text, sample arguments, and what the advisor should say."""

    name: str
    sql: str
    args: tuple[Any, ...]
    expected: tuple[str, tuple[str, ...]] | None  # (table, columns) or None for a trap


def schema_sql(schema: str) -> list[str]:
    s = quote_ident(schema)
    return [
        f"CREATE SCHEMA {s}",
        f"""CREATE TABLE {s}.countries (code text PRIMARY KEY, name text NOT NULL)""",
        f"""INSERT INTO {s}.countries
            SELECT 'c' || g, 'Country ' || g FROM generate_series(1, 20) g""",
        f"""CREATE TABLE {s}.customers (
              id int PRIMARY KEY, email text NOT NULL, country text NOT NULL,
              tier int NOT NULL, created_at timestamptz NOT NULL)""",
        f"""INSERT INTO {s}.customers
            SELECT g, 'user' || g || '@example.com', 'c' || (g % 5), g % 3,
                   timestamptz '2024-01-01' + g * interval '5 minutes'
            FROM generate_series(1, {CUSTOMERS}) g""",
        f"""CREATE TABLE {s}.orders (
              id int PRIMARY KEY, customer_id int NOT NULL REFERENCES {s}.customers (id),
              status text NOT NULL, store_id int NOT NULL, product_code int NOT NULL,
              placed_at timestamptz NOT NULL, total numeric(10, 2) NOT NULL, note text)""",
        f"""INSERT INTO {s}.orders
            SELECT g, 1 + (g * 7919) % {CUSTOMERS},
                   (ARRAY['new', 'paid', 'shipped', 'done'])[1 + g % 4],
                   g % 200, (g / 200) % 500,
                   timestamptz '2024-01-01' + g * interval '1 minute',
                   (g % 10000) / 100.0, repeat('x', 20)
            FROM generate_series(1, {ORDERS}) g""",
        f"""CREATE TABLE {s}.products (
              id int PRIMARY KEY, sku text NOT NULL, name text NOT NULL, category int NOT NULL)""",
        f"""INSERT INTO {s}.products
            SELECT g, 'SKU-' || g, 'product ' || g, g % 50 FROM generate_series(1, {PRODUCTS}) g""",
        f"CREATE INDEX products_sku_idx ON {s}.products (sku)",
        f"""CREATE TABLE {s}.events (
              id bigint PRIMARY KEY, kind int NOT NULL, source int NOT NULL,
              occurred_at timestamptz NOT NULL, payload jsonb NOT NULL)""",
        f"""INSERT INTO {s}.events
            SELECT g, (g * 13) % 1000, (g * 17) % 1000,
                   timestamptz '2024-01-01' + ((g * 7907) % {EVENTS}) * interval '1 second',
                   jsonb_build_object('n', g)
            FROM generate_series(1, {EVENTS}) g""",
        f"ANALYZE {s}.countries, {s}.customers, {s}.orders, {s}.products, {s}.events",
    ]


def statements(schema: str) -> list[Statement]:
    s = quote_ident(schema)
    return [
        # planted: a unique-ish column without an index
        Statement(
            "email",
            f"SELECT id, country FROM {s}.customers WHERE email = $1",
            ("user4242@example.com",),
            ("customers", ("email",)),
        ),
        # planted: the foreign key column without an index
        Statement(
            "customer_orders",
            f"SELECT id, total FROM {s}.orders WHERE customer_id = $1",
            (4242,),
            ("orders", ("customer_id",)),
        ),
        # planted: two equalities, each alone not selective enough -> one composite
        Statement(
            "store_product",
            f"SELECT id, total FROM {s}.orders WHERE store_id = $1 AND product_code = $2",
            (17, 217),
            ("orders", ("store_id", "product_code")),
        ),
        # planted: ORDER BY ... LIMIT without an index
        Statement(
            "latest_events",
            f"SELECT id, kind FROM {s}.events ORDER BY occurred_at DESC LIMIT 10",
            (),
            ("events", ("occurred_at",)),
        ),
        # trap: low selectivity (4 statuses)
        Statement(
            "status",
            f"SELECT count(*) FROM {s}.orders WHERE status = $1",
            ("paid",),
            None,
        ),
        # trap: low selectivity (5 countries)
        Statement(
            "country",
            f"SELECT id FROM {s}.customers WHERE country = $1",
            ("c3",),
            None,
        ),
        # trap: already covered by products_sku_idx
        Statement(
            "sku",
            f"SELECT id, name FROM {s}.products WHERE sku = $1",
            ("SKU-777",),
            None,
        ),
        # trap: a tiny table
        Statement(
            "country_name",
            f"SELECT code FROM {s}.countries WHERE name = $1",
            ("Country 7",),
            None,
        ),
        # trap: OR across two columns (one index alone does not help)
        Statement(
            "kind_or_source",
            f"SELECT id FROM {s}.events WHERE kind = $1 OR source = $2",
            (5, 9),
            None,
        ),
    ]
