//! The ONNX backend conformance suite (the `node`, `simple`,
//! `pytorch-operator` and `pytorch-converted` cases shipped in the onnx
//! wheel, and its nine `light` model-zoo CNNs, extracted by `cargo xtask
//! models`) run through weft-nn's ONNX interpreter.
//!
//! A case whose model uses an operator or type weft-nn refuses at load
//! counts as unsupported; every other case must produce each output within
//! rtol 1e-3 / atol 1e-5 (NaN matches NaN), but for the few listed in
//! `DIFFERS` with why. The test prints a table and
//! fails when fewer than `MIN_PASSED` cases pass, so a regression shows.
//! It then runs every case again loaded for the GPU, whose inputs go up
//! first so that each node with a device kernel runs there, and fails
//! unless the same cases pass.

use std::path::{Path, PathBuf};

use weft_nn::{ElementType, Encoding, Engine, NnErrorKind, Placement, Target, Tensor};

/// Cases passing today; raise it as operators land.
const MIN_PASSED: usize = 1714;

/// Cases whose expected outputs weft-nn does not reproduce, on purpose,
/// each with why: each must fail (and is listed with the reason instead of
/// among the failures), so a change that makes one pass, or another of
/// their kind fail, shows. A random case must fail on values alone (its
/// shape and type right), or may pass by chance.
const DIFFERS: &[(&str, &str)] = &[
    ("test_qlinearmatmul_2D_int8_float16", WRAPS),
    ("test_qlinearmatmul_2D_int8_float32", WRAPS),
    ("test_qlinearmatmul_3D_int8_float16", WRAPS),
    ("test_qlinearmatmul_3D_int8_float32", WRAPS),
    ("test_adam_multiple", STALE),
    ("test_bernoulli", RANDOM),
    ("test_bernoulli_double", RANDOM),
    ("test_bernoulli_double_expanded", RANDOM),
    ("test_bernoulli_expanded", RANDOM),
    ("test_bernoulli_seed", RANDOM),
    ("test_bernoulli_seed_expanded", RANDOM),
    ("test_training_dropout", RANDOM),
    ("test_training_dropout_default", RANDOM),
    ("test_training_dropout_default_mask", RANDOM),
    ("test_training_dropout_mask", RANDOM),
];
const NOT_DIFFERING: &str = "listed in DIFFERS but did not fail";
const WRAPS: &str = "the onnx reference wraps int8 results that overflow; the spec and onnxruntime saturate, as weft-nn does";
const STALE: &str = "the case's outputs were made with epsilon 1e-2, which its model does not set; \
     the ONNX reference run on the model gives weft-nn's values (default epsilon 1e-6)";
const RANDOM: &str = "random draws (training-mode dropout, Bernoulli): the reference's come from numpy's \
     generator; each must give the expected shape and type, and may match by chance";

const SUITES: [&str; 5] = [
    "node",
    "simple",
    "pytorch-operator",
    "pytorch-converted",
    "light",
];
const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-5;

fn suite_dir() -> PathBuf {
    let dir = std::env::var_os("WEFT_ONNX_TESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/models/onnx-tests")
        });
    assert!(
        dir.join("node").is_dir(),
        "{} is missing: run `cargo xtask models` (extracts the ONNX backend test cases), \
         or point WEFT_ONNX_TESTS at a copy",
        dir.display()
    );
    dir
}

/// A decoded `TensorProto`: its ONNX type code, dims and values as f64
/// (u64 values keep their magnitude), plus the tensor weft-nn takes.
struct Proto {
    code: u64,
    dims: Vec<usize>,
    values: Vec<f64>,
}

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0;
    for shift in (0..64).step_by(7) {
        let byte = b[*at];
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    v
}

enum Field<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

fn fields(b: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < b.len() {
        let key = varint(b, &mut at);
        let f = match key & 7 {
            0 => Field::Int(varint(b, &mut at)),
            1 => {
                at += 8;
                Field::Int(u64::from_le_bytes(b[at - 8..at].try_into().unwrap()))
            }
            5 => {
                at += 4;
                Field::Int(u64::from(u32::from_le_bytes(
                    b[at - 4..at].try_into().unwrap(),
                )))
            }
            _ => {
                let len = varint(b, &mut at) as usize;
                at += len;
                Field::Bytes(&b[at - len..at])
            }
        };
        out.push((key >> 3, f));
    }
    out
}

