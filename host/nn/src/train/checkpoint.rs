//! The bytes of a trainer checkpoint: a magic string, then little-endian
//! numbers and length-prefixed float arrays.

use super::invalid;
use crate::NnError;

pub(super) const MAGIC: &[u8] = b"WEFTTRN\x01";

pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend(v.to_le_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend(v.to_le_bytes());
    }
    pub(super) fn f32(&mut self, v: f32) {
        self.0.extend(v.to_le_bytes());
    }
    pub(super) fn floats(&mut self, v: &[f32]) {
        self.u64(v.len() as u64);
        v.iter().for_each(|&x| self.f32(x));
    }
}

pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl Reader<'_> {
    pub(super) fn take<const N: usize>(&mut self) -> Result<[u8; N], NnError> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return Err(invalid("not a weft trainer checkpoint (truncated)"));
        };
        self.0 = rest;
        Ok(*head)
    }
    pub(super) fn u8(&mut self) -> Result<u8, NnError> {
        Ok(self.take::<1>()?[0])
    }
    pub(super) fn u32(&mut self) -> Result<u32, NnError> {
        self.take().map(u32::from_le_bytes)
    }
    pub(super) fn u64(&mut self) -> Result<u64, NnError> {
        self.take().map(u64::from_le_bytes)
    }
    pub(super) fn f32(&mut self) -> Result<f32, NnError> {
        self.take().map(f32::from_le_bytes)
    }
    pub(super) fn floats_into(&mut self, out: &mut [f32]) -> Result<(), NnError> {
        if self.u64()? != out.len() as u64 {
            return Err(invalid("not a weft trainer checkpoint (shapes differ)"));
        }
        for v in out {
            *v = self.f32()?;
        }
        Ok(())
    }
}
