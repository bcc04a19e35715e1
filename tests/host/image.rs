//! Host-owned pixel buffers handed to the plugin: any depth (or an arbitrary depth string for
//! bad-input tests), RGBA/RGB/Alpha, bottom-up positive row bytes or MLT's top-down negative row
//! bytes, optional row padding; with conversions and the sentinel checks the scenarios use.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ffi::c_void;

use super::config::{Comps, Depth, Rect, RowOrder};

/// Depth of a surface: a real one, or a string the plugin never declared.
#[derive(Clone, Debug, PartialEq)]
pub enum DepthSpec {
    Known(Depth),
    Other(String),
}

impl DepthSpec {
    pub fn name(&self) -> String {
        match self {
            DepthSpec::Known(d) => d.name().to_string(),
            DepthSpec::Other(s) => s.clone(),
        }
    }

    /// Bytes per component (unknown depths are laid out as floats).
    pub fn bytes(&self) -> usize {
        match self {
            DepthSpec::Known(d) => d.bytes(),
            DepthSpec::Other(_) => 4,
        }
    }
}

pub struct Surface {
    pub bounds: Rect,
    pub depth: DepthSpec,
    pub comps: Comps,
    pub order: RowOrder,
    /// Distance in bytes between rows in memory (positive).
    pub stride: usize,
    alloc: *mut u8,
    layout: Layout,
}

// SAFETY: the buffer is plain memory owned by the Surface; concurrent writers (tiles rendered on
// several threads) write disjoint pixels, as the host contract requires.
unsafe impl Send for Surface {}
// SAFETY: see above.
unsafe impl Sync for Surface {}

impl Drop for Surface {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.alloc, self.layout) };
    }
}

impl std::fmt::Debug for Surface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Surface({} {} {:?} {:?} row bytes {})",
            self.bounds,
            self.depth.name(),
            self.comps,
            self.order,
            self.row_bytes()
        )
    }
}

impl Surface {
    pub fn new(
        bounds: Rect,
        depth: DepthSpec,
        comps: Comps,
        order: RowOrder,
        padding: usize,
    ) -> Surface {
        let pix = depth.bytes() * comps.count();
        let stride = bounds.width() as usize * pix + padding;
        let rows = bounds.height() as usize;
        let size = (stride * rows).max(1);
        let layout = Layout::from_size_align(size, 64).expect("image layout");
        // SAFETY: non-zero size.
        let alloc = unsafe { alloc_zeroed(layout) };
        assert!(
            !alloc.is_null(),
            "out of memory allocating a {size}-byte image"
        );
        Surface {
            bounds,
            depth,
            comps,
            order,
            stride,
            alloc,
            layout,
        }
    }

    pub fn pixel_bytes(&self) -> usize {
        self.depth.bytes() * self.comps.count()
    }

    /// The whole allocation: its address and size (the CUDA profile copies it to the device).
    pub fn buffer(&self) -> (*mut u8, usize) {
        (self.alloc, self.layout.size())
    }

    /// kOfxImagePropRowBytes.
    pub fn row_bytes(&self) -> i32 {
        match self.order {
            RowOrder::BottomUp => self.stride as i32,
            RowOrder::TopDownNegative => -(self.stride as i32),
        }
    }

    /// kOfxImagePropData: the address of pixel (bounds.x1, bounds.y1).
    pub fn data_ptr(&self) -> *mut c_void {
        self.row_ptr(self.bounds.y1) as *mut c_void
    }

    fn row_ptr(&self, y: i32) -> *mut u8 {
        let rows = self.bounds.height().max(1) as usize;
        let r = (y - self.bounds.y1) as usize;
        let mem_row = match self.order {
            RowOrder::BottomUp => r,
            RowOrder::TopDownNegative => rows - 1 - r,
        };
        // SAFETY: in-bounds row of the allocation (callers check y).
        unsafe { self.alloc.add(mem_row * self.stride) }
    }

