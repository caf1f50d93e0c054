//! What each detection is: its name, where it sits in the OWASP API Security Top 10 (2023)
//! and in MITRE ATT&CK, how severe it is, and the sentence a person reads first. Findings
//! carry these fields; `docs/detections.md` lists the same table for people.

/// How bad a finding is. Request-side attacks are raised one level when the server answered
/// with a success (the attack may have worked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn raised(self) -> Severity {
        match self {
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            _ => Severity::Critical,
        }
    }
}

/// Which side a finding is about: the client that sent something (an attack, a credential
/// sent badly) or the server that answered something (a leak). Findings are aggregated
/// per actor, and a leak's actor is the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

#[derive(Debug)]
pub struct Rule {
    pub name: &'static str,
    pub owasp: &'static str,
    pub mitre_tactic: &'static str,
    pub mitre_technique: &'static str,
    pub severity: Severity,
    /// Raise the severity when the response was a success.
    pub raise_on_success: bool,
    pub side: Side,
    /// One sentence: what was seen and what to do.
    pub explain: &'static str,
}

const API1: &str = "API1:2023 Broken Object Level Authorization";
const API2: &str = "API2:2023 Broken Authentication";
const API3: &str = "API3:2023 Broken Object Property Level Authorization";
const API4: &str = "API4:2023 Unrestricted Resource Consumption";
const API7: &str = "API7:2023 Server Side Request Forgery";
const API8: &str = "API8:2023 Security Misconfiguration";
const API9: &str = "API9:2023 Improper Inventory Management";
const INITIAL: &str = "TA0001 Initial Access";
const CREDS: &str = "TA0006 Credential Access";
const RECON: &str = "TA0043 Reconnaissance";
const DISCOVERY: &str = "TA0007 Discovery";
const IMPACT: &str = "TA0040 Impact";
const COLLECTION: &str = "TA0009 Collection";
const EXFILTRATION: &str = "TA0010 Exfiltration";
/// Threat-list matches are about who, not about an API weakness.
const NO_OWASP: &str = "none";
const EXPLOIT: &str = "T1190 Exploit Public-Facing Application";

macro_rules! rules {
    ($($id:ident = $name:literal, $owasp:expr, $tactic:expr, $tech:expr, $sev:ident, $raise:expr, $side:ident, $explain:literal;)*) => {
        /// Every detection, by index.
        pub const RULES: &[Rule] = &[$(Rule {
            name: $name,
            owasp: $owasp,
            mitre_tactic: $tactic,
            mitre_technique: $tech,
            severity: Severity::$sev,
            raise_on_success: $raise,
            side: Side::$side,
            explain: $explain,
        }),*];
        /// Rule indices, by name.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum RuleId { $($id),* }
        const ALL_IDS: &[RuleId] = &[$(RuleId::$id),*];
    };
}

