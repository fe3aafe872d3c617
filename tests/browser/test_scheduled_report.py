"""A scheduled report in Chromium: the overview saved as a report on /reports, scheduled daily
to a recipient, made due, and arriving at the SMTP server the test runs on 127.0.0.1 (the trial
was started with C360_SMTP_HOST/PORT pointing at it, STARTTLS off) with the PDF attached, whose
revenue equals the slice's.

Making it due: the schedule is set for a later hour, so nothing sends it on its own; the test
then runs what the worker's scheduler runs each minute, `c360.reports.schedules.run_due`, once,
in a separate process on the trial's database, with a clock a day ahead (see RUN_DUE)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from .conftest import Expected, Mailbox, Trial, sign_in

pytestmark = pytest.mark.e2e

RECIPIENT = "cfo@example.com"

#: Longest the email may take to arrive once the report is due.
MAIL_TIMEOUT_S = 60

#: One tick of the worker's report scheduler, a day and an hour in the future: attach to the
#: trial's embedded PostgreSQL and Valkey (their ports and passwords are in the data folder),
#: take SMTP from the C360_SMTP_* environment, run `run_due`, print each run's outcome.
RUN_DUE = """
import json, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from c360.appliance.engines import EmbeddedPostgres, EmbeddedValkey
from c360.reports.schedules import run_due
from c360.runtime import Runtime
from c360.settings import load_settings

data_dir = Path(sys.argv[1])
postgres = EmbeddedPostgres(data_dir)
assert postgres.attach(), "the trial's PostgreSQL is not running"
settings = load_settings(
    {"data_dir": data_dir, "postgres_dsn": postgres.dsn, "valkey_url": EmbeddedValkey(data_dir).url}
)
runtime = Runtime(settings)
try:
    runs = run_due(runtime, datetime.now(UTC) + timedelta(days=1, hours=1))
    print(json.dumps([[run.outcome, run.error, run.recipients] for run in runs]))
finally:
    runtime.close()
"""


def run_due_once(trial: Trial, mailbox: Mailbox) -> list[list[object]]:
    """What the worker's scheduler does each minute, once, a day ahead; the runs it made."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("C360_")},
        "C360_SMTP_HOST": "127.0.0.1",
        "C360_SMTP_PORT": str(mailbox.port),
        "C360_SMTP_STARTTLS": "false",
    }
    done = subprocess.run(
        [sys.executable, "-c", RUN_DUE, str(trial.data_dir)],
        capture_output=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return list(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def test_a_report_scheduled_in_the_ui_arrives_by_email_with_its_pdf(
    page: Page, trial: Trial, mailbox: Mailbox, expected: Expected
) -> None:
    name = f"Daily overview {uuid.uuid4().hex[:6]}"
    sign_in(page, trial, "analyst")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Reports").click()

    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Kind").select_option("overview")
    page.get_by_role("button", name="Save report").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)

    later = (datetime.now(UTC).hour + 2) % 24  # not due today: only the test's tick sends it
    page.get_by_label("How often").select_option("daily")
    page.get_by_label(re.compile(r"^Hour")).fill(str(later))
    page.get_by_label(re.compile(r"^Recipients")).fill(RECIPIENT)
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.get_by_role("button", name=re.compile(r"^Stop schedule"))).to_have_count(1)
    before = len(mailbox.messages)

    runs = run_due_once(trial, mailbox)

    assert runs == [["sent", None, [RECIPIENT]]]
    message = mailbox.wait_for(before + 1, MAIL_TIMEOUT_S)[before]
    assert message["To"] == RECIPIENT
    assert str(message["Subject"]) == f"{name}: Overview"  # the saved name, then the title
    (pdf,) = [part for part in message.walk() if part.get_content_type() == "application/pdf"]
    assert str(pdf.get_filename()).endswith(".pdf")
    reader = PdfReader(io.BytesIO(pdf.get_payload(decode=True)))
    text = reader.pages[0].extract_text()
    assert "Overview" in text.splitlines()[0]
    revenue = re.search(r"^Revenue ([\d,.]+)$", text, re.MULTILINE)
    assert revenue is not None, text[:800]
    assert Decimal(revenue[1].replace(",", "")) == expected.revenue
