#!/usr/bin/env python3
"""Labeled values from Faker (PyPI), for `cargo xtask classify-quality --faker`.

A second opinion on the classifier's quality: the values come from a library written by
other people, with its own formats per locale, not from our generator. Prints one JSON
object per line: {"label": type or "", "key": field name, "value": text, "embed": bool}.
`embed` values are put inside a sentence under a neutral name, the others under `key`.

Usage: faker_values.py COUNT_PER_KIND SEED
"""
import json
import sys

from faker import Faker

n = int(sys.argv[1])
Faker.seed(int(sys.argv[2]))
locales = ["en_US", "en_GB", "en_IN", "es_ES", "nl_NL", "de_DE", "fr_FR", "it_IT", "pt_BR"]
fk = Faker(locales)
us, gb, es, nl = fk["en_US"], fk["en_GB"], fk["es_ES"], fk["nl_NL"]


def out(label, key, value, embed=False):
    print(json.dumps({"label": label, "key": key, "value": str(value), "embed": embed}))


# Where Faker's values are not valid for their type, they are scored as look-alikes (a
# classifier with validators should pass them over):
# - JCB cards outside JCB's range (3528-3589) and Maestro cards starting 0604;
# - IBANs of the wrong length for their country: Faker's default provider makes GB IBANs
#   of 21 characters (the format has 22); en_GB's own are right.
# Aadhaar numbers are left out: Faker appends a Luhn digit where UIDAI uses Verhoeff, so
# its numbers are valid only by chance (one in ten).
def card(kind):
    v = us.credit_card_number(kind)
    invalid = v.startswith("0") or v.startswith("35") and not 3528 <= int(v[:4]) <= 3589
    return ("" if invalid else "credit_card"), v


# IBAN lengths by country (the SWIFT registry), for the countries Faker makes.
IBAN_LENGTHS = {"GB": 22, "DE": 22, "ES": 24, "NL": 18, "FR": 27, "IT": 27, "BR": 29, "PT": 25}


def iban(v):
    return ("iban" if IBAN_LENGTHS.get(v[:2], len(v)) == len(v) else ""), v


CARD_TYPES = ["visa", "visa16", "visa19", "mastercard", "amex", "discover", "jcb15", "jcb16", "diners", "maestro"]

for i in range(n):
    pick = lambda xs: xs[i % len(xs)]  # noqa: E731
    # Planted: every type Faker can make, under names an API would use.
    label, v = card(pick(CARD_TYPES))
    out(label, pick(["card_number", "cardNumber", "pan", "cc_number"]), v)
    # In free text, cards of 13 to 19 digits: a 12-digit Maestro number cannot be told from
    # other 12-digit numbers without a name (it is planted under card names above).
    label, v = card(pick([t for t in CARD_TYPES if t != "maestro"]))
    out(label, "note", v, embed=True)
    out("us_ssn", pick(["ssn", "social_security_number", "taxpayerId"]), us.ssn())
    loc = pick(locales)
    label, v = iban(fk[loc].iban())
    out(label, pick(["iban", "bank_account_iban", "ibanNumber"]), v)
    label, v = iban(fk[loc].iban())
    out(label, "comment", v, embed=True)
    out("us_aba_routing", pick(["routing_number", "abaRouting", "bank_routing"]), us.aba())
    out("email", pick(["email", "contactEmail", "user_email"]), fk[pick(locales)].email())
    out("email", "message", fk[pick(locales)].free_email(), embed=True)
    out("phone", pick(["phone", "phone_number", "mobile", "telephone"]), fk[pick(locales)].phone_number())
    out("ip_address", pick(["ip", "client_ip", "remote_addr"]), us.ipv4_public())
    out("ip_address", pick(["ipv6", "source_ip"]), us.ipv6())
    out("date_of_birth", pick(["date_of_birth", "dob", "birthDate"]), us.date_of_birth().isoformat())
    out("passport", pick(["passport_number", "passportNo", "passport"]), fk[pick(["en_US", "de_DE", "fr_FR", "en_GB"])].passport_number())
    out("es_dni", pick(["dni", "nif", "documento"]), es.nif())
    out("es_dni", pick(["nie", "nif"]), es.nie())
    out("nl_bsn", pick(["bsn", "burgerservicenummer"]), nl.ssn())
    out("password", pick(["password", "new_password", "passwd"]), us.password(length=12 + i % 8))

    # Hard negatives: look-alikes under the names they come with.
    out("", pick(["order_number", "tracking_number", "invoice_id"]), us.credit_card_number(pick(CARD_TYPES)))
    out("", pick(["ean", "barcode", "gtin"]), us.ean13())
    out("", pick(["isbn", "isbn13"]), us.isbn13(separator=pick(["-", ""])))
    out("", pick(["isbn10"]), us.isbn10(separator=""))
    out("", pick(["id", "request_id", "uuid"]), us.uuid4())
    out("", pick(["sha1", "checksum", "etag"]), pick([us.sha1(), us.md5(), us.sha256()]))
    out("", pick(["created_at", "updated_at", "timestamp"]), us.date_time().isoformat())
    out("", pick(["amount", "total", "count", "quantity"]), us.pyint(min_value=1000000, max_value=99999999999))
    out("", pick(["postcode", "zip"]), fk[pick(locales)].postcode())
    out("", pick(["cvv", "security_code"]), us.credit_card_security_code())
    out("", pick(["expiry", "exp"]), us.credit_card_expire())
    out("", pick(["version", "build"]), us.numerify("#.#.##"))
    out("", pick(["sku", "item_code"]), us.bothify("??-########").upper())
    out("", pick(["reference", "ref"]), us.numerify("##########"))
    out("", pick(["license_plate", "plate"]), fk[pick(locales)].license_plate())
    out("", pick(["color", "colour"]), us.hex_color())
    out("", pick(["port", "local_port"]), us.port_number())
    # A UK National Insurance number with the ZZ prefix is HMRC's placeholder, never
    # issued: Faker's en_GB numbers all have it.
    out("", pick(["national_insurance_number", "nino"]), gb.ssn())
