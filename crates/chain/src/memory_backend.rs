//! A store in memory that holds only what was written: redb's file as chunks, allocated
//! on their first write.
//!
//! ```text
//!   set_len(grow) ──▶ chunks past the end: none yet (they read as zeros)
//!   write ──▶ each chunk it touches: allocated zeroed if absent, then copied into
//!   read ──▶ each chunk: copied out, or zeros for one never written
//!   set_len(shrink) ──▶ chunks past the end dropped, the tail of the last one zeroed
//! ```
//!
//! redb grows a file within its first region by doubling it (a region is 4 GiB by
//! default), and its own in-memory backend is one `Vec<u8>` filled with zeros to the new
//! length: a simulated node whose store passed 32 MiB held 64 MiB, all of it resident, and
//! each doubling copied the whole store. Here the space redb has not written yet costs
//! nothing, and growing copies nothing.

use std::io;
use std::sync::{PoisonError, RwLock};

use redb::StorageBackend;

/// Bytes a chunk: sixteen of redb's 4 KiB pages.
const CHUNK: usize = 64 * 1024;

/// A redb storage backend in memory that allocates a chunk of [`CHUNK`] bytes the first
/// time a write reaches it.
#[derive(Debug, Default)]
pub(crate) struct SparseMemoryBackend {
    file: RwLock<Chunks>,
}

#[derive(Debug, Default)]
struct Chunks {
    /// The file's length in bytes.
    len: u64,
    /// The file's chunks in order: `None` for one never written (all zeros).
    chunks: Vec<Option<Box<[u8]>>>,
}

impl SparseMemoryBackend {
    /// An empty store.
    pub(crate) fn new() -> SparseMemoryBackend {
        SparseMemoryBackend::default()
    }

    /// Bytes of chunks allocated: what the store holds in memory.
    #[cfg(test)]
    fn allocated_bytes(&self) -> usize {
        let file = self.file.read().unwrap_or_else(PoisonError::into_inner);
        file.chunks.iter().flatten().count() * CHUNK
    }
}

/// The error of an access past the end of the file, or of a length beyond this machine's
/// addresses.
fn out_of_range(offset: u64, len: usize, file_len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("bytes {offset}..+{len} are outside a store of {file_len} bytes"),
    )
}

/// The chunks that `offset..offset + len` touches, each as (chunk, start within it, bytes).
fn spans(offset: u64, len: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let mut at = offset;
    let end = offset + len as u64;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        // `at` is below a length that fits in memory, so both fit in usize.
        let chunk = (at / CHUNK as u64) as usize;
        let start = (at % CHUNK as u64) as usize;
        let bytes = (CHUNK - start).min((end - at) as usize);
        at += bytes as u64;
        Some((chunk, start, bytes))
    })
}

impl Chunks {
    /// Checks that `offset..offset + len` lies within the file.
    fn check(&self, offset: u64, len: usize) -> io::Result<()> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(out_of_range(offset, len, self.len)),
        }
    }
}

