//! Dataset ingestion: a streamed upload becomes blocks of rows in the object
//! store, one block at a time, so a file of any size passes through a fixed
//! amount of memory.
//!
//! Every block object holds newline-separated rows:
//!
//! | format | a row in the upload | a row in a block | item given to a stage |
//! | --- | --- | --- | --- |
//! | `jsonl` | one JSON document per line | the document, compacted | `application/json` |
//! | `csv` | a record under a header line (RFC 4180 quoting) | a JSON object of strings | `application/json` |
//! | `lines` | one line of UTF-8 text | the line | `text/plain; charset=utf-8` |
//! | `objects` | the id of an uploaded object | the id | the object's bytes, `application/octet-stream` |
//!
//! Blank lines are skipped in every format.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};
use weft_store::{DatasetBlock, Store};

use crate::ApiError;

/// Rows per block unless the upload says otherwise.
pub const DEFAULT_BLOCK_ROWS: u32 = 1024;
/// A block is closed early once it holds this many bytes.
pub const MAX_BLOCK_BYTES: usize = 8 << 20;
/// The most rows a block may be asked to hold (each row in flight costs
/// memory beyond its bytes).
pub const MAX_BLOCK_ROWS: u32 = 100_000;
/// The most fields a CSV record may have.
pub const MAX_CSV_FIELDS: usize = 100_000;
/// The longest row accepted (a longer one is almost always a wrong format).
pub const MAX_ROW_BYTES: usize = 16 << 20;

/// How an upload's rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON lines.
    Jsonl,
    /// CSV with a header line.
    Csv,
    /// Lines of text.
    Lines,
    /// Object ids, one per line.
    Objects,
}

impl Format {
    /// The name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Lines => "lines",
            Self::Objects => "objects",
        }
    }

    /// The content type of the items a row of this format becomes.
    pub fn item_content_type(self) -> &'static str {
        match self {
            Self::Jsonl | Self::Csv => "application/json",
            Self::Lines => "text/plain; charset=utf-8",
            Self::Objects => "application/octet-stream",
        }
    }

    /// The format a content type says.
    pub fn of_content_type(content_type: &str) -> Option<Self> {
        let s = content_type.to_ascii_lowercase();
        if s.contains("ndjson") || s.contains("jsonl") {
            Some(Self::Jsonl)
        } else if s.contains("text/csv") {
            Some(Self::Csv)
        } else if s.contains("text/plain") {
            Some(Self::Lines)
        } else {
            None
        }
    }

    /// The format a file's extension says (only the extension: a folder
    /// named `jsonl-exports` says nothing about `rows.csv` in it).
    pub fn of_file(path: &std::path::Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            "csv" => Some(Self::Csv),
            "txt" => Some(Self::Lines),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<Self, ApiError> {
        match s {
            "jsonl" | "ndjson" => Ok(Self::Jsonl),
            "csv" => Ok(Self::Csv),
            "lines" | "text" => Ok(Self::Lines),
            "objects" => Ok(Self::Objects),
            other => Err(ApiError::bad_request(
                "invalid_argument",
                format!("format: `{other}` is not a dataset format"),
            )
            .hint("use format=jsonl, csv, lines or objects")),
        }
    }
}

/// Splits an upload into rows and rows into blocks. Feed it bytes with
/// [`Ingest::push`]; each full block is returned to the caller to store.
#[derive(Debug)]
pub struct Ingest {
    format: Format,
    block_rows: u32,
    /// Bytes of a line not yet ended.
    pending: Vec<u8>,
    /// Line number (1-based) of the next line to complete.
    line: u64,
    /// Rows of the block being filled.
    block: Vec<u8>,
    rows: u32,
    csv: Option<CsvRows>,
}

/// A block ready to be stored.
#[derive(Debug)]
pub struct FullBlock {
    /// Rows, newline-separated.
    pub data: Vec<u8>,
    /// How many.
    pub rows: u32,
}

