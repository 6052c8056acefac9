//! Versioned bincode records: `[format version byte][bincode body]`.
//!
//! The version byte lets a later release migrate old records instead of
//! failing to decode them.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;

/// Format version written by this release.
const VERSION: u8 = 1;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VERSION];
    // Encoding plain owned structs into a Vec cannot fail.
    let body = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("bincode encoding of a store record");
    out.extend_from_slice(&body);
    out
}

pub(crate) fn decode<T: DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { table, reason };
    match bytes.split_first() {
        Some((&VERSION, body)) => {
            bincode::serde::decode_from_slice(body, bincode::config::standard())
                .map(|(value, _)| value)
                .map_err(|e| corrupt(e.to_string()))
        }
        Some((v, _)) => Err(corrupt(format!(
            "record format version {v} is not supported by this release (expected {VERSION})"
        ))),
        None => Err(corrupt("empty record".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_versions() {
        let bytes = encode(&("stage", 3u32));
        assert_eq!(bytes[0], VERSION);
        let back: (String, u32) = decode("t", &bytes).unwrap();
        assert_eq!(back, ("stage".to_string(), 3));

        let mut future = bytes.clone();
        future[0] = 9;
        let err = decode::<(String, u32)>("t", &future).unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
        assert!(decode::<(String, u32)>("t", &[]).is_err());
    }
}
