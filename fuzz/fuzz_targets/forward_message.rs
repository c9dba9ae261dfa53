#![no_main]
//! `forward_message`, with the bytes an input allocates counted: the
//! target body runs in the replay too, the bound only here (a global
//! allocator would count the whole test binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Bytes one input may hold at once. The fuzzer's inputs are at most
/// 4 KiB; the most a series entry may legitimately ask for is a
/// histogram, about 450 KB for HdrHistogram's whole range at statsyard's
/// precision, from about 60 bytes.
const PEAK_BYTES: usize = 256 << 20;

struct Counting;

/// Bytes allocated and not freed, and the most there were since `PEAK`
/// was last reset.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call goes to `System` unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new >= l.size() {
                grew(new - l.size());
            } else {
                LIVE.fetch_sub(l.size() - new, Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    statsyard_fuzz::forward_message(data);
    let peak = PEAK.load(Relaxed) - before;
    assert!(
        peak <= PEAK_BYTES,
        "{peak} bytes live at once for an input of {} bytes",
        data.len()
    );
});
