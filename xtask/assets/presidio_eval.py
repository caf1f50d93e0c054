"""Run Microsoft Presidio's predefined pattern recognizers on labeled values.

Input: a JSONL file of {"key": ..., "value": ...}. Each value is analyzed as the text
"key: value" (the key gives Presidio's context words a chance; no NLP model is loaded, as
none can be downloaded here). Output: the seconds spent analyzing, then one JSON object per
input line: each type found (in apiwatch's names) with Presidio's highest score for it. The
caller decides the score threshold (Presidio's default is 0: any result counts).
Used by `cargo xtask classify-quality --presidio PYTHON`.
"""
import json
import sys
import time

from presidio_analyzer.predefined_recognizers import (
    AbaRoutingRecognizer,
    CreditCardRecognizer,
    EmailRecognizer,
    EsNieRecognizer,
    EsNifRecognizer,
    IbanRecognizer,
    InAadhaarRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UkNinoRecognizer,
    UsPassportRecognizer,
    UsSsnRecognizer,
)

NAMES = {
    "CREDIT_CARD": "credit_card",
    "US_SSN": "us_ssn",
    "IBAN_CODE": "iban",
    "ABA_ROUTING_NUMBER": "us_aba_routing",
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "IP_ADDRESS": "ip_address",
    "US_PASSPORT": "passport",
    "UK_NINO": "uk_nino",
    "IN_AADHAAR": "in_aadhaar",
    "ES_NIF": "es_dni",
    "ES_NIE": "es_dni",
}

recognizers = [
    CreditCardRecognizer(),
    UsSsnRecognizer(),
    IbanRecognizer(),
    AbaRoutingRecognizer(),
    EmailRecognizer(),
    PhoneRecognizer(),
    IpRecognizer(),
    UsPassportRecognizer(),
    UkNinoRecognizer(),
    InAadhaarRecognizer(),
    EsNifRecognizer(),
    EsNieRecognizer(),
]

rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
answers = []
t0 = time.perf_counter()
for row in rows:
    text = "%s: %s" % (row["key"], row["value"])
    found = {}
    for r in recognizers:
        for res in r.analyze(text, r.supported_entities, None) or []:
            if res.entity_type in NAMES:
                name = NAMES[res.entity_type]
                found[name] = max(found.get(name, 0.0), float(res.score))
    answers.append(found)
secs = time.perf_counter() - t0
print(secs)
for a in answers:
    print(json.dumps(a))