impl Ingest {
    /// An ingest of `format` rows into blocks of `block_rows` rows.
    pub fn new(format: Format, block_rows: u32) -> Self {
        Self {
            format,
            block_rows: block_rows.max(1),
            pending: Vec::new(),
            line: 1,
            block: Vec::new(),
            rows: 0,
            csv: (format == Format::Csv).then(CsvRows::new),
        }
    }

    /// Takes the next bytes of the upload; returns the blocks they completed.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Vec<FullBlock>, ApiError> {
        let mut full = Vec::new();
        if let Some(csv) = &mut self.csv {
            let rows = csv.push(bytes, false)?;
            for row in rows {
                self.add_row(row.as_bytes(), &mut full);
            }
            return Ok(full);
        }
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let (head, rest) = bytes.split_at(end);
            bytes = &rest[1..];
            let line = if self.pending.is_empty() {
                head.to_vec()
            } else {
                let mut l = std::mem::take(&mut self.pending);
                l.extend_from_slice(head);
                l
            };
            self.line_done(&line, &mut full)?;
        }
        if self.pending.len() + bytes.len() > MAX_ROW_BYTES {
            return Err(ApiError::bad_request(
                "invalid_dataset",
                format!(
                    "line {}: longer than {} MiB without a newline",
                    self.line,
                    MAX_ROW_BYTES >> 20
                ),
            )
            .hint("is the format right? rows are separated by newlines"));
        }
        self.pending.extend_from_slice(bytes);
        Ok(full)
    }

    /// Ends the upload: the last line and the last, partly filled block.
    pub fn finish(mut self) -> Result<Vec<FullBlock>, ApiError> {
        let mut full = Vec::new();
        if let Some(csv) = &mut self.csv {
            let rows = csv.push(&[], true)?;
            for row in rows {
                self.add_row(row.as_bytes(), &mut full);
            }
        } else if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.line_done(&line, &mut full)?;
        }
        if self.rows > 0 {
            full.push(self.take_block());
        }
        Ok(full)
    }

    fn line_done(&mut self, raw: &[u8], full: &mut Vec<FullBlock>) -> Result<(), ApiError> {
        let line_no = self.line;
        self.line += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let bad = |why: String, hint: &str| {
            ApiError::bad_request("invalid_dataset", format!("line {line_no}: {why}"))
                .hint(hint.to_string())
        };
        let row: Vec<u8> = match self.format {
            Format::Jsonl => {
                let v: Value = serde_json::from_slice(raw).map_err(|e| {
                    // serde's position is within the line: its column alone.
                    let why = e.to_string();
                    let why = why.rsplit_once(" at line ").map_or(why.as_str(), |(w, _)| w);
                    bad(
                        format!("not JSON: {why} (at column {})", e.column()),
                        "every line of a jsonl dataset is one JSON document; use format=lines for plain text",
                    )
                })?;
                serde_json::to_vec(&v).expect("a JSON value serializes")
            }
            Format::Lines => {
                std::str::from_utf8(raw).map_err(|_| {
                    bad(
                        "not UTF-8 text".into(),
                        "use format=objects for binary files (upload each, then list their ids)",
                    )
                })?;
                raw.to_vec()
            }
            Format::Objects => {
                let id = std::str::from_utf8(raw).unwrap_or("").trim();
                if id.len() != 64
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    return Err(bad(
                        format!(
                            "`{}` is not an object id",
                            String::from_utf8_lossy(&raw[..raw.len().min(80)])
                        ),
                        "list the ids `PUT /v1/objects` returned, one per line (`weft dataset create --format objects FILES…` does this for you)",
                    ));
                }
                id.as_bytes().to_vec()
            }
            Format::Csv => unreachable!("csv rows come from the csv reader"),
        };
        self.add_row(&row, full);
        Ok(())
    }

    fn add_row(&mut self, row: &[u8], full: &mut Vec<FullBlock>) {
        self.block.extend_from_slice(row);
        self.block.push(b'\n');
        self.rows += 1;
        if self.rows >= self.block_rows || self.block.len() >= MAX_BLOCK_BYTES {
            full.push(self.take_block());
        }
    }

    fn take_block(&mut self) -> FullBlock {
        let rows = std::mem::take(&mut self.rows);
        FullBlock {
            data: std::mem::take(&mut self.block),
            rows,
        }
    }
}