    /// The bytes of one pixel.
    fn pixel(&self, x: i32, y: i32) -> &[u8] {
        debug_assert!(self.bounds.contains(x, y));
        let off = (x - self.bounds.x1) as usize * self.pixel_bytes();
        // SAFETY: (x, y) inside bounds.
        unsafe { std::slice::from_raw_parts(self.row_ptr(y).add(off), self.pixel_bytes()) }
    }

    #[allow(clippy::mut_from_ref)]
    fn pixel_mut(&self, x: i32, y: i32) -> &mut [u8] {
        let off = (x - self.bounds.x1) as usize * self.pixel_bytes();
        // SAFETY: (x, y) inside bounds; the host writes only while the plugin is not running.
        unsafe { std::slice::from_raw_parts_mut(self.row_ptr(y).add(off), self.pixel_bytes()) }
    }

    /// Fills the whole allocation (padding included) with `byte`.
    pub fn fill(&self, byte: u8) {
        // SAFETY: whole allocation.
        unsafe { std::ptr::write_bytes(self.alloc, byte, self.layout.size()) };
    }

    /// Writes RGBA float values into `rect` (clipped to bounds), converting to the depth.
    pub fn write(&self, rect: Rect, f: impl Fn(i32, i32) -> [f32; 4]) {
        let r = rect.intersect(&self.bounds);
        let d = match &self.depth {
            DepthSpec::Known(d) => *d,
            DepthSpec::Other(_) => Depth::Float,
        };
        for y in r.y1..r.y2 {
            for x in r.x1..r.x2 {
                let v = f(x, y);
                let comps: &[f32] = match self.comps {
                    Comps::Rgba => &v,
                    Comps::Rgb => &v[..3],
                    Comps::Alpha => &v[3..],
                };
                let px = self.pixel_mut(x, y);
                for (k, &c) in comps.iter().enumerate() {
                    encode(d, c, &mut px[k * d.bytes()..(k + 1) * d.bytes()]);
                }
            }
        }
    }

    /// Reads `rect` as RGBA floats (RGB gets alpha 1, Alpha is replicated).
    pub fn read(&self, rect: Rect) -> Vec<[f32; 4]> {
        let r = rect.intersect(&self.bounds);
        let d = match &self.depth {
            DepthSpec::Known(d) => *d,
            DepthSpec::Other(_) => Depth::Float,
        };
        let mut out = Vec::with_capacity(r.area());
        for y in r.y1..r.y2 {
            for x in r.x1..r.x2 {
                let px = self.pixel(x, y);
                let c = |k: usize| decode(d, &px[k * d.bytes()..(k + 1) * d.bytes()]);
                out.push(match self.comps {
                    Comps::Rgba => [c(0), c(1), c(2), c(3)],
                    Comps::Rgb => [c(0), c(1), c(2), 1.0],
                    Comps::Alpha => [c(0); 4],
                });
            }
        }
        out
    }

    /// The exact bytes of the pixels of `rect`, rows in increasing y.
    pub fn raw(&self, rect: Rect) -> Vec<u8> {
        let r = rect.intersect(&self.bounds);
        let mut out = Vec::with_capacity(r.area() * self.pixel_bytes());
        for y in r.y1..r.y2 {
            for x in r.x1..r.x2 {
                out.extend_from_slice(self.pixel(x, y));
            }
        }
        out
    }

