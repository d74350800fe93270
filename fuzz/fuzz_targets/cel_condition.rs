//! Any expression is compiled or refused with a typed error, and one that
//! compiles evaluates to a boolean or a typed error over a fixed call.
#![no_main]

use governor_core::Condition;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(condition) = Condition::compile(text, "production") else {
        return;
    };
    let input = json!({"amount": 1500.5, "count": 3, "to": {"iban": "DE02"}, "tags": ["a", "b"], "ok": true});
    let principal = json!({"id": "ann", "roles": ["finance"], "attributes": {"department": "ops"}});
    let _ = condition.evaluate_values(
        &input,
        &principal,
        "payments.transfer",
        Some(&json!({"status": "done"})),
    );
});
