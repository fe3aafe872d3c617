"""The browser pages: each module handles one area and calls the same service functions as the
JSON API."""
