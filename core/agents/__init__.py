"""Agents: personalised assistants that talk to customers on web chat, SMS and Zalo, with
what c360 knows about them, grounded in the marketing knowledge, handing over to a human
when they should."""
