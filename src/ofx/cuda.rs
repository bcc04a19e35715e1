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

use super::pixels::{Depth, Layout, RectSpan};
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
    /// Packed rows in device memory (a tensor's buffer).
    Device(sys::CUdeviceptr),
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
            End::Device(d) => (
                sys::CUmemorytype::CU_MEMORYTYPE_DEVICE,
                std::ptr::null_mut(),
                d,
                s.width,
            ),
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

/// `rect` of the float device image at `data` as an [h, w, components] f32 tensor on the
/// model's CUDA `device`, copied device to device on the host's stream and waited for there:
/// the pixels never pass through host memory. Rows come in increasing y whatever the image's
/// row order. None where the image is not float, `rect` is not inside it, or the model is not
/// on CUDA: those are read through host memory (`download`).
pub fn to_tensor(
    data: *const u8,
    layout: &Layout,
    rect: Rect,
    stream: Stream,
    device: &candle_core::Device,
) -> Result<Option<candle_core::Tensor>> {
    use cudarc::driver::DevicePtr;
    let candle_core::Device::Cuda(cd) = device else {
        return Ok(None);
    };
    let packed = layout.packed(rect)?;
    if layout.depth != Depth::Float || packed.bounds != rect || rect.is_empty() {
        return Ok(None);
    }
    let Some((first, s)) = span(data, layout, rect) else {
        return Ok(None);
    };
    let (w, h, comps) = (
        rect.width() as usize,
        rect.height() as usize,
        layout.components.count(),
    );
    // Every byte is written by the copy below: no need to clear it first.
    // SAFETY: an uninitialised device buffer, filled whole before it is read.
    let slice = unsafe { cd.alloc::<f32>(w * h * comps)? };
    let own = cd.cuda_stream();
    // The buffer may come from the model's stream-ordered pool: it exists for another stream
    // once that stream has got this far.
    own.synchronize()
        .map_err(|e| Error::Device(format!("CUDA render: allocating a source buffer ({e})")))?;
    {
        let (dst, _read) = slice.device_ptr(&own);
        in_context(first, || {
            // SAFETY: the source rows lie inside the host's image (`rect_span` checked them);
            // the destination holds `rows * width` bytes (w * h * comps floats).
            unsafe {
                copy_rows(
                    End::Image(first),
                    End::Device(dst),
                    &s,
                    stream,
                    "reading a host image onto the model's device (cuMemcpy2DAsync)",
                )?;
                check(
                    sys::cuStreamSynchronize(stream.raw()),
                    "waiting for a host image (cuStreamSynchronize)",
                )
            }
        })?;
    }
    let storage = candle_core::CudaStorage::wrap_cuda_slice(slice, cd.clone());
    let t = candle_core::Tensor::from_storage(
        candle_core::Storage::Cuda(storage),
        (h, w, comps),
        candle_core::op::BackpropOp::none(),
        false,
    );
    Ok(Some(if layout.row_bytes < 0 {
        flip_rows(&t)?
    } else {
        t
    }))
}

/// Writes `pixels` ([h, w, components] f32 on the model's CUDA device, the window's) into the
/// float device image at `data`, device to device on the host's stream once the model's own
/// stream has produced them (that stream is waited for, never the whole device). Without a host
/// stream the copy is waited for too. False where the image is not float or the window not
/// inside it: the caller writes through host memory.
pub fn write_tensor(
    data: *mut u8,
    layout: &Layout,
    window: Rect,
    pixels: &candle_core::Tensor,
    stream: Stream,
) -> Result<bool> {
    use cudarc::driver::DevicePtr;
    let candle_core::Device::Cuda(cd) = pixels.device() else {
        return Ok(false);
    };
    let packed = layout.packed(window)?;
    let comps = layout.components.count();
    let want = [window.height() as usize, window.width() as usize, comps];
    if layout.depth != Depth::Float || packed.bounds != window || pixels.dims() != want {
        return Ok(false);
    }
    let Some((first, s)) = span(data, layout, window) else {
        return Ok(true);
    };
    let rows = if layout.row_bytes < 0 {
        flip_rows(pixels)?
    } else {
        pixels.clone()
    };
    // A fresh contiguous copy: its buffer starts at the first pixel.
    let rows = rows.to_dtype(candle_core::DType::F32)?.copy()?;
    let (storage, _) = rows.storage_and_layout();
    let candle_core::Storage::Cuda(cs) = &*storage else {
        return Err(Error::Internal("a CUDA tensor without CUDA storage".into()));
    };
    let slice = cs.as_cuda_slice::<f32>()?;
    let own = cd.cuda_stream();
    own.synchronize()
        .map_err(|e| Error::Device(format!("CUDA render: finishing the frame ({e})")))?;
    let (src, _read) = slice.device_ptr(&own);
    in_context(first, || {
        // SAFETY: the destination rows are the window's, inside the host's image; the source is
        // the tensor's buffer of h * w * comps floats, finished (its stream was waited for). The
        // copy is waited for on the host's stream before the tensor, and its buffer, can go.
        unsafe {
            copy_rows(
                End::Device(src),
                End::Image(first),
                &s,
                stream,
                "writing the output image from the model's device (cuMemcpy2DAsync)",
            )?;
            check(
                sys::cuStreamSynchronize(stream.raw()),
                "finishing the output image (cuStreamSynchronize)",
            )
        }
    })?;
    Ok(true)
}

/// [h, w, c] with its rows in reverse order.
fn flip_rows(t: &candle_core::Tensor) -> Result<candle_core::Tensor> {
    let h = t.dim(0)? as u32;
    let order = candle_core::Tensor::arange(0f32, h as f32, t.device())?
        .affine(-1.0, (h - 1) as f64)?
        .to_dtype(candle_core::DType::U32)?;
    Ok(t.index_select(&order, 0)?)
}
