//! What a user submits to `POST /v1/jobs`.

use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_runtime::Item;

use crate::ApiError;

/// A job: a pipeline over a dataset, or one asynchronous invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobSpec {
    /// Run a pipeline over every row of a dataset.
    Batch(BatchSpec),
    /// Run a pipeline once on one input, in the background.
    Invoke(InvokeSpec),
}

/// `{"kind": "batch", ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    /// The pipeline every row goes through.
    pub pipeline: String,
    /// The dataset to read.
    pub dataset: String,
    /// Where output goes besides the object store.
    #[serde(default)]
    pub output: OutputSpec,
    /// The job fails once more than this fraction of rows has failed
    /// (0 = any failure fails the job, 1 = never).
    #[serde(default = "default_max_failed_fraction")]
    pub max_failed_fraction: f64,
    /// Bytes of blocks (input and expected output) in flight at once;
    /// default: the daemon's `--job-memory-mib`.
    #[serde(default)]
    pub max_in_flight_bytes: Option<u64>,
    /// In cluster mode, whether the blocks run on every node through the
    /// cluster's work queue (`true`) or on this node only (`false`).
    /// Default: across the cluster when more than one node is alive as the
    /// job starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribute: Option<bool>,
}

/// Output destination of a batch job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// A directory on the daemon's machine that receives `output.jsonl` and
    /// `errors.jsonl` when the job succeeds.
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

/// `{"kind": "invoke", ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvokeSpec {
    /// The pipeline to run.
    pub pipeline: String,
    /// The input: sent as JSON, or as text when it is a string and
    /// `content_type` is not JSON.
    #[serde(default)]
    pub input: Value,
    /// Binary input, base64 (wins over `input`).
    #[serde(default)]
    pub input_base64: Option<String>,
    /// Content type of the input item.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Deadline of the whole run, seconds (default one hour; jobs may run
    /// for hours, unlike requests).
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Where the job was first submitted, for a job another node took
    /// over (set by the cluster only; a submitted spec may not carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// The node and id a job was submitted as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// The node it was submitted to.
    pub node: String,
    /// Its id there.
    pub id: u64,
}

fn default_max_failed_fraction() -> f64 {
    0.1
}

/// Default deadline of an invoke job.
pub const DEFAULT_JOB_TIMEOUT_S: u64 = 3600;
/// Longest deadline of an invoke job: 30 days.
pub const MAX_JOB_TIMEOUT_S: u64 = 30 * 24 * 3600;

impl JobSpec {
    /// Parses a submitted spec; errors name the bad field.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        let spec: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "the body".to_string() } else { format!("`{path}`") };
            ApiError::bad_request("invalid_job", format!("{field}: {}", e.inner())).hint(
                "a job is {\"kind\": \"batch\", \"pipeline\": P, \"dataset\": D} or \
                 {\"kind\": \"invoke\", \"pipeline\": P, \"input\": ...}; see the README's jobs section",
            )
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// The pipeline the job runs.
    pub fn pipeline(&self) -> &str {
        match self {
            Self::Batch(b) => &b.pipeline,
            Self::Invoke(i) => &i.pipeline,
        }
    }

    /// `batch` or `invoke`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Batch(_) => "batch",
            Self::Invoke(_) => "invoke",
        }
    }

    fn validate(&self) -> Result<(), ApiError> {
        let bad = |field: &str, why: String, hint: &str| {
            Err(
                ApiError::bad_request("invalid_job", format!("`{field}`: {why}"))
                    .hint(hint.to_string()),
            )
        };
        match self {
            Self::Batch(b) => {
                if !(0.0..=1.0).contains(&b.max_failed_fraction) {
                    return bad(
                        "max_failed_fraction",
                        format!("{} is not between 0 and 1", b.max_failed_fraction),
                        "0 fails the job on the first failed row, 1 never fails it",
                    );
                }
                if b.max_in_flight_bytes == Some(0) {
                    return bad(
                        "max_in_flight_bytes",
                        "must be above 0".into(),
                        "leave it out for the daemon's default",
                    );
                }
                if let Some(dir) = &b.output.dir
                    && !dir.is_absolute()
                {
                    return bad(
                        "output.dir",
                        format!("`{}` is not an absolute path", dir.display()),
                        "the directory is on the daemon's machine: give an absolute path",
                    );
                }
            }
            Self::Invoke(i) => {
                if i.origin.is_some() {
                    return bad(
                        "origin",
                        "is set by the cluster when a node takes a job over".into(),
                        "leave it out",
                    );
                }
                if let Some(b64) = &i.input_base64
                    && base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .is_err()
                {
                    return bad(
                        "input_base64",
                        "not valid base64".into(),
                        "encode the bytes with standard base64",
                    );
                }
                if let Some(t) = i.timeout_s
                    && !(1..=MAX_JOB_TIMEOUT_S).contains(&t)
                {
                    return bad(
                        "timeout_s",
                        format!("{t} is not between 1 and {MAX_JOB_TIMEOUT_S} (30 days)"),
                        "leave it out for one hour",
                    );
                }
                // (A stage would get JSON `null` and most would refuse it
                // only once the job ran.)
                if i.input.is_null() && i.input_base64.is_none() {
                    return bad(
                        "input",
                        "is missing (or null): the job runs its pipeline on one input item".into(),
                        "give `input` (JSON, or text with `content_type`) or `input_base64`",
                    );
                }
            }
        }
        Ok(())
    }
}

