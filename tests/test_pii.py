"""``tuneforge.pii``: a table of personal data in the shapes people type it, and text that must survive."""

from __future__ import annotations

import re
import time

import pytest
from stdnum import iban as stdnum_iban
from stdnum import luhn

from tuneforge.pii import contains_pii, find, mask, mask_mapping

# -- cards: Luhn-valid test numbers of each network, in every separator style ------------
CARDS = {  # number -> grouping
    "visa": ("4111111111111111", (4, 4, 4, 4)),
    "visa2": ("4012888888881881", (4, 4, 4, 4)),
    "visa13": ("4222222222222", (4, 4, 4, 1)),
    "mastercard": ("5555555555554444", (4, 4, 4, 4)),
    "mastercard2": ("2223003122003222", (4, 4, 4, 4)),
    "amex": ("378282246310005", (4, 6, 5)),
    "discover": ("6011111111111117", (4, 4, 4, 4)),
}
SEPARATORS = {"space": " ", "dash": "-", "dot": ".", "slash": "/", "underscore": "_", "double-space": "  ",
              "nbsp": "\u00a0", "en-dash": "\u2013", "newline": "\n", "thin-space": "\u2009"}


def _grouped(number: str, groups: tuple[int, ...], sep: str) -> str:
    out, i = [], 0
    for g in groups:
        out.append(number[i:i + g])
        i += g
    return sep.join(out)


CASES: list[tuple[str, str, str, str]] = []   # (id, text, secret, token)
for card, (number, groups) in CARDS.items():
    assert luhn.is_valid(number), card
    CASES.append((f"card-{card}-compact", f"my card is {number} thanks", number, "[CARD]"))
    for sep_name, sep in SEPARATORS.items():
        if card in ("visa", "amex", "mastercard") or sep_name in ("nbsp", "en-dash", "newline", "dot"):
            CASES.append((f"card-{card}-{sep_name}", f"card {_grouped(number, groups, sep)} was stolen",
                          number, "[CARD]"))
CASES += [
    ("card-luhn-invalid-still-masked", "number 4111 1111 1111 1112 please", "4111111111111112", "[CARD]"),
    ("card-19-digits", "card 6011 1111 1111 1111 117 ok", "6011111111111111117", "[CARD]"),
    ("card-en-dash-spaced", "4111 \u2013 1111 \u2013 1111 \u2013 1111", "4111111111111111", "[CARD]"),
    ("iban-bad-check-digit-still-masked", "iban DE00 3704 0044 0532 0130 00 ok", "37040044053201300", "[IBAN]"),
    ("card-zero-width", "4111\u200b1111\u200b1111\u200b1111", "4111111111111111", "[CARD]"),
]

# -- IBANs: valid numbers of eight countries, compact, in groups of four, dashed, lower case --
IBANS = {"DE": "DE89370400440532013000", "GB": "GB29NWBK60161331926819", "FR": "FR1420041010050500013M02606",
         "ES": "ES9121000418450200051332", "NL": "NL91ABNA0417164300", "IT": "IT60X0542811101000000123456",
         "BE": "BE71096123456769", "CH": "CH9300762011623852957"}
for cc, number in IBANS.items():
    assert stdnum_iban.is_valid(number), cc
    groups = stdnum_iban.format(number)
    CASES += [
        (f"iban-{cc}-compact", f"send it to {number} today", number, "[IBAN]"),
        (f"iban-{cc}-groups", f"IBAN: {groups} thanks", number, "[IBAN]"),
        (f"iban-{cc}-dashes", f"iban {groups.replace(' ', '-')} ok", number, "[IBAN]"),
        (f"iban-{cc}-lower", f"my iban is {groups.lower()}", number, "[IBAN]"),
    ]

