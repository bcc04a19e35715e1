//! OFX CUDA render (OFX 1.5, `--features cuda`): when the host sets
//! `kOfxImageEffectPropCudaEnabled` on a Render action, every image of that action holds CUDA
//! memory. Its pixels are copied with the driver API on the host's stream
//! (`kOfxImageEffectPropCudaStream`) and never dereferenced on the CPU. Device-to-host copies
//! wait for that stream only (a source image is ready when the work queued before it is done);
//! host-to-device copies are queued and left to run, as the spec asks, unless the host gave no
//! stream, in which case they are waited for before the action returns. Nothing here calls
//! `cuCtxSynchronize` (the driver's `cudaDeviceSynchronize`).
use std::ffi::c_void;

use cudarc::driver::sys;

use super::pixels::{Layout, RectSpan};
use crate::geometry::Rect;
use crate::{Error, Result};

/// The stream of one CUDA render action; null: the host gave none (the legacy default stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream(pub(crate) *mut c_void);

impl Stream {
    fn raw(self) -> sys::CUstream {
        self.0 as sys::CUstream
    }

    /// The host gave a stream: queued work is left to it.
    pub fn is_host_stream(self) -> bool {
        !self.0.is_null()
    }
}

fn check(r: sys::CUresult, what: &str) -> Result<()> {
    if r == sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(Error::Device(format!("CUDA render: {what} failed ({r:?})")))
    }
}

/// The CUDA context current on the host's thread when a render began, made current again when
/// it ends: the model's device work binds its own (primary) context to the thread, and a host
/// with a context of its own must find it in place after the action.
pub struct KeepContext(Option<sys::CUcontext>);

impl KeepContext {
    pub fn save() -> KeepContext {
        let mut cur: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: out-pointer to a local. Where the driver fails, nothing is restored.
        let ok = unsafe {
            sys::cuInit(0) == sys::CUresult::CUDA_SUCCESS
                && sys::cuCtxGetCurrent(&mut cur) == sys::CUresult::CUDA_SUCCESS
        };
        KeepContext(ok.then_some(cur))
    }
}

impl Drop for KeepContext {
    fn drop(&mut self) {
        if let Some(ctx) = self.0 {
            // SAFETY: the context was current on this thread when the action began; the host
            // keeps it alive across its own action call.
            unsafe { sys::cuCtxSetCurrent(ctx) };
        }
    }
}

/// Runs `f` with a current CUDA context: the host's where its thread has one, else the primary
/// context of the device that holds `ptr` (made current for `f` and put back after).
fn in_context<R>(ptr: sys::CUdeviceptr, f: impl FnOnce() -> Result<R>) -> Result<R> {
    // SAFETY: plain driver API calls with out-pointers to locals; a context pushed here is popped
    // and its primary context released on every path.
    unsafe {
        check(sys::cuInit(0), "cuInit")?;
        let mut cur: sys::CUcontext = std::ptr::null_mut();
        check(sys::cuCtxGetCurrent(&mut cur), "cuCtxGetCurrent")?;
        if !cur.is_null() {
            return f();
        }
        let mut ordinal: i32 = 0;
        check(
            sys::cuPointerGetAttribute(
                &mut ordinal as *mut i32 as *mut c_void,
                sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                ptr,
            ),
            "finding the device of a host image (cuPointerGetAttribute)",
        )?;
        let mut dev: sys::CUdevice = 0;
        check(sys::cuDeviceGet(&mut dev, ordinal), "cuDeviceGet")?;
        let mut ctx: sys::CUcontext = std::ptr::null_mut();
        check(
            sys::cuDevicePrimaryCtxRetain(&mut ctx, dev),
            "cuDevicePrimaryCtxRetain",
        )?;
        let pushed = check(sys::cuCtxPushCurrent_v2(ctx), "cuCtxPushCurrent");
        let out = pushed.and_then(|_| f());
        let mut popped: sys::CUcontext = std::ptr::null_mut();
        sys::cuCtxPopCurrent_v2(&mut popped);
        sys::cuDevicePrimaryCtxRelease_v2(dev);
        out
    }
}

/// The device address of `rect`'s lowest-addressed row and its copy geometry.
fn span(data: *const u8, layout: &Layout, rect: Rect) -> Option<(sys::CUdeviceptr, RectSpan)> {
    let s = layout.rect_span(rect)?;
    Some(((data as isize).wrapping_add(s.first) as sys::CUdeviceptr, s))
}