rules! {
    SqlInjection = "sql_injection", API8, INITIAL, EXPLOIT, High, true, Client,
        "A request carried SQL injection syntax; check that the endpoint binds parameters and whether the response leaked data.";
    NosqlInjection = "nosql_injection", API8, INITIAL, EXPLOIT, High, true, Client,
        "A request carried query operators or server-side JavaScript where a plain value was expected; check that the endpoint rejects operator keys.";
    Xss = "xss", API8, INITIAL, EXPLOIT, Medium, true, Client,
        "A request carried script or active HTML; check that the API encodes what it returns and that clients do not render it.";
    CommandInjection = "command_injection", API8, INITIAL, EXPLOIT, High, true, Client,
        "A request carried shell syntax that chains a command; check that the endpoint never passes input to a shell.";
    PathTraversal = "path_traversal", API8, INITIAL, EXPLOIT, High, true, Client,
        "A request tried to reach files outside the served tree; check the path handling and what the response contained.";
    Xxe = "xxe", API8, INITIAL, EXPLOIT, High, true, Client,
        "An XML body declared external entities; disable DTDs and external entities in the parser.";
    TemplateInjection = "template_injection", API8, INITIAL, EXPLOIT, High, true, Client,
        "A request carried template expressions; check that input never reaches a template engine as source.";
    LdapInjection = "ldap_injection", API8, INITIAL, EXPLOIT, High, true, Client,
        "A request carried LDAP filter syntax; check that the endpoint escapes filter values.";
    JndiLookup = "jndi_lookup", API8, INITIAL, EXPLOIT, Critical, false, Client,
        "A request carried a JNDI lookup (Log4Shell); check that no Java service logs it with a vulnerable Log4j.";
    Ssrf = "ssrf", API7, INITIAL, EXPLOIT, High, true, Client,
        "A parameter pointed the server at an internal address or a non-HTTP scheme; check that the endpoint fetches only allowed destinations.";
    ScannerUserAgent = "scanner_user_agent", API8, RECON, "T1595 Active Scanning", Medium, false, Client,
        "A client announced an attack or scanning tool; if this is not your own testing, block it.";
    RequestSmuggling = "request_smuggling", API8, INITIAL, EXPLOIT, High, false, Client,
        "A request framed its body ambiguously (Content-Length with Transfer-Encoding, or differing lengths); proxies and servers may disagree on where it ends.";
    InvalidMethod = "invalid_method", API8, RECON, "T1595 Active Scanning", Low, false, Client,
        "A request used a method that is not an HTTP token; probing or a broken client.";
    MalformedRequest = "malformed_request", API8, RECON, "T1595 Active Scanning", Low, false, Client,
        "A request could not be parsed as HTTP (garbage, or lengths no server can honour); probing, an exploit attempt or a broken client.";
    OversizedHeaders = "oversized_headers", API4, IMPACT, "T1499 Endpoint Denial of Service", Medium, false, Client,
        "A request's header block exceeded the configured limit; a denial-of-service or overflow attempt.";
    JwtAlgNone = "jwt_alg_none", API2, INITIAL, "T1078 Valid Accounts", High, true, Client,
        "A JWT declared no signature algorithm (alg none); if the API accepted it, anyone can forge tokens.";
    JwtWeakSecret = "jwt_weak_secret", API2, CREDS, "T1552 Unsecured Credentials", Critical, false, Client,
        "A JWT is signed with a secret from a list of common ones; anyone can forge tokens: rotate the key.";
    JwtNoExpiry = "jwt_no_expiry", API2, CREDS, "T1552 Unsecured Credentials", Low, false, Client,
        "A JWT has no expiry (exp); a stolen token stays valid for ever.";
    JwtExpiredAccepted = "jwt_expired_accepted", API2, INITIAL, "T1078 Valid Accounts", High, false, Client,
        "The API answered with success to a JWT that had expired; it does not check exp.";
    CleartextCredentials = "cleartext_credentials", API2, CREDS, "T1040 Network Sniffing", Medium, false, Client,
        "Credentials crossed the network in cleartext HTTP; anyone on the path can read them: use TLS.";
    CredentialsInUrl = "credentials_in_url", API2, CREDS, "T1552 Unsecured Credentials", Medium, false, Client,
        "A credential was sent in the URL, where logs, proxies and browser history keep it; send it in a header.";
    BruteForce = "brute_force", API2, CREDS, "T1110 Brute Force", High, false, Client,
        "One client failed authentication many times on a login endpoint; rate-limit or block it.";
    CredentialStuffing = "credential_stuffing", API2, CREDS, "T1110.004 Credential Stuffing", High, false, Client,
        "One client tried many different user names on a login endpoint; rate-limit it and look for accounts it got into.";
    BruteForceSuccess = "brute_force_success", API2, CREDS, "T1110 Brute Force", Critical, false, Client,
        "A client succeeded in authenticating after many failures; the account may be compromised.";
    EndpointSpray = "endpoint_spray", API9, DISCOVERY, "T1595.003 Wordlist Scanning", Medium, false, Client,
        "One client requested many distinct paths, most of them missing; someone is mapping the API.";
    ErrorLeak = "error_leak", API8, DISCOVERY, "T1592 Gather Victim Host Information", Medium, false, Server,
        "A response carried a stack trace or a debug page; turn off debug output in production.";
    VersionDisclosure = "version_disclosure", API8, RECON, "T1592.002 Software", Low, false, Server,
        "Response headers name the server software and its version; attackers use it to pick exploits.";
    ExcessivePipelining = "excessive_pipelining", API4, IMPACT, "T1499.002 Service Exhaustion Flood", Low, false, Client,
        "A client queued many requests on one connection before any answer; a flood or a smuggling attempt.";
    UnauthenticatedAccess = "unauthenticated_access", API2, INITIAL, EXPLOIT, High, false, Client,
        "An endpoint answered with success to a call without credentials although it carries sensitive data or usually requires them; check its authentication.";
    ThreatListIp = "threat_list_ip", NO_OWASP, INITIAL, "T1090 Proxy", Medium, true, Client,
        "The client address is on a configured threat list (for example Tor exits); check what it reached.";
    TrafficSpike = "traffic_spike", API4, IMPACT, "T1499.002 Service Exhaustion Flood", Medium, false, Server,
        "Calls to this endpoint in one minute far exceeded its usual rate; a flood, a scraper or a runaway client.";
    ClientRateSpike = "client_rate_spike", API4, IMPACT, "T1499.002 Service Exhaustion Flood", Medium, false, Client,
        "One client called far more often in one minute than it (or clients in general) usually does; rate-limit it if it is not expected.";
    UnusualResponseSize = "unusual_response_size", API3, COLLECTION, "T1213 Data from Information Repositories", Medium, false, Client,
        "A response was far larger than this endpoint's usual answers; check whether it returned more records or fields than it should.";
    UnusualRequestSize = "unusual_request_size", API4, IMPACT, "T1499.003 Application Exhaustion Flood", Low, false, Client,
        "A request was far larger than this endpoint usually receives; a resource-exhaustion or overflow attempt.";
    LatencySpike = "latency_spike", API4, IMPACT, "T1499.003 Application Exhaustion Flood", Low, false, Server,
        "The endpoint took far longer to answer than usual; an expensive query, an exhaustion attempt or a struggling service.";
    BolaIdWalk = "bola_id_walk", API1, COLLECTION, "T1213 Data from Information Repositories", High, false, Client,
        "One client walked through consecutive object ids on an endpoint; check that it may read each object it asked for.";
    BolaUnknownIds = "bola_unknown_ids", API1, COLLECTION, "T1213 Data from Information Repositories", Medium, false, Client,
        "One client read objects by ids that no earlier response gave it; check that it may read them (guessed, or taken from another user).";
    ParameterEnumeration = "parameter_enumeration", API1, DISCOVERY, "T1595.003 Wordlist Scanning", Medium, false, Client,
        "Many distinct values of an endpoint's parameters were tried, most of them refused; someone is guessing ids or names.";
    DataExfiltration = "data_exfiltration", API3, EXFILTRATION, "T1567 Exfiltration Over Web Service", High, false, Client,
        "One principal received far more data (or sensitive records) in this window than it usually does; check whether its access was abused.";
    HighErrorRate = "high_error_rate", API8, RECON, "T1595 Active Scanning", Low, false, Client,
        "Most of one client's requests were refused (4xx other than 404); probing, a broken client or attempts at forbidden objects.";
    UnseenParameter = "unseen_parameter", API3, INITIAL, EXPLOIT, Low, false, Client,
        "A well-known endpoint was called with a parameter, or a parameter value of a type, it had never received; mass assignment or parameter tampering.";
}

