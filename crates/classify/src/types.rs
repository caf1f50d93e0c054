//! The sensitive data types, where they were found, and what a finding says about one.

use crate::text::{SmallStr, ValueHash};
use serde::Serialize;

/// A type of sensitive data. `name()` is the stable name written in records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    CreditCard,
    UsSsn,
    Iban,
    AbaRouting,
    Email,
    Phone,
    IpAddress,
    DateOfBirth,
    Passport,
    UkNino,
    InAadhaar,
    EsDni,
    NlBsn,
    Jwt,
    AwsAccessKeyId,
    AwsSecretKey,
    GithubToken,
    GitlabToken,
    SlackToken,
    StripeKey,
    GoogleApiKey,
    AzureStorageKey,
    AzureSas,
    PrivateKey,
    Password,
    Secret,
    SessionId,
    /// A type from the configuration, by its index there.
    Custom(u16),
}

impl DataType {
    pub const BUILTIN: &'static [DataType] = &[
        DataType::CreditCard,
        DataType::UsSsn,
        DataType::Iban,
        DataType::AbaRouting,
        DataType::Email,
        DataType::Phone,
        DataType::IpAddress,
        DataType::DateOfBirth,
        DataType::Passport,
        DataType::UkNino,
        DataType::InAadhaar,
        DataType::EsDni,
        DataType::NlBsn,
        DataType::Jwt,
        DataType::AwsAccessKeyId,
        DataType::AwsSecretKey,
        DataType::GithubToken,
        DataType::GitlabToken,
        DataType::SlackToken,
        DataType::StripeKey,
        DataType::GoogleApiKey,
        DataType::AzureStorageKey,
        DataType::AzureSas,
        DataType::PrivateKey,
        DataType::Password,
        DataType::Secret,
        DataType::SessionId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DataType::CreditCard => "credit_card",
            DataType::UsSsn => "us_ssn",
            DataType::Iban => "iban",
            DataType::AbaRouting => "us_aba_routing",
            DataType::Email => "email",
            DataType::Phone => "phone",
            DataType::IpAddress => "ip_address",
            DataType::DateOfBirth => "date_of_birth",
            DataType::Passport => "passport",
            DataType::UkNino => "uk_nino",
            DataType::InAadhaar => "in_aadhaar",
            DataType::EsDni => "es_dni",
            DataType::NlBsn => "nl_bsn",
            DataType::Jwt => "jwt",
            DataType::AwsAccessKeyId => "aws_access_key_id",
            DataType::AwsSecretKey => "aws_secret_key",
            DataType::GithubToken => "github_token",
            DataType::GitlabToken => "gitlab_token",
            DataType::SlackToken => "slack_token",
            DataType::StripeKey => "stripe_key",
            DataType::GoogleApiKey => "google_api_key",
            DataType::AzureStorageKey => "azure_storage_key",
            DataType::AzureSas => "azure_sas_token",
            DataType::PrivateKey => "private_key",
            DataType::Password => "password",
            DataType::Secret => "secret",
            DataType::SessionId => "session_id",
            DataType::Custom(_) => "custom",
        }
    }

    /// Whether the type is checked by a validator (check digits or a decodable structure),
    /// which the quality targets distinguish.
    pub fn validated(self) -> bool {
        matches!(
            self,
            DataType::CreditCard
                | DataType::UsSsn
                | DataType::Iban
                | DataType::AbaRouting
                | DataType::UkNino
                | DataType::InAadhaar
                | DataType::EsDni
                | DataType::NlBsn
                | DataType::Jwt
                | DataType::IpAddress
        )
    }
}

/// Where in the transaction a value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    Path,
    Query,
    RequestHeader,
    ResponseHeader,
    RequestBody,
    ResponseBody,
}

impl Location {
    pub fn name(self) -> &'static str {
        match self {
            Location::Path => "path",
            Location::Query => "query",
            Location::RequestHeader => "request_header",
            Location::ResponseHeader => "response_header",
            Location::RequestBody => "request_body",
            Location::ResponseBody => "response_body",
        }
    }
}

/// One value of a sensitive type. The value itself is not kept: only its masked form and a
/// keyed hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub ty: DataType,
    pub location: Location,
    /// JSON path (`$.customer.card.number`, arrays as `[*]`), parameter, header or form
    /// field name, XML element path, path segment (`/3`), or empty for free text.
    pub field: String,
    /// The value with most of it hidden (`4111 **** **** 1111`, `j***@e***.com`).
    pub masked: SmallStr,
    /// HMAC-SHA256 of the normalized value under the configured key, first 16 bytes (shown
    /// in hex).
    pub hash: ValueHash,
    /// 0-100.
    pub confidence: u8,
    /// What the value says about itself without revealing it (a JWT's `alg`).
    pub detail: Option<String>,
}