/// One end of a row copy: the host image's rows (`pitch` apart, any memory: the driver tells
/// by the address) or a packed host buffer.
enum End {
    Image(sys::CUdeviceptr),
    Packed(*mut c_void),
}

impl End {
    /// This end as `CUDA_MEMCPY2D` describes it: memory type, host pointer, device address and
    /// pitch, for rows laid out as `s`.
    fn parts(&self, s: &RectSpan) -> (sys::CUmemorytype, *mut c_void, sys::CUdeviceptr, usize) {
        match *self {
            End::Image(d) => (
                sys::CUmemorytype::CU_MEMORYTYPE_UNIFIED,
                std::ptr::null_mut(),
                d,
                s.pitch,
            ),
            End::Packed(h) => (sys::CUmemorytype::CU_MEMORYTYPE_HOST, h, 0, s.width),
        }
    }
}

/// A 2-D copy of `s.rows` rows of `s.width` bytes, queued on `stream`.
///
/// # Safety
/// Both ends must hold the rows: the image end `s.pitch` apart, the packed end `s.width` apart.
unsafe fn copy_rows(from: End, to: End, s: &RectSpan, stream: Stream, what: &str) -> Result<()> {
    let (src_type, src_host, src_device, src_pitch) = from.parts(s);
    let (dst_type, dst_host, dst_device, dst_pitch) = to.parts(s);
    let c = sys::CUDA_MEMCPY2D {
        srcXInBytes: 0,
        srcY: 0,
        srcMemoryType: src_type,
        srcHost: src_host,
        srcDevice: src_device,
        srcArray: std::ptr::null_mut(),
        srcPitch: src_pitch,
        dstXInBytes: 0,
        dstY: 0,
        dstMemoryType: dst_type,
        dstHost: dst_host,
        dstDevice: dst_device,
        dstArray: std::ptr::null_mut(),
        dstPitch: dst_pitch,
        WidthInBytes: s.width,
        Height: s.rows,
    };
    // SAFETY: the caller vouches for both ends.
    check(unsafe { sys::cuMemcpy2DAsync_v2(&c, stream.raw()) }, what)
}

/// Copies `rect ∩ bounds` of the device image at `data` into host memory, waiting for the
/// host's stream: the bytes and their layout (`layout.packed(rect)`).
pub fn download(
    data: *const u8,
    layout: &Layout,
    rect: Rect,
    stream: Stream,
) -> Result<(Vec<u8>, Layout)> {
    let host = layout.packed(rect)?;
    let mut buf = vec![0u8; host.span()];
    let Some((first, s)) = span(data, layout, host.bounds) else {
        return Ok((buf, host));
    };
    in_context(first, || {
        let to = End::Packed(buf.as_mut_ptr() as *mut c_void);
        // SAFETY: the source rows lie inside the host's image (`rect_span` checked them against
        // its bounds and stride); the destination is `buf`, `rows * width` bytes long.
        unsafe {
            copy_rows(
                End::Image(first),
                to,
                &s,
                stream,
                "reading a host image (cuMemcpy2DAsync)",
            )?;
            check(
                sys::cuStreamSynchronize(stream.raw()),
                "waiting for a host image (cuStreamSynchronize)",
            )
        }
    })?;
    Ok((buf, host))
}

/// Copies `bytes`, laid out as `host` (a `layout.packed(window)`), into its bounds in the device
/// image at `data`, on the host's stream. Without a host stream the copy is waited for.
pub fn upload(
    data: *mut u8,
    layout: &Layout,
    host: &Layout,
    bytes: &[u8],
    stream: Stream,
) -> Result<()> {
    if bytes.len() < host.span() {
        return Err(Error::Internal(format!(
            "CUDA render: {} bytes for a window of {}",
            bytes.len(),
            host.span()
        )));
    }
    let Some((first, s)) = span(data, layout, host.bounds) else {
        return Ok(());
    };
    in_context(first, || {
        let from = End::Packed(bytes.as_ptr() as *mut c_void);
        // SAFETY: the destination rows are the window's, inside the host's image; the source is
        // `bytes`, at least `rows * width` long and only read. From pageable memory the driver
        // stages the bytes before it returns, so `bytes` may go as soon as this call is back.
        unsafe {
            copy_rows(
                from,
                End::Image(first),
                &s,
                stream,
                "writing the output image (cuMemcpy2DAsync)",
            )?;
            if !stream.is_host_stream() {
                check(
                    sys::cuStreamSynchronize(stream.raw()),
                    "finishing the output image (cuStreamSynchronize)",
                )?;
            }
        }
        Ok(())
    })
}