/// Incremental CSV: records (quotes may span lines) become JSON objects
/// keyed by the header line. Values stay strings: no type is guessed.
#[derive(Debug, Default)]
struct CsvRows {
    reader: csv_core::Reader,
    header: Option<Vec<String>>,
    /// Field bytes of the record being read, and how many are used.
    fields: Vec<u8>,
    used: usize,
    /// Field end offsets of the record being read, and how many are used.
    ends: Vec<usize>,
    ended: usize,
    /// Records completed (the header is record 1).
    record: u64,
}

impl CsvRows {
    fn new() -> Self {
        Self {
            // `Reader::default()` has no parsing tables built: use `new`.
            reader: csv_core::Reader::new(),
            ..Self::default()
        }
    }

    /// Reads what `input` completes; with `last`, also the final record.
    fn push(&mut self, mut input: &[u8], last: bool) -> Result<Vec<String>, ApiError> {
        use csv_core::ReadRecordResult as R;
        let mut rows = Vec::new();
        loop {
            if input.is_empty() && !last {
                return Ok(rows);
            }
            if self.used == self.fields.len() {
                if self.fields.len() > MAX_ROW_BYTES {
                    return Err(ApiError::bad_request(
                        "invalid_dataset",
                        format!(
                            "csv record {} (the header is record 1): longer than {} MiB",
                            self.record + 1,
                            MAX_ROW_BYTES >> 20
                        ),
                    )
                    .hint("is a quote left open? quoted fields may span lines"));
                }
                self.fields.resize((self.fields.len() * 2).max(1024), 0);
            }
            if self.ended >= MAX_CSV_FIELDS {
                return Err(ApiError::bad_request(
                    "invalid_dataset",
                    format!(
                        "csv record {} (the header is record 1): more than {MAX_CSV_FIELDS} fields",
                        self.record + 1
                    ),
                )
                .hint("is this CSV? records are separated by newlines"));
            }
            if self.ended == self.ends.len() {
                self.ends.resize((self.ends.len() * 2).max(32), 0);
            }
            // An empty input tells the reader the upload has ended.
            let (result, read, wrote, ended) = self.reader.read_record(
                input,
                &mut self.fields[self.used..],
                &mut self.ends[self.ended..],
            );
            input = &input[read..];
            self.used += wrote;
            self.ended += ended;
            match result {
                // Everything given has been read (at the end of the upload,
                // the reader reports this once no record is left).
                R::InputEmpty if input.is_empty() => return Ok(rows),
                R::InputEmpty | R::OutputFull | R::OutputEndsFull => {}
                // At the end of the upload the reader keeps reporting an
                // empty record: that is the end, not data.
                R::Record if last && input.is_empty() && self.used == 0 && self.ended <= 1 => {
                    self.ended = 0;
                    return Ok(rows);
                }
                R::Record => {
                    if let Some(row) = self.record_done()? {
                        rows.push(row);
                    }
                }
                R::End => return Ok(rows),
            }
        }
    }