impl RuleId {
    pub fn rule(self) -> &'static Rule {
        &RULES[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.rule().name
    }

    pub fn all() -> &'static [RuleId] {
        ALL_IDS
    }

    pub fn by_name(name: &str) -> Option<RuleId> {
        ALL_IDS.iter().copied().find(|r| r.name() == name)
    }

    /// The rule of a value signature (`signatures::Hit::signature`).
    pub fn of_signature(sig: &str) -> Option<RuleId> {
        RuleId::by_name(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_named_once_and_every_signature_has_a_rule() {
        let mut names: Vec<_> = RULES.iter().map(|r| r.name).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
        for s in crate::signatures::value_signatures() {
            assert!(RuleId::of_signature(s.name).is_some(), "{}", s.name);
        }
        assert!(RuleId::of_signature(crate::signatures::scanner_agent().name).is_some());
        assert_eq!(RuleId::by_name("ssrf"), Some(RuleId::Ssrf));
        for id in RuleId::all() {
            assert_eq!(RuleId::by_name(id.name()), Some(*id));
        }
    }

    #[test]
    fn the_documentation_lists_every_detection_as_the_table_says() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/detections.md")).unwrap();
        for r in RULES {
            let row = doc.lines().find(|l| l.starts_with(&format!("| `{}` |", r.name)));
            let row = row.unwrap_or_else(|| panic!("docs/detections.md has no row for {}", r.name));
            let owasp = r.owasp.split(' ').next().unwrap_or("");
            assert!(row.contains(owasp) && row.contains(r.mitre_tactic) && row.contains(r.mitre_technique), "{row}");
            assert!(row.contains(r.severity.name()), "{row}");
        }
    }
}
