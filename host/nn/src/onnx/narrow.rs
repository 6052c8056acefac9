//! The ONNX element types narrower than a byte's worth of precision:
//! float8 (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ, E8M0), float4 (E2M1) and
//! 2- and 4-bit integers. The interpreter holds narrow floats in f32 and
//! narrow integers in i64 (as it does halves and bytes); this module reads
//! their packed bytes and rounds a value into them as `Cast` specifies.

/// A float format narrower than half: its layout and what it does at the
/// edges of its range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Minifloat {
    exp_bits: u32,
    man_bits: u32,
    bias: i32,
    /// Its largest finite value.
    max: f32,
    /// How it spells what f32 holds but it cannot.
    edges: Edges,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edges {
    /// ±inf at the top exponent, NaN with any mantissa there (E5M2).
    Ieee,
    /// No inf; all bits set but the sign's is NaN (E4M3FN).
    FiniteNan,
    /// No inf, no -0: the sign bit alone is the one NaN (the "fnuz" types).
    Uz,
    /// No inf, no NaN: everything saturates, NaN gives -0 (E2M1, as
    /// the ONNX reference's ml_dtypes does).
    Finite,
}

impl Minifloat {
    pub(crate) const E4M3FN: Self = Self::new(4, 3, 7, 448.0, Edges::FiniteNan);
    pub(crate) const E4M3FNUZ: Self = Self::new(4, 3, 8, 240.0, Edges::Uz);
    pub(crate) const E5M2: Self = Self::new(5, 2, 15, 57344.0, Edges::Ieee);
    pub(crate) const E5M2FNUZ: Self = Self::new(5, 2, 16, 57344.0, Edges::Uz);
    pub(crate) const E2M1: Self = Self::new(2, 1, 1, 6.0, Edges::Finite);

    const fn new(exp_bits: u32, man_bits: u32, bias: i32, max: f32, edges: Edges) -> Self {
        Self {
            exp_bits,
            man_bits,
            bias,
            max,
            edges,
        }
    }

    /// The value of the low `1 + exp_bits + man_bits` bits of `bits`.
    pub(crate) fn decode(self, bits: u8) -> f32 {
        let (e, m) = (self.exp_bits, self.man_bits);
        let sign = (bits >> (e + m)) & 1 == 1;
        let exp = i32::from((bits >> m) & ((1 << e) - 1));
        let man = bits & ((1 << m) - 1);
        let top = exp == (1 << e) - 1;
        let magnitude = match self.edges {
            Edges::Uz if sign && exp == 0 && man == 0 => return f32::NAN,
            Edges::FiniteNan if top && man == (1 << m) - 1 => return f32::NAN,
            Edges::Ieee if top && man != 0 => return f32::NAN,
            Edges::Ieee if top => f32::INFINITY,
            _ if exp == 0 => f32::from(man) * pow2(1 - self.bias - m as i32),
            _ => (1.0 + f32::from(man) / (1 << m) as f32) * pow2(exp - self.bias),
        };
        if sign { -magnitude } else { magnitude }
    }

    /// `x` rounded to the nearest value of this format (ties to even).
    /// Beyond its range `saturate` gives the largest finite value of
    /// `x`'s sign; otherwise inf where the format has it, else NaN.
    pub(crate) fn round(self, x: f32, saturate: bool) -> f32 {
        if x.is_nan() {
            return match self.edges {
                Edges::Finite => -0.0,
                _ => f32::NAN,
            };
        }
        let a = f64::from(x.abs());
        let r = if a.is_infinite() {
            a
        } else if a == 0.0 {
            0.0
        } else {
            // The quantum at a's binade (or the subnormals' below them):
            // a / q is exact, so one rounding gives ties to even.
            let binade = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
            let q = pow2_f64(binade.max(1 - self.bias) - self.man_bits as i32);
            (a / q).round_ties_even() * q
        };
        let r = if r <= f64::from(self.max) {
            r as f32
        } else if saturate || self.edges == Edges::Finite {
            self.max
        } else if self.edges == Edges::Ieee {
            f32::INFINITY
        } else {
            return f32::NAN;
        };
        match self.edges {
            Edges::Uz if r == 0.0 => 0.0,
            _ if x.is_sign_negative() => -r,
            _ => r,
        }
    }
}

