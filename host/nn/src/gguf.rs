//! GGUF (v2, v3): header, metadata and tensor directory, checked against the
//! file's length. Tensor types weft reads: [`READABLE_TYPES`] (every block
//! format llama.cpp quantises to but the ternary TQ1_0 and TQ2_0).

use crate::ModelError;

/// A ggml tensor type (named as ggml names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// bfloat16.
    Bf16,
    /// 4-bit, blocks of 32 with an f16 scale.
    Q4_0,
    /// 4-bit, blocks of 32 with f16 scale and minimum.
    Q4_1,
    /// 5-bit, blocks of 32 with an f16 scale.
    Q5_0,
    /// 5-bit, blocks of 32 with f16 scale and minimum.
    Q5_1,
    /// 8-bit, blocks of 32 with an f16 scale.
    Q8_0,
    /// 2-bit K-quant: super-blocks of 256, 4-bit scales and minimums per 16.
    Q2_K,
    /// 3-bit K-quant: super-blocks of 256, 6-bit scales per 16.
    Q3_K,
    /// 4-bit K-quant: super-blocks of 256, 6-bit scales and minimums per 32.
    Q4_K,
    /// 5-bit K-quant: super-blocks of 256, 6-bit scales and minimums per 32.
    Q5_K,
    /// 6-bit K-quant: super-blocks of 256, 8-bit scales per 16.
    Q6_K,
    /// OCP microscaling FP4 (gpt-oss's experts): blocks of 32 E2M1 values
    /// under one E8M0 power-of-two scale.
    MXFP4,
    /// 4-bit non-linear: blocks of 32 indices into a table of 16 int8
    /// values, under an f16 scale.
    IQ4_NL,
    /// IQ4_NL's values in super-blocks of 256, under an f16 scale times a
    /// 6-bit one per 32.
    IQ4_XS,
    /// 2.06 bits a value: super-blocks of 256, each 8 an entry of a
    /// 256-entry codebook with 7 sign bits, a 4-bit scale per 32.
    IQ2_XXS,
    /// 2.31 bits: IQ2_XXS with a 512-entry codebook and a scale per 16.
    IQ2_XS,
    /// 2.56 bits: a 1024-entry codebook, 8 sign bits, a scale per 16.
    IQ2_S,
    /// 3.06 bits: each 4 an entry of a 256-entry codebook, a scale per 32.
    IQ3_XXS,
    /// 3.44 bits: a 512-entry codebook of 4, 8 sign bits, a scale per 32.
    IQ3_S,
    /// 1.56 bits: each 8 an entry of a 2048-entry codebook of −1, 0 and 1,
    /// shifted by ±1/8, a 3-bit scale per 32.
    IQ1_S,
    /// 1.75 bits: IQ1_S's codebook with a shift per 8 and a scale per 16.
    IQ1_M,
}

impl GgmlType {
    pub(crate) fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            10 => Self::Q2_K,
            11 => Self::Q3_K,
            12 => Self::Q4_K,
            13 => Self::Q5_K,
            14 => Self::Q6_K,
            16 => Self::IQ2_XXS,
            17 => Self::IQ2_XS,
            18 => Self::IQ3_XXS,
            19 => Self::IQ1_S,
            20 => Self::IQ4_NL,
            21 => Self::IQ3_S,
            22 => Self::IQ2_S,
            23 => Self::IQ4_XS,
            29 => Self::IQ1_M,
            30 => Self::Bf16,
            39 => Self::MXFP4,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block).
    pub(crate) fn block(self) -> (u64, u64) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::Bf16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q2_K => (256, 84),
            Self::Q3_K => (256, 110),
            Self::Q4_K => (256, 144),
            Self::Q5_K => (256, 176),
            Self::Q6_K => (256, 210),
            Self::MXFP4 => (32, 17),
            Self::IQ4_NL => (32, 18),
            Self::IQ4_XS => (256, 136),
            Self::IQ2_XXS => (256, 66),
            Self::IQ2_XS => (256, 74),
            Self::IQ2_S => (256, 82),
            Self::IQ3_XXS => (256, 98),
            Self::IQ3_S => (256, 110),
            Self::IQ1_S => (256, 50),
            Self::IQ1_M => (256, 56),
        }
    }
}

