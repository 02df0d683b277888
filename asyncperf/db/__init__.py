"""PostgreSQL performance through asyncpg: slow statements, plans, index advice, index
health, pool advice and a query-result cache; SQLAlchemy 2 async engines (asyncpg driver)
are accepted wherever an asyncpg pool is.

``import asyncperf.db`` is light: asyncpg and pglast (``pip install 'asyncperf[db]'``), and
SQLAlchemy (``asyncperf[sqlalchemy]``), are imported when first used.
"""

from ._advisor import IndexAdvice, IndexSuggestion, StatementAdvice
from ._analyzer import DatabaseReport, Extensions, QueryAnalyzer
from ._cached import TableInvalidation, cached_fetch, setup_invalidation, table_tag
from ._explain import ExplainResult, Finding, analyze_plan
from ._health import (
    IndexBloat,
    IndexHealth,
    InvalidIndex,
    MaintenanceAdvice,
    RedundantIndex,
    StaleTable,
    UnindexedForeignKey,
    UnusedIndex,
)
from ._pool import PoolAdvice, PoolMonitor, PoolStatistics
from ._select import cached_select
from ._sql import quote_ident
from ._statements import SlowQuery, statement_stats

__all__ = [
    "DatabaseReport",
    "ExplainResult",
    "Extensions",
    "Finding",
    "IndexAdvice",
    "IndexBloat",
    "IndexHealth",
    "IndexSuggestion",
    "InvalidIndex",
    "MaintenanceAdvice",
    "PoolAdvice",
    "PoolMonitor",
    "PoolStatistics",
    "QueryAnalyzer",
    "RedundantIndex",
    "SlowQuery",
    "StaleTable",
    "StatementAdvice",
    "TableInvalidation",
    "UnindexedForeignKey",
    "UnusedIndex",
    "analyze_plan",
    "cached_fetch",
    "cached_select",
    "quote_ident",
    "setup_invalidation",
    "statement_stats",
    "table_tag",
]