/// How a value is rounded to float8 E8M0 (a power of two, no sign).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum E8m0Round {
    Up,
    Down,
    Nearest,
}

impl E8m0Round {
    /// From `Cast`'s `round_mode` attribute.
    pub(crate) fn parse(mode: &str) -> Option<Self> {
        Some(match mode {
            "up" => Self::Up,
            "down" => Self::Down,
            "nearest" => Self::Nearest,
            _ => return None,
        })
    }
}

/// The E8M0 value whose exponent bits are `bits`: 2^(bits - 127), NaN
/// at 255.
pub(crate) fn e8m0_decode(bits: u8) -> f32 {
    match bits {
        0xff => f32::NAN,
        // 2^-127 is an f32 subnormal: the top mantissa bit.
        0 => f32::from_bits(0x40_0000),
        b => f32::from_bits(u32::from(b) << 23),
    }
}

/// `x`'s magnitude rounded to a power of two (E8M0 has no sign and no
/// zero: 0 gives 2^-127), as the ONNX reference does; inf and NaN give
/// NaN, as does rounding past 2^127 unless `saturate`.
pub(crate) fn e8m0_round(x: f32, saturate: bool, mode: E8m0Round) -> f32 {
    let bits = x.to_bits();
    let exp = (bits >> 23) & 0xff;
    if exp == 0xff {
        return f32::NAN;
    }
    let up = match mode {
        E8m0Round::Down => false,
        E8m0Round::Up => bits & 0x7f_ffff != 0,
        // The reference's rule: up from half way, ties up but at the
        // bottom exponent.
        E8m0Round::Nearest => {
            let (guard, rest) = (bits & 0x40_0000 != 0, bits & 0x3f_ffff != 0);
            guard && (rest || exp > 0)
        }
    };
    let exp = exp + u32::from(up && !(saturate && exp == 0xfe));
    e8m0_decode(exp as u8)
}

/// `count` elements of `bits` bits each (1, 2 or 4), packed from the
/// least significant end of each byte, as ONNX stores them; `None` when
/// `packed` is not exactly the bytes they fill (too short, or with bytes
/// after them: a malformed tensor, as an f32 one with a spare value is).
pub(crate) fn unpack(packed: &[u8], bits: u32, count: usize) -> Option<Vec<u8>> {
    let per = (8 / bits) as usize;
    if packed.len() != count.div_ceil(per) {
        return None;
    }
    let mask = ((1u16 << bits) - 1) as u8;
    Some(
        (0..count)
            .map(|i| (packed[i / per] >> ((i % per) as u32 * bits)) & mask)
            .collect(),
    )
}

/// `v`'s low `bits` bits as a signed integer.
pub(crate) fn sign_extend(v: i64, bits: u32) -> i64 {
    (v << (64 - bits)) >> (64 - bits)
}

fn pow2(e: i32) -> f32 {
    pow2_f64(e) as f32
}

