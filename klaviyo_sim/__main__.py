"""Run the simulator: `python -m klaviyo_sim --port 8700` (port 0 picks a free one)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from klaviyo_sim.data import SCALES, Account
from klaviyo_sim.faults import Faults
from klaviyo_sim.server import Simulator


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="klaviyo-sim", description="A local Klaviyo API on a seeded fake account."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8700, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scale", choices=sorted(SCALES), default="small")
    p.add_argument("--profiles", type=int, help="override the scale's profile count")
    p.add_argument("--events", type=int, help="override the scale's event count")
    p.add_argument("--history-days", type=int, default=120)
    p.add_argument("--anchor", type=dt.date.fromisoformat, help="last day of history (default: today, UTC)")
    p.add_argument("--timezone", default="UTC", help="the account's IANA time zone (reports use its days)")
    p.add_argument(
        "--report-page-size",
        type=int,
        default=10,
        help="results per page of campaign/flow reports (0: no paging)",
    )
    p.add_argument(
        "--allow-future-timeframes", action="store_true", help="serve reports whose timeframe ends after now"
    )
    p.add_argument(
        "--single-day-sends",
        action="store_true",
        help="no campaign send spans days (default: every third does)",
    )
    p.add_argument(
        "--omit-relationship-data",
        action="store_true",
        help="a share of events and campaign messages omit relationship data",
    )
    p.add_argument("--no-rate-limits", action="store_true", help="switch rate limits off (benchmarks)")
    p.add_argument(
        "--time-scale", type=float, default=1.0, help="shrink rate-limit windows (0.1 = 10x faster)"
    )
    p.add_argument("--fault-429", type=float, default=0.0, help="share of requests answered 429")
    p.add_argument("--fault-503", type=float, default=0.0, help="share of requests answered 503")
    p.add_argument("--fault-cut", type=float, default=0.0, help="share of responses cut mid-body")
    p.add_argument("--fault-504", type=float, default=0.0, help="share of requests answered with an HTML 504")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    anchor = dt.datetime.combine(args.anchor, dt.time(), dt.UTC) if args.anchor else None
    account = Account(
        seed=args.seed,
        scale=args.scale,
        anchor=anchor,
        history_days=args.history_days,
        profiles=args.profiles,
        events=args.events,
        timezone=args.timezone,
        multi_day_sends=not args.single_day_sends,
        omit_relationship_data=args.omit_relationship_data,
    )
    faults = Faults(
        rate_429=args.fault_429,
        rate_503=args.fault_503,
        rate_cut=args.fault_cut,
        rate_html_504=args.fault_504,
    )
    sim = Simulator(
        account,
        host=args.host,
        port=args.port,
        rate_limits=not args.no_rate_limits,
        time_scale=args.time_scale,
        faults=faults,
        report_page_size=args.report_page_size or None,
        refuse_future_timeframes=not args.allow_future_timeframes,
    )
    print(
        f"Klaviyo simulator listening on {sim.url} (account {account.account_id}, scale {args.scale})",
        flush=True,
    )
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
