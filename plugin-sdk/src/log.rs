//! Structured logging into the host's logs; use the `log_*!` macros.

use core::fmt::Display;

pub use crate::bindings::host::switchboard::connector::log::Level;

/// Sends one log record to the host. Called by the `log_*!` macros.
#[doc(hidden)]
pub fn __emit(level: Level, message: &str, fields: &[(&str, &dyn Display)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.to_string()))
        .collect();
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::host::switchboard::connector::log::log(level, message, &fields);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        // Native unit tests of a plugin have no host: print instead.
        let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!("[{level:?}] {message} {}", fields.join(" "));
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log {
    ($level:ident, $message:expr $(, $key:ident = $value:expr)* $(,)?) => {
        $crate::log::__emit(
            $crate::log::Level::$level,
            ::core::convert::AsRef::<str>::as_ref(&$message),
            &[$((::core::stringify!($key), &$value as &dyn ::core::fmt::Display)),*],
        )
    };
}

/// Logs at level `info`: `log_info!("polled updates", count = events.len(), stream = stream)`.
///
/// The first argument is the message (`&str` or `String`); then any number of
/// `key = value` fields, whose values are formatted with `Display`. The host tags every record
/// with the installation and plugin, so those need no fields. Never log secret settings.
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)+) => { $crate::__log!(Info, $($arg)+) };
}

/// Logs at level `debug`; see [`log_info!`](crate::log_info) for the syntax.
#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)+) => { $crate::__log!(Debug, $($arg)+) };
}

/// Logs at level `trace`; see [`log_info!`](crate::log_info) for the syntax.
#[macro_export]
macro_rules! log_trace {
    ($($arg:tt)+) => { $crate::__log!(Trace, $($arg)+) };
}

/// Logs at level `warn`; see [`log_info!`](crate::log_info) for the syntax.
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)+) => { $crate::__log!(Warn, $($arg)+) };
}

/// Logs at level `error`; see [`log_info!`](crate::log_info) for the syntax.
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)+) => { $crate::__log!(Error, $($arg)+) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn macros_accept_fields_and_trailing_comma() {
        let stream = "updates";
        crate::log_info!("polled updates", count = 3, stream = stream,);
        crate::log_warn!(format!("owned {}", 1));
        crate::log_error!("plain");
    }
}
