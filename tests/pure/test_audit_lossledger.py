"""LossLedger: packets counted by log_reached against records received and losses reported."""

from __future__ import annotations

from runtad.audit.lossledger import LossLedger


def test_ledger_without_baseline_reports_nothing() -> None:
    ledger = LossLedger()
    ledger.add_received(0)
    assert ledger.take_shortfall() == 0


def test_ledger_reports_shortfall_once() -> None:
    ledger = LossLedger()
    ledger.observe_counter(100)
    ledger.add_received(30)
    ledger.observe_counter(150)
    assert ledger.take_shortfall() == 20
    assert ledger.take_shortfall() == 0


def test_ledger_subtracts_reported_gaps() -> None:
    ledger = LossLedger()
    ledger.observe_counter(0)
    ledger.add_received(30)
    ledger.add_reported(15)
    ledger.observe_counter(50)
    assert ledger.take_shortfall() == 5


def test_ledger_early_records_make_up_later() -> None:
    ledger = LossLedger()
    ledger.observe_counter(0)
    ledger.add_received(40)
    ledger.observe_counter(10)
    assert ledger.take_shortfall() == 0
    ledger.observe_counter(70)
    assert ledger.take_shortfall() == 30


def test_ledger_counter_restart_adds_new_value() -> None:
    ledger = LossLedger()
    ledger.observe_counter(500)
    ledger.observe_counter(7)
    assert ledger.logged == 7
    assert ledger.take_shortfall() == 7


def test_ledger_baseline_clears_earlier_totals() -> None:
    ledger = LossLedger()
    ledger.add_received(12)
    ledger.add_reported(3)
    ledger.observe_counter(40)
    assert ledger.received == 0
    assert ledger.reported == 0
    ledger.observe_counter(45)
    assert ledger.take_shortfall() == 5
