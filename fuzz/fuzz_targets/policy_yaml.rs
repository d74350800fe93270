//! Any text given to the YAML policy loader gives a policy file or a
//! typed error: never a panic, a hang or unbounded memory.
#![no_main]

use governor_core::PolicyFile;
use governor_core::config::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PolicyFile::parse(text, Format::Yaml);
    }
});