    /// Checks every byte of the allocation outside `window` (padding included) still holds
    /// `byte`; describes the first few offenders otherwise.
    pub fn check_untouched_outside(&self, window: Rect, byte: u8) -> Result<(), String> {
        let mut bad = Vec::new();
        let mut count = 0usize;
        for y in self.bounds.y1..self.bounds.y2 {
            for x in self.bounds.x1..self.bounds.x2 {
                if window.contains(x, y) {
                    continue;
                }
                if self.pixel(x, y).iter().any(|&b| b != byte) {
                    count += 1;
                    if bad.len() < 8 {
                        bad.push(format!("({x},{y})={:?}", self.pixel(x, y)));
                    }
                }
            }
            let pad_start = self.bounds.width() as usize * self.pixel_bytes();
            if self.stride > pad_start && !self.bounds.is_empty() {
                // SAFETY: the padding bytes of row y are inside the allocation.
                let pad = unsafe {
                    std::slice::from_raw_parts(
                        self.row_ptr(y).add(pad_start),
                        self.stride - pad_start,
                    )
                };
                if pad.iter().any(|&b| b != byte) {
                    count += 1;
                    if bad.len() < 8 {
                        bad.push(format!("row padding of y={y}"));
                    }
                }
            }
        }
        if count == 0 {
            Ok(())
        } else {
            Err(format!(
                "{count} pixels outside the render window {window} were written (image bounds {}): {}",
                self.bounds,
                bad.join(", ")
            ))
        }
    }
}

/// f32 -> IEEE half bits (round to nearest even).
pub fn f32_to_f16(v: f32) -> u16 {
    let x = v.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let mant = x & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = (mant | 0x80_0000) >> (1 - e);
        let round = (m >> 12) & 1 != 0 && ((m & 0xfff) != 0 || (m >> 13) & 1 != 0);
        return sign | ((m >> 13) as u16 + round as u16);
    }
    let m = (mant >> 13) as u16;
    let round = (mant >> 12) & 1 != 0 && ((mant & 0xfff) != 0 || m & 1 != 0);
    (sign | ((e as u16) << 10) | m) + round as u16
}

/// IEEE half bits -> f32.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            let v = m as f32 / 1024.0 * 2f32.powi(-14);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn encode(d: Depth, v: f32, out: &mut [u8]) {
    match d {
        Depth::Byte => out[0] = (v.clamp(0.0, 1.0) * 255.0).round() as u8,
        Depth::Short => {
            out.copy_from_slice(&((v.clamp(0.0, 1.0) * 65535.0).round() as u16).to_ne_bytes())
        }
        Depth::Half => out.copy_from_slice(&f32_to_f16(v).to_ne_bytes()),
        Depth::Float => out.copy_from_slice(&v.to_ne_bytes()),
    }
}

fn decode(d: Depth, b: &[u8]) -> f32 {
    match d {
        Depth::Byte => b[0] as f32 / 255.0,
        Depth::Short => u16::from_ne_bytes([b[0], b[1]]) as f32 / 65535.0,
        Depth::Half => f16_to_f32(u16::from_ne_bytes([b[0], b[1]])),
        Depth::Float => f32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_round_trips_representable_values() {
        for v in [0.0f32, 1.0, -2.5, 0.5, 65504.0, 6.1035156e-5, 1.0 / 3.0] {
            let back = f16_to_f32(f32_to_f16(v));
            assert!((back - v).abs() <= v.abs() * 1e-3 + 1e-7, "{v} -> {back}");
        }
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
    }

    #[test]
    fn negative_row_bytes_address_the_same_pixels() {
        let r = Rect::new(-3, 5, 4, 9);
        for order in [RowOrder::BottomUp, RowOrder::TopDownNegative] {
            let s = Surface::new(r, DepthSpec::Known(Depth::Short), Comps::Rgba, order, 6);
            s.fill(0xA5);
            s.write(r, |x, y| [x as f32 / 10.0 + 0.3, y as f32 / 20.0, 0.5, 1.0]);
            // Read back through the OFX addressing rule: data + (y-y1)*rowBytes + (x-x1)*pix.
            let (x, y) = (2, 7);
            let addr = s.data_ptr() as isize
                + (y - r.y1) as isize * s.row_bytes() as isize
                + (x - r.x1) as isize * 8;
            // SAFETY: inside the allocation by construction.
            let red = unsafe { *(addr as *const u16) };
            assert_eq!(red, ((0.2f32 + 0.3) * 65535.0).round() as u16, "{order:?}");
            assert!(s.check_untouched_outside(r, 0xA5).is_ok());
        }
    }
}
