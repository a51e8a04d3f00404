//! `groups:` of a TLS listener: the key exchange groups it accepts, as
//! nginx's `ssl_ecdh_curve` and HAProxy's `curves` set them. The default
//! is the provider's (X25519, P-256, P-384, X25519MLKEM768), so a client
//! listing the post-quantum hybrid first gets it; an operator who does not
//! want its cost (about +18 % CPU per full handshake, `crypto.rs`) or who
//! wants only it writes the list.
//!
//! rustls takes a key share the client sent when one is of a listed group
//! (in the client's order); otherwise it asks for another
//! (HelloRetryRequest) in the order of this list, and a client supporting
//! none of them fails the handshake (`handshake_failure`).

use rustls::crypto::aws_lc_rs::kx_group;
use rustls::crypto::SupportedKxGroup;

/// The groups the configuration can name: OpenSSL's name first (what
/// `openssl s_client -groups` and nginx take), then the aliases OpenSSL
/// also accepts. Names compare without regard to case, as OpenSSL's do.
const KNOWN: [(&[&str], &dyn SupportedKxGroup); 7] = [
    (&["X25519"], kx_group::X25519),
    (&["P-256", "prime256v1", "secp256r1"], kx_group::SECP256R1),
    (&["P-384", "secp384r1"], kx_group::SECP384R1),
    (&["X25519MLKEM768"], kx_group::X25519MLKEM768),
    (&["SecP256r1MLKEM768"], kx_group::SECP256R1MLKEM768),
    (&["MLKEM768"], kx_group::MLKEM768),
    (&["MLKEM1024"], kx_group::MLKEM1024),
];

/// The groups for the listed names, in the list's order (duplicates
/// collapse); `None` for an absent list (the provider's default).
pub fn parse(
    names: Option<&[String]>,
) -> Result<Option<Vec<&'static dyn SupportedKxGroup>>, String> {
    let Some(names) = names else {
        return Ok(None);
    };
    if names.is_empty() {
        return Err(format!(
            "at least one group is required ({})",
            known_names()
        ));
    }
    let mut out: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for name in names {
        let Some((_, g)) = KNOWN
            .iter()
            .find(|(ns, _)| ns.iter().any(|n| n.eq_ignore_ascii_case(name)))
        else {
            return Err(format!(
                "unknown key exchange group {name:?}: forklb offers {}",
                known_names()
            ));
        };
        if !out.iter().any(|o| o.name() == g.name()) {
            out.push(*g);
        }
    }
    Ok(Some(out))
}

fn known_names() -> String {
    KNOWN
        .iter()
        .map(|(ns, _)| ns[0])
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::NamedGroup;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn groups(v: &[&str]) -> Vec<NamedGroup> {
        parse(Some(&names(v)))
            .unwrap()
            .unwrap()
            .iter()
            .map(|g| g.name())
            .collect()
    }

    #[test]
    fn names_map_to_groups_in_the_order_written() {
        assert!(parse(None).unwrap().is_none());
        assert_eq!(
            groups(&["P-384", "x25519", "prime256v1", "secp256r1"]),
            vec![
                NamedGroup::secp384r1,
                NamedGroup::X25519,
                NamedGroup::secp256r1
            ]
        );
        assert_eq!(
            groups(&[
                "X25519MLKEM768",
                "SecP256r1MLKEM768",
                "MLKEM768",
                "MLKEM1024"
            ]),
            vec![
                NamedGroup::X25519MLKEM768,
                NamedGroup::secp256r1MLKEM768,
                NamedGroup::MLKEM768,
                NamedGroup::MLKEM1024
            ]
        );
    }

    #[test]
    fn unknown_and_empty_lists_are_errors_naming_what_is_known() {
        for bad in ["X448", "P-521", "ffdhe2048", "", "X25519 "] {
            let e = parse(Some(&names(&[bad]))).unwrap_err();
            assert!(e.contains("unknown key exchange group"), "{bad}: {e}");
            assert!(e.contains("X25519, P-256, P-384, X25519MLKEM768"), "{e}");
        }
        assert!(parse(Some(&[])).unwrap_err().contains("at least one group"));
    }
}
