"""A local HTTP server that speaks Klaviyo's REST API (revision 2026-07-15) on a seeded fake account.

Modules, bottom of the import graph first: common (hashes, ids, datetimes), errors, spec (the OpenAPI slices),
filters, reports (the Reporting API), data (the account), faults, limits, paging, render, commerce (catalog
items, variants and categories, coupons and coupon codes: their GETs, seed and hooks), webhooks (system
webhooks: their API and signed delivery of new events), server (the HTTP server and its routes);
`python -m klaviyo_sim` runs one.
"""

from klaviyo_sim.data import Account
from klaviyo_sim.faults import Faults
from klaviyo_sim.server import Simulator
from klaviyo_sim.webhooks import RetryPolicy, WebhookFaults, WebhookService, signed_delivery

__all__ = [
    "Account",
    "Faults",
    "RetryPolicy",
    "Simulator",
    "WebhookFaults",
    "WebhookService",
    "signed_delivery",
]