    /// The record just read as a JSON object (or the header, kept).
    fn record_done(&mut self) -> Result<Option<String>, ApiError> {
        self.record += 1;
        let (used, ended) = (
            std::mem::take(&mut self.used),
            std::mem::take(&mut self.ended),
        );
        let mut values = Vec::with_capacity(ended);
        let mut start = 0;
        for &end in &self.ends[..ended] {
            let field = std::str::from_utf8(&self.fields[start..end.min(used)]).map_err(|_| {
                ApiError::bad_request(
                    "invalid_dataset",
                    format!(
                        "csv record {} (the header is record 1): not UTF-8 text",
                        self.record
                    ),
                )
                .hint("save the file as UTF-8")
            })?;
            values.push(field.to_string());
            start = end;
        }
        if values.iter().all(String::is_empty) {
            self.record -= 1;
            return Ok(None);
        }
        let Some(header) = &self.header else {
            self.header = Some(values);
            return Ok(None);
        };
        if values.len() != header.len() {
            return Err(ApiError::bad_request(
                "invalid_dataset",
                format!(
                    "csv record {} (the header is record 1): has {} fields, the header has {}",
                    self.record,
                    values.len(),
                    header.len()
                ),
            )
            .hint(
                "every record needs one field per header column; quote fields that contain commas",
            ));
        }
        let object: Map<String, Value> = header
            .iter()
            .cloned()
            .zip(values.into_iter().map(Value::String))
            .collect();
        Ok(Some(Value::Object(object).to_string()))
    }
}

/// Reads a streamed upload into blocks, storing each as it fills. Returns
/// the blocks in order; on an error nothing is registered (the caller
/// registers the dataset only after this returns).
pub async fn ingest<S, E>(
    store: &Store,
    format: Format,
    block_rows: u32,
    mut body: S,
) -> Result<Vec<DatasetBlock>, ApiError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: fmt::Display,
{
    use futures_util::StreamExt;
    let mut ingest = Ingest::new(format, block_rows);
    let mut blocks = Vec::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request("bad_body", format!("reading the upload failed: {e}"))
            })?;
            for full in ingest.push(&chunk)? {
                blocks.push(store_block(store, format, full).await?);
            }
        }
        for full in ingest.finish()? {
            blocks.push(store_block(store, format, full).await?);
        }
        Ok::<_, ApiError>(())
    }
    .await;
    match read {
        Ok(()) => Ok(blocks),
        Err(e) => {
            // The blocks stored so far are of no dataset.
            release(store, &blocks).await;
            Err(e)
        }
    }
}

/// Ends the leases on the blocks of an upload that registers no dataset.
pub async fn release(store: &Store, blocks: &[DatasetBlock]) {
    let ids: Vec<_> = blocks.iter().map(|b| b.object.clone()).collect();
    let store = store.clone();
    if let Err(e) = crate::blocking(move || store.release_objects(&ids)).await {
        tracing::warn!("cannot free the blocks of a failed upload: {}", e.message);
    }
}

