//! One frame of any link type through the decoder (all encapsulations, fragments).
#![no_main]
use apiwatch_wire::{Decoder, DecoderConfig};
use libfuzzer_sys::fuzz_target;

const LINKTYPES: [u32; 11] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 239, 276];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let mut d = Decoder::new(DecoderConfig::default());
    // Several frames from one input, so fragment reassembly gets state to work with.
    for (i, frame) in rest.split(|&b| b == 0xA5).enumerate() {
        let lt = LINKTYPES[(sel as usize + i) % LINKTYPES.len()];
        let _ = d.decode(lt, frame, i as i64 * 1_000_000);
    }
});
