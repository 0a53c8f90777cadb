//! f64 fields that may be NaN in JSON files the crate writes and reads back
//! (the forgetting experiment's results.json and seeds.json): serde_json
//! writes a non-finite f64 as `null`, and reads `null` as no f64 at all, so
//! a field marked `#[serde(deserialize_with = "crate::io::json_nan::f64_or_nan")]`
//! reads `null` back as NaN:
//!
//! ```text
//! write   x finite → x        x NaN or ±∞ → null
//! read    number → the number  null → NaN
//! ```

use serde::{Deserialize, Deserializer};

/// Reads a number, or `null` as NaN.
pub fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Row {
        #[serde(deserialize_with = "super::f64_or_nan")]
        x: f64,
    }

    #[test]
    fn null_reads_back_as_nan_and_numbers_as_themselves() {
        let text = serde_json::to_string(&Row { x: f64::NAN }).unwrap();
        assert_eq!(text, r#"{"x":null}"#);
        let back: Row = serde_json::from_str(&text).unwrap();
        assert!(back.x.is_nan());
        let back: Row = serde_json::from_str(r#"{"x":0.21259230077266694}"#).unwrap();
        assert_eq!(back.x, 0.21259230077266694);
        assert!(serde_json::from_str::<Row>(r#"{"x":"a"}"#).is_err());
    }
}
