"""Mask personal data (card numbers, IBANs, e-mails, phone numbers) before anything is stored or logged."""

from __future__ import annotations

import re

EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
# Two letters, two check digits, then 11-30 letters/digits: compact, or in groups of four.
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)\b",
                  re.IGNORECASE)
# 13-19 digits, optionally grouped by single spaces or dashes (e.g. "4111 1111 1111 1111").
CARD = re.compile(r"(?<![\d+])\d(?:[ -]?\d){12,18}(?!\d)")
# An optional +country code, then 9-15 digits grouped by spaces, dots, dashes or brackets.
PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d{1,4}\)?(?:[ .-]?\(?\d{2,5}\)?){2,5}(?!\d)")

MASKS = (("EMAIL", EMAIL), ("IBAN", IBAN), ("CARD", CARD), ("PHONE", PHONE))


def _digits(text: str) -> int:
    return sum(c.isdigit() for c in text)


def _iban_ok(match: str) -> bool:
    compact = match.replace(" ", "")
    return 15 <= len(compact) <= 34 and _digits(compact) >= 8


def mask(text: str) -> str:
    """``text`` with personal data replaced by ``[EMAIL]``, ``[IBAN]``, ``[CARD]``, ``[PHONE]``.

    Masking errs on the side of hiding: any 13-19 digit run is a card, any run of
    9-15 digits in phone-like groups is a phone number.  Amounts ("£250.00"),
    years and short codes are left alone.
    """
    if not text:
        return text
    out = EMAIL.sub("[EMAIL]", text)
    out = IBAN.sub(lambda m: "[IBAN]" if _iban_ok(m.group()) else m.group(), out)
    out = CARD.sub("[CARD]", out)
    out = PHONE.sub(lambda m: "[PHONE]" if 9 <= _digits(m.group()) <= 15 else m.group(), out)
    return out


def contains_pii(text: str) -> bool:
    return mask(text) != text