impl InvokeSpec {
    /// The item the pipeline receives.
    pub fn item(&self) -> Item {
        if let Some(b64) = &self.input_base64 {
            return Item {
                key: None,
                content_type: self
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into()),
                payload: base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap_or_default(),
            };
        }
        match (&self.input, &self.content_type) {
            (Value::String(s), Some(ct)) if !ct.contains("json") => Item {
                key: None,
                content_type: ct.clone(),
                payload: s.as_bytes().to_vec(),
            },
            (v, ct) => Item {
                key: None,
                content_type: ct.clone().unwrap_or_else(|| "application/json".into()),
                payload: serde_json::to_vec(v).expect("a JSON value serializes"),
            },
        }
    }

    /// An invoke spec carrying `item` as it came in (a trigger with
    /// `Prefer: respond-async`).
    pub fn from_item(pipeline: &str, item: &Item) -> Self {
        Self {
            pipeline: pipeline.to_string(),
            input: Value::Null,
            input_base64: Some(base64::engine::general_purpose::STANDARD.encode(&item.payload)),
            content_type: Some(item.content_type.clone()),
            timeout_s: None,
            origin: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_defaults_and_errors_name_the_field() {
        let spec = JobSpec::from_json(br#"{"kind":"batch","pipeline":"p","dataset":"d"}"#).unwrap();
        let JobSpec::Batch(b) = &spec else { panic!() };
        assert_eq!((b.max_failed_fraction, b.output.dir.is_none()), (0.1, true));
        assert_eq!((spec.kind(), spec.pipeline()), ("batch", "p"));

        let err = JobSpec::from_json(br#"{"kind":"batch","pipeline":"p"}"#).unwrap_err();
        assert!(err.message.contains("dataset"), "{}", err.message);
        let err = JobSpec::from_json(br#"{"kind":"train","pipeline":"p"}"#).unwrap_err();
        assert!(
            err.message.contains("unknown variant `train`"),
            "{}",
            err.message
        );
        let err =
            JobSpec::from_json(br#"{"kind":"batch","pipeline":"p","dataset":"d","outptu":{}}"#)
                .unwrap_err();
        assert!(err.message.contains("outptu"), "{}", err.message);
        let err = JobSpec::from_json(
            br#"{"kind":"batch","pipeline":"p","dataset":"d","output":{"dir":"rel/x"}}"#,
        )
        .unwrap_err();
        assert!(err.message.starts_with("`output.dir`"), "{}", err.message);
        let err = JobSpec::from_json(
            br#"{"kind":"batch","pipeline":"p","dataset":"d","max_failed_fraction":2}"#,
        )
        .unwrap_err();
        assert!(
            err.message.contains("max_failed_fraction"),
            "{}",
            err.message
        );
        assert!(JobSpec::from_json(b"[").is_err());
        // Only the cluster says where a job came from.
        let err = JobSpec::from_json(
            br#"{"kind":"invoke","pipeline":"p","origin":{"node":"n1","id":3}}"#,
        )
        .unwrap_err();
        assert!(err.message.starts_with("`origin`"), "{}", err.message);
    }

    #[test]
    fn invoke_inputs_become_items() {
        let spec = |s: &str| match JobSpec::from_json(s.as_bytes()).unwrap() {
            JobSpec::Invoke(i) => i.item(),
            _ => panic!(),
        };
        let json = spec(r#"{"kind":"invoke","pipeline":"p","input":{"a":1}}"#);
        assert_eq!(
            (json.content_type.as_str(), json.payload.as_slice()),
            ("application/json", &br#"{"a":1}"#[..])
        );
        let text =
            spec(r#"{"kind":"invoke","pipeline":"p","input":"Hi","content_type":"text/plain"}"#);
        assert_eq!(text.payload, b"Hi");
        let bin = spec(r#"{"kind":"invoke","pipeline":"p","input_base64":"AAE="}"#);
        assert_eq!(
            (bin.content_type.as_str(), &bin.payload[..]),
            ("application/octet-stream", &[0u8, 1][..])
        );
        let back = InvokeSpec::from_item("p", &bin).item();
        assert_eq!(back.payload, vec![0, 1]);
        assert!(
            JobSpec::from_json(br#"{"kind":"invoke","pipeline":"p","input_base64":"!!"}"#).is_err()
        );
        let huge = br#"{"kind":"invoke","pipeline":"p","timeout_s":18446744073709551615}"#;
        let err = JobSpec::from_json(huge).unwrap_err();
        assert!(err.message.contains("`timeout_s`"), "{}", err.message);
        // No input ran the stage on `null`.
        let err = JobSpec::from_json(br#"{"kind":"invoke","pipeline":"p"}"#).unwrap_err();
        assert!(
            err.message.starts_with("`input`: is missing"),
            "{}",
            err.message
        );
    }
}
