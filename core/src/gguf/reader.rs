//! GGUF reader: the header (metadata and tensor infos) of a version 2 or 3 file.
//!
//! The layout, little-endian throughout:
//!
//! ```text
//! magic u32 | version u32 | tensor_count u64 | kv_count u64
//! kv_count     × (key: string, value_type: u32, value)
//! tensor_count × (name: string, n_dims: u32, dims: n_dims × u64, type: u32, offset: u64)
//! padding up to a multiple of the alignment, then the data section
//! ```
//!
//! A string is a u64 byte length followed by that many UTF-8 bytes; an array is its element
//! type (u32), its element count (u64), then the elements. Tensor offsets are relative to
//! the start of the data section.
//!
//! Every count and length in the file is checked against the bytes actually there before
//! anything is allocated for it, so a corrupt or hostile header gives an error, not a huge
//! allocation or a panic.

use std::collections::HashSet;
use std::ops::Range;

use super::{
    DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufError, GgufFile, Metadata, TensorInfo, Value, ValueType,
};
use crate::quant::GgmlType;

/// ggml's `GGML_MAX_DIMS`: tensors have at most four dimensions.
pub const MAX_TENSOR_DIMS: u32 = 4;

/// Arrays of arrays are legal GGUF, but nothing real nests them deeply; a bound keeps a
/// hostile file from recursing the reader into a stack overflow.
const MAX_ARRAY_DEPTH: usize = 8;

/// The fewest bytes one tensor info can take: name length (8), n_dims (4), type (4),
/// offset (8). Used to bound the capacity reserved for `tensor_count` infos.
const MIN_TENSOR_INFO_BYTES: usize = 24;

/// A position in the bytes being parsed. It knows the real file length when the caller
/// does, so that a truncation error can say whether fetching more bytes would help.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    file_len: Option<u64>,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The error for a read that needs the bytes up to offset `needed`. `available` is the
    /// prefix length, except when the whole file is known to be shorter than `needed`:
    /// then it is the file length, telling a streaming caller that fetching more is useless.
    fn truncated(&self, what: String, needed: u64) -> GgufError {
        let available = match self.file_len {
            Some(len) if needed > len => len,
            _ => self.buf.len() as u64,
        };
        GgufError::Truncated {
            what,
            needed,
            available,
        }
    }

    /// Checks that the next `n` bytes are there, without consuming them.
    fn ensure(&self, n: u64, what: &dyn Fn() -> String) -> Result<(), GgufError> {
        let needed = (self.pos as u64).checked_add(n).ok_or_else(|| {
            GgufError::Malformed(format!("{}: a length of {n} bytes is impossible", what()))
        })?;
        if needed > self.buf.len() as u64 {
            return Err(self.truncated(what(), needed));
        }
        Ok(())
    }

    /// Takes the next `n` bytes. `what` names what is being read; it is only called (and
    /// its string only built) when there is an error to report.
    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        self.ensure(n, what)?;
        let start = self.pos;
        // `ensure` checked that pos + n <= buf.len(), so n fits in usize.
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A GGUF string's raw bytes (UTF-8 is checked by the caller, which knows what to name).
    fn string_bytes(&mut self, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let len = self.u64(what)?;
        self.take(len, what)
    }
}