/// The tensor types weft reads, for messages.
pub const READABLE_TYPES: &str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS, MXFP4";

/// ggml's names for the types weft does not support, for error messages.
fn type_name(id: u32) -> String {
    let name = match id {
        9 => "Q8_1",
        15 => "Q8_K",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        34 => "TQ1_0",
        35 => "TQ2_0",
        _ => return format!("type {id}"),
    };
    name.to_string()
}

/// One tensor of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensor {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, innermost first (ggml order).
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of the data from the start of the file.
    pub offset: u64,
    /// Bytes of data.
    pub bytes: u64,
}

/// What a GGUF file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufInfo {
    /// Format version.
    pub version: u32,
    /// `general.architecture` (e.g. `llama`), when present.
    pub architecture: Option<String>,
    /// Metadata keys, in file order.
    pub metadata_keys: Vec<String>,
    /// Metadata keys and values, in file order.
    pub metadata: Vec<(String, Value)>,
    /// The tensor directory.
    pub tensors: Vec<GgufTensor>,
    /// Elements in all tensors.
    pub parameters: u64,
    /// Where tensor data starts (tensor offsets are relative to it).
    pub data_start: u64,
}

impl GgufInfo {
    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ModelError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(ModelError(format!(
                "malformed GGUF: the file ends inside {what} (at byte {})",
                self.at
            )));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64, ModelError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }
    fn string(&mut self, what: &str) -> Result<String, ModelError> {
        let len = self.u64(what)?;
        let len = usize::try_from(len)
            .map_err(|_| ModelError(format!("malformed GGUF: {what} is too long")))?;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| ModelError(format!("malformed GGUF: {what} is not UTF-8")))
    }
    /// Reads a metadata value of type `ty`.
    fn value(&mut self, ty: u32, what: &str, depth: u32) -> Result<Value, ModelError> {
        let mut fixed = |n: usize| -> Result<u64, ModelError> {
            let b = self.take(n, what)?;
            let mut v = [0u8; 8];
            v[..n].copy_from_slice(b);
            Ok(u64::from_le_bytes(v))
        };
        Ok(match ty {
            0 => Value::Int(i64::from(fixed(1)? as u8 as i8)),
            1 | 7 => Value::Int(fixed(1)? as i64),
            2 => Value::Int(fixed(2)? as i64),
            3 => Value::Int(i64::from(fixed(2)? as u16 as i16)),
            4 => Value::Int(fixed(4)? as i64),
            5 => Value::Int(i64::from(fixed(4)? as u32 as i32)),
            6 => Value::Float(f64::from(f32::from_bits(fixed(4)? as u32))),
            10 | 11 => Value::Int(fixed(8)? as i64),
            12 => Value::Float(f64::from_bits(fixed(8)?)),
            8 => Value::Str(self.string(what)?),
            9 if depth == 0 => {
                let item = self.u32(what)?;
                let count = self.u64(what)?;
                // Every element takes at least one byte: a count past the
                // end of the file is a lie, refused before allocating.
                if count > (self.bytes.len() - self.at) as u64 {
                    return Err(ModelError(format!(
                        "malformed GGUF: {what} claims {count} elements, past the end of the \
                         file ({} bytes); was the upload cut short?",
                        self.bytes.len()
                    )));
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(item, what, depth + 1)?);
                }
                Value::Array(items)
            }
            other => {
                return Err(ModelError(format!(
                    "malformed GGUF: {what} has unknown value type {other}"
                )));
            }
        })
    }
}

/// A GGUF metadata value (integers and floats widened).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any integer type or bool.
    Int(i64),
    /// f32 or f64.
    Float(f64),
    /// A string.
    Str(String),
    /// An array (not nested).
    Array(Vec<Value>),
}

impl Value {
    /// The value as an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// The value as a float (integers convert).
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Self::Float(f) => Some(*f),
            Self::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }
}

