"""The software-defined assets."""

import warnings

import dagster as dg

# Range backfills as one run (BackfillPolicy.single_run) are what the assets are for; the parameter is beta in
# this Dagster release, and saying so on every load is noise.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