fn packed_ints(f: &Field<'_>, out: &mut Vec<u64>) {
    match f {
        Field::Int(v) => out.push(*v),
        Field::Bytes(b) => {
            let mut at = 0;
            while at < b.len() {
                out.push(varint(b, &mut at));
            }
        }
    }
}

fn half(h: u16) -> f64 {
    f64::from(weft_nn::quant::f16_to_f32(h))
}

/// Decodes a `TensorProto`; `None` for types the suite cannot feed
/// (strings and the like).
fn decode(b: &[u8]) -> Option<Proto> {
    let (mut dims, mut code, mut raw) = (Vec::new(), 0, None);
    let (mut floats, mut ints, mut doubles) = (Vec::new(), Vec::new(), Vec::new());
    for (n, f) in fields(b) {
        match (n, f) {
            (1, f) => {
                let mut d = Vec::new();
                packed_ints(&f, &mut d);
                dims.extend(d.into_iter().map(|v| v as usize));
            }
            (2, Field::Int(v)) => code = v,
            (4, Field::Bytes(b)) => floats.extend(
                b.chunks_exact(4)
                    .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap()))),
            ),
            (4, Field::Int(v)) => floats.push(f64::from(f32::from_bits(v as u32))),
            (5 | 7 | 11, f) => packed_ints(&f, &mut ints),
            (9, Field::Bytes(b)) => raw = Some(b),
            (10, Field::Bytes(b)) => doubles.extend(
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap())),
            ),
            (10, Field::Int(v)) => doubles.push(f64::from_bits(v)),
            _ => {}
        }
    }
    // Narrow types: a byte per float8, two 4-bit or four 2-bit elements
    // per byte (from the low bits), in raw_data or one per int32_data.
    if (17..=26).contains(&code) {
        let bytes: Vec<u8> = match raw {
            Some(r) => r.to_vec(),
            None => ints.iter().map(|&v| v as u8).collect(),
        };
        let count = dims.iter().product();
        return Some(Proto {
            code,
            values: narrow_values(code, &bytes, count),
            dims,
        });
    }
    let values: Vec<f64> = match raw {
        Some(r) => match code {
            1 => r
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
                .collect(),
            2 | 9 => r.iter().map(|&v| f64::from(v)).collect(),
            3 => r.iter().map(|&v| f64::from(v as i8)).collect(),
            4 => r
                .chunks_exact(2)
                .map(|c| f64::from(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            5 => r
                .chunks_exact(2)
                .map(|c| f64::from(i16::from_le_bytes([c[0], c[1]])))
                .collect(),
            6 => r
                .chunks_exact(4)
                .map(|c| f64::from(i32::from_le_bytes(c.try_into().unwrap())))
                .collect(),
            7 => r
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            10 => r
                .chunks_exact(2)
                .map(|c| half(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            11 => r
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            12 => r
                .chunks_exact(4)
                .map(|c| f64::from(u32::from_le_bytes(c.try_into().unwrap())))
                .collect(),
            13 => r
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            16 => r
                .chunks_exact(2)
                .map(|c| {
                    f64::from(f32::from_bits(
                        u32::from(u16::from_le_bytes([c[0], c[1]])) << 16,
                    ))
                })
                .collect(),
            _ => return None,
        },
        None => match code {
            1 => floats,
            11 => doubles,
            10 => ints.iter().map(|&v| half(v as u16)).collect(),
            16 => ints
                .iter()
                .map(|&v| f64::from(f32::from_bits((v as u32) << 16)))
                .collect(),
            13 | 12 => ints.iter().map(|&v| v as f64).collect(),
            2..=7 | 9 => ints.iter().map(|&v| v as i64 as f64).collect(),
            _ => return None,
        },
    };
    Some(Proto { code, dims, values })
}

/// The values of `count` elements of a narrow type (`TensorProto` codes
/// 17 to 26), from their bytes; floats read from a table of each format's
/// fields (exponent bits, bias, and how it spells NaN and inf).
fn narrow_values(code: u64, bytes: &[u8], count: usize) -> Vec<f64> {
    let bits = match code {
        21..=23 => 4,
        25 | 26 => 2,
        _ => 8,
    };
    let per = 8 / bits;
    let field = |i: usize| u32::from(bytes[i / per] >> ((i % per) * bits)) & ((1 << bits) - 1);
    (0..count)
        .map(|i| {
            let v = field(i);
            let signed = |w: u32| f64::from(((v << (32 - w)) as i32) >> (32 - w));
            // (exponent bits, mantissa bits, bias, NaN codes, inf code)
            let (e, m, bias, nan, inf): (u32, u32, i32, &[u32], Option<u32>) = match code {
                17 => (4, 3, 7, &[0x7f, 0xff], None),
                18 => (4, 3, 8, &[0x80], None),
                19 => (5, 2, 15, &[0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff], Some(0x7c)),
                20 => (5, 2, 16, &[0x80], None),
                23 => (2, 1, 1, &[], None),
                24 => {
                    return if v == 0xff {
                        f64::NAN
                    } else {
                        2f64.powi(v as i32 - 127)
                    };
                }
                21 | 25 => return f64::from(v),
                _ => return signed(bits as u32),
            };
            if nan.contains(&v) {
                return f64::NAN;
            }
            let sign = if v >> (e + m) & 1 == 1 { -1.0 } else { 1.0 };
            if Some(v & !(1 << (e + m))) == inf {
                return sign * f64::INFINITY;
            }
            let (exp, man) = ((v >> m) & ((1 << e) - 1), f64::from(v & ((1 << m) - 1)));
            let scale = 2f64.powi(m as i32);
            sign * match exp {
                0 => man / scale * 2f64.powi(1 - bias),
                x => (1.0 + man / scale) * 2f64.powi(x as i32 - bias),
            }
        })
        .collect()
}

/// The `wasi:nn` type weft-nn emits (and accepts) for an ONNX type code:
/// narrow floats widen to f32, narrow integers to i32.
fn element_type(code: u64) -> Option<ElementType> {
    Some(match code {
        1 | 17..=20 | 23 | 24 => ElementType::F32,
        21 | 22 | 25 | 26 => ElementType::I32,
        10 => ElementType::F16,
        16 => ElementType::Bf16,
        11 => ElementType::F64,
        2 | 9 => ElementType::U8,
        3..=6 => ElementType::I32,
        7 | 12 | 13 => ElementType::I64,
        _ => return None,
    })
}

fn to_tensor(p: &Proto) -> Option<Tensor> {
    let ty = element_type(p.code)?;
    let data: Vec<u8> = match ty {
        ElementType::F32 => p
            .values
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect(),
        // f64 -> f32 -> half bits: exact for values that came from halves.
        ElementType::F16 => p
            .values
            .iter()
            .flat_map(|&v| f32_to_f16(v as f32).to_le_bytes())
            .collect(),
        ElementType::Bf16 => p
            .values
            .iter()
            .flat_map(|&v| (((v as f32).to_bits() >> 16) as u16).to_le_bytes())
            .collect(),
        ElementType::F64 => p.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ElementType::U8 => p.values.iter().map(|&v| v as u8).collect(),
        ElementType::I32 => p
            .values
            .iter()
            .flat_map(|&v| (v as i32).to_le_bytes())
            .collect(),
        ElementType::I64 => p
            .values
            .iter()
            .flat_map(|&v| {
                if p.code == 13 {
                    (v as u64 as i64).to_le_bytes()
                } else {
                    (v as i64).to_le_bytes()
                }
            })
            .collect(),
    };
    Tensor::new(p.dims.clone(), ty, data).ok()
}

/// Exact for halves widened to f32 (the only values fed here).
fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 112;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        return sign | ((man | 0x80_0000) >> (14 - e)) as u16;
    }
    sign | ((e as u32) << 10 | man >> 13) as u16
}

fn values_of(t: &Tensor, unsigned64: bool) -> Vec<f64> {
    match t.ty {
        ElementType::F64 => t
            .data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        ElementType::I64 if unsigned64 => t
            .data
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        ElementType::I64 | ElementType::I32 | ElementType::U8 => {
            t.to_i64().unwrap().into_iter().map(|v| v as f64).collect()
        }
        _ => t.to_f32().unwrap().into_iter().map(f64::from).collect(),
    }
}

fn close(a: f64, e: f64) -> bool {
    (a.is_nan() && e.is_nan()) || a == e || (a - e).abs() <= ATOL + RTOL * e.abs()
}

enum Outcome {
    Pass,
    /// Refused at load; the reason's first backquoted word (the operator).
    Unsupported(String),
    Fail(String),
}

fn run_case(dir: &Path, engine: &Engine, target: Target) -> Outcome {
    let bytes = match std::fs::read(dir.join("model.onnx")) {
        Ok(b) => b,
        Err(e) => return Outcome::Fail(format!("reading model: {e}")),
    };
    let model = match engine.load(&bytes, Encoding::Onnx, target) {
        Ok(m) => m,
        Err(e) if e.kind == NnErrorKind::UnsupportedOperation => {
            return Outcome::Unsupported(e.message.split('`').nth(1).unwrap_or("?").to_string());
        }
        Err(e) => return Outcome::Fail(format!("load: {e}")),
    };
    if matches!(target, Target::Gpu) && !matches!(model.placement(), Placement::Gpu(_)) {
        return Outcome::Fail(format!(
            "loaded for the GPU, placed on {:?}: install a Vulkan driver (scripts/install-vulkan.sh)",
            model.placement()
        ));
    }
    let info = match weft_nn::inspect(&bytes, Encoding::Onnx) {
        Ok(weft_nn::ModelInfo::Onnx(i)) => i,
        other => return Outcome::Fail(format!("inspect: {other:?}")),
    };
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    sets.sort();
    for set in sets {
        let read = |kind: &str, i: usize| std::fs::read(set.join(format!("{kind}_{i}.pb"))).ok();
        let mut inputs = Vec::new();
        for (i, name) in info.inputs.iter().enumerate() {
            let Some(b) = read("input", i) else { break };
            let Some(t) = decode(&b).as_ref().and_then(to_tensor) else {
                return Outcome::Unsupported("input type".into());
            };
            inputs.push((name.clone(), t));
        }
        let outputs = match model.session().compute(&inputs) {
            Ok(o) => o,
            Err(e) => return Outcome::Fail(format!("compute: {e}")),
        };
        for (i, name) in info.outputs.iter().enumerate() {
            let Some(b) = read("output", i) else { break };
            let Some(want) = decode(&b) else {
                return Outcome::Unsupported("output type".into());
            };
            let Some((_, got)) = outputs.iter().find(|(n, _)| n == name) else {
                return Outcome::Fail(format!("output `{name}` missing"));
            };
            if got.shape != want.dims {
                return Outcome::Fail(format!(
                    "output `{name}`: shape {:?}, want {:?}",
                    got.shape, want.dims
                ));
            }
            if Some(got.ty) != element_type(want.code) {
                return Outcome::Fail(format!(
                    "output `{name}`: type {:?}, want ONNX type {}",
                    got.ty, want.code
                ));
            }
            let vals = values_of(got, want.code == 13);
            if let Some(k) = (0..vals.len()).find(|&k| !close(vals[k], want.values[k])) {
                return Outcome::Fail(format!(
                    "output `{name}`[{k}] = {}, want {}",
                    vals[k], want.values[k]
                ));
            }
        }
    }
    Outcome::Pass
}

#[test]
fn onnx_backend_conformance() {
    // (One test for both paths: the panic hook it silences is the
    // process's.)
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let cpu = std::panic::catch_unwind(|| conformance(Target::Cpu));
    let gpu = std::panic::catch_unwind(|| conformance(Target::Gpu));
    std::panic::set_hook(hook);
    let (cpu, gpu) = (cpu.unwrap(), gpu.unwrap());
    for (target, run) in [("CPU", &cpu), ("GPU", &gpu)] {
        println!("on the {target}:\n{}", run.report);
    }
    let stale: Vec<&String> = cpu
        .failures
        .iter()
        .filter(|f| f.contains(NOT_DIFFERING))
        .collect();
    assert!(stale.is_empty(), "{stale:?}");
    assert!(
        cpu.passed >= MIN_PASSED,
        "{} ONNX conformance cases passed, fewer than MIN_PASSED = {MIN_PASSED}",
        cpu.passed
    );
    // The GPU path (llvmpipe on the CI): each case's inputs go up first,
    // so every node with a device kernel runs there, the rest on the CPU
    // between them. Each case must end as on the CPU.
    let only = |a: &Run, b: &Run| -> Vec<String> {
        a.failures
            .iter()
            .filter(|f| !b.failures.contains(f))
            .cloned()
            .collect()
    };
    assert!(
        gpu.passed == cpu.passed && gpu.failures == cpu.failures,
        "{} cases passed on the GPU, {} on the CPU; failing on the GPU only: {:?}; on the CPU only: {:?}",
        gpu.passed,
        cpu.passed,
        only(&gpu, &cpu),
        only(&cpu, &gpu),
    );
    let device = weft_nn::gpu::Gpu::if_started().expect("the cases started the GPU");
    let (dispatches, round_trips) = (device.pass_times().dispatches, device.round_trips());
    println!("on the GPU: {dispatches} dispatches in {round_trips} round trips");
    // Most cases run some node there (~700 round trips), not just their
    // products. (A floor: other tests of this binary use the GPU too.)
    assert!(round_trips > 500, "{round_trips} round trips");
}

/// What one pass over the suites gave.
struct Run {
    passed: usize,
    /// `suite/case`, each failing case (not why: the values it reports
    /// may differ between the paths).
    failures: Vec<String>,
    /// The table and lists to print.
    report: String,
}

fn conformance(target: Target) -> Run {
    let root = suite_dir();
    let engine = Engine::default();
    let mut total_passed = 0;
    let mut failures = Vec::new();
    let mut refused: std::collections::BTreeMap<String, usize> = Default::default();
    let mut differs = Vec::new();
    let name = |case: &Path| {
        case.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let mut table = vec![format!(
        "{:<18} {:>7} {:>7} {:>12}",
        "suite", "passed", "failed", "unsupported"
    )];
    for suite in SUITES {
        let mut cases: Vec<PathBuf> = std::fs::read_dir(root.join(suite))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        cases.sort();
        let (mut pass, mut fail, mut unsup) = (0, 0, 0);
        for case in &cases {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_case(case, &engine, target)
            }))
            .unwrap_or_else(|_| Outcome::Fail("panicked".into()));
            let random = DIFFERS
                .iter()
                .any(|&(c, why)| c == name(case) && why == RANDOM);
            match outcome {
                // Random draws: right but for their values (which may
                // match by chance).
                Outcome::Pass if random => differs.push(name(case)),
                Outcome::Fail(why) if random && !why.contains("] = ") => {
                    fail += 1;
                    failures.push(format!("{suite}/{}: {why}", name(case)));
                }
                Outcome::Pass => pass += 1,
                Outcome::Unsupported(why) => {
                    if std::env::var_os("WEFT_ONNX_LIST").is_some() {
                        println!("unsupported {}: {why}", case.display());
                    }
                    unsup += 1;
                    *refused.entry(why).or_default() += 1;
                }
                Outcome::Fail(_) if DIFFERS.iter().any(|(c, _)| *c == name(case)) => {
                    differs.push(name(case));
                }
                Outcome::Fail(why) => {
                    fail += 1;
                    failures.push(format!("{suite}/{}: {why}", name(case)));
                }
            }
        }
        total_passed += pass;
        table.push(format!("{suite:<18} {pass:>7} {fail:>7} {unsup:>12}"));
    }
    let mut report = table.join("\n");
    let mut refused: Vec<_> = refused.into_iter().collect();
    refused.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let shown: Vec<String> = refused.iter().map(|(w, n)| format!("{w} {n}")).collect();
    report += &format!("\nunsupported, by what was refused: {}", shown.join(", "));
    for why in [WRAPS, STALE, RANDOM] {
        let cases: Vec<&str> = DIFFERS
            .iter()
            .filter(|(c, w)| *w == why && differs.iter().any(|d| d == c))
            .map(|(c, _)| *c)
            .collect();
        report += &format!(
            "\ndiffer on purpose, {} ({why}): {}",
            cases.len(),
            cases.join(", ")
        );
    }
    // Each listed case must still differ: one that now passes (or no
    // longer runs) should leave the list.
    for (case, _) in DIFFERS {
        if !differs.iter().any(|d| d == case) {
            failures.push(format!("node/{case} ({NOT_DIFFERING})"));
        }
    }
    report += &format!("\nfailures ({}):", failures.len());
    for f in &failures {
        report += &format!("\n  {f}");
    }
    Run {
        passed: total_passed,
        failures: failures
            .iter()
            .map(|f| f.split(':').next().unwrap_or(f).to_string())
            .collect(),
        report,
    }
}
