//! Typed views of clips and of the images fetched from them. `Image` releases itself on drop,
//! so no path (errors and panics included) leaks a host image: Natron holds a lock on every
//! fetched image until it is released.
use std::ffi::CStr;
use std::marker::PhantomData;

use openfx::sys::generic::core::{kOfxStatOK, OfxPropertySetHandle, OfxRectD};
use openfx::sys::image_effect_v1::image_effect::{
    kOfxImageClipPropConnected, kOfxImageEffectPropComponents, kOfxImageEffectPropFrameRange,
    kOfxImageEffectPropPixelDepth, kOfxImageEffectPropPreMultiplication, kOfxImagePropBounds,
    kOfxImagePropData, kOfxImagePropPixelAspectRatio, kOfxImagePropRowBytes, OfxImageClipHandle,
};

use super::host::Host;
use super::pixels::{Components, Depth, Layout, PixelsMut, PixelsRef};
use super::props::{check, need, PropSet};
use crate::geometry::Rect;
use crate::{Error, Result};

/// Where the images of an action live: host memory, or CUDA memory in a CUDA render
/// (`kOfxImageEffectPropCudaEnabled`), copied on the host's stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Memory {
    #[default]
    Host,
    #[cfg(feature = "cuda")]
    Cuda(super::cuda::Stream),
}

impl Memory {
    /// The memory of a Render action's images, from its arguments. A host that passes CUDA
    /// images to a build without CUDA render (which never said it supports it) gets an error:
    /// its pointers must not be read on the CPU.
    pub fn of_render(args: &PropSet<'_>) -> Result<Memory> {
        use openfx::sys::image_effect_v1::gpu_render::kOfxImageEffectPropCudaEnabled;
        if args.int(kOfxImageEffectPropCudaEnabled, 0).unwrap_or(0) == 0 {
            return Ok(Memory::Host);
        }
        #[cfg(feature = "cuda")]
        {
            use openfx::sys::image_effect_v1::gpu_render::kOfxImageEffectPropCudaStream;
            let stream = args
                .pointer(kOfxImageEffectPropCudaStream, 0)
                .unwrap_or(std::ptr::null_mut());
            Ok(Memory::Cuda(super::cuda::Stream(stream)))
        }
        #[cfg(not(feature = "cuda"))]
        {
            Err(Error::Host(
                "the host passed CUDA images, but this build of the plugin renders from host \
                 memory only (it does not declare CUDA render support)"
                    .into(),
            ))
        }
    }
}

/// A clip instance (or descriptor) of an effect, valid for `'a`.
#[derive(Clone, Copy)]
pub struct Clip<'a> {
    h: OfxImageClipHandle,
    props: PropSet<'a>,
    host: &'a Host,
    name: &'a CStr,
    memory: Memory,
}

impl<'a> Clip<'a> {
    /// # Safety
    /// `h` must be a clip handle the host keeps valid for `'a`; `props` its property set.
    pub(crate) unsafe fn from_raw(
        h: OfxImageClipHandle,
        props: PropSet<'a>,
        host: &'a Host,
        name: &'a CStr,
    ) -> Self {
        Clip {
            h,
            props,
            host,
            name,
            memory: Memory::Host,
        }
    }

    /// This clip with images in `memory` (that of the current Render action).
    pub fn in_memory(self, memory: Memory) -> Self {
        Clip { memory, ..self }
    }

