//! `protocols:` of a TLS listener: the TLS versions it offers. rustls
//! speaks TLS 1.2 and 1.3 only, so those are the only names accepted; an
//! older version is a configuration error that says so, rather than a
//! setting that silently does nothing.

use rustls::SupportedProtocolVersion;

/// The names the configuration accepts, in the order of the message.
const KNOWN: [(&str, &SupportedProtocolVersion); 2] = [
    ("TLSv1.2", &rustls::version::TLS12),
    ("TLSv1.3", &rustls::version::TLS13),
];

/// The versions for the listed names (duplicates collapse); absent = both.
pub fn parse(names: Option<&[String]>) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let Some(names) = names else {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    };
    if names.is_empty() {
        return Err("at least one version is required (TLSv1.2, TLSv1.3)".to_owned());
    }
    let mut out: Vec<&'static SupportedProtocolVersion> = Vec::new();
    for name in names {
        let Some((_, v)) = KNOWN.iter().find(|(n, _)| n == name) else {
            return Err(format!(
                "unsupported TLS version {name:?}: forklb (rustls) offers TLSv1.2 and TLSv1.3 only"
            ));
        };
        if !out.iter().any(|o| o.version == v.version) {
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_tls12_and_tls13_are_accepted() {
        assert_eq!(parse(None).unwrap().len(), 2);
        let one = parse(Some(&names(&["TLSv1.3", "TLSv1.3"]))).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].version, rustls::ProtocolVersion::TLSv1_3);
        assert_eq!(
            parse(Some(&names(&["TLSv1.2", "TLSv1.3"]))).unwrap().len(),
            2
        );
        for bad in ["TLSv1.1", "TLSv1", "SSLv3", "tlsv1.2", ""] {
            let e = parse(Some(&names(&[bad]))).unwrap_err();
            assert!(e.contains("TLSv1.2 and TLSv1.3 only"), "{bad}: {e}");
        }
        assert!(parse(Some(&[])).unwrap_err().contains("at least one"));
    }
}
