//! The terminal progress bar shown while a node syncs blocks from its peers.

use std::io::{IsTerminal, Write};

/// Draws a progress bar on stderr when it is a terminal and a sync is under way.
#[derive(Default)]
pub struct SyncProgressBar {
    drawing: bool,
}

/// Blocks behind the best header before a sync counts as under way.
const SYNC_THRESHOLD: u64 = 10;
const BAR_WIDTH: u64 = 40;

/// The bar's text for `height` of `target` blocks.
pub fn render(height: u64, target: u64) -> String {
    let target = target.max(1);
    let filled = (height.min(target) * BAR_WIDTH / target) as usize;
    format!(
        "syncing [{}{}] {height}/{target} blocks ({:.1}%)",
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH as usize - filled),
        height.min(target) as f64 * 100.0 / target as f64
    )
}

impl SyncProgressBar {
    /// Updates the bar for the node at `height` with the best header at `best_header`.
    pub fn update(&mut self, height: u64, best_header: u64) {
        let stderr = std::io::stderr();
        if !stderr.is_terminal() {
            return;
        }
        let mut out = stderr.lock();
        if best_header > height + SYNC_THRESHOLD || (self.drawing && best_header > height) {
            self.drawing = true;
            let _ = write!(out, "\r{}", render(height, best_header));
        } else if self.drawing {
            self.drawing = false;
            let _ = writeln!(out, "\r{} synced", render(height, best_header));
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_progress() {
        assert!(render(0, 100).contains("[........................................] 0/100"));
        assert!(render(50, 100).contains("####################...................."));
        assert!(render(100, 100).contains("(100.0%)"));
        assert!(
            render(5, 0).contains("5/1"),
            "a zero target does not divide by zero"
        );
    }
}
