//! The message of a caught panic, for the logs and errors of the places
//! that contain one (a request handler, the generation thread, a training
//! job, a scheduled task, a supervised loop).

/// The text a panic was raised with (`panic!("…")` or a formatted one), or
/// `None` for any other payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::panic_message;

    #[test]
    fn messages_of_both_payload_kinds() {
        let p = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(&*p), Some("plain"));
        let n = 3;
        let p = std::panic::catch_unwind(|| panic!("formatted {n}")).unwrap_err();
        assert_eq!(panic_message(&*p), Some("formatted 3"));
        let p = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(&*p), None);
    }
}
