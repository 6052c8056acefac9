//! [`Config`]: the key/value settings a pipeline step passes to its stage.

use std::fmt::Display;
use std::str::FromStr;

/// The settings a pipeline step gives its stage, in the order the spec lists them.
///
/// Values are strings, as in the WIT contract; [`Config::parse`] and
/// [`Config::parse_or`] turn them into typed values with an error message that
/// names the key, the value and the expected type, ready to return from
/// [`Stage::init`](crate::Stage::init). When a key appears more than once, the
/// last value wins, so later layers of a spec override earlier ones.
///
/// # Example
///
/// ```
/// use weft_sdk::Config;
///
/// let config = Config::from_iter([("size", "32"), ("mode", "fast")]);
/// assert_eq!(config.get("mode"), Some("fast"));
/// assert_eq!(config.parse::<usize>("size")?, 32);
/// assert_eq!(config.parse_or("overlap", 0usize)?, 0);
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// The value of `key`, if set (the last one when repeated).
    ///
    /// # Example
    ///
    /// ```
    /// let config = weft_sdk::Config::from_iter([("k", "a"), ("k", "b")]);
    /// assert_eq!(config.get("k"), Some("b"));
    /// assert_eq!(config.get("missing"), None);
    /// ```
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or `default` when it is not set.
    ///
    /// # Example
    ///
    /// ```
    /// let config = weft_sdk::Config::from_iter([("lang", "fr")]);
    /// assert_eq!(config.get_or("lang", "en"), "fr");
    /// assert_eq!(config.get_or("region", "eu"), "eu");
    /// ```
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// Parses the value of a required `key` as `T`.
    ///
    /// The error says which key is missing or which value did not parse, as what
    /// type, and why.
    ///
    /// # Example
    ///
    /// ```
    /// let config = weft_sdk::Config::from_iter([("size", "ten")]);
    /// let err = config.parse::<usize>("size").unwrap_err();
    /// assert_eq!(
    ///     err,
    ///     r#"config `size` = "ten" is not a valid whole number (0 or more): invalid digit found in string"#
    /// );
    /// let err = config.parse::<String>("vocab").unwrap_err();
    /// assert_eq!(err, "config `vocab` is required (a string)");
    /// ```
    pub fn parse<T>(&self, key: &str) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(key) {
            Some(value) => parse_value(key, value),
            None => Err(format!(
                "config `{key}` is required (a {})",
                readable_type::<T>()
            )),
        }
    }

    /// Parses the value of an optional `key` as `T`, or returns `default` when it
    /// is not set; a value that is set but does not parse is still an error.
    ///
    /// # Example
    ///
    /// ```
    /// let config = weft_sdk::Config::from_iter([("lowercase", "false")]);
    /// assert!(!config.parse_or("lowercase", true)?);
    /// assert_eq!(config.parse_or("size", 64u32)?, 64);
    /// let err = weft_sdk::Config::from_iter([("lowercase", "no")])
    ///     .parse_or("lowercase", true)
    ///     .unwrap_err();
    /// assert!(err.contains("not a valid boolean (true or false)"), "{err}");
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(key) {
            Some(value) => parse_value(key, value),
            None => Ok(default),
        }
    }

    /// All entries in the order the host passed them, repeats included.
    ///
    /// # Example
    ///
    /// ```
    /// let config = weft_sdk::Config::from_iter([("a", "1"), ("b", "2")]);
    /// let keys: Vec<&str> = config.iter().map(|(k, _)| k).collect();
    /// assert_eq!(keys, ["a", "b"]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of entries, repeats included.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weft_sdk::Config::from_iter([("a", "1")]).len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Refuses a key that is not one of `known`: a misspelt or misplaced
    /// setting would otherwise be ignored, and its default used without a
    /// word. The message starts with `who` (the stage), names the key, the
    /// one it nearly is ([`crate::spelling::nearest`]) and the keys read.
    /// Call it first in [`Stage::init`](crate::Stage::init).
    ///
    /// # Example
    ///
    /// ```
    /// let config = weft_sdk::Config::from_iter([("size", "32"), ("overlapp", "4")]);
    /// let err = config.expect_keys("chunk", &["size", "overlap"]).unwrap_err();
    /// assert_eq!(
    ///     err,
    ///     "chunk: unknown config key `overlapp`: did you mean `overlap`? \
    ///      (it reads: size, overlap)"
    /// );
    /// assert!(config.expect_keys("chunk", &["size", "overlapp"]).is_ok());
    /// ```
    pub fn expect_keys(&self, who: &str, known: &[&str]) -> Result<(), String> {
        let Some((key, _)) = self.iter().find(|(key, _)| !known.contains(key)) else {
            return Ok(());
        };
        let meant = match crate::spelling::nearest(key, known) {
            Some(name) => format!(": did you mean `{name}`?"),
            None => String::new(),
        };
        let reads = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        Err(format!(
            "{who}: unknown config key `{key}`{meant} (it reads: {reads})"
        ))
    }

    /// Whether there are no entries at all.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(weft_sdk::Config::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Parses one value, with the message shared by [`Config::parse`] and
/// [`Config::parse_or`].
fn parse_value<T>(key: &str, value: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    value.parse().map_err(|e| {
        format!(
            "config `{key}` = {value:?} is not a valid {}: {e}",
            readable_type::<T>()
        )
    })
}

/// What a config value of type `T` must be, in a user's words (the person
/// deploying the stage reads this, not its author): `usize` is a whole
/// number, `alloc::string::String` a string; other types by their last
/// path segment.
fn readable_type<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    match name {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "whole number",
        "f32" | "f64" => "number",
        "bool" => "boolean (true or false)",
        "alloc::string::String" | "&str" => "string",
        "char" => "single character",
        _ => name.rsplit("::").next().unwrap_or(name),
    }
}

/// Wraps the pairs exactly as the host passes them to `init`.
impl From<Vec<(String, String)>> for Config {
    fn from(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }
}

/// Builds a config from any pairs of strings, e.g. in tests.
impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Config {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Config {
            entries: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}
