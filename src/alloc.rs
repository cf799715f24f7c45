//! Memory accounting per thread. The process's allocator counts, for each thread, the bytes
//! it has allocated and not yet freed, so the rules engine can stop a rule whose evaluation
//! keeps growing memory, whatever the path (Rhai's own size limits see strings, arrays and
//! maps, not, for instance, values captured in function pointers).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting per thread.
pub struct Counting;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread. A const, drop-free thread-local
    /// allocates nothing itself, so it is safe to touch from inside the allocator.
    static HELD: Cell<isize> = const { Cell::new(0) };
}

fn add(bytes: isize) {
    // During thread teardown the thread-local may be gone: nothing to count then.
    let _ = HELD.try_with(|held| held.set(held.get().wrapping_add(bytes)));
}

// SAFETY: every method forwards to the system allocator with the caller's arguments and only
// adds bookkeeping that neither allocates nor touches the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, passed on unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract, passed on unchanged.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        new
    }
}

/// Bytes this thread holds now (allocated and not freed); compare two readings for growth.
pub fn held_by_this_thread() -> isize {
    HELD.try_with(Cell::get).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_on_this_thread_is_counted() {
        let before = held_by_this_thread();
        let big = vec![0u8; 4 << 20];
        assert!(held_by_this_thread() - before >= 4 << 20);
        drop(big);
        assert!(held_by_this_thread() - before < 1 << 20);
    }
}
