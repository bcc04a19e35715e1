//! The test host's CUDA render (OFX 1.5, built with `--features cuda`): images handed to the
//! plugin as device copies of the host's surfaces, on a stream of the host's, the way DaVinci
//! Resolve renders. Needs a GPU: `Gpu::get` answers None without one.
use std::sync::Arc;

use cudarc::driver::sys;

use super::image::Surface;

fn ok(r: sys::CUresult, what: &str) {
    assert_eq!(r, sys::CUresult::CUDA_SUCCESS, "test host: {what}");
}

/// Makes device 0's primary context current on this thread (every host thread that touches
/// device memory calls it first).
fn bind() {
    // SAFETY: driver calls with out-pointers to locals; the primary context is retained once
    // per call and lives as long as the process.
    unsafe {
        ok(sys::cuInit(0), "cuInit");
        let mut dev: sys::CUdevice = 0;
        ok(sys::cuDeviceGet(&mut dev, 0), "cuDeviceGet");
        let mut ctx: sys::CUcontext = std::ptr::null_mut();
        ok(
            sys::cuDevicePrimaryCtxRetain(&mut ctx, dev),
            "cuDevicePrimaryCtxRetain",
        );
        ok(sys::cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
    }
}

/// The host's GPU and the stream it renders on.
pub struct Gpu {
    stream: sys::CUstream,
}

// SAFETY: a CUDA stream handle may be used from any thread of the process.
unsafe impl Send for Gpu {}
// SAFETY: as above.
unsafe impl Sync for Gpu {}

impl Gpu {
    /// The first CUDA device, where the driver finds one.
    pub fn get() -> Option<Arc<Gpu>> {
        // SAFETY: driver calls with out-pointers to locals.
        let n = unsafe {
            if sys::cuInit(0) != sys::CUresult::CUDA_SUCCESS {
                return None;
            }
            let mut n = 0;
            if sys::cuDeviceGetCount(&mut n) != sys::CUresult::CUDA_SUCCESS {
                return None;
            }
            n
        };
        if n == 0 {
            return None;
        }
        bind();
        let mut stream: sys::CUstream = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; a non-blocking stream, as hosts use.
        ok(
            unsafe {
                sys::cuStreamCreate(
                    &mut stream,
                    sys::CUstream_flags::CU_STREAM_NON_BLOCKING as u32,
                )
            },
            "cuStreamCreate",
        );
        Some(Arc::new(Gpu { stream }))
    }

    /// One GPU and stream for the whole test process (None without a GPU).
    pub fn shared() -> Option<Arc<Gpu>> {
        static GPU: std::sync::OnceLock<Option<Arc<Gpu>>> = std::sync::OnceLock::new();
        GPU.get_or_init(Gpu::get).clone()
    }

    /// kOfxImageEffectPropCudaStream.
    pub fn stream_ptr(&self) -> usize {
        self.stream as usize
    }

    /// Waits for everything queued on the host's stream.
    pub fn sync(&self) {
        bind();
        // SAFETY: the stream is live until `self` drops.
        ok(
            unsafe { sys::cuStreamSynchronize(self.stream) },
            "cuStreamSynchronize",
        );
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        bind();
        // SAFETY: created in `get`, destroyed once.
        unsafe { sys::cuStreamDestroy_v2(self.stream) };
    }
}

/// A device copy of a surface's whole buffer, freed on drop.
pub struct DeviceSurface {
    dptr: sys::CUdeviceptr,
    pub surface: Arc<Surface>,
}

// SAFETY: device memory may be used from any thread of the process.
unsafe impl Send for DeviceSurface {}
// SAFETY: as above.
unsafe impl Sync for DeviceSurface {}

impl DeviceSurface {
    /// Copies the surface to new device memory (before the plugin sees it).
    pub fn upload(surface: &Arc<Surface>) -> Arc<DeviceSurface> {
        bind();
        let (base, bytes) = surface.buffer();
        let mut dptr: sys::CUdeviceptr = 0;
        // SAFETY: allocation of `bytes`, then a synchronous copy of the surface's `bytes` bytes.
        unsafe {
            ok(sys::cuMemAlloc_v2(&mut dptr, bytes), "cuMemAlloc");
            ok(
                sys::cuMemcpyHtoD_v2(dptr, base as *const std::ffi::c_void, bytes),
                "cuMemcpyHtoD",
            );
        }
        Arc::new(DeviceSurface {
            dptr,
            surface: surface.clone(),
        })
    }

    /// kOfxImagePropData: the device address of the pixel the surface's own pointer addresses.
    pub fn data_ptr(&self) -> usize {
        let (base, _) = self.surface.buffer();
        self.dptr as usize + (self.surface.data_ptr() as usize - base as usize)
    }

    /// Copies the device buffer back into the surface (after the host's stream is done).
    pub fn download(&self) {
        bind();
        let (base, bytes) = self.surface.buffer();
        // SAFETY: synchronous copy into the surface's own `bytes` bytes; no plugin thread
        // writes the surface while the host reads the render back.
        ok(
            unsafe { sys::cuMemcpyDtoH_v2(base as *mut std::ffi::c_void, self.dptr, bytes) },
            "cuMemcpyDtoH",
        );
    }
}

impl Drop for DeviceSurface {
    fn drop(&mut self) {
        bind();
        // SAFETY: allocated in `upload`, freed once.
        unsafe { sys::cuMemFree_v2(self.dptr) };
    }
}
