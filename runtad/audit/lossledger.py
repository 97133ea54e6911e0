"""Kernel log events lost on the way to runtad, counted against the log rules' nft counter.

NFULA_SEQ gaps miss losses. After an overrun, netlink drops every batch until the reader
has emptied the socket queue. When a flood ends inside that window, no later record
shows the gap, and the kernel reports the whole loss as one ENOBUFS. Packets logged while
no socket has the group bound get no sequence number at all. The ruleset therefore counts
every packet that reaches a log statement in the log_reached counter, and the ledger
reports what that counter saw beyond the records received and the losses already reported.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LossLedger:
    """Totals since the baseline: packets that reached the log rules, records received and
    lost events reported.

    `logged` lags the kernel, because runtad reads the counter once per poll. So the
    shortfall is a lower bound while packets keep arriving, and the reported total becomes
    exact once the records of every counted packet have arrived or were lost.
    """

    counter: int | None = None  # the last log_reached value read, None before a baseline
    logged: int = 0
    received: int = 0
    reported: int = 0

    def observe_counter(self, value: int) -> None:
        """Add the packets counted since the last read. The first value is the baseline.

        The totals start again at the baseline. Records of packets counted before it may
        still arrive after it, and each such record hides one later loss.
        """
        if self.counter is None:
            self.logged = self.received = self.reported = 0
        else:
            # A smaller value means the table was made again, and its counter restarted.
            self.logged += value - self.counter if value >= self.counter else value
        self.counter = value

    def add_received(self, records: int) -> None:
        self.received += records

    def add_reported(self, lost: int) -> None:
        """Count losses reported another way (NFULA_SEQ gaps), so they are not reported twice."""
        self.reported += lost

    def take_shortfall(self) -> int:
        """Return the logged packets neither received nor reported yet, and mark them reported."""
        if self.counter is None:
            return 0
        shortfall = max(0, self.logged - self.received - self.reported)
        self.reported += shortfall
        return shortfall