pub(crate) fn inspect(bytes: &[u8]) -> Result<GgufInfo, ModelError> {
    let mut r = Reader { bytes, at: 0 };
    if bytes.len() < 4 || &bytes[..4] != b"GGUF" {
        return Err(ModelError(
            "not a GGUF file: it does not start with `GGUF`".into(),
        ));
    }
    r.at = 4;
    let version = r.u32("the version")?;
    if !(2..=3).contains(&version) {
        return Err(ModelError(format!(
            "GGUF version {version} is not supported (2 and 3 are)"
        )));
    }
    let tensor_count = r.u64("the tensor count")?;
    let kv_count = r.u64("the metadata count")?;
    let mut architecture = None;
    let mut alignment = 32u64;
    let mut metadata_keys = Vec::new();
    let mut metadata = Vec::new();
    for i in 0..kv_count {
        let key = r.string(&format!("metadata key {i}"))?;
        let ty = r.u32(&format!("metadata `{key}`"))?;
        let value = r.value(ty, &format!("metadata `{key}`"), 0)?;
        if key == "general.architecture" {
            architecture = value.as_str().map(str::to_string);
        } else if key == "general.alignment" && ty == 4 {
            alignment = value.as_int().unwrap_or(32) as u64;
        }
        metadata_keys.push(key.clone());
        metadata.push((key, value));
    }
    let mut tensors = Vec::new();
    let mut parameters = 0u64;
    for i in 0..tensor_count {
        let name = r.string(&format!("the name of tensor {i}"))?;
        let what = format!("tensor `{name}`");
        let n_dims = r.u32(&what)?;
        if n_dims > 8 {
            return Err(ModelError(format!(
                "malformed GGUF: {what} has {n_dims} dimensions"
            )));
        }
        let dims = (0..n_dims)
            .map(|_| r.u64(&what))
            .collect::<Result<Vec<_>, _>>()?;
        let type_id = r.u32(&what)?;
        let ty = GgmlType::from_id(type_id).ok_or_else(|| {
            ModelError(format!(
                "{what} is {}, which weft cannot read (it reads {READABLE_TYPES}); convert the model to one of these, e.g. with llama.cpp's `llama-quantize --allow-requantize IN OUT Q4_K_M`",
                type_name(type_id)
            ))
        })?;
        let offset = r.u64(&what)?;
        let elements = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| ModelError(format!("malformed GGUF: {what} is too large")))?;
        let (per_block, block_bytes) = ty.block();
        // Blocks run along the innermost dimension (ggml's rows).
        let row = dims.first().copied().unwrap_or(1);
        if row % per_block != 0 {
            return Err(ModelError(format!(
                "malformed GGUF: {what} has rows of {row} values, not a multiple of its {ty:?} block of {per_block}"
            )));
        }
        let too_large = || ModelError(format!("malformed GGUF: {what} is too large"));
        parameters = parameters.checked_add(elements).ok_or_else(too_large)?;
        let bytes = (elements / per_block)
            .checked_mul(block_bytes)
            .ok_or_else(too_large)?;
        tensors.push(GgufTensor {
            name,
            dims,
            ty,
            offset,
            bytes,
        });
    }
    let data_start = (r.at as u64).div_ceil(alignment.max(1)) * alignment.max(1);
    for t in &tensors {
        let end = data_start
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.bytes));
        if end.is_none_or(|e| e > bytes.len() as u64) {
            return Err(ModelError(format!(
                "malformed GGUF: the data of tensor `{}` ({} bytes at offset {}) lies past the end of the file ({} bytes); was the upload cut short?",
                t.name,
                t.bytes,
                t.offset,
                bytes.len()
            )));
        }
    }
    Ok(GgufInfo {
        version,
        architecture,
        metadata_keys,
        metadata,
        tensors,
        parameters,
        data_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::gguf;

    /// A file cut off inside an array of its metadata (a vocabulary) says
    /// it may have been cut short, as one cut off in its tensors does.
    #[test]
    fn an_array_past_the_end_of_the_file_is_refused() {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes()); // tensors
        b.extend(1u64.to_le_bytes()); // metadata
        let key = b"tokenizer.ggml.tokens";
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key);
        b.extend(9u32.to_le_bytes()); // an array
        b.extend(8u32.to_le_bytes()); // of strings
        b.extend(1000u64.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.push(b'a');
        let err = inspect(&b).unwrap_err().0;
        assert!(err.contains("claims 1000 elements"), "{err}");
        assert!(err.contains("cut short"), "{err}");
    }

    #[test]
    fn reads_the_directory_and_checks_types_and_extent() {
        let file = gguf(
            "llama",
            &[("tok_embd.weight", &[64, 10], 2), ("norm.weight", &[64], 0)],
        );
        let info = inspect(&file).unwrap();
        assert_eq!(info.architecture.as_deref(), Some("llama"));
        assert_eq!(info.metadata_keys.len(), 2);
        assert_eq!(info.tensors[0].ty, GgmlType::Q4_0);
        assert_eq!(info.tensors[0].bytes, 20 * 18);
        assert_eq!(info.parameters, 704);

        // BitNet's ternary blocks are not read.
        let ternary = gguf("llama", &[("blk.0.ffn_up.weight", &[256], 35)]);
        let err = inspect(&ternary).unwrap_err().0;
        assert!(err.contains("`blk.0.ffn_up.weight` is TQ2_0"), "{err}");
        assert!(err.contains("llama-quantize"), "{err}");
        // IQ4_XS's super-blocks of 256 split its rows as K-quants' do.
        let xs = gguf("llama", &[("blk.0.ffn_up.weight", &[256, 2], 23)]);
        assert_eq!(inspect(&xs).unwrap().tensors[0].bytes, 2 * 136);
        // And the lattice i-quants' (IQ1_M: 56 bytes a 256).
        let m = gguf("llama", &[("blk.0.ffn_up.weight", &[256, 2], 29)]);
        assert_eq!(inspect(&m).unwrap().tensors[0].ty, GgmlType::IQ1_M);
        assert_eq!(inspect(&m).unwrap().tensors[0].bytes, 2 * 56);

        // K-quant blocks of 256 run along rows: 576-value rows cannot hold them.
        let split = gguf("llama", &[("blk.0.ffn_up.weight", &[576, 4], 12)]);
        let err = inspect(&split).unwrap_err().0;
        assert!(
            err.contains("rows of 576 values, not a multiple of its Q4_K block of 256"),
            "{err}"
        );
        // Dimensions whose sizes overflow are refused, not a panic: the
        // elements, the bytes (2⁶³ F32s), the parameters in all.
        let header = |ty: u32, tensors: &[&[u64]]| {
            let mut b = b"GGUF".to_vec();
            b.extend(3u32.to_le_bytes());
            b.extend((tensors.len() as u64).to_le_bytes());
            b.extend(0u64.to_le_bytes());
            for (i, dims) in tensors.iter().enumerate() {
                b.extend(1u64.to_le_bytes());
                b.push(b'a' + i as u8);
                b.extend((dims.len() as u32).to_le_bytes());
                dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
                b.extend(ty.to_le_bytes());
                b.extend(0u64.to_le_bytes());
            }
            b
        };
        let quarter: &[u64] = &[32, 1 << 57];
        for (ty, tensors) in [
            (14, &[&[1 << 40, 1 << 40][..]][..]),
            (0, &[&[1 << 31, 1 << 32][..]][..]),
            (8, &[quarter, quarter, quarter, quarter, quarter][..]),
        ] {
            let err = inspect(&header(ty, tensors)).unwrap_err().0;
            assert!(err.contains("too large"), "{err}");
        }
        let k_quant = gguf("llama", &[("blk.0.ffn_up.weight", &[512, 2], 12)]);
        assert_eq!(inspect(&k_quant).unwrap().tensors[0].bytes, 4 * 144);

        let cut = &file[..file.len() - 10];
        let err = inspect(cut).unwrap_err().0;
        assert!(
            err.contains("`norm.weight`") && err.contains("past the end"),
            "{err}"
        );
        for n in [0, 3, 7, 30, 60] {
            assert!(inspect(&file[..n]).is_err(), "{n} bytes");
        }
        assert!(
            inspect(b"GGML....")
                .unwrap_err()
                .0
                .contains("does not start with `GGUF`")
        );
    }
}