    pub fn props(&self) -> PropSet<'a> {
        self.props
    }

    pub fn name(&self) -> &'a CStr {
        self.name
    }

    /// Connected to an upstream node (absent property: assume yes, as a filter's source must be).
    pub fn connected(&self) -> bool {
        self.props
            .int(kOfxImageClipPropConnected, 0)
            .map(|v| v != 0)
            .unwrap_or(true)
    }

    /// The clip's frame range (`kOfxImageEffectPropFrameRange`), where the host gives one.
    pub fn frame_range(&self) -> Option<(f64, f64)> {
        let [a, b] = self
            .props
            .doubles::<2>(kOfxImageEffectPropFrameRange)
            .ok()?;
        (a.is_finite() && b.is_finite() && a <= b).then_some((a, b))
    }

    /// Pixel aspect ratio; 1 where the host says nothing sensible.
    pub fn pixel_aspect_ratio(&self) -> f64 {
        match self.props.double(kOfxImagePropPixelAspectRatio, 0) {
            Ok(p) if p.is_finite() && p > 0.0 => p,
            _ => 1.0,
        }
    }

    pub fn depth(&self) -> Result<Depth> {
        Depth::from_ofx(&self.props.string(kOfxImageEffectPropPixelDepth, 0)?)
    }

    pub fn components(&self) -> Result<Components> {
        Components::from_ofx(&self.props.string(kOfxImageEffectPropComponents, 0)?)
    }

    pub fn premultiplication(&self) -> Option<String> {
        self.props
            .string(kOfxImageEffectPropPreMultiplication, 0)
            .ok()
    }

    /// Region of definition at time t, canonical coordinates `[x1, y1, x2, y2]`.
    pub fn region_of_definition(&self, t: f64) -> Result<[f64; 4]> {
        let f = need(
            self.host.effect.clipGetRegionOfDefinition,
            "clipGetRegionOfDefinition",
        )?;
        let mut r = OfxRectD {
            x1: 0.0,
            y1: 0.0,
            x2: 0.0,
            y2: 0.0,
        };
        // SAFETY: valid clip handle, out pointer to a live rect.
        let st = unsafe { f(self.h, t, &mut r) };
        check(
            st,
            "clipGetRegionOfDefinition",
            &self.name.to_string_lossy(),
        )?;
        Ok([r.x1, r.y1, r.x2, r.y2])
    }

    /// The clip's image at time t (optionally only `region`, canonical `[x1, y1, x2, y2]`).
    /// Released when the returned `Image` drops.
    pub fn image(&self, t: f64, region: Option<[f64; 4]>) -> Result<Image<'a>> {
        let get = need(self.host.effect.clipGetImage, "clipGetImage")?;
        let release = need(self.host.effect.clipReleaseImage, "clipReleaseImage")?;
        let mut h: OfxPropertySetHandle = std::ptr::null_mut();
        let region = region.map(|[x1, y1, x2, y2]| OfxRectD { x1, y1, x2, y2 });
        let region_ptr = region
            .as_ref()
            .map_or(std::ptr::null(), |r| r as *const OfxRectD);
        // SAFETY: valid clip handle; region null or pointing to a live rect; out pointer live.
        let st = unsafe { get(self.h, t, region_ptr, &mut h) };
        if st != kOfxStatOK || h.is_null() {
            return Err(Error::Host(format!(
                "the host has no {} image at time {t}: {}",
                self.name.to_string_lossy(),
                super::status_name(st)
            )));
        }
        // The guard exists before anything else can fail, so every path releases.
        let guard = Release { h, release };
        // SAFETY: the host returned an image property set, valid until released.
        let props = unsafe { PropSet::from_raw(h, self.host) }
            .ok_or_else(|| Error::Host("null image".into()))?;
        let data = props.pointer(kOfxImagePropData, 0)?;
        let [x1, y1, x2, y2] = props.ints::<4>(kOfxImagePropBounds)?;
        let bounds = Rect::new(x1 as i64, y1 as i64, x2 as i64, y2 as i64);
        let row_bytes = props.int(kOfxImagePropRowBytes, 0)? as isize;
        let depth = Depth::from_ofx(&props.string(kOfxImageEffectPropPixelDepth, 0)?)?;
        let components = Components::from_ofx(&props.string(kOfxImageEffectPropComponents, 0)?)?;
        let layout = Layout::new(bounds, row_bytes, depth, components)?;
        if data.is_null() && layout.span() > 0 {
            return Err(Error::image(
                self.name.to_string_lossy(),
                format!("the host gave no pixel data at time {t}"),
            ));
        }
        Ok(Image {
            _guard: guard,
            data: data as *mut u8,
            layout,
            memory: self.memory,
            _life: PhantomData,
        })
    }
}

struct Release {
    h: OfxPropertySetHandle,
    release: unsafe extern "C" fn(OfxPropertySetHandle) -> i32,
}

impl Drop for Release {
    fn drop(&mut self) {
        // SAFETY: `h` came from clipGetImage and is released exactly once, here.
        let st = unsafe { (self.release)(self.h) };
        if st != kOfxStatOK {
            log::warn!("clipReleaseImage failed: {}", super::status_name(st));
        }
    }
}

/// A fetched image; its pixels are borrowed from the host until it drops.
pub struct Image<'a> {
    _guard: Release,
    data: *mut u8,
    layout: Layout,
    memory: Memory,
    _life: PhantomData<&'a ()>,
}

/// Pixels the CPU can read: the host's buffer itself, or a copy of part of a device image.
pub enum Readable<'a> {
    Borrowed(PixelsRef<'a>),
    Copied(Vec<u8>, Layout),
}

impl Readable<'_> {
    pub fn pixels(&self) -> Result<PixelsRef<'_>> {
        match self {
            Readable::Borrowed(p) => Ok(*p),
            Readable::Copied(bytes, layout) => PixelsRef::new(bytes, *layout),
        }
    }
}

