"""Reports: what a report holds, rendered as PDF or CSV, saved, scheduled and sent by email."""