async fn store_block(
    store: &Store,
    format: Format,
    full: FullBlock,
) -> Result<DatasetBlock, ApiError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut bytes = full.data.len() as u64;
        if format == Format::Objects {
            // The block's size is the data its rows stand for, so that batch
            // jobs charge their memory budget for the objects, not the ids.
            // Named by a dataset, they are kept for good (`pin_objects`).
            let ids: Vec<&str> = (full.data.split(|&b| b == b'\n'))
                .filter(|l| !l.is_empty())
                .map(|id| std::str::from_utf8(id).expect("ids are checked ASCII"))
                .collect();
            bytes = store.pin_objects(&ids)?.map_err(|id| {
                ApiError::bad_request("invalid_dataset", format!("object {id} is not stored"))
                    .hint("upload it first with `PUT /v1/objects` (or `weft object put FILE`)")
            })?;
        }
        let object = store.put_owned_object(&full.data)?;
        Ok(DatasetBlock {
            object,
            rows: full.rows,
            bytes,
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns the blocks' rows.
    fn run(
        format: Format,
        block_rows: u32,
        input: &str,
        step: usize,
    ) -> Result<Vec<Vec<String>>, ApiError> {
        let mut ingest = Ingest::new(format, block_rows);
        let mut blocks = Vec::new();
        for piece in input.as_bytes().chunks(step.max(1)) {
            blocks.extend(ingest.push(piece)?);
        }
        blocks.extend(ingest.finish()?);
        Ok(blocks
            .into_iter()
            .map(|b| {
                let text = String::from_utf8(b.data).unwrap();
                let rows: Vec<String> = text.lines().map(str::to_string).collect();
                assert_eq!(rows.len() as u32, b.rows);
                rows
            })
            .collect())
    }

    #[test]
    fn jsonl_rows_are_compacted_and_blocked_whatever_the_chunking() {
        let input = "{\"a\": 1}\n\n{\"a\": 2}\r\n{\"a\":3}\n{\"a\": 4}";
        for step in [1, 3, 7, 100] {
            let blocks = run(Format::Jsonl, 3, input, step).unwrap();
            assert_eq!(
                blocks,
                vec![
                    vec!["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"],
                    vec!["{\"a\":4}"]
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_bad_jsonl_line_is_named() {
        let err = run(Format::Jsonl, 10, "{}\n{}\nnope\n", 4).unwrap_err();
        assert!(
            err.message.starts_with("line 3: not JSON"),
            "{}",
            err.message
        );
        // One line number, the dataset's (serde's said "at line 1").
        assert!(err.message.ends_with("(at column 2)"), "{}", err.message);
        assert!(!err.message.contains("line 1"), "{}", err.message);
        assert!(err.hint.unwrap().contains("format=lines"));
    }

    #[test]
    fn csv_records_become_objects_even_across_lines_and_chunks() {
        let input = "id,text\n1,hello\n2,\"a, b\"\n3,\"two\nlines\"\n\n4,\"say \"\"hi\"\"\"";
        for step in [1, 2, 5, 1000] {
            let blocks = run(Format::Csv, 2, input, step).unwrap();
            let rows: Vec<Value> = blocks
                .concat()
                .iter()
                .map(|r| serde_json::from_str(r).unwrap())
                .collect();
            assert_eq!(
                rows,
                vec![
                    serde_json::json!({"id": "1", "text": "hello"}),
                    serde_json::json!({"id": "2", "text": "a, b"}),
                    serde_json::json!({"id": "3", "text": "two\nlines"}),
                    serde_json::json!({"id": "4", "text": "say \"hi\""}),
                ],
                "step {step}"
            );
            assert_eq!(blocks.len(), 2);
        }
        let err = run(Format::Csv, 2, "a,b\n1\n", 3).unwrap_err();
        assert!(
            err.message.contains("has 1 fields, the header has 2"),
            "{}",
            err.message
        );
    }

    #[test]
    fn lines_and_object_ids() {
        let blocks = run(Format::Lines, 2, "one\ntwo\nthree\n", 2).unwrap();
        assert_eq!(blocks, vec![vec!["one", "two"], vec!["three"]]);
        let bad = Ingest::new(Format::Lines, 2)
            .push(b"\xff\xfe\n")
            .unwrap_err();
        assert!(bad.message.contains("not UTF-8"));
        let id = weft_store::object_id(b"x");
        assert_eq!(
            run(Format::Objects, 5, &format!("{id}\n"), 9).unwrap(),
            vec![vec![id]]
        );
        let err = run(Format::Objects, 5, "../etc/passwd\n", 9).unwrap_err();
        assert!(err.message.contains("is not an object id"));
    }

    #[test]
    fn formats_parse_and_guess() {
        assert_eq!("jsonl".parse::<Format>().unwrap(), Format::Jsonl);
        assert!("parquet".parse::<Format>().is_err());
        let file = |p: &str| Format::of_file(std::path::Path::new(p));
        assert_eq!(file("data.csv"), Some(Format::Csv));
        assert_eq!(file("/data/jsonl-exports/rows.CSV"), Some(Format::Csv));
        assert_eq!(file("/data/jsonl/rows"), None);
        assert_eq!(file("a.bin"), None);
        assert_eq!(file("a.ndjson"), Some(Format::Jsonl));
        let typed = Format::of_content_type;
        assert_eq!(typed("application/x-ndjson"), Some(Format::Jsonl));
        assert_eq!(typed("text/csv; charset=utf-8"), Some(Format::Csv));
        assert_eq!(typed("application/octet-stream"), None);
    }
}
