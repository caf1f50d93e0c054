use super::*;

fn scan_json(body: &str) -> Vec<Finding> {
    let c = Classifier::new(Config::default());
    let mut out = Vec::new();
    assert!(c.scan_json(Location::ResponseBody, body.as_bytes(), &mut out), "valid JSON");
    out
}

fn types(f: &[Finding]) -> Vec<(&'static str, String)> {
    f.iter().map(|f| (f.ty.name(), f.field.clone())).collect()
}

#[test]
fn json_field_paths_and_types() {
    let body = r#"{"customer":{"name":"Jane Doe","email":"jane.doe@example.com","phone":"(415) 555-0132",
        "card":{"number":"4111 1111 1111 1111","exp":"12/29"},"ssn":"536-90-1234","dob":"1984-07-02",
        "cards":[{"pan":"5555555555554444"},{"pan":"378282246310005"}]},
        "bank":{"iban":"GB82 WEST 1234 5698 7654 32","routing":"011000015"},
        "auth":{"password":"hunter2!x","token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"},
        "client_ip":"203.0.113.9"}"#;
    let f = scan_json(body);
    let t = types(&f);
    for want in [
        ("email", "$.customer.email"),
        ("phone", "$.customer.phone"),
        ("credit_card", "$.customer.card.number"),
        ("us_ssn", "$.customer.ssn"),
        ("date_of_birth", "$.customer.dob"),
        ("credit_card", "$.customer.cards[*].pan"),
        ("iban", "$.bank.iban"),
        ("us_aba_routing", "$.bank.routing"),
        ("password", "$.auth.password"),
        ("jwt", "$.auth.token"),
        ("ip_address", "$.client_ip"),
    ] {
        assert!(t.contains(&(want.0, want.1.to_string())), "missing {want:?} in {t:?}");
    }
    assert_eq!(t.iter().filter(|x| x.0 == "credit_card").count(), 3);
    let jwt = f.iter().find(|f| f.ty == DataType::Jwt).unwrap();
    assert_eq!(jwt.detail.as_deref(), Some("HS256"));
    // Nothing in clear.
    for f in &f {
        for secret in ["4111 1111 1111 1111", "536-90-1234", "hunter2!x", "jane.doe@example.com", "1984-07-02"] {
            assert!(!f.masked.contains(secret), "{f:?}");
        }
    }
}

#[test]
fn hard_negatives_stay_quiet() {
    // Order numbers, timestamps, UUIDs, hashes, versions, Luhn-valid tracking numbers,
    // prices, phone-like ids.
    let body = r#"{"order_id":"4111111111111111","tracking_number":"4012888888881881","created":1732300000000,
        "id":"3f2504e0-4f89-11d3-9a0c-0305e82c3301","sha":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "version":"1.2.3.4","build":"10.0.19045.3803","amount":"123456789","invoice":"INV-536-90-1234",
        "customer_id":4111111111111111,"sku":"AB123456C-X","ref":"ab12cd34ef56","count":5555555555554444,
        "note":"call me at extension 5550132","zip":"94107","items":[1,2,3],"ts":"2024-05-01T10:00:00Z"}"#;
    let f = scan_json(body);
    assert!(f.is_empty(), "{:?}", types(&f));
}

#[test]
fn provider_keys_and_private_keys() {
    let c = Classifier::new(Config::default());
    let mut out = Vec::new();
    let text = "aws_access_key_id=AKIAIOSFODNN7EXAMPLE\n\
        token ghp_abcdefghijklmnopqrstuvwxyz0123456789 and glpat-abcdefghij0123456789\n\
        slack xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx stripe sk_live_abcdefghijklmnopqrstuvwx\n\
        google AIzaSyA-abcdefghijklmnopqrstuvwxyz01234\n\
        -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n\
        DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwx==;\n";
    c.scan_text(Location::RequestBody, "", text.as_bytes(), &mut out);
    let names: Vec<&str> = out.iter().map(|f| f.ty.name()).collect();
    for want in [
        "aws_access_key_id",
        "github_token",
        "gitlab_token",
        "slack_token",
        "stripe_key",
        "google_api_key",
        "private_key",
        "azure_storage_key",
    ] {
        assert!(names.contains(&want), "missing {want} in {names:?}");
    }
    let gh = out.iter().find(|f| f.ty == DataType::GithubToken).unwrap();
    assert_eq!(gh.masked, "ghp_***6789");
}

#[test]
fn forms_queries_xml_multipart() {
    let c = Classifier::new(Config::default());
    let mut out = Vec::new();
    c.scan_form(Location::Query, b"email=a.b%40example.org&card_number=4111-1111-1111-1111&page=2", &mut out);
    assert_eq!(types(&out), vec![("email", "email".into()), ("credit_card", "card_number".into())]);
    out.clear();
    c.scan_body(
        Location::RequestBody,
        Some("application/xml"),
        b"<?xml version=\"1.0\"?><order><buyer nino=\"AB123456C\"><email>x@example.net</email></buyer></order>",
        &mut out,
    );
    assert_eq!(types(&out), vec![("uk_nino", "/order/buyer@nino".into()), ("email", "/order/buyer/email".into())]);
    out.clear();
    let mp = "--XyZ\r\nContent-Disposition: form-data; name=\"passport_no\"\r\n\r\nC01X00T47\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n4111111111111111\r\n--XyZ--\r\n";
    c.scan_body(Location::RequestBody, Some("multipart/form-data; boundary=XyZ"), mp.as_bytes(), &mut out);
    assert_eq!(types(&out), vec![("passport", "passport_no".into())]);
}

