//! Kubernetes name rules (DNS labels, DNS subdomains, IANA service names).
//!
//! Names reach chain names and element comments, so they are checked at the boundary with
//! the API server's own rules: a name that passes can only hold `a-z`, `0-9`, `-` and `.`,
//! none of which means anything to nft or JSON.

use thiserror::Error;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must consist of lower case alphanumeric characters or '-'")]
    InvalidCharacter,
    #[error("must start and end with an alphanumeric character")]
    InvalidEdge,
    #[error("must start with a letter")]
    LeadingDigit,
    #[error("must contain at least one letter")]
    NoLetter,
    #[error("must not contain '--'")]
    DoubleHyphen,
}

/// RFC 1123 label: namespaces, EndpointSlice and Endpoints port names.
pub fn dns1123_label(name: &str) -> Result<(), NameError> {
    check_len(name, 63)?;
    label_chars(name)
}

/// RFC 1035 label: Service names (a leading digit is refused).
pub fn dns1035_label(name: &str) -> Result<(), NameError> {
    dns1123_label(name)?;
    match name.as_bytes().first() {
        Some(b) if b.is_ascii_digit() => Err(NameError::LeadingDigit),
        _ => Ok(()),
    }
}

/// RFC 1123 subdomain: EndpointSlice, Node and ServiceCIDR names.
pub fn dns1123_subdomain(name: &str) -> Result<(), NameError> {
    check_len(name, 253)?;
    name.split('.').try_for_each(label_chars)
}

/// IANA_SVC_NAME: Service port names.
pub fn iana_svc_name(name: &str) -> Result<(), NameError> {
    check_len(name, 15)?;
    label_chars(name)?;
    if name.contains("--") {
        return Err(NameError::DoubleHyphen);
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(NameError::NoLetter);
    }
    Ok(())
}

fn check_len(name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        Err(NameError::Empty)
    } else if name.len() > max {
        Err(NameError::TooLong { max })
    } else {
        Ok(())
    }
}

fn label_chars(label: &str) -> Result<(), NameError> {
    let bytes = label.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.iter().all(|b| alnum(b) || *b == b'-') {
        return Err(NameError::InvalidCharacter);
    }
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) if alnum(first) && alnum(last) => Ok(()),
        _ => Err(NameError::InvalidEdge),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_accept_lowercase_digits_and_inner_hyphens() {
        assert_eq!(dns1123_label("kube-system"), Ok(()));
        assert_eq!(dns1123_label("0abc"), Ok(()));
    }

    #[test]
    fn labels_refuse_characters_that_mean_something_to_nft() {
        for bad in [
            "a b", "a\"b", "a;b", "a#b", "a{b", "a\nb", "A", "a.b", "a/b",
        ] {
            assert!(dns1123_label(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_refuse_hyphen_at_either_end() {
        assert_eq!(dns1123_label("-a"), Err(NameError::InvalidEdge));
        assert_eq!(dns1123_label("a-"), Err(NameError::InvalidEdge));
    }

    #[test]
    fn labels_refuse_more_than_63_characters() {
        assert!(dns1123_label(&"a".repeat(63)).is_ok());
        assert_eq!(
            dns1123_label(&"a".repeat(64)),
            Err(NameError::TooLong { max: 63 })
        );
    }

    #[test]
    fn service_names_refuse_a_leading_digit() {
        assert_eq!(dns1035_label("1web"), Err(NameError::LeadingDigit));
        assert_eq!(dns1035_label("web1"), Ok(()));
    }

    #[test]
    fn subdomains_allow_dots_between_labels() {
        assert_eq!(dns1123_subdomain("web-abc12.x"), Ok(()));
        assert!(dns1123_subdomain("web..x").is_err());
        assert!(dns1123_subdomain(".web").is_err());
    }

    #[test]
    fn port_names_follow_iana_svc_name() {
        assert_eq!(iana_svc_name("http"), Ok(()));
        assert_eq!(iana_svc_name("h2-c"), Ok(()));
        assert_eq!(iana_svc_name("8080"), Err(NameError::NoLetter));
        assert_eq!(iana_svc_name("a--b"), Err(NameError::DoubleHyphen));
        assert_eq!(
            iana_svc_name("abcdefghijklmnop"),
            Err(NameError::TooLong { max: 15 })
        );
    }

    #[test]
    fn empty_names_are_refused() {
        assert_eq!(dns1123_subdomain(""), Err(NameError::Empty));
    }
}
