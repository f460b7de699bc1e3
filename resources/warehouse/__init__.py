"""The warehouse layer: the only code that writes to (or queries) the Postgres warehouse.

- `core`: engine, the `Warehouse` resource, the guarded merge (`upsert_frame`) and pipelined loads;
- `migrations`: versioned SQL migrations and the BI views;
- `repository`: the seed's repository API on one table, built on the same merge;
- `status`: `klaviyo_sync_status` and `klaviyo_sync_runs`;
- `ledger`: the Reporting API's quota, calls and coverage;
- `queries`: named reads and maintenance writes for the assets, checks, sensors and the CLI;
- `inbox`: the webhook inbox (deliveries Klaviyo pushed, stored by the receiver, drained into klaviyo_events).
"""

from resources.warehouse.core import (
    ENTITY_KEY,
    UpsertCounts,
    Warehouse,
    WarehouseError,
    make_engine,
    normalize_url,
    resolve_warehouse_url,
)
from resources.warehouse.repository import Repository

__all__ = [
    "ENTITY_KEY",
    "Repository",
    "UpsertCounts",
    "Warehouse",
    "WarehouseError",
    "make_engine",
    "normalize_url",
    "resolve_warehouse_url",
]