/// Reads one metadata value of type `ty` for `key`; `depth` counts enclosing arrays.
fn read_value(
    cur: &mut Cursor<'_>,
    ty: ValueType,
    key: &str,
    depth: usize,
) -> Result<Value, GgufError> {
    let what = || format!("the value of metadata key {key}");
    Ok(match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(cur.array(&what)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(cur.array(&what)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(cur.array(&what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(cur.array(&what)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(cur.array(&what)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(cur.array(&what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(cur.array(&what)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(cur.array(&what)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(cur.array(&what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(cur.array(&what)?)),
        // ggml stores a bool as one byte and treats any nonzero byte as true; so do we.
        ValueType::Bool => Value::Bool(u8::from_le_bytes(cur.array(&what)?) != 0),
        ValueType::String => {
            let at = cur.pos;
            let bytes = cur.string_bytes(&what)?;
            let s = std::str::from_utf8(bytes).map_err(|e| {
                GgufError::Malformed(format!(
                    "metadata key {key}: the string at file offset {at} is not valid UTF-8 ({e})"
                ))
            })?;
            Value::String(s.to_string())
        }
        ValueType::Array => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(GgufError::Malformed(format!(
                    "metadata key {key}: arrays nested more than {MAX_ARRAY_DEPTH} deep"
                )));
            }
            let elem_id = cur.u32(&what)?;
            let elem = ValueType::from_id(elem_id).ok_or_else(|| {
                GgufError::Malformed(format!(
                    "metadata key {key}: unknown array element type {elem_id}"
                ))
            })?;
            let count = cur.u64(&what)?;
            // Every element takes at least `min_encoded_size` bytes, so a count whose
            // minimum size exceeds the bytes left is refused before anything is reserved.
            let min_bytes = count
                .checked_mul(elem.min_encoded_size() as u64)
                .ok_or_else(|| {
                    GgufError::Malformed(format!(
                        "metadata key {key}: an array of {count} elements is impossibly large"
                    ))
                })?;
            cur.ensure(min_bytes, &|| {
                format!(
                    "metadata key {key} (an array of {count} {} values)",
                    elem.name()
                )
            })?;
            // `ensure` passed, so count <= remaining bytes: the reservation is bounded by
            // the input's size.
            let mut items = Vec::with_capacity(count as usize);
            for _ in 0..count {
                items.push(read_value(cur, elem, key, depth + 1)?);
            }
            Value::Array(elem, items)
        }
    })
}

/// Reads one tensor info and checks it on its own (the checks needing the whole file
/// come after all infos are read).
fn read_tensor_info(
    cur: &mut Cursor<'_>,
    index: u64,
    count: u64,
    alignment: u64,
) -> Result<TensorInfo, GgufError> {
    let what = || format!("tensor info {index} of {count}");
    let name = cur.string_bytes(&what)?;
    let name = std::str::from_utf8(name)
        .map_err(|e| {
            GgufError::Malformed(format!(
                "tensor info {index} of {count}: the name is not valid UTF-8 ({e})"
            ))
        })?
        .to_string();
    let what = || format!("the tensor info of {name}");
    let n_dims = cur.u32(&what)?;
    if n_dims > MAX_TENSOR_DIMS {
        return Err(GgufError::Malformed(format!(
            "tensor {name} has {n_dims} dimensions; at most {MAX_TENSOR_DIMS} are allowed"
        )));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(cur.u64(&what)?);
    }
    let type_id = cur.u32(&what)?;
    let offset = cur.u64(&what)?;

    let ty = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnsupportedTensorType {
        ty: type_id.to_string(),
        tensor: name.clone(),
    })?;
    // ggml itself accepts a zero dimension, but a weight with no elements is always a
    // broken file, and refusing it keeps every later size computation meaningful.
    if let Some(axis) = dims.iter().position(|&d| d == 0) {
        return Err(GgufError::Malformed(format!(
            "tensor {name} has size 0 along dimension {axis} (dims {dims:?})"
        )));
    }
    let n_elems = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            GgufError::Malformed(format!(
                "tensor {name}: dims {dims:?} overflow a 64-bit element count"
            ))
        })?;
    let row = dims.first().copied().unwrap_or(1);
    let block = ty.block_elems() as u64;
    if !row.is_multiple_of(block) {
        return Err(GgufError::Malformed(format!(
            "tensor {name}: its rows of {row} elements are not a whole number of {ty} blocks \
             ({block} elements each)"
        )));
    }
    // The row is whole blocks, so `bytes_for` only fails on overflow.
    ty.bytes_for(n_elems).ok_or_else(|| {
        GgufError::Malformed(format!(
            "tensor {name}: {n_elems} {ty} elements overflow a byte size"
        ))
    })?;
    if !offset.is_multiple_of(alignment) {
        return Err(GgufError::Malformed(format!(
            "tensor {name}: data offset {offset} is not a multiple of the alignment {alignment}"
        )));
    }
    Ok(TensorInfo {
        name,
        dims,
        ty,
        offset,
    })
}

/// The alignment the file declares (`general.alignment`), or the default.
fn alignment_of(metadata: &Metadata) -> Result<u64, GgufError> {
    match metadata.get("general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(Value::U32(a)) if a.is_power_of_two() => Ok(u64::from(*a)),
        Some(Value::U32(a)) => Err(GgufError::Malformed(format!(
            "general.alignment is {a}; it must be a nonzero power of two"
        ))),
        Some(v) => Err(GgufError::Malformed(format!(
            "general.alignment must be a u32, but it is a {}",
            v.value_type().name()
        ))),
    }
}

/// Checks the magic and returns the version, which must be 2 or 3.
fn read_magic_and_version(cur: &mut Cursor<'_>) -> Result<u32, GgufError> {
    let header = || "the header".to_string();
    let magic = cur.u32(&header)?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = cur.u32(&header)?;
    if version != 2 && version != 3 {
        // A big-endian GGUF (written for s390x and the like) has its version byte-swapped;
        // saying so beats reporting "version 50331648".
        if matches!(version.swap_bytes(), 1..=3) {
            return Err(GgufError::Malformed(format!(
                "this is a big-endian GGUF file (version {} byte-swapped); Wisp reads \
                 little-endian files only",
                version.swap_bytes()
            )));
        }
        return Err(GgufError::UnsupportedVersion(version));
    }
    Ok(version)
}

/// The `kv_count` metadata entries; a key may appear only once.
fn read_metadata(cur: &mut Cursor<'_>, kv_count: u64) -> Result<Metadata, GgufError> {
    let mut metadata = Metadata::new();
    for i in 0..kv_count {
        let what = || format!("metadata entry {i} of {kv_count}");
        let key = cur.string_bytes(&what)?;
        let key = std::str::from_utf8(key).map_err(|e| {
            GgufError::Malformed(format!(
                "metadata entry {i} of {kv_count}: the key is not valid UTF-8 ({e})"
            ))
        })?;
        let type_id = cur.u32(&|| format!("metadata key {key}"))?;
        let ty = ValueType::from_id(type_id).ok_or_else(|| {
            GgufError::Malformed(format!("metadata key {key}: unknown value type {type_id}"))
        })?;
        let value = read_value(cur, ty, key, 0)?;
        if metadata.insert(key, value).is_some() {
            return Err(GgufError::Malformed(format!(
                "metadata key {key} appears twice"
            )));
        }
    }
    Ok(metadata)
}

/// The `tensor_count` tensor infos; a name may appear only once.
fn read_tensor_infos(
    cur: &mut Cursor<'_>,
    tensor_count: u64,
    alignment: u64,
) -> Result<Vec<TensorInfo>, GgufError> {
    // Reserve for at most as many infos as the remaining bytes could hold.
    let cap = usize::try_from(tensor_count)
        .unwrap_or(usize::MAX)
        .min(cur.remaining() / MIN_TENSOR_INFO_BYTES);
    let mut tensors = Vec::with_capacity(cap);
    let mut names = HashSet::with_capacity(cap);
    for i in 0..tensor_count {
        let info = read_tensor_info(cur, i, tensor_count, alignment)?;
        if !names.insert(info.name.clone()) {
            return Err(GgufError::Malformed(format!(
                "tensor {} appears twice",
                info.name
            )));
        }
        tensors.push(info);
    }
    Ok(tensors)
}

impl GgufFile {
    /// Parses a whole GGUF file held in memory, checking that every tensor's data lies
    /// inside it.
    pub fn parse(bytes: &[u8]) -> Result<GgufFile, GgufError> {
        Self::parse_header(bytes, Some(bytes.len() as u64))
    }

    /// Parses the header from the first bytes of a file.
    ///
    /// When `prefix` is too short, the error is [`GgufError::Truncated`] and its `needed`
    /// is the offset the parse had to read up to: a streaming caller fetches at least that
    /// many bytes and retries. (`needed` is a lower bound: for a long array the parse checks
    /// the least the array can take, so a retry may ask again; fetching generously, e.g.
    /// doubling, avoids many round trips.) When the total `file_len` is known, a need beyond
    /// it reports `available == file_len`, meaning no amount of fetching helps, and every
    /// tensor's data range is checked against it ([`GgufError::TensorOutOfBounds`]).
    pub fn parse_header(prefix: &[u8], file_len: Option<u64>) -> Result<GgufFile, GgufError> {
        // A prefix longer than the file it claims to come from: only the file's bytes count.
        let buf = match file_len {
            Some(len) if (prefix.len() as u64) > len => &prefix[..len as usize],
            _ => prefix,
        };
        let mut cur = Cursor {
            buf,
            pos: 0,
            file_len,
        };
        let header = || "the header".to_string();
        let version = read_magic_and_version(&mut cur)?;
        let tensor_count = cur.u64(&header)?;
        let kv_count = cur.u64(&header)?;
        let metadata = read_metadata(&mut cur, kv_count)?;
        let alignment = alignment_of(&metadata)?;
        let tensors = read_tensor_infos(&mut cur, tensor_count, alignment)?;

        let data_offset = (cur.pos as u64).next_multiple_of(alignment);
        let file = GgufFile {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
        };
        if let Some(len) = file_len {
            file.check_tensors_within(len)?;
        }
        Ok(file)
    }

    /// Every tensor's data ends within a file of `len` bytes.
    fn check_tensors_within(&self, len: u64) -> Result<(), GgufError> {
        for info in &self.tensors {
            let range = self.tensor_range(info)?;
            if range.end > len {
                return Err(out_of_bounds(info, range, len));
            }
        }
        Ok(())
    }

    /// The tensor with this name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Where a tensor's bytes lie in the file (absolute offsets): what a streaming caller
    /// fetches.
    pub fn tensor_range(&self, info: &TensorInfo) -> Result<Range<u64>, GgufError> {
        let overflow =
            || GgufError::Malformed(format!("tensor {}: its data range overflows", info.name));
        let n_bytes = info
            .dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| info.ty.bytes_for(n))
            .ok_or_else(overflow)?;
        let start = self
            .data_offset
            .checked_add(info.offset)
            .ok_or_else(overflow)?;
        let end = start.checked_add(n_bytes).ok_or_else(overflow)?;
        Ok(start..end)
    }

    /// A tensor's bytes, from the whole file's bytes.
    pub fn tensor_data<'a>(
        &self,
        file_bytes: &'a [u8],
        info: &TensorInfo,
    ) -> Result<&'a [u8], GgufError> {
        let range = self.tensor_range(info)?;
        let len = file_bytes.len() as u64;
        if range.end > len {
            return Err(out_of_bounds(info, range, len));
        }
        // end <= len, so both ends fit in usize.
        Ok(&file_bytes[range.start as usize..range.end as usize])
    }

    /// The model architecture (`general.architecture`), e.g. `"llama"`.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.metadata.require_str("general.architecture")
    }
}

fn out_of_bounds(info: &TensorInfo, range: Range<u64>, file_len: u64) -> GgufError {
    GgufError::TensorOutOfBounds {
        tensor: info.name.clone(),
        start: range.start,
        end: range.end,
        file_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufWriter;

    /// A hand-rolled GGUF byte builder, for files the writer refuses to produce.
    #[derive(Default)]
    struct Raw(Vec<u8>);

    impl Raw {
        fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
            Raw::default()
                .u32(GGUF_MAGIC)
                .u32(version)
                .u64(n_tensors)
                .u64(n_kv)
        }
        fn u32(mut self, v: u32) -> Raw {
            self.0.extend(v.to_le_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Raw {
            self.0.extend(v.to_le_bytes());
            self
        }
        fn bytes(mut self, b: &[u8]) -> Raw {
            self.0.extend(b);
            self
        }
        fn str(self, s: &str) -> Raw {
            self.u64(s.len() as u64).bytes(s.as_bytes())
        }
        /// A key with a u32 value.
        fn kv_u32(self, key: &str, v: u32) -> Raw {
            self.str(key).u32(ValueType::U32 as u32).u32(v)
        }
        fn tensor_info(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Raw {
            let mut r = self.str(name).u32(dims.len() as u32);
            for &d in dims {
                r = r.u64(d);
            }
            r.u32(ty).u64(offset)
        }
    }

    fn err(bytes: &[u8]) -> String {
        match GgufFile::parse(bytes) {
            Ok(_) => panic!("parse unexpectedly succeeded"),
            Err(e) => e.to_string(),
        }
    }

    /// A small file using every value type, nested and empty arrays, and several tensor
    /// types, with a non-default alignment.
    fn sample() -> (GgufWriter, Metadata) {
        let mut w = GgufWriter::new();
        let entries: Vec<(&str, Value)> = vec![
            ("general.architecture", "llama".into()),
            ("t.u8", 200u8.into()),
            ("t.i8", (-100i8).into()),
            ("t.u16", 60000u16.into()),
            ("t.i16", (-30000i16).into()),
            ("t.u32", 4_000_000_000u32.into()),
            ("t.i32", (-2_000_000_000i32).into()),
            ("t.f32", 1.5f32.into()),
            ("t.bool", true.into()),
            ("t.string", "héllo ✓".into()),
            ("t.u64", u64::MAX.into()),
            ("t.i64", i64::MIN.into()),
            ("t.f64", std::f64::consts::PI.into()),
            ("t.empty", Value::Array(ValueType::F32, vec![])),
            ("t.strings", Value::string_array(["a", "", "ccc"])),
            (
                "t.nested",
                Value::Array(
                    ValueType::Array,
                    vec![
                        Value::array_of(ValueType::I32, [1i32, -2]),
                        Value::Array(ValueType::String, vec![]),
                    ],
                ),
            ),
        ];
        let mut md = Metadata::new();
        for (k, v) in entries {
            w.metadata(k, v.clone()).unwrap();
            md.insert(k, v);
        }
        w.alignment(64).unwrap();
        md.insert("general.alignment", Value::U32(64));
        let f32s: Vec<f32> = (0..24).map(|i| i as f32 * 0.25).collect();
        w.tensor_from_f32("a.f32", &[8, 3], GgmlType::F32, &f32s)
            .unwrap();
        w.tensor(
            "b.q8_0",
            &[32, 2],
            GgmlType::Q8_0,
            (0..68).map(|i| i as u8).collect(),
        )
        .unwrap();
        w.tensor("c.q4_k", &[256], GgmlType::Q4_K, vec![7; 144])
            .unwrap();
        w.tensor_from_f32("d.f16", &[5], GgmlType::F16, &[1.0, 2.0, 3.0, 4.0, 5.0])
            .unwrap();
        (w, md)
    }

    #[test]
    fn round_trip() {
        let (w, md) = sample();
        let bytes = w.to_bytes();
        let f = GgufFile::parse(&bytes).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.metadata, md);
        assert_eq!(f.alignment, 64);
        assert_eq!(f.data_offset % 64, 0);
        assert_eq!(f.architecture().unwrap(), "llama");
        let names: Vec<&str> = f.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a.f32", "b.q8_0", "c.q4_k", "d.f16"]);
        let b = f.tensor("b.q8_0").unwrap();
        assert_eq!(
            (b.dims.as_slice(), b.ty, b.n_bytes()),
            (&[32u64, 2][..], GgmlType::Q8_0, 68)
        );
        assert_eq!(
            f.tensor_data(&bytes, b).unwrap(),
            (0..68).map(|i| i as u8).collect::<Vec<_>>()
        );
        let a = f.tensor("a.f32").unwrap();
        let a_data = f.tensor_data(&bytes, a).unwrap();
        assert_eq!(
            crate::quant::dequantize(GgmlType::F32, a_data, 24).unwrap()[5],
            1.25
        );
        assert_eq!(
            f.tensor_data(&bytes, f.tensor("c.q4_k").unwrap()).unwrap(),
            [7; 144]
        );
        assert!(f.tensor("missing").is_none());
        // The header alone parses too, and tensor_data on a short slice is an error.
        let head = GgufFile::parse_header(&bytes[..f.data_offset as usize], None).unwrap();
        assert_eq!(head.tensors, f.tensors);
        let e = head
            .tensor_data(&bytes[..f.data_offset as usize], a)
            .unwrap_err();
        assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
    }

    /// A streaming caller that fetches exactly `needed` bytes each time always makes
    /// progress and ends with the header.
    #[test]
    fn streaming_needed_makes_progress() {
        let (w, _) = sample();
        let bytes = w.to_bytes();
        let full = GgufFile::parse(&bytes).unwrap();
        let mut have = 0usize;
        let mut rounds = 0;
        let file = loop {
            match GgufFile::parse_header(&bytes[..have], Some(bytes.len() as u64)) {
                Ok(f) => break f,
                Err(GgufError::Truncated {
                    needed, available, ..
                }) => {
                    assert_eq!(available, have as u64);
                    assert!(needed > have as u64 && needed <= bytes.len() as u64);
                    have = needed as usize;
                    rounds += 1;
                }
                Err(e) => panic!("at {have} bytes: {e}"),
            }
        };
        assert!(rounds > 3);
        assert_eq!(file.tensors, full.tensors);
        assert_eq!(file.metadata, full.metadata);
    }

    /// No prefix of a valid file and no single corrupted byte may panic the parser.
    #[test]
    fn fuzz_truncation_and_byte_flips() {
        let (w, _) = sample();
        let bytes = w.to_bytes();
        let f = GgufFile::parse(&bytes).unwrap();
        let data_end = f
            .tensors
            .iter()
            .map(|t| f.tensor_range(t).unwrap().end)
            .max()
            .unwrap();
        for n in 0..bytes.len() {
            let r = GgufFile::parse(&bytes[..n]);
            // Only the padding after the last tensor may be cut.
            assert_eq!(
                r.is_ok(),
                n as u64 >= data_end,
                "prefix of {n} bytes: {r:?}"
            );
            if let Err(GgufError::Truncated {
                needed, available, ..
            }) = r
            {
                assert!(
                    needed > available,
                    "prefix {n}: needed {needed} available {available}"
                );
            }
            let _ = GgufFile::parse_header(&bytes[..n], None);
        }
        let mut copy = bytes.clone();
        for i in 0..f.data_offset as usize {
            for mask in [0x01u8, 0x80, 0xFF, 0x3C] {
                copy[i] ^= mask;
                let _ = GgufFile::parse(&copy);
                copy[i] ^= mask;
            }
        }
        // A cheap deterministic random walk over multi-byte corruptions too.
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..5000 {
            let mut copy = bytes.clone();
            for _ in 0..4 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let i = (s % f.data_offset) as usize;
                copy[i] = (s >> 32) as u8;
            }
            let _ = GgufFile::parse(&copy);
        }
    }

    #[test]
    fn header_errors() {
        let e = err(b"GGML\x03\0\0\0");
        assert!(
            e.contains("not a GGUF file") && e.contains("0x4c4d4747"),
            "{e}"
        );
        for v in [1, 4] {
            let e = err(&Raw::header(v, 0, 0).0);
            assert!(e.contains(&format!("unsupported GGUF version {v}")), "{e}");
        }
        let e = err(&Raw::header(3u32.swap_bytes(), 0, 0).0);
        assert!(e.contains("big-endian"), "{e}");
        let e = err(&Raw::header(3, 0, 0).0[..12]);
        assert!(
            e.contains("the header needs bytes up to offset 16, but the file has 12"),
            "{e}"
        );
        // Version 2 reads like version 3.
        let f = GgufFile::parse(&Raw::header(2, 0, 1).kv_u32("x", 1).0).unwrap();
        assert_eq!((f.version, f.metadata.require_u64("x").unwrap()), (2, 1));
    }

    #[test]
    fn metadata_errors() {
        let bad_utf8 = Raw::header(3, 0, 1)
            .str("general.name")
            .u32(8)
            .u64(2)
            .bytes(&[0xC3, 0x28]);
        let e = err(&bad_utf8.0);
        assert!(e.contains("general.name") && e.contains("UTF-8"), "{e}");
        let bad_key = Raw::header(3, 0, 1).u64(1).bytes(&[0xFF]).u32(4).u32(0);
        assert!(err(&bad_key.0).contains("key is not valid UTF-8"));
        let dup = Raw::header(3, 0, 2).kv_u32("a.b", 1).kv_u32("a.b", 2);
        assert!(err(&dup.0).contains("a.b appears twice"));
        let bad_type = Raw::header(3, 0, 1).str("k").u32(13).u32(0);
        assert!(err(&bad_type.0).contains("unknown value type 13"));
        let bad_elem = Raw::header(3, 0, 1).str("k").u32(9).u32(77).u64(0);
        assert!(err(&bad_elem.0).contains("unknown array element type 77"));
        // Absurd lengths: refused without allocating.
        let huge_str = Raw::header(3, 0, 1).str("k").u32(8).u64(u64::MAX - 3);
        let e = GgufFile::parse(&huge_str.0).unwrap_err();
        assert!(
            matches!(e, GgufError::Malformed(_) | GgufError::Truncated { .. }),
            "{e}"
        );
        let huge_arr = Raw::header(3, 0, 1).str("tok").u32(9).u32(8).u64(1 << 60);
        let e = GgufFile::parse(&huge_arr.0).unwrap_err();
        assert!(
            matches!(e, GgufError::Truncated { .. }) && e.to_string().contains("tok"),
            "{e}"
        );
        let overflow_arr = Raw::header(3, 0, 1)
            .str("tok")
            .u32(9)
            .u32(10)
            .u64(u64::MAX / 2);
        assert!(err(&overflow_arr.0).contains("impossibly large"));
        // Deep nesting is refused, not recursed into.
        let mut deep = Raw::header(3, 0, 1).str("deep").u32(9);
        for _ in 0..20 {
            deep = deep.u32(9).u64(1);
        }
        assert!(err(&deep.u32(4).u64(0).0).contains("nested"));
        // Bools: any nonzero byte is true, as in ggml.
        let b = Raw::header(3, 0, 1).str("flag").u32(7).bytes(&[2]);
        assert_eq!(
            GgufFile::parse(&b.0).unwrap().metadata.get("flag"),
            Some(&Value::Bool(true))
        );
    }

    #[test]
    fn alignment_errors() {
        for a in [0u32, 3, 48] {
            let e = err(&Raw::header(3, 0, 1).kv_u32("general.alignment", a).0);
            assert!(
                e.contains("general.alignment") && e.contains("power of two"),
                "{a}: {e}"
            );
        }
        let wrong_type = Raw::header(3, 0, 1)
            .str("general.alignment")
            .u32(10)
            .u64(32);
        assert!(err(&wrong_type.0).contains("must be a u32"));
        // A misaligned tensor offset.
        let f = Raw::header(3, 1, 0)
            .tensor_info("w", &[4], 0, 16)
            .bytes(&[0; 64]);
        let e = err(&f.0);
        assert!(
            e.contains("tensor w") && e.contains("offset 16") && e.contains("32"),
            "{e}"
        );
    }

    #[test]
    fn tensor_info_errors() {
        let one = |dims: &[u64], ty: u32, offset: u64| {
            Raw::header(3, 1, 0)
                .tensor_info("blk.0.attn_q.weight", dims, ty, offset)
                .bytes(&[0; 256])
                .0
        };
        assert_eq!(
            err(&one(&[32], 99, 0)),
            "unsupported tensor type 99 in tensor blk.0.attn_q.weight"
        );
        assert!(err(&one(&[1, 1, 1, 1, 1], 0, 0)).contains("5 dimensions"));
        assert!(err(&one(&[4, 0], 0, 0)).contains("size 0 along dimension 1"));
        let e = err(&one(&[48], 8, 0));
        assert!(
            e.contains("blk.0.attn_q.weight") && e.contains("whole number of Q8_0 blocks"),
            "{e}"
        );
        let e = err(&one(&[u64::MAX / 2, 4], 0, 0));
        assert!(e.contains("overflow"), "{e}");
        let e = err(&one(&[64], 0, 0));
        assert!(
            e.contains("blk.0.attn_q.weight") && e.contains("outside the file"),
            "{e}"
        );
        let e = err(&one(&[4], 0, u64::MAX - 31));
        assert!(e.contains("blk.0.attn_q.weight"), "{e}");
        let dup = Raw::header(3, 2, 0)
            .tensor_info("w", &[4], 0, 0)
            .tensor_info("w", &[4], 0, 32);
        assert!(err(&dup.bytes(&[0; 96]).0).contains("tensor w appears twice"));
        let bad_name = Raw::header(3, 1, 0)
            .u64(2)
            .bytes(&[b'w', 0x80])
            .u32(1)
            .u64(4)
            .u32(0)
            .u64(0);
        assert!(err(&bad_name.0).contains("name is not valid UTF-8"));
        // A huge tensor count with no infos behind it is a truncation, not an allocation.
        let e = GgufFile::parse(&Raw::header(3, u64::MAX, 0).0).unwrap_err();
        assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
    }

    #[test]
    fn file_len_caps_available() {
        let (w, _) = sample();
        let bytes = w.to_bytes();
        // The caller says the file is only 100 bytes long: fetching more cannot help, and
        // `available` says so.
        match GgufFile::parse_header(&bytes[..100], Some(100)) {
            Err(GgufError::Truncated {
                needed, available, ..
            }) => {
                assert!(needed > 100);
                assert_eq!(available, 100);
            }
            r => panic!("{r:?}"),
        }
    }
}
