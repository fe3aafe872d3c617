"""The CDNOW purchase log (69,659 purchases by 23,570 customers, 1997-01 to 1998-06), read from
the `lifetimes` wheel, which is fetched with `pip download` rather than installed.

Each line becomes one `Order Completed` event for user `cdnow-<id>`; its messageId comes from
the line's number and text, so identical lines (real repeat purchases) stay separate and a
second replay of the file is recognised as the same events.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

from c360.errors import C360Error

MEMBER = "lifetimes/datasets/CDNOW_master.txt"

#: Orders are dated at noon UTC so a clock-skew correction of a few ms never changes the day.
ORDER_TIME = time(12, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Purchase:
    """One line of the log."""

    line_no: int
    customer: str
    day: date
    quantity: int
    dollars: Decimal
    message_id: str

    @property
    def user_id(self) -> str:
        """The customer's userId in c360."""
        return f"cdnow-{self.customer}"

    @property
    def timestamp(self) -> datetime:
        """When the order happened."""
        return datetime.combine(self.day, ORDER_TIME)


def fetch(cache_dir: Path) -> Path:
    """The path of CDNOW_master.txt, downloading the lifetimes wheel once if needed."""
    target = cache_dir / "CDNOW_master.txt"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = list(cache_dir.glob("[Ll]ifetimes-*.whl"))
    if not wheels:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(cache_dir),
            "lifetimes==0.11.3",
            "-q",
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = list(cache_dir.glob("[Ll]ifetimes-*.whl"))
        if done.returncode != 0 or not wheels:
            raise C360Error(
                "could not download the CDNOW data (the lifetimes wheel from PyPI): "
                f"{done.stderr.strip()[-400:]}. Put CDNOW_master.txt in {cache_dir} and retry."
            )
    with zipfile.ZipFile(wheels[0]) as archive:
        partial = target.with_suffix(".tmp")
        partial.write_bytes(archive.read(MEMBER))
        partial.replace(target)
    return target


def read(path: Path, limit: int | None = None) -> Iterator[Purchase]:
    """Purchases in file order; `limit` stops after that many lines. A line that is not a
    purchase stops the read with a C360Error naming the file and the line."""
    with path.open("rb") as handle:
        next(handle, None)  # header line
        for line_no, raw in enumerate(handle, start=2):
            if limit is not None and line_no - 1 > limit:
                return
            try:
                line = raw.decode("ascii").strip()
                if line:
                    yield parse_line(line_no, line)
            except ValueError as exc:  # also UnicodeDecodeError, a bad date or number
                raise C360Error(
                    f"line {line_no} of {path} is not a CDNOW purchase (customer id, date as "
                    f"YYYYMMDD, CDs, dollars): {raw[:80]!r}; fix or remove that line"
                ) from exc


def parse_line(line_no: int, line: str) -> Purchase:
    """One purchase from a line such as `00001 19970101  1   11.77`."""
    customer, day, quantity, dollars = line.split()  # ValueError if not four fields
    digest = hashlib.sha1(f"{line_no}:{line}".encode()).hexdigest()[:12]
    return Purchase(
        line_no=line_no,
        customer=customer,
        day=datetime.strptime(day, "%Y%m%d").date(),
        quantity=int(quantity),
        dollars=_dollars(dollars),
        message_id=f"cdnow-{line_no}-{digest}",
    )


def _dollars(text: str) -> Decimal:
    """A finite dollar amount; Decimal's own error is not a ValueError, so translate it."""
    try:
        value = Decimal(text)
    except ArithmeticError as exc:
        raise ValueError(f"{text!r} is not an amount") from exc
    if not value.is_finite():
        raise ValueError(f"{text!r} is not an amount")
    return value