fn pow2_f64(e: i32) -> f64 {
    f64::from_bits(((1023 + e) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Minifloat; 5] = [
        Minifloat::E4M3FN,
        Minifloat::E4M3FNUZ,
        Minifloat::E5M2,
        Minifloat::E5M2FNUZ,
        Minifloat::E2M1,
    ];

    fn width(f: Minifloat) -> u32 {
        1 + f.exp_bits + f.man_bits
    }

    #[test]
    fn every_code_rounds_to_itself_and_the_largest_is_max() {
        for f in ALL {
            let values: Vec<f32> = (0..1u16 << width(f)).map(|b| f.decode(b as u8)).collect();
            let finite = values.iter().filter(|v| v.is_finite());
            let max = finite.clone().fold(0f32, |m, v| m.max(*v));
            assert_eq!(max, f.max, "{f:?}");
            for v in finite {
                assert_eq!(f.round(*v, false).to_bits(), v.to_bits(), "{f:?} {v}");
            }
        }
    }

    #[test]
    fn known_codes() {
        let e4 = Minifloat::E4M3FN;
        assert_eq!(e4.decode(0x7e), 448.0);
        assert!(e4.decode(0x7f).is_nan() && e4.decode(0xff).is_nan());
        assert_eq!(e4.decode(0x01), 2f32.powi(-9));
        assert_eq!(e4.decode(0xb8), -1.0);
        let uz = Minifloat::E4M3FNUZ;
        assert!(uz.decode(0x80).is_nan());
        assert_eq!(uz.decode(0x7f), 240.0);
        assert_eq!(uz.decode(0x01), 2f32.powi(-10));
        let e5 = Minifloat::E5M2;
        assert_eq!(e5.decode(0x7c), f32::INFINITY);
        assert!(e5.decode(0x7d).is_nan());
        assert_eq!(e5.decode(0x7b), 57344.0);
        assert!(Minifloat::E5M2FNUZ.decode(0x80).is_nan());
        assert_eq!(Minifloat::E5M2FNUZ.decode(0x7f), 57344.0);
        let e2: Vec<f32> = (0..16).map(|b| Minifloat::E2M1.decode(b)).collect();
        assert_eq!(
            e2,
            [
                0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0,
                -6.0
            ]
        );
    }

    #[test]
    fn rounding_at_the_edges() {
        let e4 = Minifloat::E4M3FN;
        // Between 0.4375 and 0.46875 (and 0.5): nearest, then ties to even.
        assert_eq!(e4.round(0.478_925_47, true), 0.46875);
        assert_eq!(e4.round(0.484_375, true), 0.5);
        // 464 is half way from 448 to the NaN code: even is 448.
        assert_eq!(e4.round(464.0, false), 448.0);
        assert!(e4.round(465.0, false).is_nan());
        assert_eq!(e4.round(1e6, true), 448.0);
        assert_eq!(e4.round(f32::NEG_INFINITY, true), -448.0);
        assert!(e4.round(f32::INFINITY, false).is_nan());
        assert_eq!(e4.round(-1e-7, true).to_bits(), (-0.0f32).to_bits());
        assert_eq!(Minifloat::E4M3FNUZ.round(-1e-7, true).to_bits(), 0);
        assert_eq!(Minifloat::E5M2.round(1e6, false), f32::INFINITY);
        assert_eq!(Minifloat::E5M2.round(1e6, true), 57344.0);
        assert_eq!(Minifloat::E2M1.round(f32::INFINITY, false), 6.0);
        assert_eq!(Minifloat::E2M1.round(0.25, true), 0.0);
        assert_eq!(Minifloat::E2M1.round(-3.5, true), -4.0);
        assert_eq!(Minifloat::E2M1.round(2.5, true), 2.0);
    }

    #[test]
    fn e8m0() {
        let up = |x| e8m0_round(x, true, E8m0Round::Up);
        assert_eq!(up(0.0), 2f32.powi(-127));
        assert_eq!(up(0.124), 0.125);
        assert_eq!(up(1.1), 2.0);
        assert_eq!(up(-4.0), 4.0);
        assert_eq!(e8m0_round(1.9, true, E8m0Round::Down), 1.0);
        assert_eq!(e8m0_round(1.5, true, E8m0Round::Nearest), 2.0);
        assert_eq!(e8m0_round(1.4, true, E8m0Round::Nearest), 1.0);
        assert!(up(f32::INFINITY).is_nan());
        assert_eq!(up(f32::MAX), 2f32.powi(127));
        assert!(e8m0_round(f32::MAX, false, E8m0Round::Up).is_nan());
        assert!(e8m0_decode(0xff).is_nan());
        assert_eq!(e8m0_decode(127), 1.0);
        assert_eq!(E8m0Round::parse("sideways"), None);
    }

    #[test]
    fn packed_elements_from_the_low_bits() {
        assert_eq!(unpack(&[0x21, 0x03], 4, 3), Some(vec![1, 2, 3]));
        assert_eq!(unpack(&[0b11_10_01_00], 2, 4), Some(vec![0, 1, 2, 3]));
        assert_eq!(unpack(&[0x21], 4, 3), None);
        // A byte past the elements is a malformed tensor too.
        assert_eq!(unpack(&[0x21, 0x03, 0x00], 4, 3), None);
        assert_eq!(sign_extend(0xf, 4), -1);
        assert_eq!(sign_extend(0x7, 4), 7);
        assert_eq!(sign_extend(0b10, 2), -2);
    }
}
