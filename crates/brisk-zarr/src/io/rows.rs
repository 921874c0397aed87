//! Rows of a storage unit: cropping an edge unit to the block it holds, padding an edge
//! block to the unit it is stored in.

use brisk_array::{BlockReader, BlockStream};
use brisk_graph::BoxError;

use crate::meta::ZarrElement;

/// The rows (runs along the last axis) of a storage unit, and which of them hold elements of
/// an edge block that covers only the start of the unit along each axis.
#[derive(Debug, Clone)]
pub(super) struct UnitRows {
    unit: Vec<usize>,
    shape: Vec<usize>,
}

impl UnitRows {
    pub(super) fn new(unit: &[usize], shape: &[usize]) -> Self {
        Self {
            unit: unit.to_vec(),
            shape: shape.to_vec(),
        }
    }
    /// Rows in the unit.
    fn count(&self) -> usize {
        self.unit[..self.unit.len().saturating_sub(1)]
            .iter()
            .product()
    }
    /// Elements per row of the unit.
    fn len(&self) -> usize {
        self.unit.last().copied().unwrap_or(1)
    }
    /// Elements per row that belong to the block.
    fn keep(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
    /// Whether unit row `r` (row-major) holds elements of the block.
    fn inside(&self, mut r: usize) -> bool {
        for k in (0..self.unit.len().saturating_sub(1)).rev() {
            if r % self.unit[k] >= self.shape[k] {
                return false;
            }
            r /= self.unit[k];
        }
        true
    }
}

/// One row at a time, handed out `width` elements per row: the shared half of [`Crop`] and
/// [`Pad`], which differ only in how they make the next row.
pub(super) struct RowBuf<T> {
    row: Vec<T>,
    width: usize,
    /// Elements of `row` handed out (`width` when a new row is needed).
    used: usize,
}

impl<T: Copy> RowBuf<T> {
    fn new(row: Vec<T>, width: usize) -> Self {
        Self {
            row,
            width,
            used: width,
        }
    }

    /// Fills `out` from successive rows, calling `next_row` whenever the current one is used.
    fn copy_to(
        &mut self,
        out: &mut [T],
        mut next_row: impl FnMut(&mut [T]) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let mut done = 0;
        while done < out.len() {
            if self.used == self.width {
                next_row(&mut self.row)?;
                self.used = 0;
            }
            let n = (self.width - self.used).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.row[self.used..self.used + n]);
            self.used += n;
            done += n;
        }
        Ok(())
    }
}

/// The in-bounds elements of an edge unit, from the stream of the whole stored unit.
pub(super) struct Crop<T> {
    unit: Box<dyn BlockStream<T>>,
    rows: UnitRows,
    buf: RowBuf<T>,
    /// The next unit row to read.
    next: usize,
}

impl<T: ZarrElement> Crop<T> {
    pub(super) fn new(unit: Box<dyn BlockStream<T>>, rows: UnitRows) -> Self {
        Self {
            unit,
            buf: RowBuf::new(vec![T::default(); rows.len()], rows.keep()),
            rows,
            next: 0,
        }
    }
}

impl<T: ZarrElement> BlockStream<T> for Crop<T> {
    fn read(&mut self, out: &mut [T]) -> Result<(), BoxError> {
        let Self {
            unit, rows, next, ..
        } = self;
        self.buf.copy_to(out, |row| {
            loop {
                if *next == rows.count() {
                    return Err("read past the end of an edge chunk".into());
                }
                unit.read(row)?;
                *next += 1;
                if rows.inside(*next - 1) {
                    return Ok(());
                }
            }
        })
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        // The rows outside the array are still decoded: the stored unit is checked whole.
        while self.next < self.rows.count() {
            self.unit.read(&mut self.buf.row)?;
            self.next += 1;
        }
        self.unit.finish()
    }
}

/// An edge block padded with the fill value to its whole storage unit, as it is stored.
pub(super) struct Pad<'a, T: ZarrElement> {
    block: &'a mut BlockReader<T>,
    rows: UnitRows,
    fill: T,
    buf: RowBuf<T>,
    /// The next unit row to make.
    next: usize,
}

impl<'a, T: ZarrElement> Pad<'a, T> {
    pub(super) fn new(block: &'a mut BlockReader<T>, rows: UnitRows, fill: T) -> Self {
        Self {
            block,
            buf: RowBuf::new(vec![fill; rows.len()], rows.len()),
            rows,
            fill,
            next: 0,
        }
    }
}

impl<T: ZarrElement> BlockStream<T> for Pad<'_, T> {
    fn read(&mut self, out: &mut [T]) -> Result<(), BoxError> {
        let Self {
            block,
            rows,
            fill,
            next,
            ..
        } = self;
        self.buf.copy_to(out, |row| {
            if *next == rows.count() {
                return Err("read past the end of an edge unit".into());
            }
            let keep = if rows.inside(*next) { rows.keep() } else { 0 };
            block.read(&mut row[..keep])?;
            row[keep..].fill(*fill);
            *next += 1;
            Ok(())
        })
    }
}
