#!/usr/bin/env python3
"""Signatures made by the senders' own Python SDKs, for tests/senders.rs to verify.

Each case is a request as the SDK signs it: a preset, the secret, the body, the headers, the
URL for the schemes that sign it, and the time it was signed at. Inputs are fixed and every
signature here is deterministic (HMACs, and Ed25519), so the output changes only when an SDK
signs differently.

    python3 tests/sdk/make_signatures.py > tests/sdk/signatures.json   # regenerate
    python3 tests/sdk/make_signatures.py --check tests/sdk/signatures.json

`--check` regenerates and compares the cases with the pinned file (the recorded SDK versions
may differ; that is reported, not a failure).

Needs: python3 -m pip install stripe twilio svix pynacl
"""

import datetime
import importlib.metadata
import json
import sys

import nacl.signing
import stripe
import svix.webhooks
import twilio.request_validator

SDKS = ["stripe", "twilio", "svix", "PyNaCl"]

# Fixed times: verification in the tests is pinned to the same instant.
AT = 1_700_000_000
AT_UTC = datetime.datetime.fromtimestamp(AT, tz=datetime.timezone.utc)


def stripe_cases():
    secret = "whsec_test_secret"
    other = "whsec_other_secret"
    body = '{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"invoice.paid"}'
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=AT)
    stripe.WebhookSignature.verify_header(body, header, secret)
    # A sender rolling its secret signs with both: any v1 may match.
    rolled = stripe.WebhookSignature.generate_signature_header(body, other, timestamp=AT)
    both = header + "," + rolled.split(",", 1)[1]
    stripe.WebhookSignature.verify_header(body, both, secret)
    return [
        case("stripe", "stripe: one v1", secret, body, {"stripe-signature": header}),
        case("stripe", "stripe: v1 of another secret first", secret, body,
             {"stripe-signature": rolled + "," + header.split(",", 1)[1]}),
        case("stripe", "stripe: two v1, this secret's first", secret, body,
             {"stripe-signature": both}),
    ]


def standard_cases():
    cases = []
    # Svix's documented example secret and message.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"test": 2432232314}'
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    webhook = svix.webhooks.Webhook(secret)
    signature = webhook.sign(msg_id, AT_UTC, body)
    for preset, prefix in [("svix", "svix"), ("standard-webhooks", "webhook")]:
        headers = {
            f"{prefix}-id": msg_id,
            f"{prefix}-timestamp": str(AT),
            f"{prefix}-signature": signature,
        }
        cases.append(case(preset, f"{preset}: svix SDK", secret, body, headers))
    return cases


def twilio_cases():
    token = "12345"
    validator = twilio.request_validator.RequestValidator(token)
    cases = []
    # Twilio's documented example: the URL it called and the fields of a <Gather> callback.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    fields = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]
    signature = validator.compute_signature(url, dict(fields))
    assert validator.validate(url, dict(fields), signature)
    cases.append(case("twilio", "twilio: documented form example", token,
                      form(fields), {"x-twilio-signature": signature}, url=url,
                      content_type="application/x-www-form-urlencoded"))
    # A status callback, fields in the order Twilio posts them (not sorted).
    url = "https://hooks.example.com/api/trigger/webhook/0190c0de-0000-7000-8000-000000000001"
    fields = [
        ("SmsSid", "SM1f0e8ae6ade43cb3c0ce4525424e404f"),
        ("SmsStatus", "delivered"),
        ("MessageStatus", "delivered"),
        ("To", "+15558675310"),
        ("MessageSid", "SM1f0e8ae6ade43cb3c0ce4525424e404f"),
        ("AccountSid", "AC0000000000000000000000000000000a"),
        ("From", "+15017122661"),
        ("ApiVersion", "2010-04-01"),
    ]
    signature = validator.compute_signature(url, dict(fields))
    cases.append(case("twilio", "twilio: status callback form", token, form(fields),
                      {"x-twilio-signature": signature,
                       "i-twilio-idempotency-token": "8f6b0ba1-6c9c-4c0c-9a3f-2f3c5b9c9a10"},
                      url=url, content_type="application/x-www-form-urlencoded"))
    # A JSON body: its SHA-256 travels in the signed URL.
    body = '{"event":"com.twilio.messaging.message.delivered","data":{"messageSid":"SM1"}}'
    url = ("https://hooks.example.com/api/trigger/webhook/0190c0de-0000-7000-8000-000000000001"
           "?bodySHA256=" + validator.compute_hash(body))
    signature = validator.compute_signature(url, {})
    assert validator.validate(url, body, signature)
    cases.append(case("twilio", "twilio: JSON body with bodySHA256", token, body,
                      {"x-twilio-signature": signature}, url=url))
    return cases


def discord_cases():
    # A fixed seed: Ed25519 signatures are deterministic.
    key = nacl.signing.SigningKey(bytes(range(32)))
    public_key = key.verify_key.encode().hex()
    cases = []
    for name, body in [
        ("discord: PING", '{"id":"1180000000000000001","type":1,"application_id":"1"}'),
        ("discord: slash command", '{"id":"1180000000000000002","type":2,'
                                   '"data":{"id":"3","name":"triage","type":1},'
                                   '"token":"aW50ZXJhY3Rpb24"}'),
    ]:
        timestamp = str(AT)
        signature = key.sign((timestamp + body).encode()).signature.hex()
        key.verify_key.verify((timestamp + body).encode(), bytes.fromhex(signature))
        cases.append(case("discord", name, public_key, body, {
            "x-signature-ed25519": signature,
            "x-signature-timestamp": timestamp,
        }))
    return cases


def form(fields):
    from urllib.parse import urlencode
    return urlencode(fields)


def case(preset, name, secret, body, headers, url=None, content_type="application/json"):
    return {
        "name": name,
        "preset": preset,
        "secret": secret,
        "body": body,
        "headers": headers,
        "url": url,
        "content_type": content_type,
        "at": AT,
    }


def generate():
    return {
        "about": "Made by tests/sdk/make_signatures.py with the senders' SDKs; verified by tests/senders.rs.",
        "sdk_versions": {name: importlib.metadata.version(name) for name in SDKS},
        "cases": stripe_cases() + standard_cases() + twilio_cases() + discord_cases(),
    }


def main():
    fixture = generate()
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        with open(sys.argv[2]) as pinned_file:
            pinned = json.load(pinned_file)
        if pinned["sdk_versions"] != fixture["sdk_versions"]:
            print(f"SDK versions differ from the pinned file's: {pinned['sdk_versions']}"
                  f" pinned, {fixture['sdk_versions']} here")
        if pinned["cases"] != fixture["cases"]:
            pinned_cases = {case["name"]: case for case in pinned["cases"]}
            for made in fixture["cases"]:
                if pinned_cases.get(made["name"]) != made:
                    print(f"differs: {made['name']}\n  pinned: {pinned_cases.get(made['name'])}"
                          f"\n  made:   {made}")
            print("the SDKs sign differently from the pinned fixture")
            sys.exit(1)
        print(f"{len(fixture['cases'])} SDK signatures match the pinned fixture")
        return
    if len(sys.argv) != 1:
        sys.exit(__doc__)
    json.dump(fixture, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