#[test]
fn national_ids() {
    let body =
        r#"{"aadhaar":"2341 2341 2346","dni":"12345678Z","nie":"X1234567L","bsn":"111222333","ni":"AB 12 34 56 C"}"#;
    let t: Vec<&str> = scan_json(body).iter().map(|f| f.ty.name()).collect();
    assert_eq!(t, vec!["in_aadhaar", "es_dni", "es_dni", "nl_bsn", "uk_nino"]);
}

#[test]
fn custom_types_and_redaction_off() {
    let cfg = Config {
        custom: vec![CustomType {
            name: "employee_id".into(),
            regex: regex::Regex::new(r"\bEMP-\d{6}\b").unwrap(),
            validator: None,
            keywords: vec!["employee".into()],
        }],
        redact: false,
        ..Config::default()
    };
    let c = Classifier::new(cfg);
    let mut out = Vec::new();
    c.scan_value(Location::Query, "employee", "employee", "EMP-123456", &mut out);
    c.scan_value(Location::Query, "other", "other", "EMP-123456", &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].masked, "EMP-123456", "redaction off shows values (local debugging only)");
}

#[test]
fn xml_tags_with_blanks_and_multibyte_names() {
    // A fuzzer's find: a tag opening with blanks before a multibyte name.
    let c = Classifier::new(Config::default());
    let mut out = Vec::new();
    c.scan_xml(Location::ResponseBody, "< \u{e9}t\u{e9} a=\"x@example.com\">\n< b>1</b>".as_bytes(), &mut out);
    assert_eq!(types(&out), vec![("email", "/\u{e9}t\u{e9}@a".into())]);
}

#[test]
fn never_panics_on_garbage() {
    let c = Classifier::new(Config::default());
    let mut x: u32 = 1;
    for len in 0..400 {
        let v: Vec<u8> = (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let alphabet = b"{}[]\":,0123456789 -+.@eyJAKIAghp_%\\u<>/=abcXYZ";
                alphabet[(x >> 16) as usize % alphabet.len()]
            })
            .collect();
        let mut out = Vec::new();
        for ct in ["application/json", "application/xml", "multipart/form-data; boundary=a", "text/plain", ""] {
            c.scan_body(Location::ResponseBody, Some(ct), &v, &mut out);
        }
        c.scan_form(Location::Query, &v, &mut out);
        assert!(out.len() <= 64 * 6);
    }
}

#[test]
fn deep_nesting_is_bounded() {
    // 64 KiB of `[` (the default body cap) must neither overflow the stack nor hide what
    // comes before the nesting gets too deep.
    for open in [b'[', b'{'] {
        let c = Classifier::new(Config::default());
        let mut body = br#"{"email":"jane@example.com","x":"#.to_vec();
        for _ in 0..65536 {
            body.push(open);
            if open == b'{' {
                body.extend_from_slice(br#""a":"#);
            }
        }
        let mut out = Vec::new();
        let whole = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let ok = c.scan_json(Location::ResponseBody, &body, &mut out);
                (ok, out)
            })
            .expect("spawn")
            .join()
            .expect("no stack overflow");
        assert!(!whole.0, "not valid JSON");
        assert_eq!(types(&whole.1), vec![("email", "$.email".into())]);
    }
}

#[test]
fn formats_another_library_writes() {
    // Forms Faker (PyPI) writes, which our own labeled set did not have: IPv6 starting with
    // a digit, phones with extensions, dotted and `(0632)-596360` phones, 15-digit JCB and
    // 12-digit Maestro under a card name.
    let body = r#"{"source_ip":"662c:193e:e620:d4d1:3765:cd70:585f:b43d","ipv6":"2001:db8::1",
        "phone":"+1-400-445-5410x813","mobile":"249.587.0500","telephone":"(0632)-596360",
        "card_number":"180011497393685","pan":"630411062270"}"#;
    let t = types(&scan_json(body));
    for want in [
        ("ip_address", "$.source_ip"),
        ("ip_address", "$.ipv6"),
        ("phone", "$.phone"),
        ("phone", "$.mobile"),
        ("phone", "$.telephone"),
        ("credit_card", "$.card_number"),
        ("credit_card", "$.pan"),
    ] {
        assert!(t.contains(&(want.0, want.1.to_string())), "missing {want:?} in {t:?}");
    }
    // Twelve digits without a card name, times, MAC addresses and barcodes stay quiet.
    let quiet = r#"{"note":"please use 630411062270 today","at":"12:30:45","mac":"00:1a:2b:3c:4d:5e",
        "gtin":"4564901502675","barcode":"4485892198879","version":"1.2.345"}"#;
    let f = scan_json(quiet);
    assert!(f.is_empty(), "{:?}", types(&f));
}