CASES += [
    # CVV and expiry
    ("cvv-keyword", "the cvv is 123", "123", "[CVV]"),
    ("cvc-colon", "CVC: 456", "456", "[CVV]"),
    ("cvv2-amex", "cvv2 1234", "1234", "[CVV]"),
    ("security-code", "security code on the back: 987", "987", "[CVV]"),
    ("cvv-after-card", "4111 1111 1111 1111 123", "123", "[CVV]"),
    ("expiry-mm-yy", "exp 12/27", "12/27", "[EXPIRY]"),
    ("expiry-mm-yyyy", "expiry date 09/2028", "09/2028", "[EXPIRY]"),
    ("expiry-valid-thru", "valid thru 03-29", "03-29", "[EXPIRY]"),
    ("expiry-month-name", "it expires March 2027", "2027", "[EXPIRY]"),
    ("expiry-compact", "exp 0127", "0127", "[EXPIRY]"),
    ("expiry-after-card", "5555 5555 5555 4444 11/26", "11/26", "[EXPIRY]"),
    # phones
    ("phone-uk-intl", "call me on +44 20 7946 0958", "2079460958", "[PHONE]"),
    ("phone-uk-0044", "0044 20 7946 0958", "2079460958", "[PHONE]"),
    ("phone-uk-mobile", "my mobile is 07700 900123", "07700900123", "[PHONE]"),
    ("phone-uk-brackets", "ring (020) 7946 0018", "02079460018", "[PHONE]"),
    ("phone-uk-plus-zero", "+44 (0)20 7946 0018", "2079460018", "[PHONE]"),
    ("phone-us-brackets", "or (555) 123-4567", "5551234567", "[PHONE]"),
    ("phone-us-dots", "555.123.4567", "5551234567", "[PHONE]"),
    ("phone-us-plus1", "+1 415 555 2671", "4155552671", "[PHONE]"),
    ("phone-de-intl", "+49 30 12345678", "3012345678", "[PHONE]"),
    ("phone-de-national", "Tel. 030 12345678", "03012345678", "[PHONE]"),
    ("phone-de-mobile", "0151 23456789", "015123456789", "[PHONE]"),
    ("phone-fr-intl", "+33 1 42 68 53 00", "142685300", "[PHONE]"),
    ("phone-compact", "number 07700900123", "07700900123", "[PHONE]"),
    # e-mails
    ("email-plain", "write to jane@example.com", "jane@example.com", "[EMAIL]"),
    ("email-plus", "john.doe+bank@example.co.uk", "john.doe+bank@example.co.uk", "[EMAIL]"),
    ("email-subdomain", "a_b-c@mail.eu.example.org is mine", "a_b-c@mail.eu.example.org", "[EMAIL]"),
    ("email-digits", "it is j.smith1985@gmail.com", "j.smith1985@gmail.com", "[EMAIL]"),
    # dates of birth
    ("dob-keyword-slash", "dob 12/03/1985", "12/03/1985", "[DOB]"),
    ("dob-keyword-short-year", "DOB: 12.03.85", "12.03.85", "[DOB]"),
    ("dob-date-of-birth-iso", "date of birth: 1985-03-12", "1985-03-12", "[DOB]"),
    ("dob-born-words", "I was born 12 March 1985", "12 March 1985", "[DOB]"),
    ("dob-born-us", "born on March 12, 1985", "March 12, 1985", "[DOB]"),
    ("dob-birthday-ordinal", "my birthday is the 3rd of May 1990", "1990", "[DOB]"),
    ("dob-standalone-old-date", "it is 12/03/1985 on my id", "12/03/1985", "[DOB]"),
    ("dob-standalone-words", "12 March 1985", "12 March 1985", "[DOB]"),
    ("dob-keyword-recent-year", "born 02/01/2019", "02/01/2019", "[DOB]"),
    # UK bank details, NINO, passport, postcode, SSN
    ("sort-code-dashed", "sort code 12-34-56", "12-34-56", "[SORT_CODE]"),
    ("sort-code-standalone", "pay 20-00-00 please", "20-00-00", "[SORT_CODE]"),
    ("sort-code-compact-keyword", "sort code 123456", "123456", "[SORT_CODE]"),
    ("account-after-sort-code", "sort code 12-34-56 account 12345678", "12345678", "[ACCOUNT]"),
    ("account-keyword", "account number 87654321", "87654321", "[ACCOUNT]"),
    ("account-acc-no", "acc no. 31926819", "31926819", "[ACCOUNT]"),
    ("nino-spaced", "NI number AB 12 34 56 C", "123456", "[NINO]"),
    ("nino-compact", "my nino is QQ123456A", "123456", "[NINO]"),
    ("nino-lower", "ni: ab123456c", "123456", "[NINO]"),
    ("passport-uk", "passport number 123456789", "123456789", "[PASSPORT]"),
    ("passport-de", "my passport is C01X00T47", "C01X00T47", "[PASSPORT]"),
    ("passport-no", "Passport No: 502135326", "502135326", "[PASSPORT]"),
    ("postcode-london", "I live at SW1A 1AA", "SW1A 1AA", "[POSTCODE]"),
    ("postcode-lower", "postcode m1 1ae please", "m1 1ae", "[POSTCODE]"),
    ("postcode-compact", "EC1A1BB", "EC1A1BB", "[POSTCODE]"),
    ("postcode-short", "flat 2, B33 8TH", "B33 8TH", "[POSTCODE]"),
    ("ssn-dashed", "ssn 123-45-6789", "123-45-6789", "[SSN]"),
    ("ssn-keyword-compact", "social security number 123456789", "123456789", "[SSN]"),
    ("ssn-standalone", "it's 078-05-1120", "078-05-1120", "[SSN]"),
    ("pin-keyword", "my PIN is 4321", "4321", "[PIN]"),
]


def _digit_runs(secret: str) -> list[str]:
    return [r for r in re.findall(r"\d+", secret) if len(r) >= 2]