impl Image<'_> {
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn lowest(&self) -> *mut u8 {
        // `wrapping_offset`: pure address arithmetic, dereferenced only within `span`.
        self.data.wrapping_offset(self.layout.lowest_offset())
    }

    /// Read-only pixels of `rect` (at least: a host image is handed out whole), readable on the
    /// CPU wherever the image lives.
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub fn read(&self, rect: Rect) -> Result<Readable<'_>> {
        match self.memory {
            Memory::Host => self.pixels().map(Readable::Borrowed),
            #[cfg(feature = "cuda")]
            Memory::Cuda(stream) => {
                let (bytes, layout) = super::cuda::download(self.data, &self.layout, rect, stream)?;
                Ok(Readable::Copied(bytes, layout))
            }
        }
    }

    /// `rect` as an [h, w, components] f32 tensor on `device`, copied there from a CUDA image
    /// without passing through host memory; None where that copy does not apply (a host image,
    /// a depth other than float, `rect` beyond the image, a model off CUDA).
    #[cfg(feature = "cuda")]
    pub fn to_tensor(
        &self,
        rect: Rect,
        device: &candle_core::Device,
    ) -> Result<Option<candle_core::Tensor>> {
        match self.memory {
            Memory::Host => Ok(None),
            Memory::Cuda(stream) => {
                super::cuda::to_tensor(self.data, &self.layout, rect, stream, device)
            }
        }
    }

    /// Writes `pixels` ([h, w, components] f32 on a CUDA device) over `window` of a CUDA image,
    /// device to device; false where that copy does not apply (see `to_tensor`).
    #[cfg(feature = "cuda")]
    pub fn write_tensor(&mut self, window: Rect, pixels: &candle_core::Tensor) -> Result<bool> {
        match self.memory {
            Memory::Host => Ok(false),
            Memory::Cuda(stream) => {
                super::cuda::write_tensor(self.data, &self.layout, window, pixels, stream)
            }
        }
    }

    /// Writes `window ∩ bounds` through `f`: into the host's buffer directly, or into a packed
    /// buffer then copied to the device image.
    pub fn write(&mut self, window: Rect, f: impl FnOnce(&mut PixelsMut<'_>)) -> Result<()> {
        match self.memory {
            Memory::Host => {
                f(&mut self.host_pixels_mut(window));
                Ok(())
            }
            #[cfg(feature = "cuda")]
            Memory::Cuda(stream) => {
                let layout = self.layout.packed(window)?;
                let mut buf = vec![0u8; layout.span()];
                f(&mut PixelsMut::from_buffer(&mut buf, layout, window)?);
                super::cuda::upload(self.data, &self.layout, &layout, &buf, stream)
            }
        }
    }

    /// Read-only pixels of a host-memory image (a device image is refused: see `read`).
    pub fn pixels(&self) -> Result<PixelsRef<'_>> {
        if self.memory != Memory::Host {
            return Err(Error::Internal("a CUDA image read as host memory".into()));
        }
        let span = self.layout.span();
        let bytes: &[u8] = if span == 0 {
            &[]
        } else {
            // SAFETY: the host guarantees `span` bytes of image memory starting at the lowest row
            // (bounds, row bytes and data describe its buffer), readable until release, and the
            // plugin never writes to a source image.
            unsafe { std::slice::from_raw_parts(self.lowest(), span) }
        };
        PixelsRef::new(bytes, self.layout)
    }

    /// Writable pixels of `window ∩ bounds`, one slice per row covering only the window
    /// (host memory only: `write` checks).
    fn host_pixels_mut(&mut self, window: Rect) -> PixelsMut<'_> {
        let l = self.layout;
        let window = window.intersect(&l.bounds);
        let len = window.width() as usize * l.pixel_bytes();
        let lowest = self.lowest();
        let rows = (window.y0..window.y1)
            .filter_map(|y| l.offset(window.x0, y))
            .map(|off| {
                // `wrapping_add`: address arithmetic only; `off + len <= span` keeps it inside.
                let row = lowest.wrapping_add(off);
                // SAFETY: `row .. row + len` lies inside the host's buffer (`off + len <= span`),
                // rows of one image never overlap (Layout::new checked the stride), and this
                // window's columns are written only through this slice while `self` is borrowed
                // mutably.
                unsafe { std::slice::from_raw_parts_mut(row, len) }
            })
            .collect();
        PixelsMut::from_rows(rows, window, l.depth, l.components)
    }
}