impl StorageBackend for SparseMemoryBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.read().unwrap_or_else(PoisonError::into_inner).len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let file = self.file.read().unwrap_or_else(PoisonError::into_inner);
        file.check(offset, out.len())?;
        let mut done = 0;
        for (chunk, start, bytes) in spans(offset, out.len()) {
            let target = &mut out[done..done + bytes];
            match file.chunks.get(chunk).and_then(Option::as_ref) {
                Some(data) => target.copy_from_slice(&data[start..start + bytes]),
                None => target.fill(0),
            }
            done += bytes;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut file = self.file.write().unwrap_or_else(PoisonError::into_inner);
        let chunks =
            usize::try_from(len.div_ceil(CHUNK as u64)).map_err(|_| out_of_range(0, 0, len))?;
        if len < file.len {
            file.chunks.truncate(chunks);
            // Bytes past the new end must read as zeros if the file grows again.
            let tail = (len % CHUNK as u64) as usize;
            if tail > 0
                && let Some(Some(last)) = file.chunks.last_mut()
            {
                last[tail..].fill(0);
            }
        } else {
            file.chunks.resize_with(chunks, || None);
        }
        file.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut file = self.file.write().unwrap_or_else(PoisonError::into_inner);
        file.check(offset, data.len())?;
        let mut done = 0;
        for (chunk, start, bytes) in spans(offset, data.len()) {
            let file_len = file.len;
            let slot = file
                .chunks
                .get_mut(chunk)
                .ok_or_else(|| out_of_range(offset, data.len(), file_len))?;
            let target = slot.get_or_insert_with(|| vec![0; CHUNK].into_boxed_slice());
            target[start..start + bytes].copy_from_slice(&data[done..done + bytes]);
            done += bytes;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn growing_allocates_nothing_and_reads_zeros() {
        let store = SparseMemoryBackend::new();
        store.set_len(100 * CHUNK as u64).expect("grow");
        assert_eq!(store.allocated_bytes(), 0);
        let mut out = vec![7u8; 3 * CHUNK];
        store.read(10 * CHUNK as u64 - 5, &mut out).expect("read");
        assert!(out.iter().all(|byte| *byte == 0));
        store.write(CHUNK as u64 - 2, &[1, 2, 3, 4]).expect("write");
        assert_eq!(
            store.allocated_bytes(),
            2 * CHUNK,
            "a write across a boundary"
        );
        let mut out = [0u8; 6];
        store.read(CHUNK as u64 - 3, &mut out).expect("read");
        assert_eq!(out, [0, 1, 2, 3, 4, 0]);
    }

    #[test]
    fn shrinking_then_growing_reads_zeros_past_the_old_end() {
        let store = SparseMemoryBackend::new();
        store.set_len(2 * CHUNK as u64).expect("grow");
        store.write(0, &vec![9u8; 2 * CHUNK]).expect("write");
        store.set_len(10).expect("shrink");
        assert_eq!(store.allocated_bytes(), CHUNK);
        store.set_len(2 * CHUNK as u64).expect("grow again");
        let mut out = vec![1u8; 2 * CHUNK];
        store.read(0, &mut out).expect("read");
        assert!(out[..10].iter().all(|byte| *byte == 9));
        assert!(out[10..].iter().all(|byte| *byte == 0));
    }

    #[test]
    fn access_past_the_end_is_an_error_not_a_panic() {
        let store = SparseMemoryBackend::new();
        store.set_len(100).expect("grow");
        assert!(store.write(99, &[1, 2]).is_err());
        assert!(store.read(u64::MAX - 1, &mut [0u8; 4]).is_err());
        assert!(store.write(100, &[]).is_ok(), "nothing, at the end");
        assert_eq!(store.allocated_bytes(), 0);
    }

    #[derive(Clone, Debug)]
    enum Step {
        SetLen(u64),
        Write(u64, Vec<u8>),
        Read(u64, usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        let span = 4 * CHUNK as u64;
        prop_oneof![
            (0..span).prop_map(Step::SetLen),
            (
                0..span,
                proptest::collection::vec(any::<u8>(), 0..2 * CHUNK)
            )
                .prop_map(|(offset, data)| Step::Write(offset, data)),
            (0..span, 0..2 * CHUNK).prop_map(|(offset, len)| Step::Read(offset, len)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any sequence of steps reads back what a plain zero-filled `Vec` would, and
        /// fails where it would be out of range.
        #[test]
        fn behaves_as_a_zero_filled_vec(steps in proptest::collection::vec(step(), 1..40)) {
            let store = SparseMemoryBackend::new();
            let mut model: Vec<u8> = Vec::new();
            for step in steps {
                match step {
                    Step::SetLen(len) => {
                        store.set_len(len).expect("set_len");
                        model.resize(len as usize, 0);
                    }
                    Step::Write(offset, data) => {
                        let fits = offset as usize + data.len() <= model.len();
                        prop_assert_eq!(store.write(offset, &data).is_ok(), fits);
                        if fits {
                            model[offset as usize..offset as usize + data.len()]
                                .copy_from_slice(&data);
                        }
                    }
                    Step::Read(offset, len) => {
                        let mut out = vec![0xAA; len];
                        let fits = offset as usize + len <= model.len();
                        prop_assert_eq!(store.read(offset, &mut out).is_ok(), fits);
                        if fits {
                            prop_assert_eq!(&out[..], &model[offset as usize..offset as usize + len]);
                        }
                    }
                }
                prop_assert_eq!(store.len().expect("len"), model.len() as u64);
            }
        }
    }
}
