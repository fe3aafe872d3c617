"""Safety: prompt-injection text in a customer's message or in retrieved content is flagged
and neutralised, and a reply never shows another customer's email address or phone number.

Neutralising keeps what content says and drops what it orders: a sentence carrying an
injection marker ("ignore your rules", "SYSTEM:", "bạn bây giờ là") is replaced by a note, so
neither the LLM nor a template ever repeats it. The LLM also only ever sees such text as
quoted data (c360.agents.llm); markers are the second line of defence, not the first.
Pure functions: no database, no network.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from c360.events.identifiers import normalise_email, normalise_phone

#: What replaces a sentence that tried to give orders.
REMOVED = "[instructions removed]"
#: What replaces someone else's email address or phone number in a reply.
HIDDEN = "[hidden]"

#: Markers of text that addresses the model instead of informing it, in English and
#: Vietnamese (with and without diacritics), and chat-template tokens.
MARKERS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern, re.IGNORECASE)
    for name, pattern in {
        "ignore_rules": r"\b(?:ignore|disregard|forget|override|bypass)\b[^.!?\n]{0,40}"
        r"\b(?:rules?|instructions?|prompts?|guidelines|polic(?:y|ies)|above|previous)\b",
        "new_identity": r"\byou\s+are\s+now\b|\bfrom\s+now\s+on\s+you\b|\bact\s+as\b"
        r"|\bpretend\s+(?:to\s+be|you)\b|\broleplay\s+as\b",
        # a speaker's label opening a line or sentence ("SYSTEM: ..."), not "operating system: iOS"
        "role_label": r"(?:^\s*|[\n.!?]\s*|[\[<(]\s*)(?:system|assistant|developer)\s*[:>\]]",
        "prompt_leak": r"\b(?:reveal|show|print|repeat)\b[^.!?\n]{0,30}\b(?:system\s+)?prompt\b",
        "other_customers": r"\b(?:other|all|every)\s+(?:customers?|users?|clients?)'?s?\b"
        r"[^.!?\n]{0,30}\b(?:emails?|phones?|numbers?|addresses|data|details)\b",
        "jailbreak": r"\bjailbreak\b|\bdeveloper\s+mode\b|(?-i:\bDAN\b)|\bdo\s+anything\s+now\b",
        "chat_tokens": r"<\|[a-z_]+\|>|\[/?INST\]|<<SYS>>|###\s*(?:instruction|system)",
        "vi_ignore_rules": r"\b(?:bỏ\s+qua|bo\s+qua|phớt\s+lờ|quên)\b[^.!?\n]{0,40}"
        r"(?:quy\s+tắc|quy\s+tac|hướng\s+dẫn|huong\s+dan|chỉ\s+dẫn|luật|lệnh)",
        "vi_new_identity": r"\b(?:bây\s+giờ\s+bạn\s+là|bạn\s+bây\s+giờ\s+là"
        r"|bay\s+gio\s+ban\s+la|ban\s+bay\s+gio\s+la|hãy\s+đóng\s+vai|hay\s+dong\s+vai"
        r"|giả\s+vờ\s+là)\b",
        "vi_other_customers": r"(?:khách\s+hàng\s+khác|khach\s+hang\s+khac"
        r"|người\s+dùng\s+khác)",
    }.items()
}

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*\n?|\n")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w.,])(?:\+\d[\d .()-]{7,}\d|0\d(?:[ .-]?\d){7,10})(?![\w])")


def flags(text: str) -> list[str]:
    """The names of the injection markers in `text`, sorted; empty when it is clean."""
    return sorted(name for name, pattern in MARKERS.items() if pattern.search(text))


def neutralise(text: str) -> tuple[str, list[str]]:
    """`text` with every sentence that carries a marker replaced by REMOVED, and the
    markers found."""
    found = flags(text)
    if not found:
        return text, []
    kept = []
    for sentence in _SENTENCE.findall(text):
        kept.append(_removed(sentence) if flags(sentence) else sentence)
    return "".join(kept).strip(), found


def foreign_identifiers(
    reply: str, emails: Iterable[str], phones: Iterable[str], facts: Iterable[str], region: str
) -> list[str]:
    """Email addresses and phone numbers in `reply` that are neither the customer's own
    (`emails`, `phones`, normalised) nor stated in a fact (a store's phone)."""
    allowed_emails = {normalise_email(e) for e in emails} | set(_emails_in(facts))
    allowed_phones = {normalise_phone(p, region) for p in phones} | set(_phones_in(facts, region))
    foreign = [e for e in _EMAIL.findall(reply) if normalise_email(e) not in allowed_emails]
    foreign += [
        p
        for p in _PHONE.findall(reply)
        if (normalise_phone(p, region) or p.strip()) not in allowed_phones
    ]
    return foreign


def hide(reply: str, identifiers: Iterable[str]) -> str:
    """`reply` with each of these identifiers replaced by HIDDEN."""
    for identifier in sorted(set(identifiers), key=len, reverse=True):
        reply = reply.replace(identifier, HIDDEN)
    return reply


def _removed(sentence: str) -> str:
    """REMOVED in the sentence's place, keeping the spaces around it."""
    lead = sentence[: len(sentence) - len(sentence.lstrip())]
    return lead + REMOVED + ("\n" if sentence.endswith("\n") else "")


def _emails_in(texts: Iterable[str]) -> list[str | None]:
    return [normalise_email(e) for text in texts for e in _EMAIL.findall(text)]


def _phones_in(texts: Iterable[str], region: str) -> list[str | None]:
    return [normalise_phone(p, region) for text in texts for p in _PHONE.findall(text)]
