"""A local HTTP server that speaks Klaviyo's REST API (revision 2026-07-15) on a seeded fake account."""

from klaviyo_sim.data import Account
from klaviyo_sim.server import Faults, Simulator

__all__ = ["Account", "Faults", "Simulator"]