@pytest.mark.parametrize("text, secret, token", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_personal_data_is_masked(text, secret, token):
    out = mask(text)
    assert token in out, out
    compact = re.sub(r"\D", "", out)
    secret_digits = re.sub(r"\D", "", secret)
    assert secret_digits not in compact or not secret_digits, out
    for run in _digit_runs(secret):
        assert run not in out, (run, out)
    if not secret_digits:               # e-mails, letters-only secrets
        assert secret.lower() not in out.lower()
    assert contains_pii(text)


NEGATIVES = [
    "I was charged twice",
    "I paid £250.00 on 12/03/2024",
    "transfer of $1,200 in 2023",
    "the ATM took £20.50 at 10:30",
    "it has been 3 days",
    "top up 20",
    "can I top up 100 pounds?",
    "my PIN is blocked after 3 tries",
    "order 123456 arrived",
    "I made 5 transactions today",
    "in 2019 2020 2021 I used the app",
    "5 transactions on 12.03.2026 at 10.30",
    "refund of 1.5% within 3-5 working days",
    "support is 24/7",
    "between 9am and 5pm",
    "version 2.3.1 of the app crashes",
    "the fee was €3.99 per month",
    "I have 2 cards and 1 account",
    "card declined at the shop",
    "where is my new card?",
    "my card expires soon",
    "my passport photo was rejected",
    "exchange rate 1.1734 looks wrong",
    "charged 12 times since 01/02/2025",
    "I'm 34 years old",
    "cancel payment of 1,234.56 GBP",
    "room 101, floor 3",
    "Oslo Børs VPS : Rate Fixing NO0010861081 2019-11-25 #OSE",    # an ISIN, not an IBAN
    "EPS of $1.25 vs $1.10 est, revenue up 12.5% to $3.2B",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_ordinary_text_survives(text):
    assert mask(text) == text
    assert not contains_pii(text)


def test_corpus_is_big_enough():
    assert len(CASES) >= 120 and len(NEGATIVES) >= 20


def test_find_reports_kinds_and_offsets_in_the_original():
    text = "card 4111\u00a01111\u00a01111\u00a01111, mail a@b.co"
    found = find(text)
    assert [f.kind for f in found] == ["CARD", "EMAIL"]
    assert text[found[0].start:found[0].end] == "4111\u00a01111\u00a01111\u00a01111"
    assert text[found[1].start:found[1].end] == "a@b.co"


def test_several_kinds_in_one_text():
    text = ("Hi, I'm Jane (jane@example.com, +44 7700 900123). Card 4111-1111-1111-1111 exp 12/27 "
            "cvv 123; refund £250.00 to GB29 NWBK 6016 1331 9268 19. DOB 12/03/1985, SW1A 1AA.")
    out = mask(text)
    for token in ("[EMAIL]", "[PHONE]", "[CARD]", "[EXPIRY]", "[CVV]", "[IBAN]", "[DOB]", "[POSTCODE]"):
        assert token in out
    assert "Jane" in out and "£250.00" in out        # names and amounts are not masked
    assert not re.search(r"\d{3,}", out.replace("250.00", ""))


def test_mask_mapping_masks_nested_strings_only():
    row = {"user": "call 07700 900123", "n": 3, "turns": [{"text": "iban DE89370400440532013000"}],
           "pair": ("ok", "a@b.co")}
    assert mask_mapping(row) == {"user": "call [PHONE]", "n": 3, "turns": [{"text": "iban [IBAN]"}],
                                 "pair": ("ok", "[EMAIL]")}


def test_empty_and_non_trigger_texts():
    assert mask("") == "" and mask("hello there") == "hello there"


@pytest.mark.parametrize("text", ["a" * 10000 + "@", "a." * 5000 + "@b", "1" * 10000, "1 " * 5000, "12/" * 3300,
                                  "4111 " * 2000, "DE89 " + "AB12 " * 2000, "passport " * 1000 + "1", "(1) " * 2500,
                                  "@" * 10000, "@a" + "1" * 9000])
def test_hostile_long_texts_stay_linear(text):
    t0 = time.process_time()
    mask(text)
    assert time.process_time() - t0 < 0.5   # ~3 ms here; quadratic patterns took 0.3-0.4 s


def test_email_at_the_very_start_and_after_a_stray_at():
    assert mask("@ then a@b.co") == "@ then [EMAIL]"
    assert mask("x@y z@example.org") == "x@y [EMAIL]"


def test_mask_is_fast():
    text = ("Hello, my card 4111 1111 1111 1111 was charged twice on 12/03/2024 for £250.00; "
            "please refund to GB29 NWBK 6016 1331 9268 19 or call me on +44 7700 900123. "
            "Thanks, my e-mail is jane.doe@example.com")[:200]
    mask(text)
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        mask(text)
    per_call = (time.perf_counter() - t0) / n
    assert per_call < 2e-3, f"mask() took {per_call * 1e6:.0f} µs on 200 chars"


def test_real_support_questions_are_left_alone():
    """BANKING77 questions (bundled with the support bot) hold no personal data: none may change."""
    import csv
    from importlib.resources import files

    data = files("tuneforge.plugins.support_bot") / "data"
    texts = []
    for name in ("train.csv", "test.csv"):
        with (data / name).open(newline="", encoding="utf-8") as f:
            texts += [row["text"] for row in csv.DictReader(f)]
    assert len(texts) > 10_000 and sum(any(c.isdigit() for c in t) for t in texts) > 200
    changed = [t for t in texts if mask(t) != t]
    assert changed == []
