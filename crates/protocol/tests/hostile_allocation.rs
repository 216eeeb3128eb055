//! A request that announces 2^31-1 array elements inside a 100-byte frame must fail to decode without the broker
//! reserving memory for those elements. A counting allocator records the largest single allocation made while
//! decoding.
#![allow(unsafe_code)] // the GlobalAlloc impl below; it only forwards to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{BufMut, BytesMut};
use strom_protocol::decode_request;

struct PeakAllocation;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for PeakAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: PeakAllocation = PeakAllocation;

fn frame_with_huge_count(api_key: i16, version: i16, flexible: bool) -> bytes::Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(api_key);
    buf.put_i16(version);
    buf.put_i32(1);
    buf.put_i16(-1); // null client id
    if flexible {
        buf.put_u8(0); // no header tagged fields
                       // compact array count: unsigned varint of (i32::MAX as u32) + 1
        let mut n: u32 = (i32::MAX as u32) + 1;
        while n >= 0x80 {
            buf.put_u8((n as u8) | 0x80);
            n >>= 7;
        }
        buf.put_u8(n as u8);
    } else {
        buf.put_i32(i32::MAX);
    }
    while buf.len() < 100 {
        buf.put_u8(0x41);
    }
    buf.freeze()
}

#[test]
fn hostile_array_count_allocates_nothing_large() {
    // (api key, version, flexible): Metadata v1 (classic array), Metadata v9 (compact array), Produce v3 topic data,
    // Fetch v12 topics, CreateTopics v2.
    let cases = [
        (3, 1, false),
        (3, 9, true),
        (0, 3, false),
        (1, 12, true),
        (19, 2, false),
    ];
    for (api_key, version, flexible) in cases {
        let frame = frame_with_huge_count(api_key, version, flexible);
        assert_eq!(frame.len(), 100);
        LARGEST.store(0, Ordering::Relaxed);
        let result = decode_request(frame);
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            result.is_err(),
            "api {api_key} v{version} decoded a truncated array"
        );
        assert!(
            largest < 256 * 1024,
            "api {api_key} v{version} allocated {largest} bytes at once"
        );
    }
}
