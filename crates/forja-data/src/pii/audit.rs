//! The final audit: re-scans output for the personal data that can be
//! recognised with near certainty, so a curation run can refuse to publish a
//! file that still holds any.
//!
//! Only validated patterns count: e-mail addresses (except the reserved
//! example domains the pseudonyms use), Luhn-valid card numbers with an issuer
//! prefix, mod-97-valid IBANs, DNI/NIE with the right (upper-case) check
//! letter, phone numbers written with `+` and a country code, and the
//! deny-list names when the [`Auditor`] is built with them. Everything the
//! [`Scrubber`](super::Scrubber) writes (`<PERSON>`, `<URL_2>`, masks, hashes,
//! fake names, `user1@example.com`) passes clean.

use std::sync::OnceLock;

use super::names::DenyList;
use super::numeric::{self, NumericKinds};
use super::{iban, resolve, web, Finding, PiiConfig};
use crate::Result;

/// The audit, compiled once. [`audit`] is the same without a deny-list.
#[derive(Clone, Default)]
pub struct Auditor {
    deny: Option<DenyList>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor").field("deny_list", &self.deny.is_some()).finish()
    }
}

impl Auditor {
    /// An audit that also flags every whole-word occurrence of these names.
    pub fn new(deny_list: &[String]) -> Result<Auditor> {
        Ok(Auditor { deny: DenyList::new(deny_list)? })
    }

    /// An audit with the deny-list of a PII config.
    pub fn from_config(cfg: &PiiConfig) -> Result<Auditor> {
        Auditor::new(&cfg.deny_list)
    }

    /// The high-confidence findings in `text`, sorted and non-overlapping.
    pub fn audit(&self, text: &str) -> Vec<Finding> {
        let b = text.as_bytes();
        let mut found = Vec::new();
        if b.iter().any(u8::is_ascii_digit) {
            let kinds = NumericKinds {
                phone: true,
                card: true,
                nif: true,
                nie: true,
                cedula: false,
                ip: false,
                strict: true,
            };
            numeric::scan(text, kinds, &mut found);
            iban::scan(text, true, &mut found);
        }
        if b.contains(&b'@') {
            let from = found.len();
            web::emails(text, &mut found);
            let mut k = from;
            while k < found.len() {
                if web::is_reserved_email(&text[found[k].start..found[k].end]) {
                    found.swap_remove(k);
                } else {
                    k += 1;
                }
            }
        }
        if let Some(deny) = &self.deny {
            deny.find(text, &mut found);
        }
        resolve(text, found)
    }
}

/// [`Auditor::audit`] without a deny-list (compiled on first use).
pub fn audit(text: &str) -> Vec<Finding> {
    static DEFAULT: OnceLock<Auditor> = OnceLock::new();
    DEFAULT.get_or_init(Auditor::default).audit(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &[&str]) {
        let a = Auditor::new(&["Josefina Quiroga".to_string()]).unwrap();
        let got: Vec<String> = a
            .audit(input)
            .iter()
            .map(|f| format!("{}:{}", f.kind, &input[f.start..f.end]))
            .collect();
        assert_eq!(got, expected, "{input:?}");
    }

    #[test]
    fn flags_validated_patterns() {
        check("ana@gmail.com", &["EMAIL_ADDRESS:ana@gmail.com"]);
        check("tarjeta 4111 1111 1111 1111", &["CREDIT_CARD:4111 1111 1111 1111"]);
        check("ES91 2100 0418 4502 0005 1332", &["IBAN_CODE:ES91 2100 0418 4502 0005 1332"]);
        check("DNI 12345678Z", &["ES_NIF:12345678Z"]);
        check("NIE X1234567L", &["ES_NIE:X1234567L"]);
        check("+34 612 345 678", &["PHONE_NUMBER:+34 612 345 678"]);
        check("josefina QUIROGA", &["PERSON:josefina QUIROGA"]);
    }

    #[test]
    fn passes_scrubber_output() {
        check("user1@example.com y lucia.arce@example.com", &[]);
        check("a@test.test b@foo.invalid", &[]);
        check("<PERSON> <EMAIL_ADDRESS> <PHONE_NUMBER_12> <CREDIT_CARD_3>", &[]);
        check("**** **** **** **** +** *** *** *** ****@*****.***", &[]);
        check("5d41402abc4b2a76 1234567812345a78", &[]);
        check("Lucía Arce", &[]);
        check("612 345 678 3101234567 Juan Pérez 192.168.1.1", &[]);
        check("4111 1111 1111 1112 ES92 2100 0418 4502 0005 1332 12345678A", &[]);
        check("es9121000418450200051332 12345678z", &[]);
    }
}
