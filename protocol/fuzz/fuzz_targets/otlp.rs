//! Any body, as protobuf and as JSON, plain and "gzip": decoding never panics, and whatever decodes
//! maps to points with finite values, counts matching values, and at most the dimensions allowed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfmon_protocol::otlp::{decode, Encoding, MapOptions, Mapper};

fuzz_target!(|data: &[u8]| {
    let options = MapOptions { resource_attributes: vec!["service.name".into()], max_dimensions: 29 };
    let mut mapper = Mapper::new();
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        for gzip in [false, true] {
            let Ok(request) = decode(data, encoding, gzip) else { continue };
            // Twice: the second pass exercises the cumulative-stream deltas.
            for _ in 0..2 {
                let mapped = mapper.map(&request, &options, 1_767_225_600_000);
                for p in &mapped.points {
                    assert!(p.values.iter().all(|v| v.is_finite()), "{p:?}");
                    assert!(p.counts.is_empty() || p.counts.len() == p.values.len());
                    assert!(p.dimensions.len() <= 29);
                }
                assert!(mapped.rejected_total() <= mapped.data_points);
            }
        }
    }
});
