//! Progress bars (indicatif) for long commands: drawn on stderr when it is a terminal,
//! nothing otherwise, so logs and pipes stay clean.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What a bar counts.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// Bytes (shown as MB, with a rate).
    Bytes,
    /// Things: objects, files, events.
    Items(&'static str),
}

/// One reading of a running command.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// How much is done.
    pub done: u64,
    /// The whole, when known (a spinner otherwise).
    pub total: Option<u64>,
    /// Words after the bar.
    pub message: String,
}

/// A bar redrawn from `read()` every 200 ms until dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Whether bars are drawn at all (stderr is a terminal).
pub fn shown() -> bool {
    std::io::stderr().is_terminal()
}

impl Progress {
    /// Starts a bar labelled `what`, counting `unit`.
    pub fn start(
        what: &'static str,
        unit: Unit,
        read: impl Fn() -> Reading + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        if !shown() {
            return Self { stop, thread: None };
        }
        let counts = match unit {
            Unit::Bytes => "{bytes}/{total_bytes} ({bytes_per_sec})".to_string(),
            Unit::Items(noun) => format!("{{human_pos}}/{{human_len}} {noun}"),
        };
        let style = ProgressStyle::with_template(&format!(
            "{what}: {{spinner}} [{{elapsed_precise}}] {{wide_bar}} {counts} {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar =
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
        let flag = stop.clone();
        let thread = std::thread::spawn(move || loop {
            let reading = read();
            if let Some(total) = reading.total {
                bar.set_length(total);
            }
            bar.set_position(reading.done);
            bar.set_message(reading.message);
            if flag.load(Ordering::Relaxed) {
                bar.finish_and_clear();
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `12.3 MB`.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
