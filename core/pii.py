"""Mask personal data in free text before anything is stored or logged.

``mask(text)`` replaces each piece of personal data with a typed token:

==============  ============================================================================
``[CARD]``      13-19 digit runs: compact, or in groups (any of space, ``-``, ``.``, ``/``,
                ``_``, newline, NBSP/thin space, en/em dash; doubled separators too).  Luhn
                decides only which prefix of a grouped run is the card; a run that fails
                Luhn is masked anyway (err on hiding).
``[IBAN]``      country code + check digits + the country's BBAN (lengths and structure from
                ``python-stdnum``'s SWIFT registry), compact, grouped, dashed, lower case.
``[CVV]``       3-4 digits after CVV/CVC/CSC/"security code", or right after a card number.
``[EXPIRY]``    MM/YY, MM/YYYY, "March 2027" after exp/expiry/expires/valid thru, or right
                after a card number.
``[DOB]``       any date after DOB/"date of birth"/born/birthday; and any full date (day,
                month and year) whose year is at least ``ADULT_YEARS`` before this year
                (12/03/1985, 12 March 1985, 1985-03-12).  Recent full dates (a payment on
                12/03/2024) are kept: support needs them and they identify no one.
``[SORT_CODE]`` UK sort codes ``12-34-56`` (and ``123456`` / ``12 34 56`` after "sort code").
``[ACCOUNT]``   6-12 digits after "account number"/"acc no"/"a/c", 8 digits after a sort code.
``[NINO]``      UK national insurance numbers (``AB 12 34 56 C``).
``[PASSPORT]``  the first 6-10 character token with >= 4 digits after "passport".
``[POSTCODE]``  UK postcodes (``SW1A 1AA``, ``m1 1ae``).
``[SSN]``       US social security numbers ``123-45-6789`` (9 digits after "SSN"/"social security").
``[PIN]``       4-6 digits after "PIN".
``[EMAIL]``     e-mail addresses (plus-addressing, subdomains).
``[PHONE]``     +CC / 00CC international numbers, national numbers with a trunk 0 (UK, DE,
                FR...), US ``(555) 123-4567`` shapes, and any compact 10-11 digit run.
==============  ============================================================================

Not masked: names, free-text street addresses, US ZIP codes, years on their own, amounts,
times, counts (see ``docs/security.md``).  A text without a digit or ``@`` is returned as is
without running a single pattern (most chat turns), so the common case costs a few µs.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterator

from stdnum import iban as stdnum_iban
from stdnum import luhn, numdb

__all__ = ["Finding", "KINDS", "find", "mask", "contains_pii", "mask_mapping"]

KINDS = ("EMAIL", "IBAN", "CARD", "CVV", "EXPIRY", "DOB", "SORT_CODE", "ACCOUNT", "NINO",
         "PASSPORT", "POSTCODE", "SSN", "PIN", "PHONE")
ADULT_YEARS = 13      # a full date at least this many years back is taken as a date of birth


@dataclass(frozen=True)
class Finding:
    """One piece of personal data: ``text[start:end]`` is of ``kind``."""

    kind: str
    start: int
    end: int


# -- normalisation -----------------------------------------------------------------
# One character for one character, so offsets in the normalised text are offsets in the
# original: unicode spaces become " ", dashes and minus signs "-", zero-width characters
# (which could hide a card number from a pattern) a space.
_SPACES = "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000\t"
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_NORMALISE = str.maketrans({**{c: " " for c in _SPACES + _ZERO_WIDTH}, **{c: "-" for c in _DASHES},
                            "\u2044": "/", "\uff0f": "/", "\r": "\n"})


_FOLDED = re.compile("[" + re.escape("".join(chr(c) for c in _NORMALISE)) + "]")


def normalise(text: str) -> str:
    """``text`` with unicode separators folded to ASCII, same length (offsets stay valid)."""
    return text.translate(_NORMALISE) if _FOLDED.search(text) else text


# -- building blocks ------------------------------------------------------------------
_SEP = r"[ \-./_\n]"                       # separators inside card numbers (after normalising)
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
          r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_ORD = r"(?:st|nd|rd|th)?"

# full dates; named groups give the parts
# Patterns start with a plain character class (lookbehinds come after it): re then skips
# ahead to candidate characters in C instead of trying a full match at every position.
_DATE_NUM = re.compile(
    r"(?=\d)(?<![\d/.\-])(?:"
    r"(?P<a>\d{1,2})\s?(?P<s>[/.\-])\s?(?P<b>\d{1,2})\s?(?P=s)\s?(?P<y>\d{4}|\d{2})"     # 12/03/1985
    r"|(?P<iy>\d{4})-(?P<im>\d{1,2})-(?P<id>\d{1,2})"                                     # 1985-03-12
    r")(?![\d/])")
_DATE_DAY_FIRST = re.compile(r"(?P<td>\d{1,2})" + _ORD + r"(?:\s+of)?\s+(?P<tm>" + _MONTH + r"),?\s+"
                             r"(?P<ty>\d{4})(?![\d/])", re.IGNORECASE)                        # 12 March 1985
_DATE_MONTH_FIRST = re.compile(r"(?P<um>" + _MONTH + r")\s+(?P<ud>\d{1,2})" + _ORD + r",?\s+(?P<uy>\d{4})"
                               r"(?![\d/])", re.IGNORECASE)                                   # March 12, 1985
_DATE_WORDS = re.compile(f"(?:{_DATE_DAY_FIRST.pattern})|(?:{_DATE_MONTH_FIRST.pattern})", re.IGNORECASE)
_DATE = re.compile(f"(?:{_DATE_NUM.pattern})|(?:{_DATE_WORDS.pattern})", re.IGNORECASE)
_MONTH_WORDS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_YEAR = r"(?:(?:0?[1-9]|1[0-2])\s?[/\-.]\s?(?:20)?\d{2}|" + _MONTH + r"\s+(?:20)?\d{2})(?![\d/])"
_EXPIRY_VALUE = re.compile(r"(?<![\d/.])" + _MONTH_YEAR, re.IGNORECASE)


def _year(raw: str) -> int:
    year = int(raw)
    if len(raw) == 2:
        now = _dt.date.today().year % 100
        year += 2000 if year <= now else 1900
    return year


def _valid_day_month(day: int, month: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= 31


def _date_year(m: re.Match) -> int | None:
    """The year of a :data:`_DATE` match when its day and month make sense, else None."""
    g = m.groupdict()
    if g.get("y"):
        a, b = int(g["a"]), int(g["b"])
        ok = _valid_day_month(a, b) or _valid_day_month(b, a)   # d/m or m/d
        return _year(g["y"]) if ok else None
    if g.get("iy"):
        return int(g["iy"]) if _valid_day_month(int(g["id"]), int(g["im"])) else None
    if g.get("ty"):
        return int(g["ty"]) if 1 <= int(g["td"]) <= 31 else None
    return int(g["uy"]) if 1 <= int(g["ud"]) <= 31 else None


# -- detectors ------------------------------------------------------------------------
# Each yields Findings on the normalised text.  Priority = position in DETECTORS: where
# two findings overlap, the earlier detector wins.

# Anchored on each "@" with bounded parts (RFC 5321: local part <= 64, labels <= 63), so a
# 10k-character word ending in "@" costs microseconds, not a quadratic scan.
_EMAIL_LOCAL = re.compile(r"[\w.+-]{1,64}$")
_EMAIL_DOMAIN = re.compile(r"[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")


def _emails(t: str) -> Iterator[Finding]:
    at = t.find("@")
    while at >= 0:
        local = _EMAIL_LOCAL.search(t, max(0, at - 64), at)
        domain = _EMAIL_DOMAIN.match(t, at + 1) if local else None
        if domain:
            yield Finding("EMAIL", local.start(), domain.end())
        at = t.find("@", domain.end() if domain else at + 1)


_IBAN = re.compile(r"([A-Za-z](?<![A-Za-z0-9][A-Za-z])[A-Za-z])\s?(\d{2})((?:[ \-.\n]{0,2}[A-Za-z0-9]){10,34})")
_STRUCT = re.compile(r"(\d+)!([nac])")
_CLASS = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Z0-9]"}


@lru_cache(maxsize=None)
def _bban(country: str) -> tuple[int, re.Pattern] | None:
    """(length, pattern) of ``country``'s BBAN from stdnum's IBAN registry, None if it has none."""
    info = numdb.get("iban").info(country)[0][1]
    struct = info.get("bban")
    if not struct:
        return None
    parts = _STRUCT.findall(struct)
    pattern = "".join(f"{_CLASS[kind]}{{{n}}}" for n, kind in parts)
    return sum(int(n) for n, _ in parts), re.compile(pattern)


def _ibans(t: str) -> Iterator[Finding]:
    for m in _IBAN.finditer(t):
        bban = _bban(m.group(1).upper())
        if bban is None:
            continue
        length, pattern = bban
        compact, end = [], m.start(3)
        for i in range(m.start(3), m.end(3)):
            if t[i].isalnum():
                compact.append(t[i])
                if len(compact) == length:
                    end = i + 1
                    break
        if len(compact) != length or not pattern.fullmatch("".join(compact).upper()):
            continue
        # a wrong check digit is still masked (a typo is still somebody's account) unless the
        # match ends inside a word: then it is more likely another code (an ISIN and a date)
        if end < len(t) and t[end].isalnum() and not stdnum_iban.is_valid(
                m.group(1) + m.group(2) + "".join(compact)):
            continue
        yield Finding("IBAN", m.start(), end)


# cards: compact 13-19 digits, or a group of four then 1-4 more groups (any separators)
_CARD_GROUPED = re.compile(r"[1-9](?<![\d+][1-9])\d{3}(?:" + _SEP + r"{1,3}\d{1,7}){1,4}(?!\d)")
_CARD_COMPACT = re.compile(r"[1-9](?<![\d+][1-9])\d{12,18}(?!\d)")
_DIGIT = re.compile(r"\d")
_AFTER_CARD = re.compile(r"[ ,;:\-/\n]{1,3}(?:(?P<exp>" + _MONTH_YEAR + r")|(?P<cvv>\d{3,4})(?![\d/]))",
                         re.IGNORECASE)


def _ascii_digits(s: str) -> str:
    return "".join(str(int(c)) for c in s if c.isdigit())


def _card_end(t: str, m: re.Match) -> int | None:
    """End of the card inside a grouped match: the longest Luhn-valid 13-19 digit prefix
    that ends on a group boundary, else the longest 13-19 digit one, else None."""
    digits = [d.end() for d in _DIGIT.finditer(t, m.start(), m.end())]
    ends = [e for i, e in enumerate(digits, 1) if 13 <= i <= 19 and (e == m.end() or not t[e].isdigit())]
    if not ends:
        return None
    for e in reversed(ends):
        if luhn.is_valid(_ascii_digits(t[m.start():e])):
            return e
    return ends[-1]


def _cards(t: str) -> Iterator[Finding]:
    spans = []
    for m in _CARD_GROUPED.finditer(t):
        end = _card_end(t, m)
        if end is not None:
            spans.append((m.start(), end))
    for m in _CARD_COMPACT.finditer(t):
        spans.append((m.start(), m.end()))
    for start, end in spans:
        yield Finding("CARD", start, end)
        # a CVV and/or an expiry date written straight after the number
        for _ in range(2):
            a = _AFTER_CARD.match(t, end)
            if not a:
                break
            kind = "EXPIRY" if a.group("exp") else "CVV"
            group = "exp" if a.group("exp") else "cvv"
            yield Finding(kind, a.start(group), a.end(group))
            end = a.end()


def _after_keyword(kind: str, keyword: str, value: re.Pattern | str, window: int = 25,
                   check: Callable[[re.Match], bool] | None = None) -> Callable[[str], Iterator[Finding]]:
    """A detector: the first ``value`` within ``window`` characters after ``keyword``."""
    kw = re.compile(r"(?:" + keyword + r")\b", re.IGNORECASE)
    val = re.compile(value, re.IGNORECASE) if isinstance(value, str) else value

    def detect(t: str) -> Iterator[Finding]:
        for k in kw.finditer(t):
            if k.start() and t[k.start() - 1].isalnum():
                continue
            for v in val.finditer(t, k.end(), min(len(t), k.end() + window)):
                if check is None or check(v):
                    yield Finding(kind, v.start(), v.end())
                    break
    return detect


_CVV = _after_keyword("CVV", r"cvv2?|cvc2?|csc|cid|security\s+code|card\s+verification\s+(?:value|code)"
                      r"|(?:3|three)[\s-]digit\s+code", r"(?<![\d£$€.,])\d{3,4}(?![\d.,%])")
_PIN = _after_keyword("PIN", r"pin(?:\s+(?:number|code))?", r"(?<![\d£$€.,])\d{4,6}(?![\d.,%])", window=15)
_EXPIRY = _after_keyword("EXPIRY", r"exp|exp(?:iry|iration|ires|iring)(?:\s+date)?|valid\s+(?:thru|through|"
                         r"until|till|to)|good\s+thru|end\s+date",
                         _EXPIRY_VALUE.pattern + r"|(?<!\d)(?:0[1-9]|1[0-2])(?:20)?\d{2}(?!\d)", window=20)
_DOB_KW = _after_keyword("DOB", r"dob|d\.o\.b|date\s+of\s+birth|birth\s*date|born|birthday|b-?day",
                         re.compile(_DATE.pattern + r"|(?<![\d/])\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}(?!\d)",
                                    re.IGNORECASE), window=25)
_PASSPORT = _after_keyword("PASSPORT", r"passport", r"(?<![A-Za-z0-9])[A-Za-z0-9]{6,10}(?![A-Za-z0-9])",
                           window=40, check=lambda v: sum(c.isdigit() for c in v.group()) >= 4)
_SORT_KW = _after_keyword("SORT_CODE", r"sort\s*code", r"(?<![\d\-])\d{2}[ \-]?\d{2}[ \-]?\d{2}(?![\d\-])")
_ACCOUNT_KW = _after_keyword("ACCOUNT", r"(?:bank\s+)?account\s*(?:number|num|no\.?|#)|acc(?:t|ount)?\s*no\.?|a/c",
                             r"(?<![\d\-])\d(?:[ \-]?\d){5,11}(?![\d\-])", window=25)
_SSN_KW = _after_keyword("SSN", r"ssn|social\s+security(?:\s+(?:number|no))?",
                         r"(?<![\d\-])\d{3}[ \-]?\d{2}[ \-]?\d{4}(?![\d\-])")

_SORT_CODE = re.compile(r"\d(?<![\d\-]\d)\d-\d{2}-\d{2}(?![\d\-])")
_ACCOUNT_AFTER_SORT = re.compile(r"(?<!\d)\d{8}(?!\d)")


def _sort_codes(t: str) -> Iterator[Finding]:
    for m in _SORT_CODE.finditer(t):
        yield Finding("SORT_CODE", m.start(), m.end())
        a = _ACCOUNT_AFTER_SORT.search(t, m.end(), min(len(t), m.end() + 40))
        if a:
            yield Finding("ACCOUNT", a.start(), a.end())


def _sort_code_then_account(t: str) -> Iterator[Finding]:
    for f in _SORT_KW(t):
        yield f
        a = _ACCOUNT_AFTER_SORT.search(t, f.end, min(len(t), f.end + 40))
        if a:
            yield Finding("ACCOUNT", a.start(), a.end())


def _regex(kind: str, pattern: str, flags: int = 0) -> Callable[[str], Iterator[Finding]]:
    rx = re.compile(pattern, flags)

    def detect(t: str) -> Iterator[Finding]:
        for m in rx.finditer(t):
            yield Finding(kind, m.start(), m.end())
    return detect


# NINO: two prefix letters, six digits, suffix A-D (any prefix: HMRC's reserved ones, QQ in
# examples, are still somebody's typing and cost nothing to hide)
_NINO = _regex("NINO", r"[A-Z](?<![A-Za-z0-9][A-Za-z])[A-Z][ \-]?\d{2}[ \-]?\d{2}[ \-]?\d{2}"
               r"[ \-]?[A-D](?![A-Za-z0-9])", re.IGNORECASE)
_POSTCODE_SPACED = _regex("POSTCODE", r"[A-Z](?<![A-Za-z0-9][A-Za-z])(?:[A-Z]?\d[A-Z\d]?|IR) \d[A-Z]{2}(?![A-Za-z0-9])",
                          re.IGNORECASE)
_POSTCODE_COMPACT = _regex("POSTCODE", r"[A-Z](?<![A-Za-z0-9][A-Za-z])[A-Z]?\d[A-Z\d]?\d[A-Z]{2}(?![A-Za-z0-9])")
_SSN = _regex("SSN", r"\d(?<![\d\-]\d)\d{2}-\d{2}-\d{4}(?![\d\-])")


def _birth_dates(t: str) -> Iterator[Finding]:
    cutoff = _dt.date.today().year - ADULT_YEARS
    found = list(_DATE_NUM.finditer(t))
    low = t.lower()
    for month in _MONTH_WORDS:            # dates in words: only around the month names there are
        p = low.find(month)
        while p >= 0:
            if p == 0 or not low[p - 1].isalpha():
                found += [m for m in (_DATE_DAY_FIRST.search(t, max(0, p - 12), p + 12),
                                      _DATE_MONTH_FIRST.match(t, p)) if m]
            p = low.find(month, p + 3)
    for m in found:
        year = _date_year(m)
        if year is not None and 1900 <= year <= cutoff:
            yield Finding("DOB", m.start(), m.end())


_PHONE = re.compile(r"[+(\d](?<![\w+/.,£$€][+(\d])(?:(?<=[+(])\d|(?<=\d))[\d \-.()]{5,22}\d(?![\d%])")
_PHONE_INTL = re.compile(r"^(?:\+|00)[1-9]")
_PHONE_US = re.compile(r"^(?:1[ \-.]?)?(?:\([2-9]\d{2}\)|[2-9]\d{2})[ \-.]?\d{3}[ \-.]\d{4}$")
_PHONE_COMPACT = re.compile(r"^\d{10,11}$")


def _phones(t: str) -> Iterator[Finding]:
    for m in _PHONE.finditer(t):
        s = m.group()
        n = sum(map(str.isdigit, s))
        if _PHONE_INTL.match(s):
            ok = 9 <= n - (2 if s.startswith("00") else 0) <= 15
        elif s.startswith(("0", "(0")):
            ok = 9 <= n <= 12 and s.count(".") != 1          # "0.5" etc. are not numbers to call
        else:
            ok = bool(_PHONE_US.match(s) or _PHONE_COMPACT.match(s))
        if ok:
            yield Finding("PHONE", m.start(), m.end())


@dataclass
class _Scan:
    """Cheap facts about a text that tell which detectors can possibly fire (one regex pass)."""

    text: str
    low: str
    longest: int          # most digits in one cluster (digits joined by up to 3 separators)
    letter_digit: bool    # a letter directly before a digit (postcodes, NINOs, IBANs)

    def has(self, *words: str) -> bool:
        return any(w in self.low for w in words)


_CLUSTER = re.compile(r"\d(?:[ \-./_()+\n]{0,3}\d)*")


def _scan(t: str) -> _Scan:
    longest, letter_digit = 0, False
    for m in _CLUSTER.finditer(t):
        i = m.start()
        letter_digit = letter_digit or (i > 0 and (t[i - 1].isalpha() or (t[i - 1] == " " and i > 1
                                                                            and t[i - 2].isalpha())))
        cluster = m.group()
        n = len(cluster) if cluster.isdigit() else sum(map(str.isdigit, cluster))
        longest = max(longest, n)
    return _Scan(t, t.lower(), longest, letter_digit)


Gate = Callable[[_Scan], bool]
# (gate, detector): a detector runs only when its gate says it could find something.
DETECTORS: tuple[tuple[Gate, Callable[[str], Iterator[Finding]]], ...] = (
    (lambda s: "@" in s.text, _emails),
    (lambda s: s.longest >= 6 and s.letter_digit, _ibans),
    (lambda s: s.longest >= 3 and s.has("cvv", "cvc", "csc", "cid", "security", "verification", "digit code"), _CVV),
    (lambda s: s.longest >= 3 and s.has("exp", "valid", "good thru", "end date"), _EXPIRY),
    (lambda s: s.longest >= 2 and s.has("dob", "d.o.b", "birth", "born", "bday", "b-day"), _DOB_KW),
    (lambda s: s.has("passport"), _PASSPORT),
    (lambda s: s.longest >= 9 and s.has("ssn", "social"), _SSN_KW),
    (lambda s: s.longest >= 6 and s.has("sort"), _sort_code_then_account),
    (lambda s: s.longest >= 6 and s.has("acc", "a/c"), _ACCOUNT_KW),
    (lambda s: s.longest >= 4 and s.has("pin"), _PIN),
    (lambda s: s.longest >= 13, _cards),
    (lambda s: s.longest >= 6 and s.letter_digit, _NINO),
    (lambda s: s.longest >= 9 and "-" in s.text, _SSN),
    (lambda s: s.longest >= 6 and "-" in s.text, _sort_codes),
    (lambda s: s.letter_digit, _POSTCODE_SPACED),
    (lambda s: s.letter_digit, _POSTCODE_COMPACT),
    (lambda s: s.longest >= 4, _birth_dates),
    (lambda s: s.longest >= 9, _phones),
)
_TRIGGER = re.compile(r"[\d@]")


def find(text: str) -> list[Finding]:
    """The personal data in ``text``, in order, without overlaps."""
    if not text or not _TRIGGER.search(text):
        return []
    t = normalise(text)
    scan = _scan(t)
    starts: list[int] = []          # the findings kept so far, sorted by start (they never overlap)
    taken: list[Finding] = []
    for gate, detect in DETECTORS:
        if not gate(scan):
            continue
        for f in detect(t):
            i = bisect.bisect_left(starts, f.start)
            if f.end <= f.start or (i < len(taken) and taken[i].start < f.end) \
                    or (i > 0 and taken[i - 1].end > f.start):
                continue            # overlaps a finding of an earlier (stronger) detector
            starts.insert(i, f.start)
            taken.insert(i, f)
    return taken


def mask(text: str) -> str:
    """``text`` with each piece of personal data replaced by its token (``[CARD]``, ``[IBAN]``...)."""
    found = find(text)
    if not found:
        return text
    out, pos = [], 0
    for f in found:
        out.append(text[pos:f.start])
        out.append(f"[{f.kind}]")
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def contains_pii(text: str) -> bool:
    return bool(find(text))


def mask_mapping(value: Any) -> Any:
    """``value`` (a dict, list, tuple or string, nested) with every string masked; other
    values as they are.  Keys are kept (they name fields, they are not data)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: mask_mapping(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_mapping(v) for v in value)
    return value
